"""Train stacked members on a head's loss with AdamW, mini-batches and per-member early stopping.

Each member draws its own mini-batch order from its own generator, and the summed loss gives each
member exactly the gradient of its own loss, so training s members in one stacked run equals
training them one at a time (tested in ``tests/ensembles/test_training.py``). A member whose
validation NLL has not improved for ``patience`` epochs stops: its best weights are frozen, while
the others go on.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from choral.ensembles.checkpoint import Checkpoint
from choral.ensembles.config import TrainConfig
from choral.networks.members import Forward


@dataclass
class History:
    """What happened while training: per-member best epoch and validation NLL (standardised)."""

    epochs_run: int = 0
    best_epoch: list[int] = field(default_factory=list)
    best_val_nll: list[float] = field(default_factory=list)
    train_nll: list[float] = field(default_factory=list)


EpochCallback = Callable[[int, Tensor, Tensor, int], None]
"""Called after each epoch with (epoch, train loss (s,), validation loss (s,), members active)."""

Loss = Callable[[Tensor, Tensor], Tensor]
"""Mean loss per member: (member outputs (s, b, ...), targets (s, b, ...)) -> (s,)."""

Optimizer = Callable[[list[Tensor]], torch.optim.Optimizer]
"""Builds the optimiser over the stacked weight tensors (s, ...)."""

InputHook = Callable[[Forward, dict[str, Tensor], Tensor, Tensor], Tensor]
"""What a mini-batch trains on: (forward, weights (s, ...), inputs ``X[idx]`` (s, b, ...), row
indices ``idx`` (s, b)) -> inputs (s, b, ...), e.g. with noise added or a state replaced by the
members' own prediction (:mod:`choral.surrogate.pushforward`)."""

LrFactor = Callable[[float], float]
"""Learning-rate multiplier as a function of the fractional epoch ``t`` = epoch + batch/batches."""


def cosine(epochs: int) -> LrFactor:
    """Anneal from 1 to 0 over ``epochs``: ``(1 + cos(pi t / epochs)) / 2``.

    >>> [round(cosine(4)(t), 3) for t in (0, 2, 4)]
    [1.0, 0.5, 0.0]
    """
    return lambda t: 0.5 * (1.0 + math.cos(math.pi * min(t / epochs, 1.0)))


def clip_per_member(params: dict[str, Tensor], max_norm: float) -> None:
    """Scale each member's gradient (stacked on axis 0) to a norm of at most ``max_norm``, the
    norm taken over all of that member's weights: members stay independent of each other.

    >>> p = {"w": torch.zeros(2, 3, requires_grad=True)}
    >>> p["w"].grad = torch.tensor([[3.0, 4.0, 0.0], [0.3, 0.4, 0.0]])
    >>> clip_per_member(p, 1.0); p["w"].grad.tolist()
    [[0.6000000238418579, 0.800000011920929, 0.0], [0.30000001192092896, 0.4000000059604645, 0.0]]
    """
    grads = [p.grad for p in params.values() if p.grad is not None]
    norms = torch.sqrt(sum(g.pow(2).flatten(1).sum(1) for g in grads))
    factor = (max_norm / (norms + 1e-12)).clamp(max=1.0)
    for g in grads:
        g.mul_(factor.view(-1, *[1] * (g.ndim - 1)))


def _autocast(forward: Forward, precision: str) -> Forward:
    """``forward`` under bfloat16 autocast for ``precision = "bf16-mixed"``; outputs cast back
    to the weights' dtype so the loss is computed in full precision."""
    if precision == "32":
        return forward

    def run(params: dict[str, Tensor], x: Tensor) -> Tensor:
        dtype = next(iter(params.values())).dtype
        with torch.autocast(x.device.type, dtype=torch.bfloat16):
            return forward(params, x).to(dtype)

    return run


@dataclass
class _Loop:
    """The mutable state of :func:`train_members` between steps: what a checkpoint holds."""

    params: dict[str, Tensor]
    opt: torch.optim.Optimizer
    gens: list[torch.Generator]
    best: dict[str, Tensor]
    best_nll: Tensor
    best_epoch: Tensor
    active: Tensor
    epoch: int = 0
    batch: int = 0
    order: Tensor | None = None
    """The epoch's mini-batch order (s, n) while inside an epoch, else ``None``."""
    total: Tensor | None = None
    train_nll: Tensor | None = None

    _TENSORS = ("best_nll", "best_epoch", "active", "total", "train_nll")
    """Tensors on the training device; ``order`` stays on the CPU, where generators draw."""

    def state_dict(self, extra: Any) -> dict[str, Any]:
        """Everything on the CPU (and ``extra``'s state, when it has one)."""
        tensors = {k: getattr(self, k) for k in self._TENSORS}
        return {"params": {k: v.detach().cpu() for k, v in self.params.items()},
                "best": {k: v.cpu() for k, v in self.best.items()},
                "optimizer": self.opt.state_dict(), "torch_rng": torch.get_rng_state(),
                "generators": [g.get_state() for g in self.gens], "order": self.order,
                "epoch": self.epoch, "batch": self.batch,
                **{k: None if v is None else v.cpu() for k, v in tensors.items()},
                "extra": extra.state_dict() if hasattr(extra, "state_dict") else None}

    def load_state_dict(self, state: dict[str, Any], extra: Any) -> None:
        device = self.best_nll.device
        with torch.no_grad():  # into the tensors the optimiser holds
            for k, v in self.params.items():
                v.copy_(state["params"][k])
        self.best = {k: v.to(device) for k, v in state["best"].items()}
        self.opt.load_state_dict(state["optimizer"])
        for g, saved in zip(self.gens, state["generators"], strict=True):
            g.set_state(saved)
        torch.set_rng_state(state["torch_rng"])
        self.epoch, self.batch, self.order = state["epoch"], state["batch"], state["order"]
        for k in self._TENSORS:
            setattr(self, k, None if state[k] is None else state[k].to(device))
        if hasattr(extra, "load_state_dict"):
            extra.load_state_dict(state["extra"])


def train_members(forward: Forward, params: dict[str, Tensor], X: Any, Y: Any,
                  X_val: Any, Y_val: Any, cfg: TrainConfig,
                  batch_seeds: Sequence[int], loss: Loss,
                  on_epoch: EpochCallback | None = None, *, lr_factor: LrFactor | None = None,
                  after_epoch: Callable[[int, dict[str, Tensor]], None] | None = None,
                  early_stopping: bool = True,
                  checkpoint: Checkpoint | None = None,
                  optimizer: Optimizer | None = None,
                  inputs: InputHook | None = None) -> tuple[dict[str, Tensor], History]:
    """Fit stacked ``params`` (s, ...) to ``X`` (n, ...), ``Y`` (n, m, ...); return the best.

    ``X``, ``Y`` (and the validation rows) are tensors on the weights' device, or lazy rows
    that ``X[idx]`` reads for an index tensor ``idx`` (s, b) and ``X[i:j]`` for a range.
    ``loss`` is the head's per-member loss. The learning rate is ``cfg.lr * lr_factor(t)``
    (default: constant, or :func:`cosine` when ``cfg.lr_schedule`` says so), set before every
    step. ``after_epoch(epoch, params)`` sees the current weights after each epoch (detached
    views that training goes on updating: clone what you keep), e.g. to average or snapshot
    them; if it has ``state_dict()`` / ``load_state_dict()`` its state is checkpointed too.
    Without validation data, or with ``early_stopping=False``, every member runs all
    epochs and keeps its last weights (the history still records the best validation epoch).
    With a ``checkpoint`` (:class:`~choral.ensembles.checkpoint.Checkpoint`) the state is saved
    as it says and a saved state of this stage is resumed. ``optimizer(params)`` builds the
    optimiser over the stacked tensors (default AdamW with ``cfg.lr``, ``cfg.weight_decay``);
    its ``state_dict`` is checkpointed. ``inputs`` (an :data:`InputHook`)
    changes each training mini-batch's inputs (never the validation rows').
    """
    stage = checkpoint.stage() if checkpoint else None
    if checkpoint and (done := checkpoint.result(stage)) is not None:
        return done[0], History(**done[1])
    s, n = len(batch_seeds), len(X)
    forward = _autocast(forward, cfg.precision)
    params = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
    device = next(iter(params.values())).device
    # foreach, not fused: the fused CPU kernel rounds its vector body and its scalar tail
    # differently, so a member's step would depend on where its weights sit in the stack (and
    # a member trained in a shard of another size, or alone, would differ in the last bits)
    opt = torch.optim.AdamW(params.values(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                            foreach=True) if optimizer is None else \
        optimizer(list(params.values()))
    if lr_factor is None and cfg.lr_schedule == "cosine":
        lr_factor = cosine(cfg.epochs)
    batches = math.ceil(n / cfg.batch_size)
    run = _Loop(params, opt, [torch.Generator().manual_seed(int(seed)) for seed in batch_seeds],
                {k: v.detach().clone() for k, v in params.items()},
                torch.full((s,), float("inf"), dtype=torch.float64, device=device),
                torch.zeros(s, dtype=torch.long, device=device),
                torch.ones(s, dtype=torch.bool, device=device))
    if checkpoint and (state := checkpoint.state(stage)) is not None:
        run.load_state_dict(state, after_epoch)
    while run.epoch < cfg.epochs and run.active.any():
        epoch = run.epoch
        if run.order is None:
            run.order = torch.stack([torch.randperm(n, generator=g) for g in run.gens])
            run.total = torch.zeros(s, dtype=torch.float64, device=device)
        for b in range(run.batch, batches):
            if lr_factor is not None:
                for group in opt.param_groups:
                    group["lr"] = cfg.lr * lr_factor(epoch + b / batches)
            idx = run.order[:, b * cfg.batch_size:(b + 1) * cfg.batch_size]
            x = X[idx] if inputs is None else inputs(forward, params, X[idx], idx)
            losses = loss(forward(params, x), Y[idx])
            opt.zero_grad(set_to_none=True)
            losses.sum().backward()
            if cfg.grad_clip is not None:
                clip_per_member(params, cfg.grad_clip)
            opt.step()
            run.total += losses.detach().double() * idx.shape[1]
            run.batch = b + 1
            if checkpoint and b + 1 < batches and checkpoint.due():
                checkpoint.save(stage, run.state_dict(after_epoch))
        run.train_nll, run.order, run.batch = run.total / n, None, 0
        if after_epoch:
            after_epoch(epoch, {k: v.detach() for k, v in params.items()})
        val = run.train_nll if X_val is None else val_loss(forward, params, X_val, Y_val, loss)
        if X_val is not None:
            _keep_best(run, val, epoch, cfg.patience if early_stopping else None)
        run.epoch = epoch + 1
        if on_epoch:
            on_epoch(epoch, run.train_nll, val, int(run.active.sum()))
        if checkpoint and checkpoint.due(epoch):
            checkpoint.save(stage, run.state_dict(after_epoch))
    history = _history(run, X_val is None)
    best = run.best
    if X_val is None or not early_stopping:
        best = {k: v.detach() for k, v in params.items()}
    if checkpoint:
        checkpoint.finish(stage, best, vars(history))
    return best, history


def _keep_best(run: _Loop, val: Tensor, epoch: int, patience: int | None) -> None:
    """Freeze each member's weights at its lowest validation loss; with a ``patience``, stop
    members whose loss has not improved for that many epochs."""
    improved = run.active & (val < run.best_nll)
    for k, v in run.params.items():
        mask = improved.view(-1, *([1] * (v.ndim - 1)))
        run.best[k] = torch.where(mask, v.detach(), run.best[k])
    run.best_nll = torch.where(improved, val, run.best_nll)
    run.best_epoch = torch.where(improved, epoch, run.best_epoch)
    if patience is not None:
        run.active &= epoch - run.best_epoch < patience


def _history(run: _Loop, no_validation: bool) -> History:
    if no_validation:
        run.best_epoch = torch.full_like(run.best_epoch, run.epoch - 1)
        run.best_nll = run.train_nll
    return History(epochs_run=run.epoch, best_epoch=run.best_epoch.tolist(),
                   best_val_nll=run.best_nll.tolist(), train_nll=run.train_nll.tolist())


def val_loss(forward: Forward, params: dict[str, Tensor], X: Any, Y: Any, loss: Loss,
             values: int = 2**20) -> Tensor:
    """Each member's mean ``loss`` (s,) over validation rows ``X``, ``Y``, in chunks of rows
    of about ``values`` input values times members (a U-Net's activations are many times its
    input); one chunk when they fit, the same numbers as a single evaluation."""
    s, n = next(iter(params.values())).shape[0], len(X)
    chunk = max(1, values // (math.prod(X.shape[1:]) * s))
    total = 0.0
    with torch.no_grad():
        for i in range(0, n, chunk):
            x, y = X[i:i + chunk], Y[i:i + chunk]
            out = loss(forward(params, x.expand(s, *x.shape)), y.expand(s, *y.shape)).double()
            total = total + out * (len(x) / n if n > chunk else 1.0)
    return total

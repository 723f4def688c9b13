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

import torch
from torch import Tensor

from choral.ensembles.config import TrainConfig
from choral.networks.members import Forward, predict_members


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


def train_members(forward: Forward, params: dict[str, Tensor], X: Tensor, Y: Tensor,
                  X_val: Tensor | None, Y_val: Tensor | None, cfg: TrainConfig,
                  batch_seeds: Sequence[int], loss: Loss,
                  on_epoch: EpochCallback | None = None, *, lr_factor: LrFactor | None = None,
                  after_epoch: Callable[[int, dict[str, Tensor]], None] | None = None,
                  early_stopping: bool = True) -> tuple[dict[str, Tensor], History]:
    """Fit stacked ``params`` (s, ...) to ``X`` (n, ...), ``Y`` (n, m, ...); return the best.

    ``loss`` is the head's per-member loss. The learning rate is ``cfg.lr * lr_factor(t)``
    (default: constant, or :func:`cosine` when ``cfg.lr_schedule`` says so), set before every
    step. ``after_epoch(epoch, params)`` sees the current weights after each epoch (detached
    views that training goes on updating: clone what you keep), e.g. to average or snapshot
    them. Without validation data, or with ``early_stopping=False``, every member runs all
    epochs and keeps its last weights (the history still records the best validation epoch).
    """
    s, n = len(batch_seeds), X.shape[0]
    params = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
    opt = torch.optim.AdamW(params.values(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    if lr_factor is None and cfg.lr_schedule == "cosine":
        lr_factor = cosine(cfg.epochs)
    batches = math.ceil(n / cfg.batch_size)
    gens = [torch.Generator().manual_seed(int(seed)) for seed in batch_seeds]
    best = {k: v.detach().clone() for k, v in params.items()}
    best_nll = torch.full((s,), float("inf"), dtype=torch.float64)
    best_epoch = torch.zeros(s, dtype=torch.long)
    active = torch.ones(s, dtype=torch.bool)
    history = History()
    for epoch in range(cfg.epochs):
        order = torch.stack([torch.randperm(n, generator=g) for g in gens])
        total = torch.zeros(s, dtype=torch.float64)
        for b, start in enumerate(range(0, n, cfg.batch_size)):
            if lr_factor is not None:
                for group in opt.param_groups:
                    group["lr"] = cfg.lr * lr_factor(epoch + b / batches)
            idx = order[:, start:start + cfg.batch_size]
            losses = loss(forward(params, X[idx]), Y[idx])
            opt.zero_grad(set_to_none=True)
            losses.sum().backward()
            if cfg.grad_clip is not None:
                clip_per_member(params, cfg.grad_clip)
            opt.step()
            total += losses.detach().double() * idx.shape[1]
        history.epochs_run = epoch + 1
        if after_epoch:
            after_epoch(epoch, {k: v.detach() for k, v in params.items()})
        train_nll = total / n
        if X_val is None:
            if on_epoch:
                on_epoch(epoch, train_nll, train_nll, s)
            continue
        with torch.no_grad():
            out = predict_members(forward, params, X_val)
            val = loss(out, Y_val.expand(s, *Y_val.shape)).double()
        improved = active & (val < best_nll)
        for k, v in params.items():
            mask = improved.view(-1, *([1] * (v.ndim - 1)))
            best[k] = torch.where(mask, v.detach(), best[k])
        best_nll = torch.where(improved, val, best_nll)
        best_epoch = torch.where(improved, epoch, best_epoch)
        if early_stopping:
            active &= epoch - best_epoch < cfg.patience
        if on_epoch:
            on_epoch(epoch, train_nll, val, int(active.sum()))
        if not active.any():
            break
    if X_val is None or not early_stopping:
        best = {k: v.detach() for k, v in params.items()}
    if X_val is None:
        best_epoch = torch.full((s,), history.epochs_run - 1)
        best_nll = train_nll
    history.best_epoch = best_epoch.tolist()
    history.best_val_nll = best_nll.tolist()
    history.train_nll = train_nll.tolist()
    return best, history

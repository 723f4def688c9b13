"""Train stacked members on Gaussian NLL with AdamW, mini-batches and per-member early stopping.

Each member draws its own mini-batch order from its own generator, and the summed loss gives each
member exactly the gradient of its own loss, so training s members in one stacked run equals
training them one at a time (tested in ``tests/test_training.py``). A member whose validation NLL
has not improved for ``patience`` epochs stops: its best weights are frozen, while the others
go on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from choral.config import TrainConfig
from choral.heads import gaussian_head, gaussian_nll
from choral.members import Forward, predict_members


@dataclass
class History:
    """What happened while training: per-member best epoch and validation NLL (standardised)."""

    epochs_run: int = 0
    best_epoch: list[int] = field(default_factory=list)
    best_val_nll: list[float] = field(default_factory=list)
    train_nll: list[float] = field(default_factory=list)


EpochCallback = Callable[[int, Tensor, Tensor, int], None]
"""Called after each epoch with (epoch, train NLL (s,), validation NLL (s,), members active)."""


def member_nll(out: Tensor, y: Tensor, floor: float) -> Tensor:
    """Mean NLL per member: ``out`` (s, b, 2m, ...), ``y`` (s, b, m, ...) -> (s,)."""
    mean, var = gaussian_head(out, floor, dim=2)
    return gaussian_nll(mean, var, y).flatten(1).mean(1)


def train_members(forward: Forward, params: dict[str, Tensor], X: Tensor, Y: Tensor,
                  X_val: Tensor | None, Y_val: Tensor | None, cfg: TrainConfig,
                  batch_seeds: Sequence[int], floor: float,
                  on_epoch: EpochCallback | None = None) -> tuple[dict[str, Tensor], History]:
    """Fit stacked ``params`` (s, ...) to ``X`` (n, ...), ``Y`` (n, m, ...); return the best.

    Without validation data every member keeps its last weights.
    """
    s, n = len(batch_seeds), X.shape[0]
    params = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
    opt = torch.optim.AdamW(params.values(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    schedule = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.epochs)
                if cfg.lr_schedule == "cosine" else None)
    gens = [torch.Generator().manual_seed(int(seed)) for seed in batch_seeds]
    best = {k: v.detach().clone() for k, v in params.items()}
    best_nll = torch.full((s,), float("inf"), dtype=torch.float64)
    best_epoch = torch.zeros(s, dtype=torch.long)
    active = torch.ones(s, dtype=torch.bool)
    history = History()
    for epoch in range(cfg.epochs):
        order = torch.stack([torch.randperm(n, generator=g) for g in gens])
        total = torch.zeros(s, dtype=torch.float64)
        for start in range(0, n, cfg.batch_size):
            idx = order[:, start:start + cfg.batch_size]
            losses = member_nll(forward(params, X[idx]), Y[idx], floor)
            opt.zero_grad(set_to_none=True)
            losses.sum().backward()
            opt.step()
            total += losses.detach().double() * idx.shape[1]
        history.epochs_run = epoch + 1
        if schedule:
            schedule.step()
        train_nll = total / n
        if X_val is None:
            if on_epoch:
                on_epoch(epoch, train_nll, train_nll, s)
            continue
        with torch.no_grad():
            out = predict_members(forward, params, X_val)
            val = member_nll(out, Y_val.expand(s, *Y_val.shape), floor).double()
        improved = active & (val < best_nll)
        for k, v in params.items():
            mask = improved.view(-1, *([1] * (v.ndim - 1)))
            best[k] = torch.where(mask, v.detach(), best[k])
        best_nll = torch.where(improved, val, best_nll)
        best_epoch = torch.where(improved, epoch, best_epoch)
        active &= epoch - best_epoch < cfg.patience
        if on_epoch:
            on_epoch(epoch, train_nll, val, int(active.sum()))
        if not active.any():
            break
    if X_val is None:
        best = {k: v.detach() for k, v in params.items()}
        best_epoch = torch.full((s,), history.epochs_run - 1)
        best_nll = train_nll
    history.best_epoch = best_epoch.tolist()
    history.best_val_nll = best_nll.tolist()
    history.train_nll = train_nll.tolist()
    return best, history

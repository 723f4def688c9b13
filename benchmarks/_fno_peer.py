"""Side-by-side helpers: neuraloperator's FNO as a peer, and a choral ensemble on the same budget.

Used by ``benchmarks/neuralop_small.py`` and ``benchmarks/darcy_fno.py``; not a script.

- :func:`train_fno`: data -> unit Gaussian normalisers fitted on the training set (pointwise, as
  ``UnitGaussianNormalizer`` in the FNO reference code) for inputs and targets -> Adam with a
  wall-clock schedule (``"cosine"``: ``lr * (1 + cos(pi t / budget)) / 2``; ``"step"``: halved at
  every fifth of the budget, the paper's 500 epochs with a step of 100 and gamma 0.5 in time)
  and the reference code's loss (relative L2 in original units, summed over the batch) -> stops at
  the first batch that ends past the budget. :func:`predict_fno` decodes back to original units.
- :func:`fit_choral`: times the second epoch of a two-epoch fit, then trains with
  ``epochs = budget / epoch_seconds`` (cosine schedule) so the ensemble fits the same budget
  (the library itself has no time limit).
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch
from torch import Tensor


class UnitGaussian:
    """Pointwise ``(x - mean) / (std + eps)`` with statistics over the sample axis (FNO's), or
    with ``pointwise=False`` per channel over samples and grid (neuraloperator 2.0's
    ``UnitGaussianNormalizer(dim=[0, 2, ...])``), which holds on any grid."""

    def __init__(self, x: Tensor, eps: float = 1e-5, pointwise: bool = True) -> None:
        dims = 0 if pointwise else [0, *range(2, x.ndim)]
        keep = not pointwise
        self.mean, self.std, self.eps = x.mean(dims, keepdim=keep)[0 if keep else ...], \
            x.std(dims, keepdim=keep)[0 if keep else ...], eps

    def encode(self, x: Tensor) -> Tensor:
        return (x - self.mean) / (self.std + self.eps)

    def decode(self, x: Tensor) -> Tensor:
        return x * (self.std + self.eps) + self.mean


def relative_l2(pred: Any, y: Any) -> float:
    """Mean over samples of ``||pred_i - y_i||_2 / ||y_i||_2`` (choral's ``relative_l2``)."""
    pred, y = torch.as_tensor(pred, dtype=torch.float64), torch.as_tensor(y, dtype=torch.float64)
    return ((pred - y).flatten(1).norm(dim=1) / y.flatten(1).norm(dim=1)).mean().item()


def n_params(module: torch.nn.Module) -> int:
    """Real parameter count (a complex weight counts twice)."""
    return sum(p.numel() * (2 if p.is_complex() else 1) for p in module.parameters())


def build_fno(n_modes: tuple[int, ...], hidden: int = 32, n_layers: int = 4,
              **kwargs: Any) -> torch.nn.Module:
    """neuraloperator's FNO, one input and one output channel, grid coordinates appended."""
    from neuralop.models import FNO

    return FNO(n_modes=tuple(n_modes), in_channels=1, out_channels=1, hidden_channels=hidden,
               n_layers=n_layers, **kwargs)


def _lr_factor(schedule: str, frac: float) -> float:
    frac = min(max(frac, 0.0), 1.0)
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * frac))
    if schedule == "step":
        return 0.5 ** min(int(5 * frac), 4)
    raise ValueError(f"schedule must be 'cosine' or 'step'; got {schedule!r}")


def train_fno(X: Any, Y: Any, budget: float, fno: dict[str, Any], *, lr: float = 1e-3,
              weight_decay: float = 1e-4, batch_size: int = 20, schedule: str = "cosine",
              seed: int = 0, device: str = "cpu",
              pointwise: bool = True) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train an FNO (``build_fno(**fno)``) on ``X``, ``Y`` (n, 1, *grid) for ``budget`` seconds.

    Returns (state for :func:`predict_fno`, info with seconds, epochs and parameter count).
    """
    torch.manual_seed(seed)
    X = torch.as_tensor(np.asarray(X), dtype=torch.float32, device=device)
    Y = torch.as_tensor(np.asarray(Y), dtype=torch.float32, device=device)
    x_norm, y_norm = UnitGaussian(X, pointwise=pointwise), UnitGaussian(Y, pointwise=pointwise)
    Xn = x_norm.encode(X)
    model = build_fno(**fno).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(seed)
    n, steps, losses = len(X), 0, []
    start = time.perf_counter()
    elapsed = 0.0
    model.train()
    while elapsed < budget:
        order, total, seen = torch.randperm(n, generator=gen), 0.0, 0
        for i in range(0, n, batch_size):
            for group in opt.param_groups:
                group["lr"] = lr * _lr_factor(schedule, elapsed / budget)
            idx = order[i:i + batch_size]
            pred = y_norm.decode(model(Xn[idx]))
            diff = (pred - Y[idx]).flatten(1).norm(dim=1)
            loss = (diff / Y[idx].flatten(1).norm(dim=1)).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total, seen, steps = total + loss.item(), seen + len(idx), steps + 1
            elapsed = time.perf_counter() - start
            if elapsed >= budget:
                break
        losses.append(total / seen)
    per_epoch = math.ceil(n / batch_size)
    info = {"train_seconds": elapsed, "epochs": steps / per_epoch, "steps": steps,
            "seconds_per_epoch": elapsed * per_epoch / steps, "batch_size": batch_size,
            "lr": lr, "weight_decay": weight_decay, "schedule": schedule,
            "final_train_rel_l2": losses[-1], "params": n_params(model),
            "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in fno.items()}}
    return {"model": model, "x_norm": x_norm, "y_norm": y_norm}, info


@torch.no_grad()
def predict_fno(state: dict[str, Any], X: Any, batch_size: int = 50) -> np.ndarray:
    """Predictions in original units, shaped like the training targets (n, 1, *grid)."""
    model = state["model"].eval()
    device = next(model.parameters()).device
    X = state["x_norm"].encode(torch.as_tensor(np.asarray(X), dtype=torch.float32, device=device))
    out = [state["y_norm"].decode(model(X[i:i + batch_size])) for i in range(0, len(X), batch_size)]
    return torch.cat(out).double().cpu().numpy()


def fit_choral(config: dict[str, Any], X: Any, Y: Any, budget: float) -> tuple[Any, dict]:
    """Fit a choral surrogate from ``config`` (``train.epochs`` set here) in about ``budget`` s.

    Returns (surrogate, info with the timing fit's seconds, the epoch time and epochs chosen).
    """
    from choral.config import Config
    from choral.surrogate import Surrogate

    stamps: list[float] = []

    def stamp(*_: Any) -> None:
        stamps.append(time.perf_counter())

    def make(epochs: int) -> Any:
        cfg = {**config, "train": {**config.get("train", {}), "epochs": epochs,
                                   "lr_schedule": "cosine"}}
        return Surrogate(Config.from_dict(cfg))

    start = time.perf_counter()
    make(2).fit(X, Y, on_epoch=stamp)
    timing_seconds = time.perf_counter() - start
    epoch_seconds = stamps[1] - stamps[0]
    epochs = max(1, int(budget / epoch_seconds))
    start = time.perf_counter()
    model = make(epochs).fit(X, Y)
    info = {"timing_fit_seconds": timing_seconds, "seconds_per_epoch_estimate": epoch_seconds,
            "epochs": epochs, "epochs_run": model.metrics["epochs_run"],
            "train_seconds": model.metrics["train_seconds"],
            "fit_seconds": time.perf_counter() - start, "backend": model.backend,
            "n_train": model.metrics["n_train"], "n_val": model.metrics["n_val"]}
    return model, info


def choral_params(model: Any) -> dict[str, int]:
    """Parameter counts of a fitted choral surrogate: per member and over all members."""
    total = sum(v.numel() for v in model.params.values())
    members = model.config.train.members
    return {"params_per_member": total // members, "params_total": total}

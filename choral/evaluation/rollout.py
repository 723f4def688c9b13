"""Scores of autoregressive rollouts, per step, against true trajectories.

Shapes: member trajectories (s, n, T, ...), their mean and the truth (n, T, ...), where ``...``
is ``(c, *grid)`` or ``(m,)``; one :class:`~choral.distributions.Predictive` (n, ...) per step.

- :func:`relative_l2_per_step`: mean over the n trajectories of ``||mean - y|| / ||y||`` (T,);
- :func:`correlation_per_step`: the Pearson correlation of the mean with the truth over each
  state's values, averaged over trajectories (T,); :func:`correlation_time`: the number of
  leading steps at which it stays at or above ``threshold`` (0.8), i.e. the index of the first
  step below it (T when it never drops);
- :func:`spread_skill_per_step`: ``sqrt((s + 1) / s) * spread / rmse`` (Fortin et al. 2014,
  "Why should ensemble spread match the RMSE of the ensemble mean?"), spread the root of the
  mean unbiased member variance ``sum_k (x_k - mean)^2 / (s - 1)``, rmse that of the member
  mean; 1 in expectation for members exchangeable with the truth, < 1 under-dispersed;
- :func:`crps_per_step`: the mixture CRPS of each step's predictive, averaged over its values;
- :func:`spread_scale`: the factor by which the members' deviations from their mean are scaled
  so that the spread-skill ratio's geometric mean over the first half of the correlation time
  is 1 (fitted on held-out trajectories, :func:`choral.surrogate.rollout.fit_rollout`).

Examples:
    >>> y = torch.tensor([[[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]]])  # n=1, T=2, 3 values
    >>> mean = torch.tensor([[[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]]])
    >>> correlation_per_step(mean, y).round(decimals=12).tolist(), correlation_time(mean, y)
    ([1.0, -1.0], 1)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from choral.checks import as_float64
from choral.distributions import Predictive
from choral.errors import DataError
from choral.evaluation.metrics import crps

__all__ = ["correlation_per_step", "correlation_time", "crps_per_step", "relative_l2_per_step",
           "rollout_scores", "spread_scale", "spread_skill_per_step"]


def _pair(pred: Any, y: Any, name: str = "mean") -> tuple[Tensor, Tensor]:
    y = as_float64(y, "y")
    pred = as_float64(pred, name, device=y.device)
    if y.ndim < 3 or pred.shape != y.shape:
        raise DataError(f"{name} and y must have the same shape (n, T, ...); got "
                        f"{tuple(pred.shape)} and {tuple(y.shape)}")
    return pred.flatten(2), y.flatten(2)


def relative_l2_per_step(mean: Any, y: Any) -> Tensor:
    """Mean over trajectories of ``||mean - y||_2 / ||y||_2`` at each step (T,)."""
    mean, y = _pair(mean, y)
    return ((mean - y).norm(dim=2) / y.norm(dim=2)).mean(0)


def correlation_per_step(mean: Any, y: Any) -> Tensor:
    """Pearson correlation of ``mean`` and ``y`` over each state's values, averaged over
    trajectories (T,)."""
    mean, y = _pair(mean, y)
    a, b = mean - mean.mean(2, keepdim=True), y - y.mean(2, keepdim=True)
    return ((a * b).sum(2) / (a.norm(dim=2) * b.norm(dim=2))).mean(0)


def correlation_time(mean: Any, y: Any, threshold: float = 0.8) -> int:
    """Steps before the correlation (:func:`correlation_per_step`) first drops below
    ``threshold``; T if it never does."""
    below = (correlation_per_step(mean, y) < threshold).nonzero()
    return int(below[0, 0]) if len(below) else int(as_float64(y, "y").shape[1])


def spread_skill_per_step(members: Any, y: Any) -> Tensor:
    """``sqrt((s + 1) / s)`` spread over the RMSE of the member mean, per step (T,)."""
    x = as_float64(members, "members")
    if x.ndim < 4 or x.shape[0] < 2:
        raise DataError(f"members must have shape (s, n, T, ...) with s >= 2; got "
                        f"{tuple(x.shape)}")
    s = x.shape[0]
    mean, y = _pair(x.mean(0), y)
    spread = x.flatten(3).var(0, correction=1).mean((0, 2)).sqrt()
    rmse = ((mean - y) ** 2).mean((0, 2)).sqrt()
    return ((s + 1) / s) ** 0.5 * spread / rmse


def spread_scale(members: Any, y: Any, threshold: float = 0.8) -> float:
    """The factor ``a`` that makes ``mean + a (members - mean)`` have a spread-skill ratio whose
    geometric mean over the first ``max(1, tau // 2)`` steps is 1, ``tau`` the correlation time
    of the member mean with ``y`` (n, T, ...); ``members`` (s, n, T, ...).

    Scaling the deviations scales the spread and leaves the mean, so the ratio of each step
    scales by ``a``: ``a`` is one over the geometric mean of the unscaled ratios.

    >>> y = torch.zeros(4, 3, 2); x = torch.stack([y + 1, y - 1, y + 3, y - 3])
    >>> round(spread_scale(x, y + 0.5), 6)  # spread sqrt(20/3), rmse 0.5, s = 4
    0.173205
    """
    mean = as_float64(members, "members").mean(0)
    steps = max(1, correlation_time(mean, y, threshold) // 2)
    ratio = spread_skill_per_step(members, y)[:steps]
    return float(torch.exp(-ratio.log().mean()))


def crps_per_step(predictives: Sequence[Predictive], y: Any) -> Tensor:
    """Mean CRPS of step t's predictive (n, ...) at ``y[:, t]`` (n, T, ...), per step (T,)."""
    y = as_float64(y, "y")
    if y.ndim < 3 or y.shape[1] != len(predictives):
        raise DataError(f"y must have shape (n, T, ...) with T = {len(predictives)} steps; got "
                        f"{tuple(y.shape)}")
    return torch.tensor([crps(p, y[:, t]) for t, p in enumerate(predictives)],
                        dtype=torch.float64)


def rollout_scores(members: Any, predictives: Sequence[Predictive], y: Any,
                   threshold: float = 0.8) -> dict[str, Any]:
    """All of the above as plain numbers and lists (JSON-ready)."""
    mean = as_float64(members, "members").mean(0)
    return {"relative_l2": relative_l2_per_step(mean, y).tolist(),
            "correlation": correlation_per_step(mean, y).tolist(),
            "correlation_time": correlation_time(mean, y, threshold),
            "spread_skill": spread_skill_per_step(members, y).tolist(),
            "crps": crps_per_step(predictives, y).tolist()}

"""Scores of a predictive against observed targets.

Every function takes a predictive (any :class:`~choral.distributions.Predictive`) and targets ``y``
of the predictive's shape (n, ...) and returns a Python float averaged over every target value
(all samples and all outputs), so the NLL is per target value, as in published UCI tables.
Targets may be arrays, lists or tensors on any device: they are moved to the predictive's.

Examples:
    >>> import torch
    >>> from choral.distributions import GaussianMixture
    >>> mix = GaussianMixture(torch.zeros(1, 2, 1), torch.ones(1, 2, 1))
    >>> y = torch.tensor([[1.0], [-1.0]])
    >>> rmse(mix, y), round(nll(mix, y), 6), coverage(mix, y, level=0.9)
    (1.0, 1.418939, 1.0)
    >>> sorted(evaluate(mix, y))  # doctest: +NORMALIZE_WHITESPACE
    ['calibration_error', 'coverage_50', 'coverage_90', 'crps', 'interval_score_90',
     'interval_width_90', 'mean_std', 'nll', 'rmse', 'std_error_spearman']
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from scipy import stats

from choral.checks import as_float64, check_int
from choral.distributions import Predictive
from choral.errors import DataError

__all__ = ["calibration_error", "check_targets", "coverage", "crps", "evaluate",
           "interval_score", "interval_width", "nll", "nrmse", "pit", "pit_calibration_error",
           "pit_calibration_errors", "relative_l2", "rmse", "std_error_rank_correlation"]

MAX_RANKED = 200_000
"""Target values behind :func:`std_error_rank_correlation` by default: above it, a uniform
subsample without replacement drawn with a fixed seed (0), so the score is reproducible and its
cost bounded (sorting ~200k values) for large fields."""


def check_targets(predictive: Predictive, y: Any) -> torch.Tensor:
    """``y`` as a float64 tensor of exactly the predictive's shape on its device, or a
    DataError."""
    t = as_float64(y, "y", device=predictive.device)
    if t.shape != predictive.shape:
        raise DataError(f"y must have the predictive's shape {tuple(predictive.shape)}; got "
                        f"{tuple(t.shape)}")
    return t


def rmse(predictive: Predictive, y: Any) -> float:
    """Root mean squared error of the mixture mean."""
    y = check_targets(predictive, y)
    return torch.sqrt(((predictive.mean - y) ** 2).mean()).item()


def nll(predictive: Predictive, y: Any) -> float:
    """Negative log likelihood per target value: ``-mean log p(y)``."""
    return -predictive.log_prob(check_targets(predictive, y)).mean().item()


def crps(predictive: Predictive, y: Any) -> float:
    """Mean CRPS (closed form where the predictive has one; in the targets' units; lower is
    better)."""
    return predictive.crps(check_targets(predictive, y)).mean().item()


def _coverage(y: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor) -> float:
    return ((y >= lower) & (y <= upper)).double().mean().item()


def coverage(predictive: Predictive, y: Any, level: float = 0.9) -> float:
    """Fraction of target values inside the central ``level`` interval (ideally ``level``)."""
    y = check_targets(predictive, y)
    return _coverage(y, *predictive.interval(level))


def pit(predictive: Predictive, y: Any) -> torch.Tensor:
    """Probability integral transform ``F(y)`` (n, ...); uniform on (0, 1) if calibrated."""
    return predictive.cdf(check_targets(predictive, y))


def calibration_error(predictive: Predictive, y: Any, levels: int = 99) -> float:
    """Mean absolute deviation of the PIT's empirical CDF from the uniform CDF.

    With ``p_j = j / (levels + 1)`` for ``j = 1..levels``, this is
    ``mean_j |#{PIT <= p_j} / N - p_j|`` over all ``N`` target values: 0 for perfect calibration,
    up to about 0.5 for a predictive that is always wrong in the same direction.
    """
    check_int(levels, "levels", minimum=1)
    return pit_calibration_error(pit(predictive, y), levels)


def pit_calibration_error(u: torch.Tensor, levels: int = 99) -> float:
    """:func:`calibration_error` from PIT values ``u`` of any shape (e.g. (n, ...)) already
    computed, so a caller that also needs them (a PIT histogram) runs the CDF once."""
    return pit_calibration_errors(u.reshape(1, -1), levels)[0].item()


def pit_calibration_errors(u: torch.Tensor, levels: int = 99) -> torch.Tensor:
    """:func:`calibration_error` of each row of PIT values ``u`` (r, N): (r,).

    >>> pit_calibration_errors(torch.tensor([[0.25, 0.75], [0.5, 0.5]]), levels=3).tolist()
    [0.16666666666666666, 0.3333333333333333]
    """
    check_int(levels, "levels", minimum=1)
    p = torch.arange(1, levels + 1, dtype=torch.float64, device=u.device) / (levels + 1)
    # u <= p_j exactly when j >= k = #{p < u}: a histogram of k and its running sum count
    # #{u <= p_j} for every level at once, with no sort of the N values of each row
    k = torch.searchsorted(p, u.contiguous(), right=False)
    hist = torch.zeros(len(u), levels + 1, dtype=torch.float64, device=u.device)
    hist.scatter_add_(1, k, torch.ones_like(u, dtype=torch.float64))
    return (hist[:, :levels].cumsum(1) / u.shape[1] - p).abs().mean(1)


def relative_l2(predictive: Predictive, y: Any) -> float:
    """Mean over samples of ``||mean_i - y_i||_2 / ||y_i||_2`` (the FNO paper's test error).

    >>> import torch
    >>> from choral.distributions import GaussianMixture
    >>> mix = GaussianMixture(torch.ones(1, 2, 1, 4), torch.ones(1, 2, 1, 4))
    >>> relative_l2(mix, torch.full((2, 1, 4), 2.0))
    0.5
    """
    y = check_targets(predictive, y)
    err = (predictive.mean - y).flatten(1).norm(dim=1)
    return (err / y.flatten(1).norm(dim=1)).mean().item()


def nrmse(predictive: Predictive, y: Any) -> float:
    """RMSE divided by the targets' standard deviation (0 perfect, 1 as good as their mean)."""
    y = check_targets(predictive, y)
    return rmse(predictive, y) / y.std().item()


def interval_width(predictive: Predictive, level: float = 0.9) -> float:
    """Mean width of the central ``level`` interval (sharpness; lower is sharper)."""
    lower, upper = predictive.interval(level)
    return (upper - lower).mean().item()


def _interval_score(y, lower, upper, level):
    alpha = 1.0 - level
    below, above = (lower - y).clamp_min(0.0), (y - upper).clamp_min(0.0)
    return ((upper - lower) + 2.0 / alpha * (below + above)).mean().item()


def interval_score(predictive: Predictive, y: Any, level: float = 0.9) -> float:
    """Mean interval score of the central ``level`` interval [l, u] (Gneiting & Raftery 2007).

    ``(u - l) + 2 / alpha * ((l - y)_+ + (y - u)_+)`` with ``alpha = 1 - level``: width plus a
    penalty for every miss (lower is better; proper for the ``alpha / 2`` and ``1 - alpha / 2``
    quantiles).

    >>> import torch
    >>> from choral.distributions import GaussianMixture
    >>> mix = GaussianMixture(torch.zeros(1, 1, 1), torch.ones(1, 1, 1))
    >>> round(interval_score(mix, [[0.0]], 0.9), 6)  # the width 2 * 1.644854
    3.289707
    """
    y = check_targets(predictive, y)
    return _interval_score(y, *predictive.interval(level), level)


def std_error_rank_correlation(predictive: Predictive, y: Any, *,
                               max_values: int = MAX_RANKED) -> float:
    """Spearman rank correlation between the absolute error ``|y - mean|`` and the predicted
    standard deviation over all target values (n, ...) flattened: does the std rank the errors?

    1 when a larger std always goes with a larger error, -1 when always with a smaller one,
    about 0 when the std says nothing of the error (ties get average ranks). Above
    ``max_values`` target values, a fixed-seed subsample of ``max_values`` of them is ranked
    (see :data:`MAX_RANKED`). NaN, with no error or warning, when the std or the error is
    constant (a rank correlation is then undefined) or there are fewer than 2 values.

    >>> import torch
    >>> from choral.distributions import GaussianMixture
    >>> mix = GaussianMixture(torch.zeros(1, 4, 1), torch.tensor([[[1.0], [4.0], [9.0], [16.0]]]))
    >>> std_error_rank_correlation(mix, [[0.5], [-1.0], [3.0], [10.0]])  # std 1, 2, 3, 4
    1.0
    >>> std_error_rank_correlation(mix, [[9.0], [-3.0], [2.0], [0.0]])
    -1.0
    """
    y = check_targets(predictive, y)
    check_int(max_values, "max_values", minimum=2)
    return _rank_correlation((y - predictive.mean).abs(), predictive.stddev, max_values)


def _rank_correlation(err: torch.Tensor, std: torch.Tensor, max_values: int) -> float:
    err, std = (t.detach().cpu().reshape(-1).double().numpy() for t in (err, std))
    if err.size > max_values:
        pick = np.random.default_rng(0).choice(err.size, max_values, replace=False)
        err, std = err[pick], std[pick]
    if err.size < 2 or np.ptp(std) == 0 or np.ptp(err) == 0:
        return math.nan
    return float(stats.spearmanr(err, std).statistic)


def evaluate(predictive: Predictive, y: Any) -> dict[str, float]:
    """Every score at once: rmse, nll, crps, coverage_90, coverage_50, calibration_error,
    mean_std, interval_width_90, interval_score_90 and std_error_spearman
    (:func:`std_error_rank_correlation`, NaN when the std is constant); for fields
    (n, c, *grid) also rel_l2 and nrmse."""
    y = check_targets(predictive, y)
    lo90, hi90 = predictive.interval(0.9)
    fields = {"rel_l2": relative_l2(predictive, y), "nrmse": nrmse(predictive, y)} \
        if y.ndim > 2 else {}
    return {**fields,
        "rmse": rmse(predictive, y),
        "nll": nll(predictive, y),
        "crps": crps(predictive, y),
        "coverage_90": _coverage(y, lo90, hi90),
        "coverage_50": coverage(predictive, y, 0.5),
        "calibration_error": calibration_error(predictive, y),
        "mean_std": predictive.stddev.mean().item(),
        "interval_width_90": (hi90 - lo90).mean().item(),
        "interval_score_90": _interval_score(y, lo90, hi90, 0.9),
        "std_error_spearman": _rank_correlation((y - predictive.mean).abs(), predictive.stddev,
                                                MAX_RANKED),
    }

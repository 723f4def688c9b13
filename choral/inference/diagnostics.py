"""Calibration diagnostics of posterior samples: simulation-based calibration and coverage.

Given ``N`` problems with known true inputs ``x_i`` (d,) drawn from the prior, their simulated
observations, and ``L`` posterior draws for each (N, L, d):

- SBC ranks (Talts et al. 2018): the rank of each true input among its posterior draws, per
  input dimension, (N, d) in 0..L; a calibrated posterior gives uniform ranks, tested by a
  chi-square test on their histogram (:func:`rank_uniformity`);
- expected coverage of central intervals: the fraction of problems whose true input lies in the
  posterior's central interval at each level (d per level); calibrated: equal to the level.

Examples:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> truth = rng.standard_normal((500, 1))
    >>> draws = rng.standard_normal((500, 99, 1))  # exact: the truth is one more draw
    >>> ranks = sbc_ranks(draws, truth)
    >>> bool(rank_uniformity(ranks, 99)[0] > 0.01), np.round(coverage(draws, truth, [0.5]), 1)
    (True, array([[0.5]]))
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats

from choral.errors import DataError

__all__ = ["coverage", "rank_uniformity", "sbc_ranks"]


def _check(draws: Any, truth: Any) -> tuple[np.ndarray, np.ndarray]:
    draws, truth = np.asarray(draws, np.float64), np.asarray(truth, np.float64)
    if draws.ndim != 3 or truth.shape != (draws.shape[0], draws.shape[2]):
        raise DataError(f"draws must be (N, L, d) and truth (N, d); got {draws.shape} and "
                        f"{truth.shape}")
    return draws, truth


def sbc_ranks(draws: Any, truth: Any) -> np.ndarray:
    """Ranks (N, d) in 0..L: how many of the L draws (N, L, d) lie below the truth (N, d)."""
    draws, truth = _check(draws, truth)
    return (draws < truth[:, None, :]).sum(1)


def rank_uniformity(ranks: Any, draws: int, bins: int = 20) -> np.ndarray:
    """Chi-square p-values (d,) of the rank histograms (``bins`` equal bins over 0..L,
    ``draws`` = L) against uniform; small: miscalibrated."""
    ranks = np.asarray(ranks)
    bins = min(bins, draws + 1)
    if (draws + 1) % bins:
        raise DataError(f"draws + 1 = {draws + 1} must be a multiple of bins = {bins} for "
                        f"equal bins (e.g. 99 draws, 20 bins)")
    counts = np.stack([np.bincount(r * bins // (draws + 1), minlength=bins) for r in ranks.T])
    return np.array([stats.chisquare(c).pvalue for c in counts])


def coverage(draws: Any, truth: Any, levels: Any = (0.5, 0.8, 0.9, 0.95)) -> np.ndarray:
    """Observed coverage (levels, d) of the central intervals of the draws (N, L, d)."""
    draws, truth = _check(draws, truth)
    out = []
    for level in np.atleast_1d(levels):
        lo, hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2], axis=1)
        out.append(((truth >= lo) & (truth <= hi)).mean(0))
    return np.array(out)

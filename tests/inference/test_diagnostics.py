"""SBC ranks and coverage against exact and deliberately wrong posteriors."""

import numpy as np
import pytest

from choral.errors import DataError
from choral.inference.diagnostics import coverage, rank_uniformity, sbc_ranks


def _conjugate(n, rng, shrink=1.0):
    """x ~ N(0, 1), y = x + N(0, 1): the posterior is N(y / 2, 1 / 2); ``shrink`` scales its
    spread (1: exact, < 1: overconfident)."""
    x = rng.standard_normal((n, 2))
    y = x + rng.standard_normal((n, 2))
    draws = y[:, None, :] / 2 + shrink * np.sqrt(0.5) * rng.standard_normal((n, 99, 2))
    return draws, x


def test_exact_posterior_passes_and_covers():
    draws, x = _conjugate(1000, np.random.default_rng(0))
    ranks = sbc_ranks(draws, x)
    assert ranks.shape == (1000, 2) and ranks.min() >= 0 and ranks.max() <= 99
    assert np.all(rank_uniformity(ranks, 99) > 0.01)
    cov = coverage(draws, x, [0.5, 0.9])
    assert cov.shape == (2, 2)
    assert np.all(np.abs(cov - np.array([[0.5], [0.9]])) < 0.05)


def test_overconfident_and_biased_posteriors_fail():
    rng = np.random.default_rng(1)
    draws, x = _conjugate(1000, rng, shrink=0.6)
    assert np.all(rank_uniformity(sbc_ranks(draws, x), 99) < 1e-6)
    assert np.all(coverage(draws, x, [0.9]) < 0.8)
    exact, x = _conjugate(1000, rng)
    assert np.all(rank_uniformity(sbc_ranks(exact + 0.3, x), 99) < 1e-6)


def test_bad_shapes():
    with pytest.raises(DataError, match=r"draws must be \(N, L, d\) and truth \(N, d\)"):
        sbc_ranks(np.zeros((3, 4)), np.zeros((3, 1)))
    with pytest.raises(DataError, match="multiple of bins"):
        rank_uniformity(np.zeros((5, 1), int), 100)

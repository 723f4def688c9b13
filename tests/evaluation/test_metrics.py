"""Tests of the scores against numpy/scipy and against known calibration facts."""

import math
import warnings

import numpy as np
import pytest
import torch
from scipy import stats

from choral.distributions import GaussianMixture
from choral.errors import DataError
from choral.evaluation.metrics import (
    calibration_error,
    coverage,
    crps,
    evaluate,
    interval_score,
    interval_width,
    nll,
    nrmse,
    pit,
    relative_l2,
    rmse,
    std_error_rank_correlation,
)


def _truth(n=20_000, seed=0):
    """A heteroscedastic Gaussian and targets drawn from it."""
    rng = np.random.default_rng(seed)
    mu = rng.normal(0.0, 2.0, (1, n, 1))
    var = rng.uniform(0.1, 3.0, (1, n, 1))
    y = mu[0] + np.sqrt(var[0]) * rng.standard_normal((n, 1))
    return mu, var, y


def test_exact_predictive_is_calibrated_and_overconfident_one_is_not():
    mu, var, y = _truth()
    good = GaussianMixture(mu, var)
    bad = GaussianMixture(mu, var / 4)
    cov_good, cov_bad = coverage(good, y, 0.9), coverage(bad, y, 0.9)
    assert abs(cov_good - 0.9) < 0.01
    # sigma halved: the 90 % interval holds P(|Z| < 1.645 / 2) = 0.589 of the mass
    expected_bad = 2 * stats.norm.cdf(stats.norm.ppf(0.95) / 2) - 1
    assert abs(cov_bad - expected_bad) < 0.015 and cov_bad < 0.7
    assert abs(coverage(good, y, 0.5) - 0.5) < 0.015
    ce_good, ce_bad = calibration_error(good, y), calibration_error(bad, y)
    assert ce_good < 0.01
    assert ce_bad > 0.05 and ce_bad > 5 * ce_good
    assert nll(good, y) < nll(bad, y) and crps(good, y) < crps(bad, y)


def test_mixture_truth_is_calibrated():
    rng = np.random.default_rng(4)
    mu = rng.normal(0.0, 3.0, (4, 5_000, 2))
    var = rng.uniform(0.05, 1.0, (4, 5_000, 2))
    mix = GaussianMixture(mu, var, [0.1, 0.2, 0.3, 0.4])
    y = mix.sample(1, generator=torch.Generator().manual_seed(1))[0]
    assert abs(coverage(mix, y, 0.9) - 0.9) < 0.01
    assert calibration_error(mix, y) < 0.01
    u = pit(mix, y).numpy().ravel()
    assert stats.kstest(u, "uniform").pvalue > 1e-3


def test_scores_match_numpy_and_scipy():
    mu, var, y = _truth(n=500, seed=3)
    good = GaussianMixture(mu, var)
    assert rmse(good, y) == pytest.approx(np.sqrt(np.mean((mu[0] - y) ** 2)), rel=1e-12)
    ref_nll = -np.mean(stats.norm.logpdf(y, mu[0], np.sqrt(var[0])))
    assert nll(good, y) == pytest.approx(ref_nll, rel=1e-12)
    sd = np.sqrt(var[0])
    z = (y - mu[0]) / sd
    ref_crps = sd * (z * (2 * stats.norm.cdf(z) - 1) + 2 * stats.norm.pdf(z) - 1 / np.sqrt(np.pi))
    assert crps(good, y) == pytest.approx(ref_crps.mean(), rel=1e-11)
    width = 2 * stats.norm.ppf(0.95) * np.sqrt(var[0]).mean()
    assert interval_width(good, 0.9) == pytest.approx(width, rel=1e-10)
    np.testing.assert_allclose(pit(good, y).numpy(), stats.norm.cdf(y, mu[0], sd), atol=1e-14)
    # a mixture: NLL from a direct numpy sum of weighted densities; RMSE of the mixture mean
    rng = np.random.default_rng(1)
    m, v, w = rng.normal(size=(3, 40, 2)), rng.uniform(0.3, 2, (3, 40, 2)), np.array([.5, .3, .2])
    y2 = rng.normal(size=(40, 2))
    mix = GaussianMixture(m, v, w)
    dens = sum(w[i] * stats.norm.pdf(y2, m[i], np.sqrt(v[i])) for i in range(3))
    assert nll(mix, y2) == pytest.approx(-np.mean(np.log(dens)), rel=1e-12)
    assert rmse(mix, y2) == pytest.approx(np.sqrt(np.mean((np.tensordot(w, m, 1) - y2) ** 2)))


def test_calibration_error_definition():
    # targets at the 0.255-quantile give PIT = 0.255 exactly: the PIT's empirical CDF is a step
    mix = GaussianMixture(np.zeros((1, 10, 1)), np.ones((1, 10, 1)))
    y = np.full((10, 1), stats.norm.ppf(0.255))
    p = np.arange(1, 100) / 100
    expected = np.mean(np.abs((p >= 0.255).astype(float) - p))
    assert calibration_error(mix, y) == pytest.approx(expected, rel=1e-12)
    # uniformly spread PIT values at the level grid itself: zero error
    u = (np.arange(1, 1000) - 0.5) / 999
    mix_u = GaussianMixture(np.zeros((1, 999)), np.ones((1, 999)))
    assert calibration_error(mix_u, stats.norm.ppf(u)) < 1.5e-3
    with pytest.raises(DataError, match="levels"):
        calibration_error(mix, y, levels=0)


def test_evaluate_returns_all_scores():
    mu, var, y = _truth(n=300, seed=5)
    mix = GaussianMixture(mu, var)
    res = evaluate(mix, y)
    assert set(res) == {"rmse", "nll", "crps", "coverage_90", "coverage_50", "calibration_error",
                        "mean_std", "interval_width_90", "interval_score_90",
                        "std_error_spearman"}
    assert all(isinstance(v, float) and math.isfinite(v) for v in res.values())
    assert res["rmse"] == rmse(mix, y) and res["nll"] == nll(mix, y)
    assert res["coverage_90"] == coverage(mix, y, 0.9)
    assert res["interval_width_90"] == pytest.approx(interval_width(mix, 0.9), rel=1e-14)
    assert res["mean_std"] == pytest.approx(np.sqrt(var).mean(), rel=1e-12)
    assert res["interval_score_90"] == pytest.approx(interval_score(mix, y, 0.9), rel=1e-14)
    assert res["std_error_spearman"] == std_error_rank_correlation(mix, y)


def test_shape_mismatch_raises():
    mix = GaussianMixture(np.zeros((2, 5, 3)), np.ones((2, 5, 3)))
    for fn in (rmse, nll, crps, coverage, pit, calibration_error, evaluate,
               std_error_rank_correlation):
        with pytest.raises(DataError, match=r"\(5, 3\).*\(5, 2\)"):
            fn(mix, np.zeros((5, 2)))
    with pytest.raises(DataError, match="finite"):
        rmse(mix, np.full((5, 3), np.nan))


def test_fields():
    rng = np.random.default_rng(7)
    mu, var = rng.normal(size=(3, 6, 1, 4, 4)), rng.uniform(0.5, 2.0, (3, 6, 1, 4, 4))
    mix = GaussianMixture(mu, var)
    y = mix.sample(1, generator=torch.Generator().manual_seed(0))[0]
    res = evaluate(mix, y)
    assert all(math.isfinite(v) for v in res.values())
    assert pit(mix, y).shape == (6, 1, 4, 4)
    flat = GaussianMixture(mu.reshape(3, 96), var.reshape(3, 96))
    flat_res = evaluate(flat, y.reshape(96))
    for key, value in flat_res.items():
        assert res[key] == pytest.approx(value, rel=1e-12, abs=1e-15)
    assert set(res) - set(flat_res) == {"rel_l2", "nrmse"}


def test_relative_l2_and_nrmse_by_hand():
    rng = np.random.default_rng(3)
    mu, y = rng.normal(size=(2, 5, 1, 3, 3)), rng.normal(size=(5, 1, 3, 3))
    mix = GaussianMixture(mu, np.ones_like(mu))
    mean = mu.mean(0)
    by_hand = np.mean([np.sqrt(((mean[i] - y[i]) ** 2).sum() / (y[i] ** 2).sum())
                       for i in range(5)])
    assert relative_l2(mix, y) == pytest.approx(by_hand, rel=1e-12)
    assert nrmse(mix, y) == pytest.approx(np.sqrt(((mean - y) ** 2).mean()) / y.std(ddof=1),
                                          rel=1e-12)


def _ranks(a):
    """Ranks 0..N-1 of distinct values, by numpy alone (independent of scipy)."""
    r = np.empty(a.size)
    r[np.argsort(a)] = np.arange(a.size)
    return r


def _spearman_by_hand(err, std):
    return np.corrcoef(_ranks(err), _ranks(std))[0, 1]


def test_std_error_rank_correlation_exact_orderings():
    rng = np.random.default_rng(11)
    mu, std = rng.normal(size=(2, 50, 3)), rng.uniform(0.1, 2.0, (50, 3))
    mix = GaussianMixture(mu, np.broadcast_to(std**2, mu.shape).copy())
    sign = rng.choice([-1.0, 1.0], (50, 3))
    mix_std = mix.stddev.numpy()
    # |error| equal to the mixture's own std: the std ranks the errors perfectly
    assert std_error_rank_correlation(mix, mu.mean(0) + sign * mix_std) == pytest.approx(1.0)
    # |error| decreasing in the std: perfectly reversed
    assert std_error_rank_correlation(mix, mu.mean(0) + sign / mix_std) == pytest.approx(-1.0)


def test_std_error_rank_correlation_matches_numpy_ranks():
    mu, var, y = _truth(n=3_000, seed=12)
    mix = GaussianMixture(mu, var)
    err, std = np.abs(y - mu[0]).ravel(), np.sqrt(var[0]).ravel()
    by_hand = _spearman_by_hand(err, std)
    assert std_error_rank_correlation(mix, y) == pytest.approx(by_hand, rel=1e-10)
    assert 0.1 < by_hand < 0.6  # targets drawn from the predictive: informative, not perfect


def test_std_error_rank_correlation_fields_and_subsample():
    rng = np.random.default_rng(13)
    mu, var = rng.normal(size=(1, 5, 2, 20, 20)), rng.uniform(0.1, 3.0, (1, 5, 2, 20, 20))
    mix = GaussianMixture(mu, var)
    y = mix.sample(1, generator=torch.Generator().manual_seed(2))[0]
    err, std = np.abs(y.numpy() - mu[0]).ravel(), np.sqrt(var[0]).ravel()
    full = std_error_rank_correlation(mix, y)
    assert full == pytest.approx(_spearman_by_hand(err, std), rel=1e-10)
    assert evaluate(mix, y)["std_error_spearman"] == full  # 4000 values: all ranked
    # above max_values, a documented fixed-seed subsample (seed 0) is ranked: reproducible
    pick = np.random.default_rng(0).choice(err.size, 500, replace=False)
    sub = std_error_rank_correlation(mix, y, max_values=500)
    assert sub == pytest.approx(_spearman_by_hand(err[pick], std[pick]), rel=1e-10)
    assert sub == std_error_rank_correlation(mix, y, max_values=500)
    assert abs(sub - full) < 0.15


def test_std_error_rank_correlation_undefined_is_nan_without_warning():
    mix = GaussianMixture(np.zeros((2, 6, 1)), np.ones((2, 6, 1)))  # constant std
    y = np.arange(6.0)[:, None]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isnan(std_error_rank_correlation(mix, y))
        assert math.isnan(evaluate(mix, y)["std_error_spearman"])
        varying = GaussianMixture(np.zeros((1, 6, 1)), np.arange(1.0, 7.0)[None, :, None])
        assert math.isnan(std_error_rank_correlation(varying, np.ones((6, 1))))  # constant error
        one = GaussianMixture(np.zeros((1, 1, 1)), np.ones((1, 1, 1)))
        assert math.isnan(std_error_rank_correlation(one, [[1.0]]))
    for bad in (1, 2.5, True):
        with pytest.raises(DataError, match=r"max_values must be an integer >= 2; got"):
            std_error_rank_correlation(mix, y, max_values=bad)

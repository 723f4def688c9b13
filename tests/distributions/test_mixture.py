"""Tests of the Gaussian-mixture predictive against scipy, quadrature and Monte Carlo."""

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from choral.distributions import GaussianMixture, Predictive
from choral.errors import DataError


def _single(seed=0, n=40):
    rng = np.random.default_rng(seed)
    mu = rng.normal(0.0, 3.0, (1, n))
    var = rng.uniform(0.1, 4.0, (1, n))
    y = mu[0] + rng.normal(0.0, 2.0, n) * np.sqrt(var[0])
    return mu, var, y


def _mixture(seed=1, n=6, m=2):
    rng = np.random.default_rng(seed)
    mu = rng.normal(0.0, 2.0, (3, n, m))
    var = rng.uniform(0.2, 2.0, (3, n, m))
    w = np.array([0.2, 0.5, 0.3])
    y = rng.normal(0.0, 3.0, (n, m))
    return mu, var, w, y


def _np_cdf(x, mu, sd, w):
    return float(np.sum(w * stats.norm.cdf(x, mu, sd)))


def _quad_crps(y, mu, sd, w):
    """CRPS = int (F(x) - 1{x >= y})^2 dx by adaptive quadrature on a range holding all mass."""
    a = min(y, np.min(mu - 15 * sd))
    b = max(y, np.max(mu + 15 * sd))
    pts = sorted(set(np.clip(mu, a, b).tolist()))
    opts = {"limit": 400, "epsabs": 1e-12, "epsrel": 1e-11}
    left = integrate.quad(lambda x: _np_cdf(x, mu, sd, w) ** 2, a, y,
                          points=[p for p in pts if a < p < y] or None, **opts)[0]
    right = integrate.quad(lambda x: (1.0 - _np_cdf(x, mu, sd, w)) ** 2, y, b,
                           points=[p for p in pts if y < p < b] or None, **opts)[0]
    return left + right


# -- a single Gaussian (s = 1) must reproduce the textbook normal -------------------------------
def test_single_gaussian_matches_scipy():
    mu, var, y = _single()
    mix = GaussianMixture(mu, var)
    sd = np.sqrt(var[0])
    np.testing.assert_allclose(mix.log_prob(y).numpy(), stats.norm.logpdf(y, mu[0], sd),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(mix.cdf(y).numpy(), stats.norm.cdf(y, mu[0], sd), rtol=1e-10,
                               atol=1e-14)
    for p in [1e-6, 0.01, 0.3, 0.5, 0.77, 0.999]:
        np.testing.assert_allclose(mix.quantile(p).numpy(), stats.norm.ppf(p, mu[0], sd),
                                   rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(mix.mean.numpy(), mu[0], rtol=0, atol=0)
    np.testing.assert_allclose(mix.variance.numpy(), var[0], rtol=1e-15)
    assert torch.all(mix.epistemic == 0)


def test_single_gaussian_crps_closed_form_and_quadrature():
    mu, var, y = _single()
    got = GaussianMixture(mu, var).crps(y).numpy()
    sd = np.sqrt(var[0])
    z = (y - mu[0]) / sd
    closed = sd * (z * (2 * stats.norm.cdf(z) - 1) + 2 * stats.norm.pdf(z) - 1 / math.sqrt(math.pi))
    np.testing.assert_allclose(got, closed, rtol=1e-11, atol=1e-13)
    for i in range(0, len(y), 8):
        quad = _quad_crps(y[i], mu[:, i], sd[None, i], np.array([1.0]))
        assert got[i] == pytest.approx(quad, rel=1e-8, abs=1e-10)


# -- mixtures -------------------------------------------------------------------------------------
def test_mixture_crps_matches_quadrature():
    mu, var, w, y = _mixture()
    got = GaussianMixture(mu, var, w).crps(y).numpy()
    sd = np.sqrt(var)
    for i, j in [(0, 0), (1, 1), (2, 0), (3, 1), (5, 0)]:
        quad = _quad_crps(y[i, j], mu[:, i, j], sd[:, i, j], w)
        assert got[i, j] == pytest.approx(quad, rel=1e-8, abs=1e-10)
    # far-apart (bimodal) members, observation between and outside the modes
    far_mu, far_sd, far_w = np.array([-20.0, 0.5, 30.0]), np.array([0.3, 1.0, 2.0]), w
    far = GaussianMixture(far_mu[:, None], far_sd[:, None] ** 2, far_w)
    for obs in [-25.0, -20.0, 5.0, 31.0]:
        assert far.crps([obs]).item() == pytest.approx(_quad_crps(obs, far_mu, far_sd, far_w),
                                                       rel=1e-8)


def test_mixture_crps_matches_scoringrules():
    sr = pytest.importorskip("scoringrules")
    mu, var, w, y = _mixture(seed=3, n=30, m=3)
    got = GaussianMixture(mu, var, w).crps(y).numpy()
    m_last, s_last = np.moveaxis(mu, 0, -1), np.moveaxis(np.sqrt(var), 0, -1)
    ref = sr.crps_mixnorm(y, m_last, s_last, np.broadcast_to(w, m_last.shape), m_axis=-1,
                          backend="numpy")
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12)


def test_mixture_log_prob_matches_numpy_sum():
    mu, var, w, y = _mixture()
    got = GaussianMixture(mu, var, w).log_prob(y).numpy()
    dens = sum(w[i] * stats.norm.pdf(y, mu[i], np.sqrt(var[i])) for i in range(3))
    np.testing.assert_allclose(got, np.log(dens), rtol=1e-12)
    # far in the tail the density underflows in numpy, but logsumexp stays finite
    assert np.isfinite(GaussianMixture(mu, var, w).log_prob(y + 1e4).numpy()).all()


def test_moments_follow_law_of_total_variance():
    mu, var, w, _ = _mixture()
    mix = GaussianMixture(mu, var, w)
    mean = np.einsum("i,i...->...", w, mu)
    ale = np.einsum("i,i...->...", w, var)
    epi = np.einsum("i,i...->...", w, (mu - mean) ** 2)
    np.testing.assert_allclose(mix.mean.numpy(), mean, rtol=1e-13)
    np.testing.assert_allclose(mix.aleatoric.numpy(), ale, rtol=1e-13)
    np.testing.assert_allclose(mix.epistemic.numpy(), epi, rtol=1e-12)
    np.testing.assert_allclose(mix.variance.numpy(), ale + epi, rtol=1e-13)
    # second moment route: E[Y^2] - E[Y]^2
    np.testing.assert_allclose(mix.variance.numpy(),
                               np.einsum("i,i...->...", w, var + mu**2) - mean**2, rtol=1e-10)
    np.testing.assert_allclose(mix.stddev.numpy(), np.sqrt(ale + epi), rtol=1e-13)


def test_moments_match_monte_carlo_samples():
    mu, var, w, _ = _mixture(n=3)
    mix = GaussianMixture(mu, var, w)
    k = 400_000
    draws = mix.sample(k, generator=torch.Generator().manual_seed(0)).numpy()
    assert draws.shape == (k, 3, 2) and draws.dtype == np.float64
    mean, v = mix.mean.numpy(), mix.variance.numpy()
    se_mean = np.sqrt(v / k)
    assert np.all(np.abs(draws.mean(0) - mean) < 5 * se_mean)
    m4 = ((draws - mean) ** 4).mean(0)
    se_var = np.sqrt((m4 - v**2) / k)
    assert np.all(np.abs(draws.var(0) - v) < 5 * se_var)
    # the fraction below the mixture median is 1/2
    med = mix.quantile(0.5).numpy()
    assert np.all(np.abs((draws <= med).mean(0) - 0.5) < 5 * 0.5 / math.sqrt(k))


def test_sample_is_reproducible_and_weighted():
    mix = GaussianMixture([[0.0], [100.0]], [[1e-4], [1e-4]], weights=[0.9, 0.1])
    a = mix.sample(20_000, generator=torch.Generator().manual_seed(5))
    b = mix.sample(20_000, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    frac = (a > 50).double().mean().item()
    assert abs(frac - 0.1) < 5 * math.sqrt(0.09 / 20_000)


def test_log_prob_integrates_to_one():
    mu = np.array([-8.0, 0.0, 9.0])
    sd = np.array([0.5, 2.0, 1.0])
    mix = GaussianMixture(mu[:, None, None], sd[:, None, None] ** 2, [0.3, 0.3, 0.4])
    f = lambda x: math.exp(mix.log_prob([[x]]).item())  # noqa: E731
    total = integrate.quad(f, -40, 40, points=mu.tolist(), limit=200, epsabs=1e-12)[0]
    assert total == pytest.approx(1.0, abs=1e-9)


def test_quantile_round_trip_bimodal():
    p = np.concatenate([[1e-9, 1e-6, 1e-3], np.linspace(0.005, 0.995, 199), [1 - 1e-6]])
    mu = np.array([-50.0, 0.0, 50.0])[:, None, None] * np.ones((3, len(p), 1))
    var = np.array([0.01, 1.0, 4.0])[:, None, None] * np.ones((3, len(p), 1))
    w = np.array([0.45, 0.1, 0.45])
    mix = GaussianMixture(mu, var, w)
    q = mix.quantile(torch.as_tensor(p[:, None]))
    assert q.shape == (len(p), 1)
    np.testing.assert_allclose(mix.cdf(q).numpy()[:, 0], p, rtol=0, atol=1e-9)
    # independent CDF check and monotonicity
    np.testing.assert_allclose([_np_cdf(x, mu[:, 0, 0], np.sqrt(var[:, 0, 0]), w)
                                for x in q.numpy()[:, 0]], p, atol=1e-9)
    assert np.all(np.diff(q.numpy()[:, 0]) > 0)
    # random mixtures, a scalar p and per-element p
    mu2, var2, w2, _ = _mixture(n=50, m=3)
    mix2 = GaussianMixture(mu2, var2, w2)
    pp = torch.as_tensor(np.random.default_rng(0).uniform(0.001, 0.999, (50, 3)))
    assert torch.allclose(mix2.cdf(mix2.quantile(pp)), pp, rtol=0, atol=1e-9)
    np.testing.assert_allclose(mix2.cdf(mix2.quantile(0.2)).numpy(), 0.2, rtol=0, atol=1e-9)


def test_interval_has_the_right_mass():
    mu, var, w, _ = _mixture()
    mix = GaussianMixture(mu, var, w)
    for level in [0.5, 0.9, 0.99]:
        lo, hi = mix.interval(level)
        assert torch.all(lo < hi)
        mass = mix.cdf(hi) - mix.cdf(lo)
        np.testing.assert_allclose(mass.numpy(), level, atol=1e-9)
        np.testing.assert_allclose(mix.cdf(lo).numpy(), (1 - level) / 2, atol=1e-9)
    lo, hi = mix.interval(0.9)
    sd = np.sqrt(var)
    np.testing.assert_allclose(_np_cdf(hi[2, 1].item(), mu[:, 2, 1], sd[:, 2, 1], w)
                               - _np_cdf(lo[2, 1].item(), mu[:, 2, 1], sd[:, 2, 1], w), 0.9,
                               atol=1e-9)


def test_not_collapsed_into_one_gaussian():
    mix = GaussianMixture([[-3.0], [3.0]], [[1.0], [1.0]])
    exact = math.log(stats.norm.pdf(0.0, 3.0, 1.0))  # both members equally far: log(phi(3))
    assert mix.log_prob([0.0]).item() == pytest.approx(exact, rel=1e-12)
    naive_avg = stats.norm.logpdf(0.0, 0.0, 1.0)  # averaged means and variances
    moment_matched = stats.norm.logpdf(0.0, 0.0, math.sqrt(10.0))  # same mean and variance
    assert abs(mix.log_prob([0.0]).item() - naive_avg) > 3
    assert abs(mix.log_prob([0.0]).item() - moment_matched) > 3
    assert mix.log_prob([3.0]).item() > moment_matched  # peaks at the modes, not the mean
    # the mixture's 90 % interval is not the single Gaussian's
    lo, hi = mix.interval(0.9)
    assert abs(hi.item() - stats.norm.ppf(0.95, 0.0, math.sqrt(10.0))) > 0.05


def test_affine_maps_to_original_units():
    mu, var, w, y = _mixture()
    mix = GaussianMixture(mu, var, w)
    loc, scale = np.array([10.0, -2.0]), np.array([3.0, 0.5])
    out = mix.affine(torch.as_tensor(loc), scale)
    np.testing.assert_allclose(out.mean.numpy(), mix.mean.numpy() * scale + loc, rtol=1e-13)
    np.testing.assert_allclose(out.variance.numpy(), mix.variance.numpy() * scale**2, rtol=1e-12)
    yt = y * scale + loc
    np.testing.assert_allclose(out.log_prob(yt).numpy(), mix.log_prob(y).numpy() - np.log(scale),
                               rtol=1e-11)
    np.testing.assert_allclose(out.cdf(yt).numpy(), mix.cdf(y).numpy(), atol=1e-14)
    np.testing.assert_allclose(out.crps(yt).numpy(), mix.crps(y).numpy() * scale, rtol=1e-10)
    np.testing.assert_allclose(out.quantile(0.3).numpy(), mix.quantile(0.3).numpy() * scale + loc,
                               rtol=1e-10)
    assert torch.equal(out.weights, mix.weights)
    with pytest.raises(DataError, match="scale"):
        mix.affine(0.0, np.array([1.0, 0.0]))
    with pytest.raises(DataError, match="loc"):
        mix.affine(np.zeros(3), 1.0)


def test_fields_work_for_every_method():
    rng = np.random.default_rng(2)
    mu, var = rng.normal(size=(3, 5, 1, 4, 4)), rng.uniform(0.5, 2, (3, 5, 1, 4, 4))
    y = rng.normal(size=(5, 1, 4, 4))
    mix = GaussianMixture(torch.as_tensor(mu), torch.as_tensor(var))
    for t in [mix.mean, mix.variance, mix.stddev, mix.log_prob(y), mix.cdf(y), mix.crps(y),
              mix.quantile(0.7), *mix.interval(0.8)]:
        assert t.shape == (5, 1, 4, 4) and t.dtype == torch.float64
    assert mix.sample(7).shape == (7, 5, 1, 4, 4)
    out = mix.affine(torch.tensor([2.0]).reshape(1, 1, 1), 3.0)  # per-channel loc (c, 1, 1)
    np.testing.assert_allclose(out.mean.numpy(), mix.mean.numpy() * 3 + 2, rtol=1e-13)
    # field values are independent: element (0, 0, 1, 2) equals a vector mixture of that element
    one = GaussianMixture(mu[:, :1, 0, 1, 2], var[:, :1, 0, 1, 2])
    assert mix.crps(y)[0, 0, 1, 2].item() == pytest.approx(one.crps(y[:1, 0, 1, 2]).item(), 1e-14)


def test_inputs_are_converted_to_float64_without_grad():
    m = torch.zeros(2, 3, 1, dtype=torch.float32, requires_grad=True)
    mix = GaussianMixture(m, torch.ones(2, 3, 1))
    assert mix.member_means.dtype == torch.float64 and not mix.member_means.requires_grad
    assert mix.member_variances.shape == (2, 3, 1)
    assert mix.weights.tolist() == [0.5, 0.5]
    assert mix.log_prob(np.zeros((3, 1), dtype=np.float32)).dtype == torch.float64
    assert "members=2" in repr(mix)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"means": np.zeros((2, 3)), "variances": np.ones((2, 4))}, "same shape"),
        ({"means": np.zeros(3), "variances": np.ones(3)}, "at least 2 axes"),
        ({"means": np.zeros((2, 3)), "variances": np.zeros((2, 3))}, "variances must be > 0"),
        ({"means": np.full((2, 3), np.nan), "variances": np.ones((2, 3))}, "means must be finite"),
        ({"means": np.zeros((2, 3)), "variances": np.ones((2, 3)), "weights": [0.5, 0.6]},
         "sum to 1"),
        ({"means": np.zeros((2, 3)), "variances": np.ones((2, 3)), "weights": [1.5, -0.5]},
         "positive"),
        ({"means": np.zeros((2, 3)), "variances": np.ones((2, 3)), "weights": [1.0]},
         r"weights must have shape \(2,\)"),
    ],
)
def test_invalid_construction_raises(kwargs, match):
    with pytest.raises(DataError, match=match):
        GaussianMixture(**kwargs)


def test_invalid_arguments_raise():
    mix = GaussianMixture(np.zeros((2, 3, 2)), np.ones((2, 3, 2)))
    with pytest.raises(DataError, match=r"y must have the predictive's shape \(3, 2\).*\(3, 3\)"):
        mix.log_prob(np.zeros((3, 3)))
    for p in [0.0, 1.0, -0.1, 1.5]:
        with pytest.raises(DataError, match="p must lie"):
            mix.quantile(p)
    for level in [0.0, 1.0, 2.0]:
        with pytest.raises(DataError, match="level"):
            mix.interval(level)
    with pytest.raises(DataError, match="k must"):
        mix.sample(0)


def test_generic_quantile_and_crps_match_the_closed_forms():
    """The base-class numerical defaults agree with the mixture's exact ones."""
    g = torch.Generator().manual_seed(3)
    mix = GaussianMixture(torch.randn(3, 5, 2, generator=g, dtype=torch.float64) * 2,
                          torch.rand(3, 5, 2, generator=g, dtype=torch.float64) + 0.2)
    y = torch.randn(5, 2, generator=g, dtype=torch.float64)
    for p in (0.01, 0.3, 0.5, 0.97):
        torch.testing.assert_close(Predictive.quantile(mix, p), mix.quantile(p), rtol=1e-9,
                                   atol=1e-9)
    torch.testing.assert_close(Predictive.crps(mix, y, levels=2000), mix.crps(y), rtol=2e-3,
                               atol=2e-3)


def test_the_mean_of_a_sampled_field_has_the_exact_mixture_variance():
    """Draws are whole fields from one member: the variance of a field's spatial mean is the
    law of total variance over members, not the patchwork value of independent cells."""
    g = torch.Generator().manual_seed(0)
    s, shape = 4, (2, 1, 6, 6)
    means = torch.randn(s, 1, 1, 1, 1, generator=g, dtype=torch.float64).expand(s, *shape)
    var = 0.1 + torch.rand(s, *shape, generator=g, dtype=torch.float64)
    mix = GaussianMixture(means, var)
    draws = mix.sample(40000, generator=g)  # (k, 2, 1, 6, 6)
    field_mean = draws.mean((-1, -2, -3))  # (k, 2)
    cells = 36
    cond_mean, cond_var = means.mean((-1, -2, -3)), var.sum((-1, -2, -3)) / cells**2
    exact = cond_var.mean(0) + cond_mean.var(0, correction=0)
    torch.testing.assert_close(field_mean.var(0), exact, rtol=0.03, atol=0)
    patchwork = mix.variance.sum((-1, -2, -3)) / cells**2
    assert bool((field_mean.var(0) > 5 * patchwork).all())

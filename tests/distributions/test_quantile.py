"""QuantilePredictive against quadrature, scipy and the definitions in its docstring."""

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from choral.distributions import Predictive
from choral.distributions.quantile import QuantilePredictive, level_grid
from choral.errors import DataError

TAUS = level_grid(9)


def _quad(f, knots):
    """Integral of ``f`` over the real line, split at the knots (the density's kinks)."""
    ends = [-np.inf, *knots, np.inf]
    return sum(integrate.quad(f, a, b, limit=200)[0] for a, b in zip(ends, ends[1:], strict=False))


def _pred(s=3, n=4, seed=0):
    """Members with normal quantiles of random location and scale at 9 levels."""
    rng = np.random.default_rng(seed)
    loc, scale = rng.normal(size=(s, n, 1, 1)), rng.uniform(0.5, 2.0, (s, n, 1, 1))
    return QuantilePredictive(TAUS, loc + scale * stats.norm.ppf(TAUS.numpy()))


def _at(fn, shape, i, x):
    """``fn(y)[i, 0]`` as a float for ``y`` of ``shape``, zero except ``y[i, 0] = x``."""
    y = torch.zeros(shape, dtype=torch.float64)
    y[i, 0] = x
    return fn(y)[i, 0].item()


def _density(pred, i):
    """The density of sample ``i`` (output 0) as a function of a float."""
    return lambda x: np.exp(_at(pred.log_prob, pred.shape, i, x))


def _crps_integrand(pred, y, i):
    """``(F(x) - 1{x >= y_i})^2`` of sample ``i`` (output 0): its integral is the CRPS."""
    return lambda x: (_at(pred.cdf, pred.shape, i, x) - float(x >= y[i, 0].item())) ** 2


def test_density_integrates_to_one_and_is_the_cdf_derivative():
    pred = _pred()
    for i in range(4):
        dens = _density(pred, i)
        knots = pred.quantiles[i, 0].tolist()
        mass = _quad(dens, knots)
        inner = sum(integrate.quad(dens, a, b)[0] for a, b in zip(knots, knots[1:], strict=False))
        assert mass == pytest.approx(1.0, abs=1e-6)
        assert inner == pytest.approx(TAUS[-1].item() - TAUS[0].item(), abs=1e-9)
    y = torch.linspace(-6, 6, 4 * 1 * 301, dtype=torch.float64).reshape(301, 4, 1)
    h = 1e-6
    fd = torch.stack([(pred.cdf(v + h) - pred.cdf(v - h)) / (2 * h) for v in y])
    dens = torch.stack([pred.log_prob(v).exp() for v in y])
    near_knot = torch.stack([(v[..., None] - pred.quantiles).abs().min(-1).values < 2 * h
                             for v in y])
    torch.testing.assert_close(fd[~near_knot], dens[~near_knot], rtol=1e-5, atol=1e-8)


def test_quantile_inverts_the_cdf_and_hits_the_knots():
    pred = _pred(seed=1)
    for p in (1e-4, 0.02, 0.1, 0.37, 0.5, 0.83, 0.9, 0.99, 0.9999):
        q = pred.quantile(p)
        torch.testing.assert_close(pred.cdf(q), torch.full(pred.shape, p, dtype=torch.float64),
                                   rtol=1e-12, atol=1e-12)
    for j, t in enumerate(TAUS.tolist()):
        torch.testing.assert_close(pred.quantile(t), pred.quantiles[..., j])
    # Vincentisation: the knots are the member average
    torch.testing.assert_close(pred.quantiles, pred.member_quantiles.mean(0))


def test_moments_against_quadrature():
    pred = _pred(s=1, n=2, seed=2)
    for i in range(2):
        dens = _density(pred, i)
        knots = pred.quantiles[i, 0].tolist()
        m1 = _quad(lambda x, dens=dens: x * dens(x), knots)
        m2 = _quad(lambda x, dens=dens, m1=m1: (x - m1) ** 2 * dens(x), knots)
        assert pred.mean[i, 0].item() == pytest.approx(m1, abs=1e-9)
        assert pred.variance[i, 0].item() == pytest.approx(m2, rel=1e-8)
        assert knots == sorted(knots)
    # a fine grid of normal quantiles approaches the normal's moments
    fine = level_grid(999)
    normal = QuantilePredictive(fine, torch.as_tensor(stats.norm.ppf(fine.numpy()))
                                .reshape(1, 1, -1))
    assert normal.mean.item() == pytest.approx(0.0, abs=1e-10)
    assert normal.variance.item() == pytest.approx(1.0, abs=5e-3)


def test_crps_against_cdf_quadrature():
    pred = _pred(s=2, n=3, seed=3)
    y = torch.tensor([[-0.5], [0.3], [4.0]], dtype=torch.float64)
    got = pred.crps(y, levels=999)
    for i in range(3):
        knots = sorted([*pred.quantiles[i, 0].tolist(), y[i, 0].item()])
        ref = _quad(_crps_integrand(pred, y, i), knots)
        assert got[i, 0].item() == pytest.approx(ref, rel=2e-3)


def test_samples_follow_the_cdf_and_members_decompose():
    pred = _pred(s=2, n=1, seed=4)
    draws = pred.sample(5000, generator=torch.Generator().manual_seed(0))
    assert draws.shape == (5000, 1, 1)
    u = torch.stack([pred.cdf(d) for d in draws])
    assert stats.kstest(u.numpy().ravel(), "uniform").pvalue > 1e-3
    assert draws.mean().item() == pytest.approx(pred.mean.item(), abs=4 * pred.stddev.item()
                                                / np.sqrt(5000))
    mu = pred.member_means
    torch.testing.assert_close(pred.mean, mu.mean(0))
    torch.testing.assert_close(pred.epistemic, mu.var(0, unbiased=False))
    one = [QuantilePredictive(TAUS, pred.member_quantiles[i:i + 1]) for i in range(2)]
    torch.testing.assert_close(pred.aleatoric, (one[0].variance + one[1].variance) / 2)


def test_affine_maps_every_function():
    pred = _pred(seed=5)
    loc, scale = torch.tensor([[1.0]] * 4) * 3, torch.tensor([[2.0]] * 4)
    moved = pred.affine(loc, scale)
    y = torch.randn(pred.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    torch.testing.assert_close(moved.cdf(scale * y + loc), pred.cdf(y))
    torch.testing.assert_close(moved.log_prob(scale * y + loc), pred.log_prob(y) - np.log(2.0))
    torch.testing.assert_close(moved.mean, scale * pred.mean + loc)
    torch.testing.assert_close(moved.variance, scale**2 * pred.variance)
    torch.testing.assert_close(moved.interval(0.5)[0], scale * pred.interval(0.5)[0] + loc)
    with pytest.raises(DataError, match="scale must be > 0"):
        pred.affine(0.0, -1.0)


def test_bad_input_is_rejected():
    with pytest.raises(DataError, match="strictly increasing along the levels"):
        QuantilePredictive([0.2, 0.8], torch.tensor([[[1.0, 0.0]]]))
    with pytest.raises(DataError, match=r"L = 3 levels last; got \(1, 2\)"):
        QuantilePredictive([0.2, 0.5, 0.8], torch.zeros(1, 2))
    with pytest.raises(DataError, match="quantile_levels must be"):
        level_grid([0.5, 0.4])
    with pytest.raises(DataError, match=r"predictive's shape \(4, 1\)"):
        _pred().cdf(torch.zeros(3, 1))


def test_mixture_combination_against_its_members():
    pred = _pred(s=3, n=4, seed=6)
    mix = QuantilePredictive(TAUS, pred.member_quantiles, combine="mixture")
    ones = [QuantilePredictive(TAUS, pred.member_quantiles[i:i + 1]) for i in range(3)]
    y = torch.randn(mix.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    torch.testing.assert_close(mix.cdf(y), sum(o.cdf(y) for o in ones) / 3)
    torch.testing.assert_close(mix.log_prob(y), torch.log(sum(o.log_prob(y).exp() for o in ones)
                                                          / 3))
    torch.testing.assert_close(mix.mean, pred.mean)
    # law of total variance: E[var_i + mu_i^2] - mean^2 over the members
    second = sum(o.variance + o.mean**2 for o in ones) / 3
    torch.testing.assert_close(mix.variance, second - mix.mean**2)
    assert bool((mix.variance > pred.variance).all())  # the mixture keeps the members' spread
    for p in (0.01, 0.3, 0.95):
        torch.testing.assert_close(mix.cdf(mix.quantile(p)),
                                   torch.full(mix.shape, p, dtype=torch.float64))
    draws = mix.sample(3000, generator=torch.Generator().manual_seed(3))
    u = torch.stack([mix.cdf(d) for d in draws]).numpy().ravel()
    assert stats.kstest(u, "uniform").pvalue > 1e-3
    assert mix.affine(1.0, 2.0).combine == "mixture" and mix.select([1]).shape == (1, 1)


def test_vectorised_crps_equals_the_generic_one():
    pred = _pred(s=2, n=3, seed=7)
    y = torch.tensor([[-0.5], [0.3], [4.0]], dtype=torch.float64)
    for combine in ("vincentise", "mixture"):
        p = QuantilePredictive(TAUS, pred.member_quantiles, combine=combine)
        torch.testing.assert_close(p.crps(y, levels=49), Predictive.crps(p, y, levels=49),
                                   rtol=1e-9, atol=1e-12)
    mix = QuantilePredictive(TAUS, pred.member_quantiles, combine="mixture")
    for i in range(3):
        knots = sorted([*mix.member_quantiles[:, i, 0].ravel().tolist(), y[i, 0].item()])
        ref = _quad(_crps_integrand(mix, y, i), knots)
        assert mix.crps(y, levels=999)[i, 0].item() == pytest.approx(ref, rel=2e-3)

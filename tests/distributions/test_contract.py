"""One contract, every predictive class: the same checks for each (as zuko tests its flows).

Each case is a small float64 predictive of shape (n, p) = (3, 4) whose members disagree, so a
patchwork of members and a coherent draw give different answers. Checks are against independent
facts: the per-member view's mixture moments, numerical integration of the density, the
per-value and joint log densities written out by hand, the law of total variance for a quantity
derived from a whole sample (its mean over outputs), and Monte Carlo moments of the draws.
"""

import math

import pytest
import torch

from choral.distributions import GaussianMixture, Members, Predictive, QuantilePredictive
from choral.evaluation.calibration import Conformal, Isotonic, Scale

F64 = torch.float64
N, P = 3, 4


def _gaussian(s=3):
    g = torch.Generator().manual_seed(0)
    means = 3.0 * torch.randn(s, N, P, generator=g, dtype=F64)
    var = 0.2 + torch.rand(s, N, P, generator=g, dtype=F64)
    return GaussianMixture(means, var, torch.tensor([0.5, 0.3, 0.2], dtype=F64))


def _mdn(s=2, k=2):
    g = torch.Generator().manual_seed(1)
    means = 2.0 * torch.randn(s * k, N, P, generator=g, dtype=F64)
    var = 0.2 + torch.rand(s * k, N, P, generator=g, dtype=F64)
    within = torch.softmax(torch.randn(s, k, N, P, generator=g, dtype=F64), dim=1)
    return GaussianMixture(means, var, (within / s).reshape(s * k, N, P), members=s)


def _quantiles(combine):
    g = torch.Generator().manual_seed(2)
    levels = torch.linspace(0.05, 0.95, 9, dtype=F64)
    base = 2.0 * torch.randn(3, N, P, 1, generator=g, dtype=F64)
    gaps = 0.1 + torch.rand(3, N, P, 9, generator=g, dtype=F64)
    return QuantilePredictive(levels, base + gaps.cumsum(-1), combine)


def _calibrated(method):
    base = _gaussian()
    g = torch.Generator().manual_seed(3)
    y = base.sample(200, generator=g)[:, 0]  # 200 calibration "samples" of the first input
    cal_base = base.select([0] * 200)
    wider = base.mean[0] + 1.3 * (y - base.mean[0])
    if method == "scale":
        return Scale.fit(cal_base, wider).apply(base)
    if method == "isotonic":
        return Isotonic.fit(cal_base, wider, n_knots=5).apply(base)
    return Conformal.fit(cal_base, y).apply(base)


CASES = {
    "gaussian_mixture": _gaussian,
    "mdn_mixture": _mdn,
    "quantile_vincentise": lambda: _quantiles("vincentise"),
    "quantile_mixture": lambda: _quantiles("mixture"),
    "scaled": lambda: _calibrated("scale"),
    "recalibrated": lambda: _calibrated("isotonic"),
    "conformal": lambda: _calibrated("conformal"),
}
# Whose draws are mixtures over members (the Vincentised grid is one distribution per value).
COHERENT = set(CASES) - {"quantile_vincentise"}


@pytest.fixture(params=sorted(CASES))
def case(request):
    return request.param, CASES[request.param]()


def test_every_predictive_class_is_covered():
    classes = {type(CASES[name]()) for name in CASES}
    leaves = {c for c in _subclasses(Predictive) if not c.__name__.startswith("_")}
    assert leaves <= classes, f"predictive classes without a contract case: {leaves - classes}"


def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def test_summaries_have_the_shape_and_the_view_has_the_moments(case):
    name, pred = case
    assert pred.shape == (N, P)
    for t in (pred.mean, pred.variance, pred.aleatoric, pred.epistemic, pred.stddev):
        assert t.shape == (N, P) and t.dtype == F64
    view = pred.members()
    assert isinstance(view, Members)
    s = view.means.shape[0]
    assert view.means.shape == view.variances.shape == (s, N, P) and view.weights.shape == (s,)
    torch.testing.assert_close(view.weights.sum(), torch.tensor(1.0, dtype=F64))
    torch.testing.assert_close(view.mean, pred.mean, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(view.aleatoric, pred.aleatoric, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(view.epistemic, pred.epistemic, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(pred.member_means, view.means)
    assert bool((pred.epistemic >= 0).all())


def test_density_integrates_to_one_and_matches_the_cdf(case):
    name, pred = case
    lo, hi = pred.quantile(1e-4), pred.quantile(1 - 1e-4)
    width = 5 * pred.stddev.max().item()
    grid = torch.linspace(lo.min().item() - width, hi.max().item() + width, 40001, dtype=F64)
    g = len(grid)
    many = pred.select(torch.arange(N).repeat(g))  # every sample once per grid point
    values = grid.repeat_interleave(N)[:, None].expand(g * N, P)
    dens = many.log_prob(values).exp().reshape(g, N, P)
    cdf = many.cdf(values).reshape(g, N, P)
    mass = torch.trapezoid(dens, grid, dim=0)
    torch.testing.assert_close(mass, torch.ones(N, P, dtype=F64), atol=1e-3, rtol=0)
    cumulative = torch.cumulative_trapezoid(dens, grid, dim=0)  # (g - 1, N, P)
    at = torch.linspace(5000, 35000, 7).long()
    torch.testing.assert_close(cumulative[at], cdf[at + 1], atol=1e-3, rtol=0)


def test_quantile_inverts_the_cdf_and_intervals_nest(case):
    name, pred = case
    for p in (0.1, 0.5, 0.9):
        q = pred.quantile(p)
        torch.testing.assert_close(pred.cdf(q), torch.full((N, P), p, dtype=F64), atol=1e-6,
                                   rtol=0)
    lo90, hi90 = pred.interval(0.9)
    lo50, hi50 = pred.interval(0.5)
    assert bool((lo90 <= lo50).all() & (lo50 <= hi50).all() & (hi50 <= hi90).all())


def test_joint_log_prob_is_the_member_coherent_mixture(case):
    name, pred = case
    y = pred.mean + 0.5 * pred.stddev
    joint = pred.log_prob(y, joint=True)
    assert joint.shape == (N,)
    per_value = pred.log_prob(y)
    if name == "quantile_vincentise":  # one distribution: the values are independent
        torch.testing.assert_close(joint, per_value.sum(-1))
    elif name in ("gaussian_mixture", "scaled", "mdn_mixture"):
        torch.testing.assert_close(joint, _by_hand(pred, y), rtol=1e-10, atol=1e-10)
    elif name == "quantile_mixture":  # each member's own per-value densities, then mixed
        own = [QuantilePredictive(pred.levels, pred.member_quantiles[i:i + 1]).log_prob(y)
               for i in range(pred.num_members)]
        by_hand = torch.logsumexp(torch.stack([o.sum(-1) for o in own]), 0)
        torch.testing.assert_close(joint, by_hand - math.log(pred.num_members))
    # And it is not the product of the per-value mixtures when members disagree.
    if name in COHERENT and name != "recalibrated":
        assert not torch.allclose(joint, per_value.sum(-1))


def _by_hand(pred, y):
    """logsumexp_i [log W_i + sum_j log p_i(y_j)] from the mixture's components, in a loop."""
    mix = pred if isinstance(pred, GaussianMixture) else pred.base
    s, k = mix.num_members, mix.num_components // mix.num_members
    w, mu, var = mix.component_weights, mix.component_means, mix.component_variances
    out = []
    for n in range(N):
        terms = []
        for i in range(s):
            block = slice(i * k, (i + 1) * k)
            big_w = w[block, n, 0].sum()
            dens = (w[block, n] / big_w * torch.exp(-0.5 * (y[n] - mu[block, n]) ** 2
                                                     / var[block, n])
                    / torch.sqrt(2 * math.pi * var[block, n])).sum(0)
            terms.append(torch.log(big_w) + torch.log(dens).sum())
        out.append(torch.logsumexp(torch.stack(terms), 0))
    return torch.stack(out)


def test_draws_are_coherent_and_match_the_moments(case):
    name, pred = case
    k = 20000
    draws = pred.sample(k, generator=torch.Generator().manual_seed(5))
    assert draws.shape == (k, N, P) and draws.dtype == F64
    se = pred.stddev / math.sqrt(k)
    assert bool(((draws.mean(0) - pred.mean).abs() < 5 * se).all())
    torch.testing.assert_close(draws.var(0), pred.variance, rtol=0.08, atol=0)
    # The mean over a sample's outputs, a quantity derived from the whole draw: its variance
    # follows the law of total variance over members (independent values given the member).
    derived = draws.mean(-1)  # (k, N)
    view = pred.members()
    if name in COHERENT:
        cond_var = view.variances.sum(-1) / P**2  # (s, N)
        cond_mean = view.means.mean(-1)  # (s, N)
        w = view.weights[:, None]
        mean = (w * cond_mean).sum(0)
        exact = (w * (cond_var + (cond_mean - mean) ** 2)).sum(0)
    else:
        exact = pred.variance.sum(-1) / P**2
    if name != "recalibrated":  # its members are a moment match, not its draws' own members
        torch.testing.assert_close(derived.var(0), exact, rtol=0.08, atol=0)
    patchwork = pred.variance.sum(-1) / P**2  # what independent draws per value would give
    gap = ((derived.var(0) - patchwork).abs() / patchwork).max()
    assert gap > 0.1 if name in COHERENT else gap < 0.05


def test_draws_are_reproducible_from_a_seed(case):
    _, pred = case
    a = pred.sample(3, generator=torch.Generator().manual_seed(1))
    b = pred.sample(3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)


def test_affine_and_select_keep_the_contract(case):
    _, pred = case
    moved = pred.affine(torch.tensor(1.0, dtype=F64), torch.tensor(2.0, dtype=F64))
    torch.testing.assert_close(moved.mean, 2.0 * pred.mean + 1.0, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(moved.variance, 4.0 * pred.variance, rtol=1e-6, atol=1e-9)
    part = pred.select([2, 0])
    assert part.shape == (2, P)
    torch.testing.assert_close(part.mean, pred.mean[[2, 0]], rtol=1e-6, atol=1e-9)
    assert part.members().means.shape[1:] == (2, P)


def test_bad_arguments_name_themselves(case):
    _, pred = case
    with pytest.raises(ValueError, match="y must have the predictive's shape"):
        pred.log_prob(torch.zeros(N + 1, P))
    with pytest.raises(ValueError, match="k"):
        pred.sample(0)
    with pytest.raises(ValueError, match="level"):
        pred.interval(1.5)

"""Acquisitions against closed forms, numerical integrals, Monte Carlo and a Kalman update."""

import math

import mpmath
import numpy as np
import pytest
import torch
from scipy import integrate, stats

from choral.acquisition import (
    condition,
    gaussian_ei,
    gaussian_log_ei,
    members_of,
    mixture_ei,
    score,
    select_batch,
)
from choral.acquisition.closed_forms import log_h
from choral.config import Config
from choral.distributions import GaussianMixture, Members
from choral.errors import ConfigError, DataError
from choral.surrogate import Surrogate

F64 = torch.float64


def t(x):
    return torch.tensor(x, dtype=F64)


def random_mixture(s=4, n=6, m=1, seed=0):
    g = np.random.default_rng(seed)
    return GaussianMixture(g.normal(size=(s, n, m)), g.uniform(0.2, 2.0, (s, n, m)),
                           g.dirichlet(np.ones(s)))


def random_members(s, n, seed):
    """Members (s, n, 1) with normal means, variances in [0.1, 1.1) and equal weights."""
    g = torch.Generator().manual_seed(seed)
    return Members(torch.randn(s, n, 1, generator=g, dtype=F64),
                   torch.rand(s, n, 1, generator=g, dtype=F64) + 0.1,
                   torch.full((s,), 1.0 / s, dtype=F64))


@pytest.mark.parametrize("maximize", [True, False])
@pytest.mark.parametrize(("mu", "sd", "best"), [(0.3, 1.2, 0.0), (-2.0, 0.5, 1.0), (4.0, 2.0, 1.5)])
def test_gaussian_ei_matches_numerical_integral(mu, sd, best, maximize):
    gain = (lambda y: max(y - best, 0.0)) if maximize else (lambda y: max(best - y, 0.0))
    lo, hi = mu - 12 * sd, mu + 12 * sd
    expected, _ = integrate.quad(lambda y: gain(y) * stats.norm.pdf(y, mu, sd), lo, hi,
                                 points=[best], limit=200)
    got = gaussian_ei(t(mu), t(sd), best, maximize).item()
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert gaussian_log_ei(t(mu), t(sd), best, maximize).item() == pytest.approx(
        math.log(expected), rel=1e-9)


def test_log_h_matches_high_precision_in_the_tail():
    mpmath.mp.dps = 60
    for u in (-1.0, -3.0, -12.0, -40.0, -1e3, -1e5, -1e9):
        exact = float(mpmath.log(mpmath.npdf(u) + u * mpmath.ncdf(u)))
        assert log_h(t(u)).item() == pytest.approx(exact, rel=1e-9), u
    u = torch.linspace(-30, 5, 2001, dtype=F64)
    assert bool((log_h(u).diff() > 0).all())  # h is increasing: no kinks at the branch joins


@pytest.mark.parametrize("maximize", [True, False])
def test_mixture_ei_matches_monte_carlo(maximize):
    mix = random_mixture(s=5, n=3, seed=1)
    best = 0.2
    draws = mix.sample(400_000, generator=torch.Generator().manual_seed(0))[..., 0]
    gain = (draws - best if maximize else best - draws).clamp_min(0)
    mc, se = gain.mean(0), gain.std(0) / math.sqrt(len(gain))
    got = score("ei", mix, best=best, maximize=maximize)
    assert bool(((got - mc).abs() < 4 * se).all()), (got, mc, se)
    assert torch.allclose(score("logei", mix, best=best, maximize=maximize), got.log())


def test_ucb_lcb_variance_epistemic_are_the_predictive_summaries():
    mix = random_mixture(seed=2)
    for beta in (0.5, 2.0):
        assert torch.allclose(score("ucb", mix, beta=beta), (mix.mean + beta * mix.stddev)[:, 0])
        assert torch.allclose(score("lcb", mix, beta=beta), (mix.mean - beta * mix.stddev)[:, 0])
    wide = random_mixture(m=3, seed=3)
    assert torch.allclose(score("variance", wide), wide.variance.sum(1))
    assert torch.allclose(score("epistemic", wide), wide.epistemic.sum(1))


def test_condition_is_the_kalman_posterior_covariance():
    m = random_members(30, 7, seed=0)

    def cov(members):
        d = (members.means - members.mean)[..., 0]
        return torch.einsum("s,si,sj->ij", members.weights, d, d)

    j = 2
    P, R = cov(m), m.aleatoric[j, 0]
    expected = P - torch.outer(P[:, j], P[j]) / (P[j, j] + R)
    after = condition(m, j)
    assert torch.allclose(cov(after), expected, atol=1e-12)
    assert torch.allclose(after.mean, m.mean)  # kriging believer: the mean is unchanged


def test_ivr_is_the_mean_variance_drop_of_the_conditioned_members():
    mix, ref = random_mixture(s=6, n=5, seed=4), random_mixture(s=6, n=9, seed=5)
    ivr = score("ivr", mix, reference=ref)
    both = members_of(mix)
    r = members_of(ref)
    joint = Members(torch.cat([both.means, r.means], 1), torch.cat([both.variances, r.variances],
                                                                   1), both.weights)
    for j in range(5):
        drop = joint.epistemic[5:] - condition(joint, j).epistemic[5:]
        assert ivr[j].item() == pytest.approx(drop.mean().item(), rel=1e-10)


def test_ivr_prefers_the_unexplored_gap():
    g = np.random.default_rng(0)
    X = np.concatenate([g.uniform(0.0, 0.3, 30), g.uniform(0.7, 1.0, 30)])[:, None]
    Y = np.sin(6 * X)
    cfg = Config().updated(**{"train.members": 6, "train.epochs": 300, "train.seed": 1,
                              "model.hidden": [32, 32], "train.patience": 300})
    sur = Surrogate(cfg).fit(X, Y)
    grid = np.linspace(0, 1, 101)[:, None]
    best = grid[int(score("ivr", sur.predict(grid)).argmax()), 0]
    assert 0.3 < best < 0.7
    picks = grid[select_batch("ivr", sur.predict, grid, 3), 0]
    assert 0.3 < picks[0] < 0.7 and len(set(picks.tolist())) == 3


@pytest.mark.parametrize("kind", ["variance", "epistemic", "ivr", "ei", "logei", "ucb", "lcb"])
def test_batches_are_distinct_and_spread(kind):
    x = np.linspace(0, 1, 200)[:, None]
    a = np.random.default_rng(0).normal(size=(16, 3))

    def predictive_fn(X):  # members: random smooth functions; noise tiny
        basis = np.stack([np.sin(3 * X[:, 0]), np.cos(5 * X[:, 0]), X[:, 0]], -1)
        return GaussianMixture((a @ basis.T)[..., None], np.full((16, len(X), 1), 1e-6))

    idx = select_batch(kind, predictive_fn, x, 5, best=0.0, maximize=True, reference=x[::7])
    assert idx.shape == (5,) and len(set(idx.tolist())) == 5
    if kind in ("variance", "epistemic", "ivr"):
        gaps = np.diff(np.sort(x[idx, 0]))
        assert gaps.min() > 0.02, x[idx, 0]  # no near-duplicates: fantasies spread the batch


def test_objective_reduces_a_field_to_the_exact_gaussian_within_mc_error():
    g = np.random.default_rng(6)
    means, var = g.normal(size=(3, 4, 1, 8)), np.full((3, 4, 1, 8), 0.5)
    field = GaussianMixture(means, var)
    m = members_of(field, objective=lambda y: y.mean((-1, -2)), draws=4000, seed=0)
    se = math.sqrt(0.5 / 8 / 4000)
    assert np.allclose(m.means[..., 0].numpy(), means.mean((-1, -2)), atol=5 * se)
    assert np.allclose(m.variances[..., 0].numpy(), 0.5 / 8, rtol=0.1)
    idx = select_batch("ei", lambda X: field, np.zeros((4, 2)), 2, objective=lambda y: y.mean(
        (-1, -2)), maximize=True)
    assert len(set(idx.tolist())) == 2


def test_errors_name_the_argument():
    mix = random_mixture()
    fn = lambda X: mix  # noqa: E731
    with pytest.raises(ConfigError, match="kind must be one of"):
        score("pi", mix)
    with pytest.raises(DataError, match="k must be"):
        select_batch("ei", fn, np.zeros((6, 2)), 7)
    with pytest.raises(DataError, match="candidates must be"):
        select_batch("ei", fn, np.zeros(6), 1)
    with pytest.raises(DataError, match="objective="):
        score("ei", random_mixture(m=2))
    with pytest.raises(DataError, match="objective must map"):
        score("ei", mix, objective=lambda y: y[..., 0, 0])
    with pytest.raises(DataError, match=r"predictive_fn\(candidates\)"):
        select_batch("ucb", fn, np.zeros((5, 2)), 1)


def test_tapered_update_is_exact_at_the_pick_and_leaves_far_points_alone():
    m = random_members(8, 5, seed=1)
    taper = t([1.0, 0.5, 0.0, 0.0, 1.0])
    plain, local = condition(m, 0), condition(m, 0, taper)
    assert torch.allclose(local.epistemic[[0, 4]], plain.epistemic[[0, 4]])
    assert torch.allclose(local.means[:, 2:4], m.means[:, 2:4])  # taper 0: untouched


def test_few_members_still_spread_a_large_batch():
    x = np.linspace(0, 1, 300)[:, None]
    a = np.random.default_rng(2).normal(size=(3, 4))  # 3 members: covariance of rank 2

    def predictive_fn(X):
        f = np.stack([np.sin(3 * X[:, 0]), np.cos(7 * X[:, 0]), X[:, 0], X[:, 0] ** 2], -1)
        return GaussianMixture((a @ f.T)[..., None], np.full((3, len(X), 1), 1e-8))

    idx = select_batch("epistemic", predictive_fn, x, 10)
    assert np.diff(np.sort(x[idx, 0])).min() > 0.01, np.sort(x[idx, 0])


# -- every predictive class through the per-member view -----------------------------------------
def _contract_cases():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[1] / "distributions" / "test_contract.py"
    spec = importlib.util.spec_from_file_location("contract_cases", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.CASES


CASES = _contract_cases()


@pytest.mark.parametrize("name", sorted(CASES))
def test_scores_of_every_predictive_class_use_its_members(name):
    pred = CASES[name]()
    view = pred.members()
    torch.testing.assert_close(score("epistemic", pred), pred.epistemic.sum(-1))
    torch.testing.assert_close(score("variance", pred), (pred.aleatoric + pred.epistemic).sum(-1))
    first = lambda y: y[..., 0]  # noqa: E731 - a scalar objective of the outputs
    ei = score("ei", pred, best=0.0, objective=first, seed=0)
    m = members_of(pred, first, seed=0)  # moment-matched members of the objective
    exact = mixture_ei(m.means[..., 0], m.variances[..., 0].sqrt(), view.weights, 0.0)
    torch.testing.assert_close(ei, exact)
    picks = select_batch("epistemic", lambda X: pred, np.zeros((pred.shape[0], 1)), 2)
    assert len(set(picks.tolist())) == 2


def test_mdn_members_are_members_not_components():
    """The view of a mixture-density ensemble has one weight per member, not per component."""
    pred = CASES["mdn_mixture"]()
    view = pred.members()
    assert view.weights.shape == (pred.num_members,) == (view.means.shape[0],)
    assert pred.num_members < pred.num_components

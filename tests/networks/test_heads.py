"""Density heads: MDN and quantile heads against closed forms, quadrature and scoringrules."""

import numpy as np
import pytest
import scoringrules as sr
import torch
from scipy import integrate, stats

from choral.config import Config, ModelConfig
from choral.distributions import GaussianMixture
from choral.errors import ConfigError, DataError
from choral.evaluation.metrics import crps, evaluate, interval_score, nll
from choral.networks import make_head
from choral.networks.heads import GaussianHead, MDNHead, QuantileHead, beta_nll, gaussian_nll


def _mdn_out(s=3, k=4, n=5, m=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(s, n, 3 * k * m, generator=g, dtype=torch.float64) * 2


def test_make_head_follows_config():
    assert isinstance(make_head(ModelConfig()), GaussianHead)
    mdn = make_head(ModelConfig(head="mdn", components=3))
    assert isinstance(mdn, MDNHead) and mdn.channels == 9
    q = make_head(ModelConfig(head="quantile", quantile_levels=[0.1, 0.5, 0.9]))
    assert isinstance(q, QuantileHead) and q.channels == 3
    assert q.levels.tolist() == [0.1, 0.5, 0.9]
    with pytest.raises(Exception, match="model.head"):
        Config.from_dict({"model": {"head": "flow"}})


def test_mdn_log_prob_integrates_to_one_and_matches_loss():
    head = MDNHead(components=4)
    out = _mdn_out()
    grid = torch.linspace(-40, 40, 40_001, dtype=torch.float64)
    for i in range(out.shape[1]):  # sample i's predictive repeated on every grid point
        rep = head.predictive(out[:, i:i + 1].expand(3, len(grid), 24))
        dens = rep.log_prob(grid[:, None].expand(len(grid), 2)).exp()
        mass = integrate.trapezoid(dens.numpy(), grid.numpy(), axis=0)
        np.testing.assert_allclose(mass, 1.0, atol=1e-6)
    # the loss of one member is minus its mean log density, computed by the predictive
    y = torch.randn(1, 5, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for i in range(3):
        one = head.predictive(out[i:i + 1])
        assert head.loss(out[i:i + 1], y).item() == pytest.approx(-one.log_prob(y[0]).mean()
                                                                 .item(), rel=1e-12)


def test_mdn_predictive_scores_match_scoringrules():
    head, out = MDNHead(components=4), _mdn_out(seed=2)
    pred = head.predictive(out)
    y = pred.sample(1, generator=torch.Generator().manual_seed(3))[0]
    m = pred.component_means.movedim(0, -1).numpy()
    sd = pred.component_variances.sqrt().movedim(0, -1).numpy()
    w = pred.component_weights.movedim(0, -1).numpy()
    np.testing.assert_allclose(pred.crps(y).numpy(), sr.crps_mixnorm(y.numpy(), m, sd, w),
                               rtol=1e-9)
    np.testing.assert_allclose(pred.log_prob(y).numpy(), -sr.logs_mixnorm(y.numpy(), m, sd, w),
                               rtol=1e-9)
    lo, hi = pred.interval(0.9)
    ref = sr.interval_score(y.numpy(), lo.numpy(), hi.numpy(), 0.1).mean()
    assert interval_score(pred, y, 0.9) == pytest.approx(ref, rel=1e-12)
    assert nll(pred, y) == pytest.approx(sr.logs_mixnorm(y.numpy(), m, sd, w).mean(), rel=1e-9)
    assert crps(pred, y) == pytest.approx(sr.crps_mixnorm(y.numpy(), m, sd, w).mean(), rel=1e-9)


def test_mdn_member_moments_against_one_mixture_per_member():
    head, out = MDNHead(components=3), _mdn_out(s=4, k=3, seed=4)
    pred = head.predictive(out)
    assert pred.num_members == 4 and pred.member_means.shape == (4, 5, 2)
    for i in range(4):
        alone = head.predictive(out[i:i + 1])
        torch.testing.assert_close(pred.member_means[i], alone.mean, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(pred.member_variances[i], alone.variance, rtol=1e-12,
                                   atol=1e-12)
    # law of total variance against the flat s*K mixture: E[var + mu^2] - mean^2
    w, mu, var = pred.component_weights, pred.component_means, pred.component_variances
    total = (w * (var + mu**2)).sum(0) - pred.mean**2
    torch.testing.assert_close(pred.variance, total, rtol=1e-10, atol=1e-12)
    means = torch.stack([head.predictive(out[i:i + 1]).mean for i in range(4)])
    torch.testing.assert_close(pred.epistemic, means.var(0, unbiased=False), rtol=1e-10,
                               atol=1e-12)


def test_mdn_samples_follow_the_mixture_cdf():
    head = MDNHead(components=3)
    out = _mdn_out(s=2, k=3, n=1, m=1, seed=5).expand(2, 4000, 9)
    pred = head.predictive(out)
    y = pred.sample(1, generator=torch.Generator().manual_seed(0))[0]
    u = pred.cdf(y).numpy().ravel()
    assert stats.kstest(u, "uniform").pvalue > 1e-3
    # a wrong mixture (uniform weights instead of the predicted ones) is rejected
    flat = GaussianMixture(pred.component_means, pred.component_variances)
    assert stats.kstest(flat.cdf(y).numpy().ravel(), "uniform").pvalue < 1e-3


def test_per_sample_weights_are_validated():
    with pytest.raises(DataError, match="sum to 1 over axis 0"):
        GaussianMixture(np.zeros((2, 3, 1)), np.ones((2, 3, 1)), np.full((2, 3, 1), 0.4))
    with pytest.raises(DataError, match="members must be a positive integer dividing"):
        GaussianMixture(np.zeros((4, 3, 1)), np.ones((4, 3, 1)), members=3)


def test_quantile_head_never_crosses():
    head = QuantileHead(9, min_gap=1e-3)
    g = torch.Generator().manual_seed(0)
    out = torch.randn(3, 50, 9 * 2, 6, generator=g) * 30  # a tiny field: m = 2 channels, grid 6
    q = head.quantiles(out)
    assert q.shape == (3, 50, 9, 2, 6)
    assert bool((q.diff(dim=2) > 0.9e-3).all())  # in float32, with quantiles near 100
    pred = head.predictive(out)
    p = torch.linspace(0.001, 0.999, 101, dtype=torch.float64)
    qs = torch.stack([pred.quantile(float(t)) for t in p])
    assert bool((qs.diff(dim=0) > 0).all())


def test_quantile_head_loss_is_the_pinball_loss():
    levels = [0.1, 0.5, 0.9]
    head = QuantileHead(levels, min_gap=0.0)
    g = torch.Generator().manual_seed(1)
    out, y = torch.randn(2, 7, 3, generator=g), torch.randn(2, 7, 1, generator=g)
    q = head.quantiles(out).numpy()[..., 0]  # (s, n, L)
    yy = y.numpy()
    ref = np.mean([[np.mean([max(t * (yy[i, j, 0] - q[i, j, k]), (t - 1) * (yy[i, j, 0]
                                                                            - q[i, j, k]))
                             for k, t in enumerate(levels)]) for j in range(7)] for i in range(2)],
                  axis=1)
    np.testing.assert_allclose(head.loss(out, y).numpy(), ref, rtol=1e-5)
    # the pinball loss is minimised by the sample quantiles: a fitted constant finds them
    y = torch.randn(1, 5000, 1, generator=g, dtype=torch.float64)
    raw = torch.zeros(1, 1, 3, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([raw], lr=0.1)
    for _ in range(300):
        opt.zero_grad()
        head.loss(raw.expand(1, 5000, 3), y).sum().backward()
        opt.step()
    fitted = head.quantiles(raw.detach()).ravel().numpy()
    np.testing.assert_allclose(fitted, np.quantile(y.numpy(), levels), atol=0.01)


def test_quantile_predictive_scores_match_scoringrules_and_evaluate_runs():
    head = QuantileHead(19)
    out = torch.randn(3, 40, 19, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    pred = head.predictive(out)
    y = pred.sample(1, generator=torch.Generator().manual_seed(3))[0]
    lo, hi = pred.interval(0.9)
    ref = sr.interval_score(y.numpy(), lo.numpy(), hi.numpy(), 0.1).mean()
    assert interval_score(pred, y, 0.9) == pytest.approx(ref, rel=1e-12)
    # the 5 % and 95 % quantiles are knots of the 19-level grid: the interval is exact
    torch.testing.assert_close(lo, pred.quantiles[..., 0])
    torch.testing.assert_close(hi, pred.quantiles[..., -1])
    scores = evaluate(pred, y)
    assert all(np.isfinite(v) for v in scores.values())
    assert scores["nll"] == pytest.approx(-pred.log_prob(y).mean().item())


def test_quantile_crps_matches_scoringrules_quantile_score():
    head = QuantileHead(9)
    out = torch.randn(2, 30, 9, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    for combine in ("vincentise", "mixture"):
        head.combine = combine
        pred = head.predictive(out)
        y = pred.sample(1, generator=torch.Generator().manual_seed(5))[0]
        taus = (np.arange(99) + 0.5) / 99
        fct = torch.stack([pred.quantile(float(t)) for t in taus], dim=-1).numpy()
        ref = sr.crps_quantile(y.numpy(), fct, taus)
        np.testing.assert_allclose(pred.crps(y, levels=99).numpy(), ref, rtol=1e-9)


def test_mixture_crps_pair_term_is_the_same_in_blocks():
    from choral.distributions.mixture import _pair_term  # noqa: PLC2701 - its own test

    pred = MDNHead(components=3).predictive(_mdn_out(s=2, k=3, seed=6))
    args = pred.component_means, pred.component_variances, pred.component_weights
    torch.testing.assert_close(_pair_term(*args, budget=1), _pair_term(*args), rtol=1e-12,
                               atol=1e-12)


def _gaussian_params(seed=0, shape=(3, 5, 2)):
    g = torch.Generator().manual_seed(seed)
    mean = torch.randn(shape, generator=g, dtype=torch.float64).requires_grad_(True)
    var = (torch.rand(shape, generator=g, dtype=torch.float64) * 3 + 0.1).requires_grad_(True)
    y = torch.randn(shape, generator=g, dtype=torch.float64)
    return mean, var, y


def _grads(loss, *inputs):
    return torch.autograd.grad(loss.sum(), inputs)


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0])
def test_beta_nll_value_is_the_nll_and_gradient_the_weighted_one(beta):
    """Closed forms: d NLL / d mean = (mean - y) / var, d NLL / d var = (1/var - (y-mean)^2/var^2)
    / 2; the beta-NLL's are these times var**beta, its value is the NLL's (and at beta = 0
    the two are the same function)."""
    mean, var, y = _gaussian_params()
    loss = beta_nll(mean, var, y, beta)
    torch.testing.assert_close(loss, gaussian_nll(mean, var, y), rtol=0, atol=1e-15)
    g_mean, g_var = _grads(loss, mean, var)
    w = var.detach() ** beta
    torch.testing.assert_close(g_mean, w * (mean - y).detach() / var.detach())
    torch.testing.assert_close(g_var, w * 0.5 * (1 / var - (y - mean) ** 2 / var**2).detach())


def test_beta_nll_at_one_gives_the_mean_the_squared_errors_gradient():
    mean, var, y = _gaussian_params(seed=1)
    (g_beta,) = _grads(beta_nll(mean, var, y, 1.0), mean)
    (g_mse,) = _grads(0.5 * (mean - y) ** 2, mean)
    torch.testing.assert_close(g_beta, g_mse)


def test_gaussian_head_beta_changes_the_gradient_not_the_nll():
    g = torch.Generator().manual_seed(2)
    out = torch.randn(2, 6, 4, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randn(2, 6, 2, generator=g, dtype=torch.float64)
    plain, weighted = GaussianHead(1e-6), GaussianHead(1e-6, beta=0.5)
    torch.testing.assert_close(weighted.loss(out, y), plain.loss(out, y))
    torch.testing.assert_close(weighted.nll(out, y), plain.loss(out, y))
    (g_plain,) = _grads(plain.loss(out, y), out)
    (g_weighted,) = _grads(weighted.loss(out, y), out)
    (g_nll,) = _grads(weighted.nll(out, y), out)
    torch.testing.assert_close(g_nll, g_plain)
    assert not torch.allclose(g_weighted, g_plain)
    assert make_head(ModelConfig(), beta=0.5).beta == 0.5
    with pytest.raises(ConfigError, match="train.nll_beta"):
        make_head(ModelConfig(head="mdn"), beta=0.5)

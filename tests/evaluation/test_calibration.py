"""Post-hoc calibration: conformal coverage, isotonic PIT uniformity, variance scaling, storage."""

import json
import math

import numpy as np
import pytest
import torch
from scipy import stats

from choral.config import Config
from choral.distributions import GaussianMixture, QuantilePredictive
from choral.errors import ConfigError, DataError, ModelFileError
from choral.evaluation.calibration import (
    CQR,
    Conformal,
    ConformalPredictive,
    Isotonic,
    PitScale,
    Recalibrated,
    Scale,
    calibrator_from_dict,
    cross_fit,
    fit_calibrator,
    scale_factor,
)
from choral.evaluation.metrics import pit_calibration_errors
from choral.simulators import simulate
from choral.surrogate import Surrogate

F64 = torch.float64


def gen(seed):
    return torch.Generator().manual_seed(seed)


def mixture(n, m, seed, spread=1.0):
    """A 3-member mixture (n, m) with member means spread about 0 and unit-ish variances."""
    g = gen(seed)
    means = spread * torch.randn(3, n, m, generator=g, dtype=F64)
    variances = 0.5 + torch.rand(3, n, m, generator=g, dtype=F64)
    return GaussianMixture(means, variances)


def miscalibrated(n, m, seed):
    """Predictive N(x, 0.8^2) while the truth is y = x + 0.3 + 1.5 * skewed noise (per column).

    (Not more overconfident: PIT values that round to exactly 0 or 1 carry no information.)
    """
    rng = np.random.default_rng(seed)
    x = torch.as_tensor(rng.standard_normal((n, m)))
    noise = torch.as_tensor(rng.gamma(2.0, 1.0, (n, m)) - 2.0)
    y = x + 0.3 + 1.5 * noise / math.sqrt(2.0)
    return GaussianMixture(x[None], torch.full((1, n, m), 0.64, dtype=F64)), y


# ------------------------------------------------------------------------------------ conformal
def test_conformal_coverage_is_at_least_nominal_over_many_exchangeable_splits():
    # 400 columns = 400 independent calibration/test experiments on heteroscedastic data whose
    # predicted std is wrong by a factor; per column: 100 calibration rows and 1000 test rows
    torch.manual_seed(0)
    n_cal, n_test, runs = 100, 1000, 400
    pred, y = miscalibrated(n_cal + n_test, runs, seed=1)
    cal_pred, test_pred = pred.select(slice(None, n_cal)), pred.select(slice(n_cal, None))
    conf = Conformal.fit(cal_pred, y[:n_cal], levels=(0.5, 0.9))
    out = conf.apply(test_pred)
    for level in (0.5, 0.9):
        lo, hi = out.interval(level)
        covered = ((y[n_cal:] >= lo) & (y[n_cal:] <= hi)).double().mean(0)  # (runs,)
        mean, se = covered.mean().item(), covered.std().item() / math.sqrt(runs)
        # theory: level <= E[coverage] <= level + 1/(n_cal + 1)
        assert mean >= level - 3 * se, (level, mean, se)
        assert mean <= level + 1 / (n_cal + 1) + 3 * se, (level, mean, se)
    base_cov = ((y[n_cal:] >= test_pred.interval(0.9)[0])
                & (y[n_cal:] <= test_pred.interval(0.9)[1])).double().mean().item()
    assert base_cov < 0.8  # the uncalibrated intervals were far off: the test has teeth


def test_conformal_quantile_is_the_finite_sample_order_statistic():
    # scores 1..9 (n = 9): level 0.5 -> ceil(10 * 0.5) = 5th smallest; 0.95 -> 10 > 9 -> inf
    y = torch.arange(1.0, 10.0, dtype=F64)[:, None]
    pred = GaussianMixture(torch.zeros(1, 9, 1), torch.ones(1, 9, 1))
    conf = Conformal.fit(pred, y, levels=(0.5, 0.8, 0.95))
    assert conf.q[0.5].item() == 5.0 and conf.q[0.8].item() == 8.0
    assert math.isinf(conf.q[0.95].item())


def test_conformal_is_per_cell_for_fields():
    # a field whose cells have very different error scales: each cell gets its own quantile
    g = gen(3)
    n = 400
    scale = torch.tensor([0.5, 1.0, 2.0, 4.0], dtype=F64).reshape(1, 1, 2, 2)
    y = scale * torch.randn(n, 1, 2, 2, generator=g, dtype=F64)
    pred = GaussianMixture(torch.zeros(1, n, 1, 2, 2), torch.ones(1, n, 1, 2, 2))
    conf = Conformal.fit(pred, y, levels=(0.9,))
    assert conf.q[0.9].shape == (1, 2, 2)
    expected = scale[0] * stats.norm.ppf(0.95)
    torch.testing.assert_close(conf.q[0.9], expected, rtol=0.15, atol=0)


def test_conformal_changes_intervals_only_and_names_missing_levels():
    pred = mixture(50, 2, seed=4)
    y = pred.sample(1, gen(5))[0]
    out = Conformal.fit(pred, y, levels=(0.9,)).apply(pred)
    assert isinstance(out, ConformalPredictive)
    torch.testing.assert_close(out.log_prob(y), pred.log_prob(y))
    torch.testing.assert_close(out.mean, pred.mean)
    with pytest.raises(DataError, match=r"level 0.8 has no conformal quantile.*\[0.9\]"):
        out.interval(0.8)


# ------------------------------------------------------------------------------------ isotonic
def test_isotonic_makes_the_pit_of_a_miscalibrated_model_uniform():
    pred, y = miscalibrated(4000, 1, seed=6)
    cal_pred, test_pred = pred.select(slice(None, 2000)), pred.select(slice(2000, None))
    y_cal, y_test = y[:2000], y[2000:]
    before = stats.kstest(test_pred.cdf(y_test).reshape(-1).numpy(), "uniform").pvalue
    assert before < 1e-10  # biased, overconfident and skewed: clearly not uniform
    recal = Isotonic.fit(cal_pred, y_cal).apply(test_pred)
    after = stats.kstest(recal.cdf(y_test).reshape(-1).numpy(), "uniform").pvalue
    assert after > 0.01, after


def test_recalibrated_quantile_inverts_cdf_and_density_is_its_derivative():
    pred, y = miscalibrated(600, 2, seed=7)
    recal = Isotonic.fit(pred, y, n_knots=50).apply(pred)
    p = torch.full(pred.shape, 0.3, dtype=F64)
    torch.testing.assert_close(recal.cdf(recal.quantile(p)), p, atol=1e-8, rtol=0)
    # d/dy R(F(y)) by central differences equals exp(log_prob) away from the knots
    h = 1e-6
    yq = recal.quantile(0.37)
    numeric = (recal.cdf(yq + h) - recal.cdf(yq - h)) / (2 * h)
    torch.testing.assert_close(numeric, recal.log_prob(yq).exp(), rtol=1e-4, atol=1e-8)


def test_recalibrated_moments_match_a_known_recalibration():
    # R(u) = u (identity knots) leaves the distribution unchanged: moments by quadrature agree
    pred = mixture(5, 1, seed=8)
    same = Recalibrated(pred, Isotonic([[0.0, 0.25, 0.5, 0.75, 1.0]]))
    assert ((same.mean - pred.mean).abs() < 0.01 * pred.stddev).all()  # midpoint rule, 64 levels
    torch.testing.assert_close(same.variance, pred.variance, rtol=0.05, atol=0)
    lo, hi = same.interval(0.9)
    torch.testing.assert_close(lo, pred.interval(0.9)[0], atol=1e-8, rtol=0)


# --------------------------------------------------------------------------------------- scale
def test_scale_recovers_a_known_variance_factor_per_output():
    pred = mixture(20000, 2, seed=9)
    c_true = torch.tensor([0.5, 3.0], dtype=F64)
    draw = pred.sample(1, gen(10))[0]
    y = pred.mean + c_true * (draw - pred.mean)  # exactly the scaled predictive
    cal = Scale.fit(pred, y)
    torch.testing.assert_close(cal.factor, c_true, rtol=0.03, atol=0)
    scaled = cal.apply(pred)
    torch.testing.assert_close(scaled.mean, pred.mean)
    torch.testing.assert_close(scaled.variance, cal.factor**2 * pred.variance)
    # component means m + c (mu_i - m), variances c^2 var_i
    c = cal.factor
    torch.testing.assert_close(scaled.member_means, pred.mean + c * (pred.member_means - pred.mean))
    torch.testing.assert_close(scaled.member_variances, c**2 * pred.member_variances)


def test_scale_is_per_channel_for_fields():
    g = gen(11)
    y = torch.randn(300, 2, 4, 4, generator=g, dtype=F64) * torch.tensor([1.0, 2.0],
                                                                          dtype=F64)[:, None, None]
    pred = GaussianMixture(torch.zeros(1, 300, 2, 4, 4), torch.ones(1, 300, 2, 4, 4))
    cal = Scale.fit(pred, y)
    torch.testing.assert_close(cal.factor, torch.tensor([1.0, 2.0], dtype=F64), rtol=0.05, atol=0)
    assert tuple(cal.apply(pred).shape) == (300, 2, 4, 4)


# ------------------------------------------------------------------------- storage and errors
@pytest.mark.parametrize("method", ["scale", "isotonic", "conformal"])
def test_every_calibrator_survives_json(method):
    pred, y = miscalibrated(200, 2, seed=12)
    cal = fit_calibrator(method, pred, y)
    back = calibrator_from_dict(json.loads(json.dumps(cal.to_dict())))
    a, b = cal.apply(pred), back.apply(pred)
    for x, z in zip(a.interval(0.9), b.interval(0.9), strict=True):
        torch.testing.assert_close(x, z)


def test_calibration_survives_surrogate_save_and_load(tmp_path):
    X, Y = simulate("branin", 160, seed=0)
    Xc, Yc = simulate("branin", 80, seed=1)
    cfg = Config().updated(**{"train.members": 2, "train.epochs": 5, "train.dtype": "float64"})
    model = Surrogate(cfg).fit(X, Y).calibrate(Xc, Yc, "scale")
    factor = model.calibrator.factor[0]
    raw, cal = model.predict(Xc, calibrated=False), model.predict(Xc)
    torch.testing.assert_close(cal.stddev, factor * raw.stddev)
    model.save(tmp_path / "m")
    loaded = Surrogate.load(tmp_path / "m")
    torch.testing.assert_close(loaded.predict(Xc).stddev, cal.stddev)
    loaded.calibrate(Xc, Yc, "conformal")
    lo, hi = loaded.predict(Xc).interval(0.9)
    inside = ((torch.as_tensor(Yc) >= lo) & (torch.as_tensor(Yc) <= hi)).double().mean().item()
    assert inside >= 0.9  # on its own calibration set: at least ceil((n+1) 0.9) / n
    refit = loaded.fit(X, Y)  # refitting replaces it with fit's own calibration
    assert refit.calibrator.method == refit.metrics["calibration"]["method"] == "pit_scale"


def test_errors_name_what_is_wrong():
    pred = mixture(10, 2, seed=13)
    with pytest.raises(ConfigError,
                       match="method must be one of scale, pit_scale, isotonic, conformal, cqr"):
        fit_calibrator("platt", pred, pred.mean)
    with pytest.raises(DataError, match=r"shape \(10, 2\).*got \(10, 3\)"):
        fit_calibrator("scale", pred, torch.zeros(10, 3))
    cal = fit_calibrator("isotonic", pred, pred.mean)
    with pytest.raises(DataError, match=r"fitted for outputs of shape \(2,\); this predictive "
                                        r"has \(1,\)"):
        cal.apply(mixture(10, 1, seed=14))
    with pytest.raises(ModelFileError, match="must name a method"):
        calibrator_from_dict({"method": "nope"})
    with pytest.raises(ModelFileError, match="not a valid conformal calibration"):
        calibrator_from_dict({"method": "conformal", "quantiles": []})


def test_scale_fit_matches_numpy_hand_computation():
    pred = mixture(30, 1, seed=15)
    y = pred.sample(1, gen(16))[0]
    z2 = ((y - pred.mean) ** 2 / pred.variance).numpy()
    assert Scale.fit(pred, y).factor.item() == pytest.approx(np.sqrt(z2.mean()), rel=1e-12)


def test_field_surrogate_calibrates_per_cell_and_flags_shifted_fields(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 1, 12, 10))
    Y = np.concatenate([np.cumsum(X, axis=-1) / 4, X ** 2], axis=1)
    cfg = Config.from_dict({
        "model": {"backbone": "unet", "activation": "gelu", "unet": {"depth": 2, "width": 4}},
        "train": {"members": 2, "epochs": 3, "batch_size": 8, "dtype": "float64",
                  "val_fraction": 0.25}})
    model = Surrogate(cfg).fit(X[:30], Y[:30]).calibrate(X[30:], Y[30:], "conformal")
    assert tuple(model.calibrator.q[0.9].shape) == (2, 12, 10)
    model.save(tmp_path / "m")
    loaded = Surrogate.load(tmp_path / "m")
    pred = loaded.predict(X[30:])
    lo, hi = pred.interval(0.9)
    slack = 1e-9 * pred.stddev  # the largest score lies on the boundary, up to rounding
    inside = (torch.as_tensor(Y[30:]) >= lo - slack) & (torch.as_tensor(Y[30:]) <= hi + slack)
    assert bool(inside.all())  # n = 10: ceil(11 * 0.9) = 10, q is the largest score per cell
    _, flag_in = loaded.ood(X[30:])
    _, flag_out = loaded.ood(5.0 * X[30:] + 3.0)
    assert flag_out.mean() > flag_in.mean() and flag_out.mean() == 1.0


def _two_member_pair():
    """One sample with two outputs whose two members disagree: (s, n, p) = (2, 1, 2)."""
    means = torch.tensor([[[-1.5, 1.0]], [[1.5, -1.0]]], dtype=torch.float64)
    return GaussianMixture(means, torch.full((2, 1, 2), 0.5, dtype=torch.float64))


def _gauss_legendre(breaks, nodes=48):
    """Nodes and weights of Gauss-Legendre rules on each interval between ``breaks``."""
    x, w = np.polynomial.legendre.leggauss(nodes)
    pairs = [((b - a) / 2 * x + (a + b) / 2, (b - a) / 2 * w)
             for a, b in zip(breaks[:-1], breaks[1:], strict=True)]
    return (torch.tensor(np.concatenate([p[0] for p in pairs])),
            torch.tensor(np.concatenate([p[1] for p in pairs])))


def test_recalibrated_joint_density_integrates_to_one_with_recalibrated_marginals():
    """Change of variables through T = F^-1 R^-1 F keeps a proper joint density whose
    marginals are the recalibrated per-value densities. 2-D Gauss-Legendre quadrature, split
    where R' jumps (at the base quantiles of the knots), so the rule is exact to rounding."""
    base = _two_member_pair()
    knots = [[0.0, 0.1, 0.3, 1.0], [0.0, 0.5, 0.9, 1.0]]
    rec = Isotonic(knots).apply(base)
    axes = []
    for j in range(2):
        inner = [base.quantile(torch.full((1, 2), k, dtype=torch.float64))[0, j].item()
                 for k in knots[j][1:-1]]
        axes.append(_gauss_legendre([-14.0, *sorted(inner), 14.0]))
    (n1, w1), (n2, w2) = axes
    y1, y2 = torch.meshgrid(n1, n2, indexing="ij")
    pairs = torch.stack([y1.reshape(-1), y2.reshape(-1)], 1)  # every grid point as a sample
    many = rec.select(torch.zeros(len(pairs), dtype=torch.long))
    joint = many.log_prob(pairs, joint=True).exp().reshape(len(n1), len(n2))
    assert abs((w1[:, None] * w2[None] * joint).sum().item() - 1.0) < 1e-9
    marginal = (joint * w2[None]).sum(1)  # the density of y1
    rows = rec.select(torch.zeros(len(n1), dtype=torch.long))
    per_value = rows.log_prob(torch.stack([n1, torch.zeros_like(n1)], 1)).exp()[:, 0]
    torch.testing.assert_close(marginal, per_value, atol=1e-9, rtol=0)
    # With R the identity the joint is the base's member-coherent joint, exactly.
    same = Isotonic([[0.0, 1.0], [0.0, 1.0]]).apply(base)
    y = torch.tensor([[0.3, -0.2]], dtype=torch.float64)
    torch.testing.assert_close(same.log_prob(y, joint=True), base.log_prob(y, joint=True))


def test_pit_scale_recovers_the_factor_and_ignores_a_few_outliers():
    g = gen(21)
    y = 2.0 * torch.randn(3000, 2, generator=g, dtype=F64)  # true sd 2, predicted sd 1
    pred = GaussianMixture(torch.zeros(1, 3000, 2), torch.ones(1, 3000, 2))
    step = math.log(50 * 50) / 400  # the grid's spacing in log c
    fitted = PitScale.fit(pred, y).factor
    assert (fitted.log() - math.log(2.0)).abs().max() < 0.05 + step
    y[:15] = 1e4  # 0.5% wild targets: moment matching explodes, the PIT match barely moves
    assert Scale.fit(pred, y).factor.min() > 100
    assert (PitScale.fit(pred, y).factor.log() - math.log(2.0)).abs().max() < 0.07 + step
    back = calibrator_from_dict(json.loads(json.dumps(PitScale.fit(pred, y).to_dict())))
    assert isinstance(back, PitScale) and torch.equal(back.factor, PitScale.fit(pred, y).factor)


def _quantile_pred(n, seed):
    """Members' quantiles at 9 levels of N(0, 1) (too narrow for the sd-2 targets below)."""
    levels = torch.arange(1, 10, dtype=F64) / 10
    q = torch.as_tensor(stats.norm.ppf(levels.numpy()), dtype=F64)
    shift = 0.1 * torch.randn(2, n, 1, 1, generator=gen(seed), dtype=F64)
    return QuantilePredictive(levels, (q.reshape(1, 1, 1, -1) + shift))


def test_cqr_is_the_hand_computed_conformal_shift_and_covers_new_samples():
    cal, test = _quantile_pred(200, 1), _quantile_pred(4000, 2)
    y_cal = 2.0 * torch.randn(200, 1, generator=gen(3), dtype=F64)
    y_test = 2.0 * torch.randn(4000, 1, generator=gen(4), dtype=F64)
    cqr = CQR.fit(cal, y_cal, levels=(0.8,))
    lo, hi = cal.interval(0.8)
    scores = torch.maximum(lo - y_cal, y_cal - hi).reshape(-1).sort().values
    assert cqr.q[0.8].item() == scores[math.ceil(201 * 0.8) - 1].item()  # the 161st smallest
    out = cqr.apply(test)
    lo_t, hi_t = out.interval(0.8)
    base_lo, base_hi = test.interval(0.8)
    torch.testing.assert_close(lo_t, base_lo - cqr.q[0.8])
    torch.testing.assert_close(hi_t, base_hi + cqr.q[0.8])
    inside = ((y_test >= lo_t) & (y_test <= hi_t)).double().mean().item()
    assert base_hi.mean() - base_lo.mean() < 2 * 1.3  # the base interval under-covers...
    assert abs(inside - 0.8) < 0.035  # ...CQR's covers (>= 0.8 in expectation, < 0.8 + 1/201)
    back = calibrator_from_dict(json.loads(json.dumps(cqr.to_dict())))
    assert isinstance(back, CQR) and torch.equal(back.apply(test).interval(0.8)[0], lo_t)


def test_cqr_narrowed_past_the_midpoint_collapses_to_it():
    pred = _quantile_pred(50, 5)
    cqr = CQR({0.8: torch.full((1,), -10.0)})
    lo, hi = cqr.apply(pred).interval(0.8)
    base_lo, base_hi = pred.interval(0.8)
    torch.testing.assert_close(lo, (base_lo + base_hi) / 2)
    torch.testing.assert_close(hi, lo)


def test_cross_fit_scores_each_fold_with_a_calibration_fitted_without_it():
    g = gen(6)
    y = 0.5 * torch.randn(60, 1, generator=g, dtype=F64)
    pred = GaussianMixture(torch.zeros(1, 60, 1), torch.ones(1, 60, 1))
    res = cross_fit("scale", pred, y, folds=3, seed=7)
    perm = torch.randperm(60, generator=torch.Generator().manual_seed(7))
    nll_after = 0.0
    for held in perm.tensor_split(3):
        kept = perm[~torch.isin(perm, held)]
        c = torch.sqrt((y[kept] ** 2).mean())  # moment matching on the other folds only
        z = y[held] / c
        nll_after += (0.5 * math.log(2 * math.pi) + torch.log(c) + 0.5 * z**2).sum().item() / 60
    assert res["after"]["nll"] == pytest.approx(nll_after, rel=1e-12)
    assert res["before"]["coverage_90"] == 1.0 and res["after"]["coverage_90"] < 1.0
    assert cross_fit("scale", pred.select([0, 1, 2]), y[:3]) == {}  # too few to cross-fit


def test_scale_factor_is_the_spread_of_scale_calibrations_only():
    pred, y = mixture(40, 2, seed=9), mixture(40, 2, seed=10).mean
    for method in ("scale", "pit_scale"):
        cal = fit_calibrator(method, pred, y)
        assert torch.equal(scale_factor(cal, (2,)), cal.factor)
    assert scale_factor(fit_calibrator("conformal", pred, y), (2,)) is None
    assert scale_factor(None, (2,)) is None
    field = Scale([2.0, 3.0])  # per channel: shaped to broadcast against (n, 2, 4, 5)
    assert scale_factor(field, (2, 4, 5)).shape == (2, 1, 1)
    with pytest.raises(DataError, match=r"fitted for outputs of shape \(2,\)"):
        scale_factor(field, (3, 4, 5))


def test_pit_scale_is_per_cell_on_fields():
    """Cells whose errors are half the predicted spread get c ~ 1/2, the others c ~ 2."""
    n = 4000
    g = gen(11)
    pred = GaussianMixture(torch.zeros(1, n, 1, 2, 3), torch.ones(1, n, 1, 2, 3))
    sd = torch.tensor([[[0.5, 2.0, 0.5], [2.0, 0.5, 2.0]]], dtype=F64)
    y = sd * torch.randn(n, 1, 2, 3, generator=g, dtype=F64)
    cal = PitScale.fit(pred, y)
    assert cal.factor.shape == (1, 2, 3)
    torch.testing.assert_close(cal.factor, sd, rtol=0.08, atol=0)
    out = cal.apply(pred.select(torch.arange(10)))
    torch.testing.assert_close(out.stddev, cal.factor.expand(10, 1, 2, 3))


def _exhaustive_pit_error(pred, y):
    """The smallest PIT calibration error per value over all 401 factors (the full search)."""
    m = pred.mean
    errors = torch.stack([pit_calibration_errors(pred.cdf(m + (y - m) / c).flatten(1).T)
                          for c in PitScale.grid])
    return errors.min(0).values


@pytest.mark.parametrize(("n", "spread", "tails"), [(30, 0.3, False), (200, 3.0, True),
                                                    (1000, 1.0, False), (60, 20.0, True)])
def test_pit_scale_coarse_to_fine_finds_the_full_search_minimum(n, spread, tails):
    """Every value's factor scores the smallest error of the exhaustive 401-factor search."""
    g = gen(n)
    s, m = 3, 40
    means = torch.randn(s, n, m, generator=g, dtype=F64)
    sd = torch.exp(torch.randn(1, 1, m, generator=g, dtype=F64)) * spread  # per-value errors
    noise = torch.distributions.StudentT(2.0 if tails else 1e6).sample((n, m))
    y = means.mean(0) + sd[0] * noise.to(F64)
    pred = GaussianMixture(means, torch.full((s, n, m), 0.5, dtype=F64))
    factor = PitScale.fit(pred, y).factor
    mean = pred.mean
    chosen = pit_calibration_errors(pred.cdf(mean + (y - mean) / factor).flatten(1).T)
    torch.testing.assert_close(chosen, _exhaustive_pit_error(pred, y), rtol=0, atol=0)

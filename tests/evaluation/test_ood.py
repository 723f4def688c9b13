"""Out-of-distribution scores: density, input range, false-alarm rate, shifted inputs,
persistence."""

import json
import math

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from choral.config import Config
from choral.errors import DataError
from choral.evaluation.ood import OODDetector, pooled_features
from choral.simulators.analytic import BOREHOLE
from choral.surrogate import Surrogate


def test_log_density_is_a_mean_of_gaussian_kernels():
    rng = np.random.default_rng(0)
    train = rng.normal(size=(50, 3)) * [1.0, 2.0, 0.5] + 1.0
    det = OODDetector.fit(train, train[:10], np.ones(10))
    x = rng.normal(size=(4, 3))
    h = 50 ** (-1 / 7)
    z, pts = (x - det.loc) / det.scale, det.points
    expected = np.log(np.mean([stats.multivariate_normal(p, h**2 * np.eye(3)).pdf(z)
                               for p in pts], axis=0))
    np.testing.assert_allclose(det.log_density(x), expected, rtol=1e-10)


def test_false_alarm_rate_on_exchangeable_inputs_is_about_alpha():
    rng = np.random.default_rng(1)
    draw = lambda n: rng.normal(size=(n, 4))  # noqa: E731
    epi = lambda x: np.exp(0.3 * x[:, 0])  # noqa: E731  (any function of x is exchangeable)
    train, val, test = draw(1000), draw(1000), draw(4000)
    det = OODDetector.fit(train, val, epi(val), alpha=0.05)
    _, flag = det(test, epi(test))
    se = math.sqrt(0.05 * 0.95 / 1000)  # the threshold's own sampling error dominates
    assert abs(flag.mean() - 0.05) < 3 * se, flag.mean()
    _, far = det(test + 4.0, epi(test))
    assert far.mean() > 0.95


def test_fields_use_pooled_features_and_flag_a_different_contrast():
    rng = np.random.default_rng(2)

    def fields(n, contrast):  # piecewise-constant coefficient fields, as in Darcy
        base = rng.normal(size=(n, 1, 4, 4)).repeat(4, axis=2).repeat(4, axis=3)
        return np.where(base > 0, contrast, 1.0)

    train, val, test = fields(400, 12.0), fields(200, 12.0), fields(200, 12.0)
    shifted = fields(200, 30.0)  # a lower contrast lies inside the hull: density misses it
    scale = 11.0 / 2.0
    f = lambda a: pooled_features((a - 6.5) / scale)  # noqa: E731
    assert f(train).shape == (400, 16)
    det = OODDetector.fit(f(train), f(val), np.ones(200))
    s_in, flag_in = det(f(test), np.ones(200))
    s_out, flag_out = det(f(shifted), np.ones(200))
    assert flag_in.mean() < 0.15 and flag_out.mean() > 0.9
    assert roc_auc_score(np.r_[np.zeros(200), np.ones(200)], np.r_[s_in, s_out]) > 0.95


def uniform_detector(n_train=1000, n_val=1000, d=8, seed=3):
    rng = np.random.default_rng(seed)
    train, val = rng.uniform(0, 1, (n_train, d)), rng.uniform(0, 1, (n_val, d))
    return OODDetector.fit(train, val, np.ones(n_val)), rng


def test_range_is_that_of_the_training_features_and_exceedance_is_in_range_units():
    det, rng = uniform_detector(n_train=300, d=3)
    train = rng.uniform(0, 1, (300, 3))  # a second detector with known training features
    det = OODDetector.fit(train, rng.uniform(0, 1, (100, 3)), np.ones(100), max_points=50)
    np.testing.assert_array_equal(det.lo, train.min(0))  # all rows, not only kernel centres
    np.testing.assert_array_equal(det.hi, train.max(0))
    w = train.max(0) - train.min(0)
    x = np.array([train.mean(0), train.max(0), train.min(0) - [0.0, 0.3 * w[1], 0.1 * w[2]]])
    np.testing.assert_allclose(det.exceedance(x), [0.0, 0.0, 0.3], rtol=1e-12)


def test_one_input_outside_by_more_than_the_margin_is_flagged_when_the_others_are_central():
    det, _ = uniform_detector()
    assert det.margin == pytest.approx(0.01)  # 1000 rows: the 1% floor, not the jackknife
    w = det.hi - det.lo
    centre = np.full((8, 8), 0.5)
    for depth, flagged in [(1.5, True), (0.5, False)]:  # in units of the margin
        for side in (+1, -1):
            edge = det.hi if side > 0 else det.lo
            x = np.where(np.eye(8, dtype=bool), edge + side * depth * det.margin * w, centre)
            score, flag = det(x, np.ones(8))
            np.testing.assert_allclose(det.exceedance(x), depth * det.margin, rtol=1e-9)
            assert flag.tolist() == [flagged] * 8, (depth, side, score)
    # the density and epistemic part alone misses a shift this small: the range part flags it
    x = np.where(np.eye(8, dtype=bool), det.hi + 0.03 * w, centre)
    assert not (det.combined(x, np.ones(8)) > det.threshold).any()
    # the score rises with the depth outside, so shifted inputs rank above in-box ones
    deeper = [det(np.where(np.eye(8, dtype=bool)[:1], det.hi + t * w, 0.5), np.ones(1))[0][0]
              for t in (0.02, 0.1, 0.5)]
    assert deeper[0] > det.threshold and np.all(np.diff(deeper) > 0)


@pytest.mark.parametrize("n_train", [1000, 50])
def test_union_of_flags_keeps_the_false_alarm_rate_near_alpha(n_train):
    """With 50 rows in 8 inputs a 1% margin alone would flag >10% of in-box inputs; the margin
    from the validation exceedances keeps the range part near alpha / 2 and the union at alpha."""
    det, rng = uniform_detector(n_train=n_train)
    test = rng.uniform(0, 1, (20000, 8))
    _, flag = det(test, np.ones(20000))
    se = math.sqrt(0.05 * 0.95 / 1000)  # the threshold's own sampling error (1000 validation)
    assert abs(flag.mean() - 0.05) < 3 * se, flag.mean()
    e = det.exceedance(test)
    assert (e > det.margin).mean() < 0.025 + 3 * math.sqrt(0.025 * 0.975 / 1000)
    if n_train == 50:
        assert (e > 0.01).mean() > 0.1 and det.margin > 0.02


def test_validation_flag_rate_is_at_most_alpha_by_construction():
    rng = np.random.default_rng(4)
    train, val = rng.standard_t(3, (200, 5)), rng.standard_t(3, (101, 5))  # heavy tails
    epi = np.exp(rng.normal(size=101))
    det = OODDetector.fit(train, val, epi, alpha=0.1)
    assert det(val, epi)[1].mean() <= 0.1 and math.isfinite(det.threshold)


def test_round_trip_gives_identical_scores_and_old_dicts_load_without_range():
    det, rng = uniform_detector(n_train=200, n_val=100, d=3)
    x, epi = rng.uniform(-0.5, 1.5, (50, 3)), np.exp(rng.normal(size=50))
    again = OODDetector.from_dict(json.loads(json.dumps(det.to_dict())))
    for a, b in zip(det(x, epi), again(x, epi), strict=True):
        np.testing.assert_array_equal(a, b)
    old = {k: v for k, v in det.to_dict().items() if k not in ("lo", "hi", "margin")}
    legacy = OODDetector.from_dict(old)
    assert legacy.lo is None and "lo" not in legacy.to_dict()
    np.testing.assert_array_equal(legacy.exceedance(x), np.zeros(50))
    np.testing.assert_array_equal(legacy(x, epi)[0], det.combined(x, epi))
    with pytest.raises(DataError, match=r"OOD lo, hi must be \(3,\) and margin > 0; got shapes "
                                        r"\(2,\), \(3,\)"):
        OODDetector.from_dict({**det.to_dict(), "lo": [0.0, 0.0]})


def test_fields_flag_one_pooled_cell_outside_its_training_range():
    rng = np.random.default_rng(5)

    def fields(n):  # smooth-ish fields (n, 2, 16, 16): blocks of 4x4 plus small noise
        base = rng.uniform(-1, 1, (n, 2, 4, 4)).repeat(4, axis=2).repeat(4, axis=3)
        return base + 0.05 * rng.normal(size=(n, 2, 16, 16))

    train, val, test = fields(400), fields(200), fields(2000)
    det = OODDetector.fit(pooled_features(train), pooled_features(val), np.ones(200))
    assert det.lo.shape == (32,)
    shifted = test[:200].copy()
    shifted[:, 1, 8:12, 0:4] = 1.3  # one 4x4 cell of one channel, 15% of its range outside
    s_in, flag_in = det(pooled_features(test), np.ones(2000))
    s_out, flag_out = det(pooled_features(shifted), np.ones(200))
    assert s_in.shape == (2000,) and flag_out.all()
    assert abs(flag_in.mean() - 0.05) < 3 * math.sqrt(0.05 * 0.95 / 200), flag_in.mean()


@pytest.fixture(scope="module")
def borehole_model():
    X = BOREHOLE.sample(400, seed=0)
    cfg = Config().updated(**{"train.members": 4, "train.epochs": 40, "train.val_fraction": 0.25})
    return Surrogate(cfg).fit(X, BOREHOLE(X))


def shifted_borehole(n, seed):
    """Inputs outside the borehole box: every input drawn from the box pushed out by its width."""
    X = BOREHOLE.sample(n, seed=seed)
    lo, hi = BOREHOLE.bounds[:, 0], BOREHOLE.bounds[:, 1]
    rng = np.random.default_rng(seed)
    side = rng.random(X.shape) < 0.5
    return np.where(side, X - 0.5 * (hi - lo), X + 0.5 * (hi - lo))


def test_surrogate_ood_flags_rise_on_inputs_outside_the_training_box(borehole_model, tmp_path):
    assert borehole_model.ood_detector is not None
    inside, outside = BOREHOLE.sample(300, seed=5), shifted_borehole(300, seed=6)
    s_in, f_in = borehole_model.ood(inside)
    s_out, f_out = borehole_model.ood(outside)
    assert f_in.mean() < 0.15 and f_out.mean() > 0.8, (f_in.mean(), f_out.mean())
    assert roc_auc_score(np.r_[np.zeros(300), np.ones(300)], np.r_[s_in, s_out]) > 0.9
    borehole_model.save(tmp_path / "m")
    loaded = Surrogate.load(tmp_path / "m")
    np.testing.assert_allclose(loaded.ood(outside)[0], s_out)
    json.loads((tmp_path / "m" / "ood.json").read_text())  # plain JSON


def test_bad_input_is_a_clear_error(borehole_model):
    det = OODDetector.from_dict(borehole_model.ood_detector.to_dict())
    with pytest.raises(DataError, match=r"OOD features must be \(n, 8\); got shape \(2, 3\)"):
        det(np.zeros((2, 3)), np.ones(2))
    with pytest.raises(DataError, match="alpha"):
        OODDetector.fit(np.zeros((5, 2)), np.zeros((5, 2)), np.ones(5), alpha=1.5)
    with pytest.raises(DataError, match=r"OOD validation features must be \(n, 2\); got shape "
                                        r"\(5, 3\)"):
        OODDetector.fit(np.zeros((5, 2)), np.zeros((5, 3)), np.ones(5))

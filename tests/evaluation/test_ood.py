"""Out-of-distribution scores: density, false-alarm rate, shifted inputs, persistence."""

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

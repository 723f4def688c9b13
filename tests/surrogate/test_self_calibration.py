"""``fit`` calibrates itself on rows it holds out from training and early stopping alike."""

import numpy as np
import pytest
import torch

from choral.config import Config
from choral.errors import ConfigError
from choral.evaluation.calibration import CQR, PitScale, cross_fit
from choral.surrogate import Surrogate
from choral.surrogate.model import member_seeds, split_indices

FAST = {"train.members": 2, "train.epochs": 8, "train.dtype": "float64"}


def _data(n=120, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, (n, 2))
    return X, np.sin(3 * X[:, :1]) + X[:, 1:] ** 2 + 0.05 * rng.normal(size=(n, 1))


def test_fit_holds_out_calibration_rows_and_calibrates_on_them():
    X, Y = _data()
    model = Surrogate(Config().updated(**FAST)).fit(X, Y)
    info = model.metrics
    assert (info["n_calibration"], info["n_val"], info["n_train"]) == (12, 11, 97)
    assert isinstance(model.calibrator, PitScale)
    # the held-out rows are the calibration split of the split seed; refit the calibrator there
    _, _, seed = member_seeds(0, 2)
    rest, cal = split_indices(120, 0.1, seed + 1)
    assert len(set(rest.tolist()) | set(cal.tolist())) == 120 and len(cal) == 12
    raw = model.predict(X[cal.numpy()], calibrated=False)
    assert torch.equal(PitScale.fit(raw, Y[cal.numpy()]).factor, model.calibrator.factor)
    expected = cross_fit("pit_scale", raw, Y[cal.numpy()], seed=0)
    assert info["calibration"] == {"method": "pit_scale", "samples": 12, **expected}


def test_calibration_none_trains_on_every_row_like_before():
    X, Y = _data()
    cfg = Config().updated(**FAST, **{"calibration.method": "none"})
    model = Surrogate(cfg).fit(X, Y)
    assert model.calibrator is None and model.metrics["n_calibration"] == 0
    assert model.metrics["n_train"] + model.metrics["n_val"] == 120
    assert model.metrics["calibration"] == {"method": "none", "reason": "turned off"}
    auto = Surrogate(Config().updated(**FAST)).fit(X, Y)
    assert any(not torch.equal(auto.params[k], v) for k, v in model.params.items())  # fewer rows


def test_too_few_rows_to_hold_out_leaves_the_model_uncalibrated():
    X, Y = _data(n=60)  # 6 calibration rows < 10
    model = Surrogate(Config().updated(**FAST)).fit(X, Y)
    assert model.calibrator is None and model.metrics["n_calibration"] == 0
    assert model.metrics["calibration"]["reason"] == "too few samples"


def test_quantile_head_gets_cqr_and_saved_calibration_reloads(tmp_path):
    X, Y = _data(n=200)
    cfg = Config().updated(**FAST, **{"model.head": "quantile", "model.quantile_levels": 9})
    model = Surrogate(cfg).fit(X, Y)
    assert isinstance(model.calibrator, CQR) and model.metrics["calibration"]["method"] == "cqr"
    model.save(tmp_path / "m")
    loaded = Surrogate.load(tmp_path / "m")
    before, after = model.predict(X[:9]).interval(0.9), loaded.predict(X[:9]).interval(0.9)
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))


def test_explicit_calibration_replaces_and_none_removes():
    X, Y = _data()
    model = Surrogate(Config().updated(**FAST)).fit(X, Y)
    model.calibrate(X[:40], Y[:40], "conformal")
    assert model.metrics["calibration"]["method"] == "conformal"
    assert model.calibrator.method == "conformal"
    model.calibrate(X, Y, "none")
    assert model.calibrator is None
    with pytest.raises(ConfigError, match="method must be one of auto, none, scale"):
        model.calibrate(X, Y, "platt")
    with pytest.raises(ConfigError, match=r"calibration.method = 'platt'"):
        Config().updated(**{"calibration.method": "platt"})

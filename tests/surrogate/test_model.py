"""Surrogate fit/predict/save/load: round trips and damaged model directories."""

import json

import numpy as np
import pytest
import torch

from choral.config import Config
from choral.errors import DataError, ModelFileError
from choral.simulators import simulate
from choral.surrogate import Surrogate


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    X, Y = simulate("branin", 300, seed=0)
    cfg = Config().updated(**{"train.members": 3, "train.epochs": 40, "train.dtype": "float64",
                              "model.hidden": [32, 32]})
    model = Surrogate(cfg).fit(X, Y)
    path = tmp_path_factory.mktemp("m") / "model"
    model.save(path)
    return model, path


def test_learns_branin_and_reports_in_original_units(fitted):
    model, _ = fitted
    X, Y = simulate("branin", 400, seed=1)
    pred = model.predict(X)
    rmse = float(torch.sqrt(((pred.mean - torch.as_tensor(Y)) ** 2).mean()))
    assert rmse < 0.25 * Y.std()  # far better than predicting the mean
    assert pred.mean.shape == (400, 1) and pred.member_means.shape == (3, 400, 1)
    # standardisation is undone: means live on Branin's scale, not around 0
    assert abs(float(pred.mean.mean()) - Y.mean()) < 0.2 * Y.std()


def test_save_load_round_trip_gives_identical_predictions(fitted):
    model, path = fitted
    X, _ = simulate("branin", 50, seed=2)
    loaded = Surrogate.load(path)
    a, b = model.predict(X), loaded.predict(X)
    assert torch.equal(a.member_means, b.member_means)
    assert torch.equal(a.member_variances, b.member_variances)
    assert loaded.config == model.config
    assert sorted(p.name for p in path.iterdir()) == [
        "calibration.json", "config.json", "metrics.json", "normaliser.json", "ood.json",
        "weights.safetensors"]


def test_weights_own_aligned_storage_whatever_their_source(fitted):
    """Fitted, loaded and handed-over weights each own a fresh 64-byte-aligned allocation, so the
    CPU kernels take the same path (alignment decides their summation order, see
    ``choral.networks.members.own_storage``): views at odd offsets predict bit-identically."""
    model, path = fitted
    loaded = Surrogate.load(path)
    for params in (model.params, loaded.params):
        for v in params.values():
            assert v.is_contiguous() and v.data_ptr() % 64 == 0
    flat = torch.cat([torch.zeros(3, dtype=torch.float32)]
                     + [v.reshape(-1) for v in model.params.values()])
    views, start = {}, 3  # 12 bytes into the buffer: misaligned for every kernel
    for k, v in model.params.items():
        views[k] = flat[start:start + v.numel()].view(v.shape)
        start += v.numel()
    assert next(iter(views.values())).data_ptr() % 64 != 0
    X, _ = simulate("branin", 50, seed=3)
    shifted = model.with_params(views).predict(X, calibrated=False)
    assert torch.equal(shifted.member_means, model.predict(X, calibrated=False).member_means)


def test_same_seed_same_model_different_seed_different():
    X, Y = simulate("branin", 100, seed=0)
    cfg = Config().updated(**{"train.members": 2, "train.epochs": 3})
    a = Surrogate(cfg).fit(X, Y).predict(X).mean
    b = Surrogate(cfg).fit(X, Y).predict(X).mean
    c = Surrogate(cfg.updated(**{"train.seed": 1})).fit(X, Y).predict(X).mean
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_loop_backend_matches_stacked_through_the_surrogate():
    X, Y = simulate("hartmann6", 120, seed=0)
    cfg = Config().updated(**{"train.members": 2, "train.epochs": 8, "train.dtype": "float64"})
    a = Surrogate(cfg.updated(**{"train.backend": "loop"})).fit(X, Y)
    b = Surrogate(cfg).fit(X, Y)
    assert a.backend == "loop" and b.backend == "stacked"
    torch.testing.assert_close(a.predict(X).mean, b.predict(X).mean, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("damage, message", [
    (lambda p: (p / "weights.safetensors").unlink(), "missing weights.safetensors"),
    (lambda p: (p / "config.json").unlink(), "missing config.json"),
    (lambda p: (p / "weights.safetensors").write_bytes(b"\x00garbage" * 10), "corrupted"),
    (lambda p: (p / "normaliser.json").write_text("{not json"), "normaliser.json is corrupted"),
    (lambda p: (p / "config.json").write_text(json.dumps({"format": "other"})),
     "not a choral model"),
])
def test_damaged_model_directory_is_a_clear_error(fitted, tmp_path, damage, message):
    _, path = fitted
    copy = tmp_path / "copy"
    copy.mkdir()
    for f in path.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    damage(copy)
    with pytest.raises(ModelFileError, match=message):
        Surrogate.load(copy)


def test_weights_that_do_not_match_the_config(fitted, tmp_path):
    _, path = fitted
    cfg = json.loads((path / "config.json").read_text())
    cfg["config"]["model"]["hidden"] = [16]
    copy = tmp_path / "copy"
    copy.mkdir()
    for f in path.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    (copy / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelFileError, match="does not match the network"):
        Surrogate.load(copy)


def test_missing_directory():
    with pytest.raises(ModelFileError, match="not found"):
        Surrogate.load("/nonexistent/model")


def test_predict_with_wrong_features(fitted):
    model, _ = fitted
    with pytest.raises(DataError, match=r"features per sample.*got shape \(4, 3\)"):
        model.predict(np.zeros((4, 3)))


def test_unfitted():
    with pytest.raises(DataError, match="not fitted"):
        Surrogate().predict(np.zeros((2, 2)))


def test_failed_save_keeps_the_old_directory(fitted, tmp_path, monkeypatch):
    model, _ = fitted
    target = tmp_path / "model"
    model.save(target)
    before = (target / "weights.safetensors").read_bytes()
    import choral.storage as storage

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(storage, "save_file", boom)
    with pytest.raises(OSError, match="disk full"):
        model.save(target)
    assert (target / "weights.safetensors").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_records_round_trip_and_the_calibration_is_replaced_atomically(tmp_path):
    from choral.evaluation.calibration import Scale
    from choral.storage import read_model_dir, write_calibration

    X = np.random.default_rng(0).uniform(-1, 1, (40, 2))
    model = Surrogate(Config().updated(**{"train.members": 2, "train.epochs": 2}))
    model.fit(X, X[:, :1])
    model.records = {"extra": {"a": [1, 2]}, "moments": {"t": torch.arange(3.0)}}
    model.save(tmp_path / "m")
    assert (tmp_path / "m" / "extra.json").is_file()
    assert (tmp_path / "m" / "moments.safetensors").is_file()
    loaded = Surrogate.load(tmp_path / "m")
    assert loaded.records["extra"] == {"a": [1, 2]}
    assert torch.equal(loaded.records["moments"]["t"], torch.arange(3.0))
    write_calibration(tmp_path / "m", Scale([2.0]).to_dict())
    assert read_model_dir(tmp_path / "m").calibration == {"method": "scale", "factor": [2.0]}
    assert Surrogate.load(tmp_path / "m").calibrator.factor.tolist() == [2.0]
    assert not [p for p in (tmp_path / "m").iterdir() if p.name.startswith(".")]
    (tmp_path / "m" / "extra.json").write_text("{broken")
    with pytest.raises(ModelFileError, match="extra.json is corrupted"):
        Surrogate.load(tmp_path / "m")

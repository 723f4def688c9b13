"""Fitting on HDF5 rows read on demand (data larger than memory) gives the model that fitting
on the same data in memory gives, and ``predict --stream`` writes the same predictions."""

import h5py
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from choral.cli.app import app
from choral.config import Config
from choral.data import load_data, save_data
from choral.errors import DataError
from choral.simulators import simulate
from choral.surrogate import Surrogate

SETTINGS = {"train.members": 2, "train.epochs": 4, "train.dtype": "float64",
            "calibration.fraction": 0.2}


def _pair(tmp_path, X, Y, **settings):
    path = tmp_path / "data.h5"
    save_data(path, X, Y)
    cfg = Config().updated(**SETTINGS, **settings)
    lazy = Surrogate(cfg).fit(*load_data(path, lazy=True))
    return Surrogate(cfg).fit(X, Y), lazy


@pytest.mark.parametrize("kind", ["vectors", "fields"])
def test_streamed_fit_equals_in_memory_fit(tmp_path, kind):
    if kind == "vectors":
        X, Y = simulate("borehole", 150, seed=0)
        settings = {"model.hidden": [16]}
    else:
        X, Y = simulate("darcy", 60, seed=0, resolution=9)
        settings = {"model.backbone": "unet", "model.unet.width": 4, "model.unet.depth": 1}
    memory, lazy = _pair(tmp_path, X, Y, **settings)
    np.testing.assert_allclose(lazy.x_norm.mean, memory.x_norm.mean, rtol=1e-12)
    np.testing.assert_allclose(lazy.y_norm.scale, memory.y_norm.scale, rtol=1e-12)
    for k, v in memory.params.items():
        torch.testing.assert_close(lazy.params[k], v, rtol=1e-8, atol=1e-10)
    assert lazy.metrics["n_calibration"] == memory.metrics["n_calibration"] > 0
    a, b = memory.predict(X[:10]), lazy.predict(X[:10])
    torch.testing.assert_close(b.mean, a.mean, rtol=1e-8, atol=1e-10)
    assert lazy.metrics["calibration"]["method"] == memory.metrics["calibration"]["method"]
    np.testing.assert_allclose(lazy.ood(X[:10])[0], memory.ood(X[:10])[0], rtol=1e-6)
    if kind == "vectors":  # the training box, read block by block, is every row's min and max
        box = np.stack([X.min(0), X.max(0)], axis=1).tolist()
        assert lazy.metrics["input_box"] == memory.metrics["input_box"] == box
    else:
        assert "input_box" not in memory.metrics


def test_nan_rows_in_a_streamed_file_are_named(tmp_path):
    path = tmp_path / "bad.h5"
    X, Y = simulate("borehole", 40, seed=0)
    X[[3, 17]] = np.nan
    with h5py.File(path, "w") as f:
        f["X"], f["Y"] = X, Y
    with pytest.raises(DataError, match=r"X has NaN/inf values in 2 rows: \[3, 17\]"):
        Surrogate(Config().updated(**SETTINGS)).fit(*load_data(path, lazy=True))


def test_stream_and_memory_arrays_cannot_mix(tmp_path):
    X, Y = simulate("borehole", 40, seed=0)
    save_data(tmp_path / "d.h5", X, Y)
    lazy_X, _ = load_data(tmp_path / "d.h5", lazy=True)
    with pytest.raises(DataError, match="both be HDF5 rows"):
        Surrogate(Config().updated(**SETTINGS)).fit(lazy_X, Y)


def test_cli_fit_and_predict_stream_batch_by_batch(tmp_path):
    X, Y = simulate("borehole", 120, seed=0)
    save_data(tmp_path / "d.h5", X, Y)
    runner = CliRunner()
    fit = ["fit", "--data", tmp_path / "d.h5", "--members", "2", "--epochs", "3", "--quiet"]
    for out, stream in (("m_mem", "--no-stream"), ("m_lazy", "--stream")):
        result = runner.invoke(app, [str(a) for a in [*fit, "--out", tmp_path / out, stream]])
        assert result.exit_code == 0, result.output
    for name, stream in (("mem.h5", "--no-stream"), ("lazy.h5", "--stream")):
        args = ["predict", "--model", tmp_path / "m_lazy", "--data", tmp_path / "d.h5",
                "--out", tmp_path / name, "--batch-size", "7", stream]
        result = runner.invoke(app, [str(a) for a in args])
        assert result.exit_code == 0, result.output
    with h5py.File(tmp_path / "mem.h5") as a, h5py.File(tmp_path / "lazy.h5") as b:
        assert "X" in a and "X" not in b  # streamed output holds the predictions only
        for key in b:
            np.testing.assert_array_equal(b[key][()], a[key][()])

"""ONNX export: onnxruntime runs the exported graph and gives what ``Surrogate.predict`` gives."""

import json

import numpy as np
import onnx
import onnxruntime
import pytest
from typer.testing import CliRunner

from choral.cli.app import app
from choral.config import Config
from choral.errors import ConfigError
from choral.integrations.onnx import OUTPUTS, export_onnx
from choral.simulators import simulate
from choral.surrogate import Surrogate

runner = CliRunner()


def _run(path, X):
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == list(OUTPUTS)
    return session.run(None, {"x": X.astype(np.float32)})


def _check(path, model, X):
    """onnxruntime's four outputs at X against choral's (calibrated) predictive, to float32
    rounding (the graph computes in float32, choral's head and mixture in float64)."""
    pred = model.predict(X)
    want = [pred.member_means, pred.member_variances, pred.mean, pred.stddev]
    for name, got, w in zip(OUTPUTS, _run(path, X), want, strict=True):
        w = w.numpy()
        assert got.shape == w.shape, name
        np.testing.assert_allclose(got, w, rtol=2e-4, atol=2e-5 * np.abs(w).max(), err_msg=name)


@pytest.fixture(scope="module")
def borehole(tmp_path_factory):
    """A borehole MLP ensemble, self-calibrated (pit_scale), saved to a model directory."""
    X, Y = simulate("borehole", 240, seed=0)
    d = tmp_path_factory.mktemp("onnx")
    cfg = Config().updated(**{"train.members": 3, "train.epochs": 15, "train.seed": 0})
    Surrogate(cfg).fit(X, Y).save(d / "model")
    return Surrogate.load(d / "model"), X, d


def test_cli_export_mlp_matches_predict_at_two_batch_sizes(borehole):
    model, X, d = borehole
    assert model.calibrator is not None and model.calibrator.method == "pit_scale"
    result = runner.invoke(app, ["export", "--model", str(d / "model"), "--format", "onnx",
                                 "--out", str(d / "m.onnx"), "--opset", "18", "--json"])
    assert result.exit_code == 0, result.output
    meta = json.loads(result.stdout)
    assert meta["calibration"] == "pit_scale" and meta["members"] == "3"
    proto = onnx.load(d / "m.onnx")
    assert {p.key: p.value for p in proto.metadata_props}["opset"] == "18"
    assert [o.version for o in proto.opset_import if o.domain == ""] == [18]
    batch = proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param and not batch.dim_value  # a named, dynamic batch axis
    for n in (1, 37):  # one graph, two batch sizes
        _check(d / "m.onnx", model, X[:n])
    # the mixture's moments from the graph's own member outputs: the law of total variance
    means, variances, mean, std = _run(d / "m.onnx", X[:20])
    np.testing.assert_allclose(mean, means.mean(0), rtol=1e-6)
    np.testing.assert_allclose(std, np.sqrt(variances.mean(0) + means.var(0)), rtol=1e-5)


def test_unet_matches_predict_at_two_batch_sizes(tmp_path):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(40, 1, 12, 10))
    Y = np.concatenate([np.cumsum(X, axis=-1) / 4, X**2], axis=1)
    cfg = Config.from_dict({
        "model": {"backbone": "unet", "activation": "gelu", "unet": {"depth": 2, "width": 4}},
        "train": {"members": 2, "epochs": 3, "batch_size": 8}})
    model = Surrogate(cfg).fit(X, Y)
    export_onnx(model, tmp_path / "unet.onnx", opset=20)
    for n in (1, 6):
        _check(tmp_path / "unet.onnx", model, X[:n])


def test_mdn_member_moments(tmp_path):
    X, Y = simulate("branin", 80, seed=2)
    cfg = Config().updated(**{"train.members": 2, "train.epochs": 3, "model.head": "mdn",
                              "calibration.method": "none"})
    model = Surrogate(cfg).fit(X, Y)
    export_onnx(model, tmp_path / "mdn.onnx")
    _check(tmp_path / "mdn.onnx", model, X[:9])


def test_quantile_head_and_bad_opset_are_errors(borehole, tmp_path):
    model, X, _ = borehole
    with pytest.raises(ConfigError, match="opset must be an integer >= 18"):
        export_onnx(model, tmp_path / "a.onnx", opset=11)
    cfg = Config().updated(**{"train.members": 2, "train.epochs": 1, "model.head": "quantile"})
    quantile = Surrogate(cfg).fit(X[:60], X[:60, :1])
    with pytest.raises(ConfigError, match="model.head 'gaussian' or 'mdn'; got 'quantile'"):
        export_onnx(quantile, tmp_path / "q.onnx")
    assert not (tmp_path / "q.onnx").exists()

"""``choral merge`` end to end: merged weights against the task vectors of the saved models,
TALL regimes recovering their fine-tunes, and user errors."""

import dataclasses
import json
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from choral import cli
from choral.cli.app import app
from choral.config import Config
from choral.data import save_data
from choral.ensembles.merging import ties
from choral.surrogate import Surrogate
from choral.surrogate.finetune import tune

runner = CliRunner()


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def _data(shift, n=120, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, (n, 2))
    return X, np.sin(2 * X[:, :1]) + X[:, 1:] ** 2 + shift


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A base model; A and B: the base plus changes on disjoint halves of every tensor;
    up and down: real fine-tunes to shifted targets, with validation files."""
    d = tmp_path_factory.mktemp("merge")
    cfg = Config().updated(**{"train.members": 2, "train.epochs": 20, "train.dtype": "float64",
                              "model.hidden": [16], "finetune.epochs": 10})
    X, Y = _data(0.0)
    base = Surrogate(cfg).fit(X, Y)
    base.save(d / "base")
    gen = torch.Generator().manual_seed(0)
    half = {k: torch.rand(v.shape, generator=gen) < 0.5 for k, v in base.params.items()}
    for name, side in (("A", True), ("B", False)):
        delta = {k: 0.05 * torch.randn(v.shape, generator=gen, dtype=v.dtype) * (half[k] == side)
                 for k, v in base.params.items()}
        base.with_params({k: v + delta[k] for k, v in base.params.items()}).save(d / name)
    for name, shift in (("up", 0.5), ("down", -0.5)):
        Xn, Yn = _data(shift, seed=1 if shift > 0 else 2)
        theta, _ = tune(base, Xn[:80], Yn[:80], Xn[80:], Yn[80:])
        base.with_params(theta).save(d / name)
        save_data(d / f"{name}.npz", Xn[80:], Yn[80:])
    save_data(d / "test.npz", *_data(0.0, n=30, seed=3))
    return d


def _weights(path):
    return load_file(str(path / "weights.safetensors"))


def _predict(d, model, out, *extra):
    invoke("predict", "--model", model, "--data", d / "test.npz", "--out", out, *extra)
    return np.load(out)


def test_task_arithmetic_and_ties_equal_the_saved_task_vectors(work, tmp_path):
    base, a, b = (_weights(work / n) for n in ("base", "A", "B"))
    info = json.loads(invoke("merge", "--base", work / "base", "--models", work / "A",
                             work / "B", "--method", "task_arithmetic", "--scale", "0.5",
                             "--out", tmp_path / "ta", "--json").stdout)
    assert info["regimes"] == ["A", "B"] and info["scale"] == 0.5
    got = _weights(tmp_path / "ta")
    for k in base:
        assert torch.allclose(got[k], base[k] + 0.5 * ((a[k] - base[k]) + (b[k] - base[k])),
                              atol=1e-12)
    invoke("merge", "--base", work / "base", "--models", work / "A", "--models", work / "B",
           "--method", "ties", "--density", "0.3", "--out", tmp_path / "ties")
    taus = {k: torch.stack([a[k] - base[k], b[k] - base[k]]) for k in base}
    ref = ties(taus, 0.3)
    got = _weights(tmp_path / "ties")
    assert all(torch.allclose(got[k], base[k] + ref[k], atol=1e-12) for k in base)
    assert json.loads((tmp_path / "ties" / "merge.json").read_text())["method"] == "ties"


def test_tall_regimes_recover_disjoint_fine_tunes_and_consensus_drops_them(work, tmp_path):
    # disjoint supports: m_t keeps exactly tau_t's support for any lambda_t <= 1, so each
    # regime is its fine-tune; no weight is used by 2 regimes, so consensus is the base
    invoke("merge", "--base", work / "base", "--models", work / "A", work / "B", "--method",
           "tall", "--out", tmp_path / "tall")
    saved = sorted(p.name for p in (tmp_path / "tall").iterdir())
    assert {"tall.safetensors", "merge.json"} <= set(saved)
    masks = {k: v for k, v in load_file(str(tmp_path / "tall" / "tall.safetensors")).items()
             if k.startswith("mask.")}
    assert all(v.dtype == torch.uint8 and v.shape[0] == 2 for v in masks.values())
    base = _weights(work / "base")
    assert all(torch.equal(_weights(tmp_path / "tall")[k], base[k]) for k in base)
    for regime in ("A", "B"):
        got = _predict(work, tmp_path / "tall", tmp_path / f"{regime}.npz", "--regime", regime)
        ref = _predict(work, work / regime, tmp_path / f"{regime}_ref.npz")
        assert np.allclose(got["mean"], ref["mean"], rtol=0, atol=1e-10)
        assert np.allclose(got["std"], ref["std"], rtol=0, atol=1e-10)
    model = Surrogate.load(tmp_path / "tall", regime="B")
    ref = Surrogate.load(work / "B")
    assert all(torch.allclose(model.params[k], ref.params[k], atol=1e-12) for k in base)


def test_merge_with_validation_chooses_scale_and_lambdas(work, tmp_path):
    out = json.loads(invoke(
        "merge", "--base", work / "base", "--models", work / "up", work / "down", "--val",
        work / "up.npz", "--val", work / "down.npz", "--method", "consensus", "--out",
        tmp_path / "c", "--json").stdout)
    curve = out["scale_curve"]
    assert out["scale"] == float(min(curve, key=curve.get))
    assert len(out["lambdas"]) == 2 and 0 <= out["consensus_fraction"] <= 1
    ev = json.loads(invoke("evaluate", "--model", tmp_path / "c", "--data", work / "up.npz",
                           "--json").stdout)
    assert np.isfinite(ev["nll"])


def _main(monkeypatch, capsys, *args):
    monkeypatch.setattr(sys, "argv", ["choral", *map(str, args)])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    return exc.value.code, capsys.readouterr().err


def test_user_errors_exit_2_with_a_message(work, tmp_path, monkeypatch, capsys):
    invoke("merge", "--base", work / "base", "--models", work / "A", work / "B", "--method",
           "tall", "--out", tmp_path / "tall")
    code, msg = _main(monkeypatch, capsys, "predict", "--model", tmp_path / "tall", "--data",
                      work / "test.npz", "--out", tmp_path / "p.npz", "--regime", "C")
    assert code == 2 and "--regime must be one of A, B; got 'C'" in msg
    code, msg = _main(monkeypatch, capsys, "predict", "--model", work / "base", "--data",
                      work / "test.npz", "--out", tmp_path / "p.npz", "--regime", "A")
    assert code == 2 and "no TALL masks" in msg
    code, msg = _main(monkeypatch, capsys, "merge", "--base", work / "base", "--models",
                      work / "A", "--method", "magic", "--out", tmp_path / "m")
    assert code == 2 and "--method must be one of" in msg
    other = Surrogate.load(work / "A")
    other.y_norm = dataclasses.replace(other.y_norm, mean=other.y_norm.mean + 1.0)
    other.save(tmp_path / "moved")
    code, msg = _main(monkeypatch, capsys, "merge", "--base", work / "base", "--models",
                      tmp_path / "moved", "--out", tmp_path / "m")
    assert code == 2 and "standardisers" in msg
    assert not (tmp_path / "m").exists()


def test_predict_cascade_through_the_cli(work, tmp_path):
    full = _predict(work, work / "up", tmp_path / "full.npz")
    args = ("--cascade", "--first", "1", "--top-fraction", "1.0")
    result = runner.invoke(app, ["predict", "--model", str(work / "up"), "--data",
                                 str(work / "test.npz"), "--out", str(tmp_path / "c.npz"), *args])
    assert result.exit_code == 0, result.output
    got = np.load(tmp_path / "c.npz")
    assert "60 of 60 member forward passes (100.0%)" in result.stderr
    assert np.array_equal(got["mean"], full["mean"]) and (got["members_used"] == 2).all()
    result = runner.invoke(app, ["predict", "--model", str(work / "up"), "--data",
                                 str(work / "test.npz"), "--out", str(tmp_path / "d.npz"),
                                 "--cascade", "--first", "1"])
    assert "30 of 60 member forward passes (50.0%)" in result.stderr


def test_merge_help():
    result = runner.invoke(app, ["merge", "--help"])
    assert result.exit_code == 0 and "--models" in result.stdout and "--align" in result.stdout
    assert "--cascade" in runner.invoke(app, ["predict", "--help"]).stdout


def test_predict_cascade_with_a_first_stage_fitted_on_held_out_data(work, tmp_path):
    from choral.surrogate.cascade import Rules, cascade, fit_first_stage

    model = Surrogate.load(work / "base")
    assert model.calibrator is not None
    runs = {name: ["predict", "--model", work / "base", "--data", work / "up.npz", "--out",
                   tmp_path / f"{name}.npz", "--cascade", "--first", "1", *extra]
            for name, extra in (("fs", ["--first-stage-data", work / "test.npz"]),
                                ("plain", []))}
    for args in runs.values():
        invoke(*args)
    got, plain = (np.load(tmp_path / f"{name}.npz") for name in ("fs", "plain"))
    held = np.load(work / "test.npz")
    stage = fit_first_stage(model, held["X"], held["Y"], 1)
    ref = cascade(model, np.load(work / "up.npz")["X"], Rules(first=1, first_stage=stage))
    ref = ref.summaries(0.9)
    assert np.array_equal(got["lower"], ref["lower"]) and \
        np.array_equal(got["upper"], ref["upper"])
    assert not np.array_equal(got["upper"], plain["upper"])   # its own calibration

"""WiSE-FT: the curve's endpoints are exactly the two models; the CLI saves the curve."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from choral.cli.app import app
from choral.config import Config
from choral.ensembles.wiseft import interpolate
from choral.evaluation.metrics import nll
from choral.surrogate import Surrogate
from choral.surrogate.finetune import curve, finetune, tune


def _regime(shift, n=160, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, (n, 2)) + shift
    return X, np.sin(2 * X[:, :1]) + X[:, 1:] ** 2 + 0.05 * rng.normal(size=(n, 1))


@pytest.fixture(scope="module")
def tuned():
    cfg = Config().updated(**{"train.members": 3, "train.epochs": 30, "train.dtype": "float64",
                              "model.hidden": [32], "finetune.epochs": 20})
    X, Y = _regime(0.0)
    model = Surrogate(cfg).fit(X, Y)
    Xn, Yn = _regime(1.5, seed=1)
    theta_ft, _ = tune(model, Xn[:120], Yn[:120], Xn[120:], Yn[120:])
    return model, theta_ft, (X, Y), (Xn, Yn)


def test_endpoints_reproduce_both_models_exactly(tuned):
    model, theta_ft, (X, _), _ = tuned
    fine = model.with_params(theta_ft)
    at0 = model.with_params(interpolate(model.params, theta_ft, 0.0)).predict(X)
    at1 = model.with_params(interpolate(model.params, theta_ft, 1.0)).predict(X)
    ref0, ref1 = model.predict(X, calibrated=False), fine.predict(X, calibrated=False)
    for got, ref in ((at0, ref0), (at1, ref1)):
        assert torch.equal(got.member_means, ref.member_means)
        assert torch.equal(got.member_variances, ref.member_variances)
    assert not torch.equal(ref0.member_means, ref1.member_means)  # fine-tuning moved the weights


def test_curve_endpoints_and_original_standardisers(tuned):
    model, theta_ft, old, new = tuned
    rows = curve(model, theta_ft, np.array([0.0, 0.5, 1.0]), {"old": old, "new": new})
    fine = model.with_params(theta_ft)
    assert rows[0]["old_nll"] == nll(model.predict(old[0], calibrated=False), old[1])
    assert rows[-1]["new_nll"] == nll(fine.predict(new[0]), new[1])
    assert rows[1]["mean_nll"] == pytest.approx((rows[1]["old_nll"] + rows[1]["new_nll"]) / 2)
    assert fine.x_norm is model.x_norm and fine.y_norm is model.y_norm
    assert rows[-1]["new_nll"] < rows[0]["new_nll"]  # fine-tuning helps on the new regime
    assert rows[-1]["old_nll"] > rows[0]["old_nll"]  # ... and costs on the old one


def test_finetune_picks_the_best_alpha_of_its_curve(tuned):
    model, _, old, new = tuned
    out, info = finetune(model, *new, old=old)
    best = min(info["curve"], key=lambda r: r["mean_nll"])
    assert info["alpha"] == best["alpha"] and info["selected_on"] == ["new", "old"]
    assert out.records["wiseft"] is info and out.metrics["wiseft_alpha"] == info["alpha"]
    # calibrated on the 32 held-out rows of the new regime (finetune.val_fraction = 0.2)
    assert out.calibrator.method == "pit_scale" and out.metrics["calibration"]["samples"] == 32
    few, _ = finetune(model, new[0][:40], new[1][:40])  # 8 held-out rows: too few
    assert few.calibrator is None and few.metrics["calibration"]["reason"] == "too few samples"


def test_cli_finetune_writes_model_and_curve(tmp_path):
    X, Y = _regime(0.0, n=120)
    Xn, Yn = _regime(1.0, n=80, seed=2)
    np.savez(tmp_path / "old.npz", X=X, Y=Y)
    np.savez(tmp_path / "new.npz", X=Xn, Y=Yn)
    runner = CliRunner()
    fit = runner.invoke(app, ["fit", "--data", str(tmp_path / "old.npz"), "--out",
                              str(tmp_path / "m"), "--members", "2", "--epochs", "5", "--quiet"])
    assert fit.exit_code == 0, fit.output
    res = runner.invoke(app, ["finetune", "--model", str(tmp_path / "m"), "--data",
                              str(tmp_path / "new.npz"), "--old-data", str(tmp_path / "old.npz"),
                              "--out", str(tmp_path / "ft"), "--epochs", "3", "--alphas", "5",
                              "--json"])
    assert res.exit_code == 0, (res.output, res.exception)
    info = json.loads(res.stdout)
    saved = json.loads((tmp_path / "ft" / "wiseft.json").read_text())
    assert [r["alpha"] for r in saved["curve"]] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert saved["alpha"] == info["alpha"]
    original = (tmp_path / "m" / "normaliser.json").read_text()
    assert (tmp_path / "ft" / "normaliser.json").read_text() == original  # theta_0's units
    tuned = Surrogate.load(tmp_path / "ft")
    assert tuned.predict(Xn[:3]).mean.shape == (3, 1)


def test_cli_finetune_rejects_mismatched_data(tmp_path):
    X, Y = _regime(0.0, n=60)
    np.savez(tmp_path / "old.npz", X=X, Y=Y)
    np.savez(tmp_path / "bad.npz", X=X[:, :1], Y=Y)
    code = ("from choral.cli.app import main; import sys; sys.argv = ['choral'] + sys.argv[1:]; "
            "main()")
    run = [sys.executable, "-c", code]
    assert subprocess.run([*run, "fit", "--data", tmp_path / "old.npz", "--out", tmp_path / "m",
                           "--members", "1", "--epochs", "2", "--quiet"]).returncode == 0
    res = subprocess.run([*run, "finetune", "--model", tmp_path / "m", "--data",
                          tmp_path / "bad.npz", "--out", tmp_path / "ft"],
                         capture_output=True, text=True)
    assert res.returncode == 2 and "--data must have samples shaped like" in res.stderr
    assert not (tmp_path / "ft").exists()

"""``choral fit --backbone fno`` with field defaults; evaluate on a finer grid; report."""

import json
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from choral import cli
from choral.cli.app import app
from choral.ensembles.config import FIELD_DEFAULTS

runner = CliRunner()


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def periodic(path, n, grid, seed):
    rng = np.random.default_rng(seed)
    x = np.arange(grid) / grid
    a, b = rng.normal(size=(2, n, 1, 1))
    X = a * np.sin(2 * np.pi * x) + b * np.cos(2 * np.pi * x)
    np.savez(path, X=X, Y=np.roll(X, grid // 8, axis=-1))


def test_fit_fno_evaluate_on_twice_the_grid_and_report(tmp_path):
    periodic(tmp_path / "train.npz", 48, 16, 0)
    periodic(tmp_path / "fine.npz", 10, 32, 1)
    (tmp_path / "c.toml").write_text("[model.fno]\nmodes = 4\nwidth = 4\nlayers = 1\n")
    fitted = invoke("fit", "--data", tmp_path / "train.npz", "--out", tmp_path / "m",
                    "--backbone", "fno", "--config", tmp_path / "c.toml", "--members", "2",
                    "--epochs", "3", "--json", "--quiet")
    assert json.loads(fitted.stdout)["backbone"] == "fno"
    train = json.loads((tmp_path / "m" / "config.json").read_text())["config"]["train"]
    assert train["epochs"] == 3 and train["lr"] == FIELD_DEFAULTS["lr"]
    scores = json.loads(invoke("evaluate", "--model", tmp_path / "m", "--data",
                               tmp_path / "fine.npz", "--json").stdout)
    assert np.isfinite(scores["rel_l2"]) and 0 <= scores["coverage_90"] <= 1
    invoke("report", "--model", tmp_path / "m", "--data", tmp_path / "fine.npz", "--out",
           tmp_path / "r", "--examples", "1")
    assert (tmp_path / "r" / "index.html").exists()


def test_unet_on_another_grid_is_a_user_error(tmp_path, monkeypatch, capsys):
    periodic(tmp_path / "train.npz", 24, 16, 0)
    periodic(tmp_path / "fine.npz", 4, 32, 1)
    invoke("fit", "--data", tmp_path / "train.npz", "--out", tmp_path / "m", "--members", "1",
           "--epochs", "1", "--quiet")
    monkeypatch.setattr(sys, "argv", ["choral", "evaluate", "--model", str(tmp_path / "m"),
                                      "--data", str(tmp_path / "fine.npz")])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    assert exc.value.code == 2
    assert "resolution transfer needs model.backbone" in capsys.readouterr().err

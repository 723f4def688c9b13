"""``choral simulate ks`` -> ``fit --history`` -> ``predict --steps``, against the library."""

import json

import numpy as np
import torch
from typer.testing import CliRunner

from choral.cli.app import app
from choral.errors import DataError
from choral.evaluation.rollout import rollout_scores
from choral.surrogate import Surrogate
from choral.surrogate.rollout import rollout

runner = CliRunner()


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def test_fit_history_and_predict_steps(tmp_path):
    data, model, out = tmp_path / "ks.npz", tmp_path / "m", tmp_path / "p.npz"
    invoke("simulate", "ks", "--n", "6", "--resolution", "16", "--steps", "8", "--out", data)
    invoke("fit", "--data", data, "--history", "2", "--out", model, "--members", "2",
           "--epochs", "2", "--seed", "0")
    result = invoke("predict", "--model", model, "--data", data, "--steps", "4", "--out", out,
                    "--json")
    loaded, Y = Surrogate.load(model), np.load(data)["Y"]
    assert loaded.x_shape == (2, 16) and loaded.y_shape == (1, 16)
    expected = rollout(loaded, Y[:, :2], 4)
    written = np.load(out)
    mean = torch.stack([p.mean for p in expected.predictives], 1).numpy()
    np.testing.assert_allclose(written["mean"], mean, rtol=1e-12)
    np.testing.assert_allclose(written["members"], expected.members.movedim(0, 1).numpy())
    assert written["std"].shape == (6, 4, 1, 16) and np.all(written["std"] > 0)
    scores = json.loads(result.stdout.strip().splitlines()[-1])
    again = rollout_scores(expected.members, expected.predictives, Y[:, 2:6])
    assert scores["correlation_time"] == again["correlation_time"]
    np.testing.assert_allclose(scores["relative_l2"], again["relative_l2"], rtol=1e-10)
    short = tmp_path / "short.npz"
    np.savez(short, X=Y[:, 0], Y=Y[:, :1])
    failed = runner.invoke(app, ["predict", "--model", str(model), "--data", str(short),
                                 "--steps", "2", "--out", str(out)])
    assert isinstance(failed.exception, DataError) and "t >= h = 2" in str(failed.exception)


def test_burgers_family_film_and_config_history(tmp_path):
    data, model, out = tmp_path / "b.npz", tmp_path / "m", tmp_path / "p.npz"
    invoke("simulate", "burgers", "--n", "6", "--resolution", "32", "--fine", "256", "--steps",
           "6", "--nu", "0.1,0.02", "--out", data)
    X, Y = np.load(data)["X"], np.load(data)["Y"]
    assert X[:, 0].tolist() == [0.1, 0.02] * 3 and Y.shape == (6, 6, 1, 32)
    config = tmp_path / "c.toml"
    config.write_text("[data]\nhistory = 2\n[model.unet]\ndepth = 1\nwidth = 4\n")
    invoke("fit", "--data", data, "--config", config, "--film", "--pushforward", "0.5",
           "--out", model, "--members", "2", "--epochs", "1", "--seed", "0")
    loaded = Surrogate.load(model)
    assert loaded.config.data.history == 2 and loaded.config.model.conditions == 1
    assert loaded.config.rollout.pushforward == 0.5 and loaded.x_shape == (3, 32)
    assert "spread_scale" in loaded.records["rollout"]  # fitted on a held-out trajectory
    invoke("predict", "--model", model, "--data", data, "--steps", "3", "--out", out)
    expected = rollout(loaded, Y[:, :2], 3, conditions=X)
    np.testing.assert_allclose(np.load(out)["members"], expected.members.movedim(0, 1).numpy())
    report = tmp_path / "report"
    invoke("report", "--model", model, "--data", data, "--steps", "4", "--out", report)
    page = (report / "index.html").read_text()
    shown = rollout(loaded, Y[:, :2], 4, conditions=X)
    tau = rollout_scores(shown.members, shown.predictives, Y[:, 2:6])["correlation_time"]
    assert f'<th>correlation_time</th><td class="num">{tau}</td>' in page
    assert "spread_skill_first_half_raw" in page  # the model has a spread calibration
    assert {p.name for p in report.iterdir()} == {"index.html", "rollout_scores.png",
                                                  "rollout_example.png"}
    failed = runner.invoke(app, ["report", "--model", str(model), "--data", str(data),
                                 "--steps", "5", "--out", str(report)])
    assert isinstance(failed.exception, DataError) and "h + T = 7" in str(failed.exception)
    failed = runner.invoke(app, ["simulate", "ks", "--nu", "0.1", "--steps", "3", "--out",
                                 str(data)])
    assert isinstance(failed.exception, DataError) and "--nu" in str(failed.exception)

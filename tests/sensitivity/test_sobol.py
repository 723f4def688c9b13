"""Sobol indices through members, against closed forms and against the members' own functions."""

import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from choral.cli.app import app
from choral.config import Config
from choral.errors import DataError
from choral.sensitivity import SobolIndices, member_function, sobol_indices
from choral.simulators.analytic import ISHIGAMI, ishigami_indices
from choral.surrogate import Surrogate

PI_BOX = [[-math.pi, math.pi]] * 3


def _ishigami(a):
    return lambda X: (np.sin(X[:, 0]) + a * np.sin(X[:, 1]) ** 2
                      + 0.1 * X[:, 2] ** 4 * np.sin(X[:, 0]))[:, None]


def test_true_ishigami_matches_the_analytic_indices():
    res = sobol_indices(ISHIGAMI, PI_BOX, n=2**13, resamples=100, seed=1)
    first, total = ishigami_indices()
    assert res.first_members.shape == (1, 1, 3)
    np.testing.assert_allclose(res.first[0], first, atol=0.03)
    np.testing.assert_allclose(res.total[0], total, atol=0.03)
    assert res.epistemic_std().max() == 0.0  # one function: Monte Carlo error only
    lower, upper = res.interval("first", 0.99)
    assert np.all((lower[0] <= first) & (first <= upper[0]))
    assert 0.002 < res.mc_std("first").max() < 0.05


def test_each_member_has_its_own_indices_and_the_spread_is_epistemic():
    """Two members believe Ishigami functions with a = 7 and a = 3: each one's indices are
    that function's analytic ones, and the error bar grows by their spread."""
    members = lambda X: np.stack([_ishigami(7.0)(X), _ishigami(3.0)(X)])  # noqa: E731
    res = sobol_indices(members, PI_BOX, n=2**13, resamples=50, seed=2)
    for k, a in enumerate((7.0, 3.0)):
        first, total = ishigami_indices(a=a)
        np.testing.assert_allclose(res.first_members[k, 0], first, atol=0.03)
        np.testing.assert_allclose(res.total_members[k, 0], total, atol=0.03)
    spread = np.abs(res.first_members[0] - res.first_members[1]) / 2  # std of two values
    np.testing.assert_allclose(res.epistemic_std("first"), spread)
    np.testing.assert_allclose(res.std("first") ** 2,
                               spread**2 + (res.first_se**2).mean(0))
    assert res.epistemic_std("first")[0, 1] > 5 * res.mc_std("first")[0, 1]


def test_several_outputs_are_indexed_separately():
    f = lambda X: np.stack([X[:, 0], X[:, 1] + 0.0 * X[:, 0]], axis=1)  # noqa: E731
    res = sobol_indices(f, [[0, 1], [0, 1]], n=512, resamples=20, seed=0)
    np.testing.assert_allclose(res.first[:, :], [[1, 0], [0, 1]], atol=1e-9)


@pytest.fixture(scope="module")
def additive_model(tmp_path_factory):
    """A small surrogate of y = 3 x1 + x2 on [0, 1]^2: indices 0.9 and 0.1, no interaction."""
    X = np.random.default_rng(0).uniform(0, 1, (256, 2))
    Y = 3 * X[:, :1] + X[:, 1:]
    cfg = Config().updated(**{"train.members": 3, "train.epochs": 150, "train.seed": 0})
    model = Surrogate(cfg).fit(X, Y)
    path = tmp_path_factory.mktemp("sens") / "model"
    model.save(path)
    return model, path


def test_surrogate_members_are_the_functions_analysed(additive_model):
    model, _ = additive_model
    X = np.random.default_rng(1).uniform(0, 1, (7, 2))
    np.testing.assert_allclose(member_function(model, batch=3)(X),
                               model.predict(X).member_means.cpu().numpy(), rtol=1e-6)
    res = sobol_indices(model, [[0, 1], [0, 1]], n=1024, resamples=50, seed=0)
    assert res.first_members.shape == (3, 1, 2)
    np.testing.assert_allclose(res.first[0], [0.9, 0.1], atol=0.05)
    np.testing.assert_allclose(res.total[0], [0.9, 0.1], atol=0.05)


def test_cli_sensitivity_json_and_table(additive_model, tmp_path):
    _, path = additive_model
    runner = CliRunner()
    result = runner.invoke(app, ["sensitivity", "--model", str(path), "--n", "256",
                                 "--bounds", "[[0, 1], [0, 1]]", "--resamples", "20", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["members"] == 3 and summary["bounds"] == [[0, 1], [0, 1]]
    first = np.array(summary["first"]["estimate"])
    assert first.shape == (1, 2) and abs(first[0, 0] - 0.9) < 0.06
    assert np.all(np.array(summary["first"]["lower"]) <= first)
    data = tmp_path / "box.npz"
    np.savez(data, X=np.array([[0.0, 0.0], [1.0, 1.0]]), Y=np.zeros((2, 1)))
    table = runner.invoke(app, ["sensitivity", "--model", str(path), "--n", "128",
                                "--data", str(data), "--resamples", "10"])
    assert table.exit_code == 0, table.output
    assert "Sobol indices" in table.stdout and "x0" in table.stdout


@pytest.mark.parametrize("bounds, message", [
    ([[0, 1]], r"bounds must have shape \(2, 2\)"),
    ([[1, 0], [0, 1]], "lower < upper"),
    ("[[0, 1], [0, 1", "JSON list"),
])
def test_bad_bounds_are_named(additive_model, bounds, message):
    from choral.cli.sensitivity import parse_bounds
    from choral.sensitivity import check_bounds
    with pytest.raises(DataError, match=message):
        parse_bounds(bounds, 2) if isinstance(bounds, str) else check_bounds(bounds, 2)


def test_bad_arguments():
    with pytest.raises(DataError, match="n must be a power of 2.*got 100"):
        sobol_indices(ISHIGAMI, PI_BOX, n=100)
    res = SobolIndices(*(np.zeros((1, 1, 2)),) * 4)
    with pytest.raises(DataError, match="kind must be one of first, total; got 'second'"):
        res.std("second")
    with pytest.raises(DataError, match="level must be a float in"):
        res.interval("first", 1.5)
    with pytest.raises(DataError, match="NaN or inf"):
        sobol_indices(lambda X: np.full((len(X), 1), np.nan), PI_BOX, n=8)


def test_cli_box_defaults_to_the_training_inputs_box(additive_model, tmp_path):
    """Without --bounds or --data the box is the one the model was fitted on; a model saved
    without it (before it was recorded) asks for one."""
    model, path = additive_model
    args = ["sensitivity", "--n", "64", "--resamples", "5", "--json"]
    result = CliRunner().invoke(app, [*args, "--model", str(path)])
    assert result.exit_code == 0, result.output
    box = json.loads(result.stdout.strip().splitlines()[-1])["bounds"]
    X = np.random.default_rng(0).uniform(0, 1, (256, 2))  # the fixture's inputs
    assert box == np.stack([X.min(0), X.max(0)], axis=1).tolist()
    old = tmp_path / "old"
    model.save(old)
    metrics = json.loads((old / "metrics.json").read_text())
    del metrics["input_box"]
    (old / "metrics.json").write_text(json.dumps(metrics))
    result = CliRunner().invoke(app, [*args, "--model", str(old)])
    assert isinstance(result.exception, DataError)
    assert "--bounds" in str(result.exception)


def test_bootstrap_error_is_not_narrower_than_the_seed_to_seed_spread():
    """The bootstrap treats the base samples as independent draws; scrambled Sobol' points vary
    less than that from seed to seed, so the Monte Carlo error bar must be at least that spread
    (measured: 3-8 times wider at n = 1024)."""
    runs = [sobol_indices(ISHIGAMI, PI_BOX, n=1024, resamples=50, seed=s) for s in range(12)]
    spread = np.stack([r.first[0] for r in runs]).std(0, ddof=1)
    bootstrap = np.stack([r.mc_std("first")[0] for r in runs]).mean(0)
    assert np.all(bootstrap >= spread), (bootstrap, spread)

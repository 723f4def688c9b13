"""MCMC through member likelihoods, against closed-form and quadrature posteriors."""

import json
import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats
from typer.testing import CliRunner

from choral.cli.app import app
from choral.config import Config
from choral.distributions import GaussianMixture
from choral.errors import DataError
from choral.inference import SurrogateLikelihood, box_prior, gaussian_prior, infer
from choral.surrogate import Surrogate

F64 = torch.float64


def test_linear_gaussian_posterior_is_the_closed_form():
    """y = A x + b + e with member noise tau^2 and observation noise sigma^2, x ~ N(m0, S0):
    the posterior is Gaussian with precision S0^-1 + A^T A / (tau^2 + sigma^2)."""
    A = torch.tensor([[1.0, 0.5], [-0.3, 1.2], [0.8, -0.7]], dtype=F64)
    b, tau2, sigma = torch.tensor([0.1, -0.2, 0.3], dtype=F64), 0.04, 0.3
    members = lambda x: ((x @ A.T + b)[None], torch.full((1, len(x), 3), tau2, dtype=F64))  # noqa: E731
    m0, s0 = np.array([0.5, -0.5]), np.array([1.0, 2.0])
    y = np.array([1.0, 0.2, -0.4])
    post = infer(members, y, sigma, gaussian_prior(m0, s0), chains=6, warmup=150, draws=300,
                 steps=6, seed=1)
    An = A.numpy()
    precision = np.diag(1 / s0**2) + An.T @ An / (tau2 + sigma**2)
    cov = np.linalg.inv(precision)
    mean = cov @ (m0 / s0**2 + An.T @ (y - b.numpy()) / (tau2 + sigma**2))
    flat = post.flat
    se = np.sqrt(np.diag(cov) / post.ess)  # Monte Carlo standard error of the mean
    assert np.all(np.abs(flat.mean(0) - mean) < 4 * se), (flat.mean(0), mean, se)
    var = np.diag(cov)  # standard error of a sample covariance: (S_ii S_jj + S_ij^2) / ess
    cov_se = np.sqrt((np.outer(var, var) + cov**2) / post.ess.min())
    assert np.all(np.abs(np.cov(flat.T) - cov) < 4 * cov_se), (np.cov(flat.T), cov, cov_se)
    assert np.all(post.rhat < 1.02) and np.all(post.ess > 300)
    assert post.info["divergences"] == 0 and 0.6 < post.info["acceptance"] < 0.98


def test_two_member_posterior_matches_quadrature():
    """Two members disagree (one shifted by 0.3 on both outputs, one not): the posterior on a
    box is bimodal, and the member-coherent likelihood (one member for both outputs, no
    cross terms) is what it must follow, checked against quadrature on [-1, 1]."""
    def members(x):
        shift = torch.tensor([[0.0, 0.0], [0.3, 0.3]], dtype=x.dtype)[:, None, :]
        means = torch.cat([x, x], 1)[None] + shift
        return means, torch.full_like(means, 0.01)

    y, sigma = np.array([0.3, 0.3]), 0.1
    var = 0.01 + sigma**2

    def density(x):
        per = [stats.norm.pdf(y[0], x + shift, math.sqrt(var)) * stats.norm.pdf(
            y[1], x + shift, math.sqrt(var)) for shift in (0.0, 0.3)]
        return 0.5 * (per[0] + per[1])

    z = integrate.quad(density, -1, 1, points=[0.0, 0.3])[0]
    mean = integrate.quad(lambda x: x * density(x), -1, 1)[0] / z
    second = integrate.quad(lambda x: x * x * density(x), -1, 1)[0] / z
    below = integrate.quad(density, -1, 0.0)[0] / z
    post = infer(members, y, sigma, box_prior([[-1.0, 1.0]]), chains=8, warmup=150,
                 draws=400, steps=6, seed=2)
    flat = post.flat[:, 0]
    assert abs(flat.mean() - mean) < 0.02 and abs(flat.var() - (second - mean**2)) < 0.01
    assert abs((flat < 0).mean() - below) < 0.04, ((flat < 0).mean(), below)
    assert 0.05 < below < 0.95  # both modes carry mass
    assert np.all(post.rhat < 1.05)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A small surrogate of y = (x1 + x2, x1 - x2) on [0, 1]^2, saved."""
    X = np.random.default_rng(0).uniform(0, 1, (200, 2))
    Y = np.stack([X[:, 0] + X[:, 1], X[:, 0] - X[:, 1]], 1)
    cfg = Config().updated(**{"train.members": 3, "train.epochs": 60, "train.seed": 0})
    model = Surrogate(cfg).fit(X, Y)
    path = tmp_path_factory.mktemp("infer") / "model"
    model.save(path)
    return model, path


def test_likelihood_is_the_predictive_joint_log_prob_with_noise_added(fitted):
    model, _ = fitted
    assert model.calibrator is not None  # the calibrated members, as predict gives them
    X = np.random.default_rng(3).uniform(0, 1, (6, 2))
    y = np.array([0.9, 0.1])
    sigma = np.array([0.05, 0.2])
    lik = SurrogateLikelihood(model, y, sigma)(torch.as_tensor(X, dtype=F64))
    view = model.predict(X).members()
    noisy = GaussianMixture(view.means, view.variances + torch.as_tensor(sigma**2), view.weights)
    expected = noisy.log_prob(np.tile(y, (6, 1)), joint=True)
    torch.testing.assert_close(lik, expected, rtol=1e-5, atol=1e-5)


def test_infer_cli_recovers_the_inputs(fitted, tmp_path):
    _, path = fitted
    observed = tmp_path / "y.json"
    observed.write_text(json.dumps([0.9, -0.3]))  # x = (0.3, 0.6)
    out = tmp_path / "post.npz"
    result = CliRunner().invoke(app, [
        "infer", "--model", str(path), "--observed", str(observed), "--noise", "0.02",
        "--bounds", "[[0, 1], [0, 1]]", "--out", str(out), "--chains", "4", "--warmup", "150",
        "--draws", "150", "--steps", "8", "--json", "--plot", str(tmp_path / "c.png"),
        "--truth", "[0.3, 0.6]"])
    assert result.exit_code == 0, (result.output, result.exception)
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert np.allclose(summary["mean"], [0.3, 0.6], atol=0.05), summary["mean"]
    assert max(summary["rhat"]) < 1.1 and min(summary["ess"]) > 50
    with np.load(out) as z:
        assert z["samples"].shape == (4, 150, 2) and z["X"].shape == (600, 2)
        assert z["X"].min() >= 0 and z["X"].max() <= 1  # inside the box prior
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    table = CliRunner().invoke(app, [
        "infer", "--model", str(path), "--observed", str(observed), "--noise", "0.02",
        "--prior", "gaussian", "--prior-loc", "[0.5, 0.5]", "--prior-scale", "0.3",
        "--out", str(tmp_path / "g.npz"), "--chains", "2", "--warmup", "30", "--draws", "20"])
    assert table.exit_code == 0, table.output
    assert "R-hat" in table.stdout


def test_infer_cli_npe_route_recovers_the_inputs(fitted, tmp_path):
    _, path = fitted
    observed = tmp_path / "y.json"
    observed.write_text(json.dumps([0.9, -0.3]))  # x = (0.3, 0.6)
    out = tmp_path / "npe.npz"
    result = CliRunner().invoke(app, [
        "infer", "--model", str(path), "--observed", str(observed), "--noise", "0.02",
        "--bounds", "[[0, 1], [0, 1]]", "--out", str(out), "--method", "npe",
        "--simulations", "600", "--flows", "2", "--npe-epochs", "20", "--draws", "400",
        "--json"])
    assert result.exit_code == 0, (result.output, result.exception)
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert np.allclose(summary["mean"], [0.3, 0.6], atol=0.08), summary["mean"]
    assert summary["rhat"] == [None, None] and summary["ess"] == [400.0, 400.0]
    with np.load(out) as z:
        assert z["samples"].shape == (1, 400, 2)
        assert z["X"].min() >= 0 and z["X"].max() <= 1  # inside the box prior
    bad = CliRunner().invoke(app, ["infer", "--model", str(path), "--observed", str(observed),
                                   "--noise", "0.02", "--bounds", "[[0, 1], [0, 1]]", "--out",
                                   str(out), "--method", "smc"])
    assert isinstance(bad.exception, DataError) and "hmc or npe" in str(bad.exception)


def test_errors_name_the_argument(fitted, tmp_path):
    model, path = fitted
    with pytest.raises(DataError, match=r"y_obs must have the model's output shape \(2,\)"):
        SurrogateLikelihood(model, [1.0, 2.0, 3.0], 0.1)
    with pytest.raises(DataError, match="noise must be a standard deviation > 0"):
        SurrogateLikelihood(model, [1.0, 2.0], 0.0)
    with pytest.raises(DataError, match=r"event shape \(2,\)"):
        infer(model, [1.0, 2.0], 0.1, box_prior([[0, 1]]))
    observed = tmp_path / "y.json"
    observed.write_text("[1, 2]")
    path = tmp_path / "old"  # saved before models recorded their training box: no default box
    model.save(path)
    metrics = json.loads((path / "metrics.json").read_text())
    del metrics["input_box"]
    (path / "metrics.json").write_text(json.dumps(metrics))
    result = CliRunner().invoke(app, ["infer", "--model", str(path), "--observed",
                                      str(observed), "--noise", "0.1", "--out",
                                      str(tmp_path / "p.npz")])
    assert isinstance(result.exception, DataError)
    assert "--bounds" in str(result.exception)

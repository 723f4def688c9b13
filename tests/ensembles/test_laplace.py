"""Last-layer Laplace against Bayesian linear regression, MacKay's fixed point and round trips."""

import math

import numpy as np
import pytest
import torch

from choral.config import Config
from choral.ensembles.laplace import LastLayerPosterior, log_evidence
from choral.errors import ConfigError
from choral.networks import MLP
from choral.networks.heads import GaussianHead
from choral.networks.members import init_members, member_forward
from choral.surrogate import Surrogate

F64 = torch.float64


def linear_problem(lam0: float):
    """A linear-Gaussian model (no hidden layer, heteroscedastic variance row fixed by hand),
    its mean row set to the Bayesian linear regression posterior mean under N(0, I / lam0)."""
    gen = torch.Generator().manual_seed(0)
    n, d, floor = 30, 2, 1e-6
    X = torch.randn(n, d, generator=gen, dtype=F64)
    a, c = torch.tensor([0.7, -0.4], dtype=F64), -1.0
    var = torch.nn.functional.softplus(X @ a + c) + floor
    Y = (X @ torch.tensor([1.5, -2.0], dtype=F64) + 0.3 + var.sqrt()
         * torch.randn(n, generator=gen, dtype=F64))[:, None]
    psi = torch.cat([X, torch.ones(n, 1, dtype=F64)], 1)
    A = lam0 * torch.eye(d + 1, dtype=F64) + psi.T @ (psi / var[:, None])
    mean = torch.linalg.solve(A, psi.T @ (Y[:, 0] / var))
    template, params = init_members(lambda: MLP(d, 2, []), seeds=[0], dtype=F64)
    params["layers.0.weight"] = torch.stack([mean[:d], a])[None]
    params["layers.0.bias"] = torch.tensor([[mean[d], c]], dtype=F64)
    forward = member_forward(template, "stacked")
    return forward, params, X, Y, GaussianHead(floor).loss, psi, var, A, mean


def test_linear_gaussian_laplace_is_the_bayesian_linear_regression_posterior():
    lam0 = 0.7
    forward, params, X, Y, loss, psi, var, A, mean = linear_problem(lam0)
    post = LastLayerPosterior.fit(forward, params, X, Y, loss, grid=(lam0, lam0))
    torch.testing.assert_close(post.precision[0, 0], A)
    torch.testing.assert_close(post.theta[0, 0], mean)
    # at the MAP of a linear-Gaussian model the Laplace evidence is the exact marginal likelihood
    cov = psi @ psi.T / lam0 + torch.diag(var)
    exact = torch.distributions.MultivariateNormal(torch.zeros(len(Y), dtype=F64), cov)
    assert post.evidence.item() == pytest.approx(exact.log_prob(Y[:, 0]).item(), rel=1e-10)


def test_chosen_prior_precision_is_mackays_fixed_point():
    forward, params, X, Y, loss, *_ = linear_problem(0.7)
    post = LastLayerPosterior.fit(forward, params, X, Y, loss, grid=(1e-4, 1e4))
    theta = post.theta.flatten()
    eig = torch.linalg.eigvalsh(post.precision[0, 0] - post.lam * torch.eye(3, dtype=F64))
    lam = 1.0
    for _ in range(500):  # lam = gamma / |theta|^2, gamma = sum e / (e + lam)
        lam = float((eig / (eig + lam)).sum() / theta.square().sum())
    assert post.lam.item() == pytest.approx(lam, rel=0.05)  # grid steps are 4.7%


def test_samples_follow_the_posterior_covariance():
    forward, params, X, Y, loss, *_ = linear_problem(0.7)
    post = LastLayerPosterior.fit(forward, params, X, Y, loss)
    draws = post.sample(20000, torch.Generator().manual_seed(1))[0]  # (k, P)
    cov = post.covariance()[0, 0]
    np.testing.assert_allclose(draws.mean(0), post.theta[0, 0], atol=4 * cov.diag().max().sqrt()
                               / math.sqrt(20000))
    np.testing.assert_allclose(torch.cov(draws.T), cov, rtol=0.05, atol=0.05 * cov.abs().max())


def test_log_evidence_matches_its_formula():
    lam = torch.tensor([0.5, 2.0], dtype=F64)
    got = log_evidence(torch.tensor([-3.0], dtype=F64), torch.tensor([[1.0, 2.0]], dtype=F64),
                       torch.tensor([[4.0, 1.0]], dtype=F64), lam)
    want = [-3 - p * 5 / 2 + math.log(p) - 0.5 * (math.log(4 + p) + math.log(1 + p))
            for p in lam.tolist()]
    np.testing.assert_allclose(got[0], want)


def test_surrogate_laplace_round_trip_is_bit_identical(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.uniform(0, 1, (40, 2))
    Y = np.sin(4 * X[:, :1]) + X[:, 1:]
    cfg = Config().updated(**{"train.members": 2, "train.epochs": 30, "model.hidden": [8],
                              "train.ensemble": "laplace", "posterior.samples": 3})
    model = Surrogate(cfg).fit(X, Y)
    pred = model.predict(X[:7])
    assert pred.member_means.shape == (6, 7, 1)
    model.save(tmp_path / "m")
    back = Surrogate.load(tmp_path / "m")
    again = back.predict(X[:7])
    assert torch.equal(pred.mean, again.mean) and torch.equal(pred.variance, again.variance)
    assert torch.equal(back.records["laplace"]["prior_precision"],
                       model.records["laplace"]["prior_precision"])
    # members share everything but the last layer's mean rows
    w = back.params["layers.0.weight"]
    assert torch.equal(w[0], w[2]) and not torch.equal(w[0], w[3])


def test_laplace_refuses_other_heads():
    cfg = Config().updated(**{"train.members": 1, "train.epochs": 2, "model.head": "mdn",
                              "train.ensemble": "laplace", "calibration.method": "none"})
    X = np.random.default_rng(0).uniform(size=(20, 2))
    with pytest.raises(ConfigError, match="gaussian head"):
        Surrogate(cfg).fit(X, X[:, :1])

"""Cyclical SGLD against the closed-form Bayesian linear regression posterior, and round trips."""

import numpy as np
import pytest
import torch

from choral.config import Config
from choral.ensembles import METHODS, TrainContext
from choral.ensembles.config import PosteriorConfig, TrainConfig, WeightSpaceConfig
from choral.ensembles.sgmcmc import SGLD
from choral.errors import ConfigError
from choral.surrogate import Surrogate

F64 = torch.float64
SIGMA = 0.5


def _linear(params, x):  # stacked linear models: x (s, b, d) -> (s, b, 1)
    return torch.einsum("sbd,sd->sb", x, params["w"])[..., None]


def _nll(out, y):  # mean over values of the Gaussian NLL with known noise SIGMA (no constant)
    return (0.5 * (y - out) ** 2 / SIGMA**2).flatten(1).mean(1)


@pytest.mark.parametrize("temperature", [1.0, 0.3])
def test_chains_sample_the_bayesian_linear_regression_posterior(temperature):
    # posterior of w under N(0, I / lam): precision A = X^T X / sigma^2 + lam I, mean
    # A^-1 X^T y / sigma^2; at temperature T the chains' law is N(mean, T A^-1)
    gen = torch.Generator().manual_seed(0)
    n, d, s, lam = 30, 2, 200, 2.0
    X = torch.randn(n, d, generator=gen, dtype=F64)
    Y = (X @ torch.tensor([1.0, -0.5], dtype=F64) + SIGMA * torch.randn(n, generator=gen,
                                                                       dtype=F64))[:, None]
    A = X.T @ X / SIGMA**2 + lam * torch.eye(d, dtype=F64)
    mean = torch.linalg.solve(A, X.T @ Y[:, 0] / SIGMA**2)
    cov = temperature * torch.linalg.inv(A)
    cycles = 4
    ctx = TrainContext(_linear, {"w": torch.zeros(s, d, dtype=F64)}, X, Y, None, None,
                       TrainConfig(members=s, epochs=1, batch_size=n), list(range(s)), _nll,
                       weightspace=WeightSpaceConfig(pretrain=False, epochs=200 * cycles,
                                                     cycles=cycles),
                       posterior=PosteriorConfig(sgmcmc_lr=0.02, exploration=0.0,
                                                 prior_precision=lam, temperature=temperature,
                                                 sgmcmc_clip=None))  # exact Langevin steps
    result = METHODS["sgmcmc"](ctx)
    w = result.params["w"]
    assert w.shape == (s * cycles, d)
    got_mean, got_cov = w.mean(0), torch.cov(w.T)
    se = (torch.diag(cov) / len(w)).sqrt()
    assert torch.all((got_mean - mean).abs() < 4 * se), (got_mean, mean)
    # sample covariance of ~800 draws: ~5% relative error; the step adds < 2% (annealed)
    np.testing.assert_allclose(got_cov.numpy(), cov.numpy(), rtol=0.15,
                               atol=0.15 * float(torch.diag(cov).min()))


def test_without_noise_a_step_is_gradient_descent_on_the_posterior_energy():
    w = torch.tensor([[1.0, -2.0]], dtype=F64, requires_grad=True)
    opt = SGLD([w], lr=0.1, n=20, prior_precision=4.0, noise_below=0.05, seed=0)
    w.grad = torch.tensor([[0.5, 0.25]], dtype=F64)
    opt.step()  # lr 0.1 > noise_below: no noise; w - lr (g + lam w / n)
    want = [[1 - 0.1 * (0.5 + 0.2), -2 - 0.1 * (0.25 - 0.4)]]
    np.testing.assert_allclose(w.detach().numpy(), want)


def test_noise_generator_is_part_of_the_optimiser_state():
    w = torch.zeros(3, dtype=F64, requires_grad=True)
    opt = SGLD([w], lr=0.1, n=5, seed=1)
    state = opt.state_dict()
    w.grad = torch.zeros(3, dtype=F64)
    opt.step()
    first = w.detach().clone()
    opt.load_state_dict(state)
    with torch.no_grad():
        w.zero_()
    opt.step()
    assert torch.equal(w.detach(), first) and first.abs().sum() > 0


def _data():
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (40, 2))
    return X, np.sin(3 * X[:, :1]) + 0.05 * rng.normal(size=(40, 1))


def _config(**extra):
    return Config().updated(**{"train.members": 2, "train.epochs": 20, "model.hidden": [16],
                               "train.ensemble": "sgmcmc", "weightspace.epochs": 12,
                               "weightspace.cycles": 3, "posterior.cycle_samples": 2, **extra})


def test_surrogate_stores_members_times_samples_and_round_trips(tmp_path):
    X, Y = _data()
    model = Surrogate(_config()).fit(X, Y)
    pred = model.predict(X[:7])
    assert pred.num_members == 2 * 3 * 2
    assert float(pred.epistemic.mean()) > 0
    model.save(tmp_path / "m")
    again = Surrogate.load(tmp_path / "m").predict(X[:7])
    assert torch.equal(pred.mean, again.mean) and torch.equal(pred.variance, again.variance)


def test_too_many_samples_per_cycle_are_refused():
    X, Y = _data()
    with pytest.raises(ConfigError, match="posterior.cycle_samples"):
        Surrogate(_config(**{"posterior.cycle_samples": 3})).fit(X, Y)


def test_a_diverging_chain_is_reported():
    X, Y = _data()
    with pytest.raises(ConfigError, match="sgmcmc_lr = 1000.0 made a chain diverge"):
        Surrogate(_config(**{"posterior.sgmcmc_lr": 1000.0, "posterior.sgmcmc_clip": None})
                  ).fit(X, Y)


def _one_step(clip, train_clip=None):
    """Weights (s, d) after one full-batch, noise-free (T ~ 0) cSGLD step from zero."""
    gen = torch.Generator().manual_seed(1)
    X = torch.randn(20, 3, generator=gen, dtype=F64)
    Y = X @ torch.tensor([[2.0], [-1.0], [3.0]], dtype=F64)
    ctx = TrainContext(_linear, {"w": torch.zeros(2, 3, dtype=F64)}, X, Y, None, None,
                       TrainConfig(members=2, epochs=1, batch_size=20, grad_clip=train_clip),
                       [0, 1], _nll,
                       weightspace=WeightSpaceConfig(pretrain=False, epochs=1, cycles=1),
                       posterior=PosteriorConfig(sgmcmc_lr=0.1, exploration=0.0,
                                                 prior_precision=1e-12, temperature=1e-300,
                                                 sgmcmc_clip=clip))
    grad = -(X.T @ (Y[:, 0] - 0.0)) / (len(X) * SIGMA**2)  # d mean NLL / dw at w = 0
    return METHODS["sgmcmc"](ctx).params["w"], grad


def test_gradients_are_clipped_to_the_posterior_clip_unless_train_sets_one():
    w, grad = _one_step(None)
    np.testing.assert_allclose(w.numpy(), (-0.1 * grad).expand(2, 3).numpy(), rtol=1e-9)
    w, _ = _one_step(0.5)  # |grad| >> 0.5: the step has norm lr * clip, along -grad
    np.testing.assert_allclose(w.numpy(), (-0.1 * 0.5 * grad / grad.norm()).expand(2, 3).numpy(),
                               rtol=1e-9)
    w, _ = _one_step(0.5, train_clip=2.0)  # train.grad_clip wins
    np.testing.assert_allclose(w.numpy(), (-0.1 * 2.0 * grad / grad.norm()).expand(2, 3).numpy(),
                               rtol=1e-9)

"""The BoTorch adapter: posterior moments equal the choral predictive; BoTorch optimises on it."""

import copy

import numpy as np
import pytest
import torch

from choral.config import Config
from choral.errors import DataError
from choral.evaluation.calibration import scale_factor
from choral.surrogate import Surrogate

pytest.importorskip("botorch")

from botorch.acquisition.logei import qLogExpectedImprovement  # noqa: E402
from botorch.optim import optimize_acqf  # noqa: E402

from choral.integrations.botorch import as_botorch_model  # noqa: E402


@pytest.fixture(scope="module")
def fitted():
    g = np.random.default_rng(0)
    X = g.uniform(0, 1, (48, 3))
    Y = np.stack([np.sin(4 * X[:, 0]) + X[:, 1], X[:, 2] ** 2], 1)
    cfg = Config().updated(**{"train.members": 4, "train.epochs": 30, "train.seed": 0})
    return Surrogate(cfg).fit(X, Y), X, Y


def test_posterior_moments_match_the_predictive(fitted):
    sur, _, _ = fitted
    X = torch.rand(2, 5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    post = as_botorch_model(sur).posterior(X)
    pred = sur.predict(X.reshape(-1, 3).numpy())
    assert post.values.shape == (2, 4, 5, 2)
    assert torch.allclose(post.mean.reshape(-1, 2), pred.mean, atol=1e-10)
    assert torch.allclose(post.variance.reshape(-1, 2), pred.epistemic, atol=1e-10)
    assert torch.allclose(post.values.movedim(-3, 0).reshape(4, -1, 2), pred.member_means,
                          atol=1e-10)
    one = as_botorch_model(sur).posterior(X, output_indices=[1])
    assert torch.allclose(one.mean.reshape(-1), pred.mean[:, 1], atol=1e-10)


def test_qlogei_and_optimize_acqf_run_with_gradients(fitted):
    sur, X, Y = fitted
    model = as_botorch_model(sur)
    from botorch.acquisition.objective import LinearMCObjective

    objective = LinearMCObjective(torch.tensor([1.0, 0.0], dtype=torch.float64))
    acq = qLogExpectedImprovement(model, best_f=float(Y[:, 0].max()), objective=objective)
    x = torch.full((1, 2, 3), 0.5, dtype=torch.float64, requires_grad=True)
    acq(x).sum().backward()
    assert x.grad is not None and bool(torch.isfinite(x.grad).all()) and x.grad.abs().sum() > 0
    bounds = torch.tensor([[0.0] * 3, [1.0] * 3], dtype=torch.float64)
    cand, value = optimize_acqf(acq, bounds=bounds, q=2, num_restarts=2, raw_samples=64)
    assert cand.shape == (2, 3) and bool(((cand >= 0) & (cand <= 1)).all())
    assert bool(torch.isfinite(value))
    start = acq(torch.rand(64, 2, 3, dtype=torch.float64,
                           generator=torch.Generator().manual_seed(0)))
    assert value >= start.max() - 1e-6  # the optimiser improved on its random starts


def test_rejects_unfitted_surrogate():
    with pytest.raises(DataError, match="surrogate must be a fitted"):
        as_botorch_model(Surrogate())


@pytest.mark.parametrize("head", [{"head": "mdn", "components": 2},
                                  {"head": "quantile", "quantile_levels": 5},
                                  {"head": "quantile", "quantile_levels": 5,
                                   "quantile_combine": "mixture"}])
def test_every_head_gives_the_predictives_member_means_with_gradients(fitted, head):
    _, X, Y = fitted
    cfg = Config().updated(**{"train.members": 3, "train.epochs": 5,
                              **{f"model.{k}": v for k, v in head.items()}})
    sur = Surrogate(cfg).fit(X, Y)
    x = torch.rand(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    post = as_botorch_model(sur).posterior(x)
    pred = sur.predict(x.numpy())
    torch.testing.assert_close(post.values.movedim(-3, 0).reshape(3, -1, 2),
                               pred.member_means, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(post.mean.reshape(-1, 2), pred.mean, rtol=1e-5, atol=1e-6)
    xg = x.clone().requires_grad_(True)
    as_botorch_model(sur).posterior(xg).mean.sum().backward()
    assert bool(torch.isfinite(xg.grad).all()) and xg.grad.abs().sum() > 0


@pytest.mark.parametrize("method", ["scale", "pit_scale"])
def test_scale_calibrated_member_means_match_the_calibrated_predictive(fitted, method):
    sur, X, Y = fitted
    sur = copy.copy(sur).calibrate(X, Y + 0.3 * np.sin(7 * X[:, :2]), method)  # a factor != 1
    assert abs(scale_factor(sur.calibrator, (2,)) - 1).max() > 0.05
    x = torch.rand(6, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    post, pred = as_botorch_model(sur).posterior(x), sur.predict(x.numpy())
    torch.testing.assert_close(post.values.movedim(-3, 0).reshape(4, -1, 2), pred.member_means)
    torch.testing.assert_close(post.variance.reshape(-1, 2), pred.epistemic)

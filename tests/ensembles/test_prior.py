"""Randomized prior functions: frozen priors, the prior's variance away from data, round trips."""

import numpy as np
import pytest
import torch
from torch.func import functional_call

from choral.config import Config
from choral.errors import ConfigError
from choral.networks import MLP
from choral.surrogate import Surrogate


def data():
    rng = np.random.default_rng(0)
    X = rng.uniform(0, 1, (40, 2))
    return X, np.sin(4 * X[:, :1]) + X[:, 1:]


def fitted(epochs: int, scale: float = 1.0) -> Surrogate:
    cfg = Config().updated(**{"train.members": 3, "train.epochs": epochs, "model.hidden": [8],
                              "train.ensemble": "prior", "posterior.prior_scale": scale,
                              "train.dtype": "float64", "calibration.method": "none"})
    X, Y = data()
    return Surrogate(cfg).fit(X, Y)


def test_prior_branch_stays_frozen_while_the_network_trains():
    short, long = fitted(1), fitted(25)
    prior = [k for k in long.params if k.startswith("prior.")]
    net = [k for k in long.params if k.startswith("net.")]
    assert prior and net
    assert all(torch.equal(short.params[k], long.params[k]) for k in prior)
    assert not all(torch.equal(short.params[k], long.params[k]) for k in net)


@pytest.mark.parametrize("scale", [0.5, 2.0])
def test_without_data_the_spread_is_the_random_priors(scale):
    model = fitted(2, scale)
    # zero the trained network: each member is then beta * p_i, computed here member by member
    # with a plain nn.Module (not the stacked forward)
    params = {k: (torch.zeros_like(v) if k.startswith("net.") else v)
              for k, v in model.params.items()}
    Xq = np.random.default_rng(1).uniform(-3, 4, (25, 2))
    pred = model.with_params(params).predict(Xq)
    mlp = MLP(2, 1, [8]).to(torch.float64)
    xs = torch.as_tensor(model.x_norm.transform(Xq))
    outs = torch.stack([functional_call(mlp, {k[6:]: v[i] for k, v in params.items()
                                              if k.startswith("prior.")}, (xs,))
                        for i in range(3)])
    y_scale = float(model.y_norm.loc_scale(2)[1].ravel()[0])
    expected = (scale * y_scale) ** 2 * outs.var(0, unbiased=False)
    torch.testing.assert_close(pred.epistemic, expected)
    assert float(expected.min()) > 0


def test_round_trip_is_bit_identical(tmp_path):
    model = fitted(10)
    X, _ = data()
    pred = model.predict(X[:9])
    model.save(tmp_path / "m")
    back = Surrogate.load(tmp_path / "m")
    again = back.predict(X[:9])
    assert torch.equal(pred.mean, again.mean) and torch.equal(pred.variance, again.variance)


def test_prior_needs_the_gaussian_head():
    cfg = Config().updated(**{"train.members": 1, "train.epochs": 1, "model.head": "mdn",
                              "train.ensemble": "prior"})
    X, Y = data()
    with pytest.raises(ConfigError, match="gaussian"):
        Surrogate(cfg).fit(X, Y)

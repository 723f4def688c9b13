"""Warm-started fits: the members start from a fitted surrogate's, in its units."""

import numpy as np
import pytest
import torch

from choral.config import Config
from choral.errors import ConfigError
from choral.surrogate import Surrogate
from choral.surrogate.model import warm_members


def data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(0, 1, (n, 2))
    return X, np.sin(4 * X[:, :1]) + X[:, 1:]


def cfg(**kw):
    return Config().updated(**{"train.members": 2, "train.epochs": 20, "model.hidden": [8],
                               "train.dtype": "float64", "calibration.method": "none", **kw})


def test_a_warm_fit_starts_from_the_previous_members_in_its_units():
    X, Y = data()
    first = Surrogate(cfg()).fit(X, Y)
    X2, Y2 = data(60, seed=1)
    X2, Y2 = np.concatenate([X, X2]) + 0.5, np.concatenate([Y, Y2]) * 3  # other statistics
    # a learning rate of ~0: the warm fit must keep the previous networks and standardisers
    warm = Surrogate(cfg(**{"train.lr": 1e-30, "train.epochs": 1})).fit(X2, Y2,
                                                                         warm_start=first)
    assert warm.x_norm.to_dict() == first.x_norm.to_dict()
    for k, v in first.params.items():
        torch.testing.assert_close(warm.params[k], v)
    torch.testing.assert_close(warm.predict(X).mean, first.predict(X).mean)
    cold = Surrogate(cfg(**{"train.lr": 1e-30, "train.epochs": 1})).fit(X2, Y2)
    assert not torch.allclose(cold.params["layers.0.weight"], first.params["layers.0.weight"])


def test_warm_members_take_the_first_network_of_each_member():
    X, Y = data()
    lap = Surrogate(cfg(**{"train.ensemble": "laplace", "posterior.samples": 3})).fit(X, Y)
    init = {k: v[:2] for k, v in lap.params.items()}
    got = warm_members(lap, init)
    for k, v in lap.params.items():
        assert torch.equal(got[k], v[[0, 3]])
    with pytest.raises(ConfigError, match="warm_start"):
        warm_members(lap, {k: v[:4] for k, v in lap.params.items()})  # 6 is not a multiple


class Stop(Exception):
    pass


def test_a_cold_checkpoint_is_not_resumed_by_a_warm_fit(tmp_path):
    X, Y = data()
    first = Surrogate(cfg()).fit(X, Y)
    path = tmp_path / "fit.checkpoint"
    settings = cfg(**{"train.checkpoint_epochs": 1, "train.checkpoint_seconds": None})

    def stop(epoch, *_):
        if epoch == 3:
            raise Stop

    with pytest.raises(Stop):  # a cold fit stopped mid-way leaves its checkpoint
        Surrogate(settings).fit(X, Y, stop, checkpoint=path)
    assert path.exists()
    with pytest.raises(ConfigError, match="another configuration"):
        Surrogate(settings).fit(X, Y, checkpoint=path, resume="require", warm_start=first)
    Surrogate(settings).fit(X, Y, checkpoint=path, resume="require")  # the cold one resumes

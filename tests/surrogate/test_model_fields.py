"""Field surrogates: U-Net ensembles through fit / predict / save / load."""

import numpy as np
import pytest
import torch

from choral.config import Config
from choral.errors import DataError
from choral.evaluation.metrics import evaluate
from choral.surrogate import Surrogate

CFG = Config.from_dict({
    "model": {"backbone": "unet", "activation": "gelu", "unet": {"depth": 2, "width": 4}},
    "train": {"members": 2, "epochs": 3, "batch_size": 8, "dtype": "float64"},
})


def _fields(n=24, grid=(16,), seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 1, *grid))
    Y = np.concatenate([np.cumsum(X, axis=-1) / 4, X ** 2], axis=1)  # 2 output channels
    return X, Y


@pytest.mark.parametrize("grid", [(16,), (12, 10)])
def test_unet_surrogate_shapes_and_round_trip(tmp_path, grid):
    X, Y = _fields(grid=grid)
    model = Surrogate(CFG).fit(X, Y)
    pred = model.predict(X[:5])
    assert pred.mean.shape == (5, 2, *grid) and pred.member_means.shape == (2, 5, 2, *grid)
    scores = evaluate(pred, Y[:5])
    assert {"rel_l2", "nrmse"} <= set(scores)
    model.save(tmp_path / "m")
    again = Surrogate.load(tmp_path / "m").predict(X[:5])
    assert torch.equal(again.member_means, pred.member_means)


def test_unet_loop_backend_equals_stacked():
    X, Y = _fields()
    a = Surrogate(CFG.updated(**{"train.backend": "loop"})).fit(X, Y)
    b = Surrogate(CFG).fit(X, Y)
    assert (a.backend, b.backend) == ("loop", "stacked")
    torch.testing.assert_close(a.predict(X).member_means, b.predict(X).member_means,
                               rtol=1e-8, atol=1e-8)


def test_grid_and_backbone_mismatches_are_clear():
    X, Y = _fields()
    with pytest.raises(DataError, match="same 1-D or 2-D grid"):
        Surrogate(CFG).fit(X, Y[..., :8])
    with pytest.raises(DataError, match="use backbone = 'unet' for fields"):
        Surrogate(Config()).fit(X, Y)
    model = Surrogate(CFG).fit(X, Y)
    with pytest.raises(DataError, match=r"got shape \(3, 1, 20\)"):
        model.predict(np.zeros((3, 1, 20)))

"""Rollouts against repeated application: members with known linear maps (exact), noise whose
accumulated variance has a closed form, and an FNO whose member k is fed its own predictions."""

import numpy as np
import pytest
import torch

from choral.config import Config
from choral.errors import ConfigError, DataError
from choral.surrogate.rollout import fit_rollout, history_pairs, rollout

C, H, S = 2, 2, 3


def linear_model(maps: np.ndarray, var: float, trajectories: np.ndarray):
    """A surrogate (MLP without hidden layers) whose member k maps the window
    (x_{t-1}, x_t) to N(maps[k] @ [x_{t-1}; x_t], var) in user units, set by hand."""
    cfg = Config.from_dict({"model": {"hidden": []}, "calibration": {"method": "none"},
                            "train": {"members": S, "epochs": 1, "dtype": "float64"}})
    model = fit_rollout(trajectories, H, cfg)
    mx, sx = model.x_norm.mean, model.x_norm.scale
    my, sy = model.y_norm.mean, model.y_norm.scale
    W = maps * sx[None, None, :] / sy[None, :, None]  # standardised: ys = W xs + b
    b = (maps @ mx - my) / sy
    raw = np.log(np.expm1(var / sy**2 - 1e-6))  # softplus(raw) + floor = var / sy^2
    weight = np.concatenate([W, np.zeros_like(W)], axis=1)
    bias = np.concatenate([b, np.broadcast_to(raw, b.shape)], axis=1)
    params = {"layers.0.weight": torch.as_tensor(weight), "layers.0.bias": torch.as_tensor(bias)}
    return model.with_params(params)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(6, 8, C)), rng.normal(scale=0.5, size=(S, C, H * C))


def test_history_pairs_against_explicit_windows(data):
    u, _ = data
    X, Y = history_pairs(u, H)
    assert X.shape == (6 * 6, H * C) and Y.shape == (36, C)
    np.testing.assert_array_equal(X[7], np.concatenate([u[1, 1], u[1, 2]]))
    np.testing.assert_array_equal(Y[7], u[1, 3])


def test_mean_rollout_equals_repeated_application_of_each_member(data):
    u, maps = data
    model = linear_model(maps, 0.1, u)
    out = rollout(model, u[:, :H], steps=5)
    assert out.members.shape == (S, 6, 5, C)
    for k in range(S):
        window = [u[:, 0], u[:, 1]]
        for t in range(5):
            nxt = np.einsum("ij,nj->ni", maps[k], np.concatenate(window[-2:], axis=1))
            np.testing.assert_allclose(out.members[k, :, t].numpy(), nxt, atol=1e-10)
            window.append(nxt)
    pred = out.predictives[2]  # the mixture of the members' steps, each at its own state
    np.testing.assert_allclose(pred.mean.numpy(), out.members[:, :, 2].mean(0).numpy(),
                               atol=1e-10)
    np.testing.assert_allclose(pred.aleatoric.numpy(), 0.1, rtol=1e-4)
    np.testing.assert_allclose(out.mean.numpy(), out.members.mean(0).numpy())


def test_sampled_noise_accumulates_like_a_random_walk():
    # x_{t+1} = x_t + eps, eps ~ N(0, var): after t steps Var = t var, increments independent
    u = np.random.default_rng(1).normal(size=(4000, 3, C))
    walk = np.zeros((S, C, H * C))
    walk[:, :, C:] = np.eye(C)
    model = linear_model(walk, 0.25, u)
    out = rollout(model, u[:, :H], steps=4, noise="sample", seed=3)
    steps = (out.members - torch.as_tensor(u[None, :, 1, None])).numpy()  # (s, n, t, c)
    var = steps.var(axis=1)
    se = 0.25 * np.arange(1, 5) * np.sqrt(2 / 4000)
    assert np.all(np.abs(var - 0.25 * np.arange(1, 5)[None, :, None]) < 5 * se[None, :, None])
    increments = np.diff(steps, axis=2)
    assert abs(np.corrcoef(increments[0, :, 0, 0], increments[0, :, 1, 0])[0, 1]) < 0.08
    again = rollout(model, u[:, :H], steps=4, noise="sample", seed=3)
    assert torch.equal(again.members, out.members)
    assert not torch.equal(rollout(model, u[:, :H], 4, "sample", seed=4).members, out.members)


def heat(n: int, t: int, grid: int = 16, seed: int = 0) -> np.ndarray:
    """Periodic heat equation trajectories (n, t, 1, grid): one step multiplies mode k by
    exp(-0.02 k^2) (a linear map, exactly learnable by an FNO)."""
    rng = np.random.default_rng(seed)
    v = np.zeros((n, grid // 2 + 1), complex)
    v[:, 1:4] = rng.normal(size=(n, 3)) + 1j * rng.normal(size=(n, 3))
    decay = np.exp(-0.02 * np.arange(grid // 2 + 1) ** 2)
    return np.stack([np.fft.irfft(v * decay**i, n=grid) for i in range(t)], axis=1)[:, :, None]


def test_fno_members_are_coherent_trajectories():
    u = heat(24, 6)
    cfg = Config.from_dict({
        "model": {"backbone": "fno", "fno": {"modes": 4, "width": 8, "layers": 2}},
        "train": {"members": 2, "epochs": 3, "batch_size": 16, "dtype": "float64", "seed": 1}})
    model = fit_rollout(u, H, cfg)
    out = rollout(model, u[:3, :H], steps=3, spread=False)
    scaled = rollout(model, u[:3, :H], steps=3)  # spread scaled about the same mean
    a = model.records["rollout"]["spread_scale"]["mean"]
    torch.testing.assert_close(scaled.mean, out.mean, rtol=0, atol=1e-12)
    torch.testing.assert_close(scaled.members - scaled.mean, a * (out.members - out.mean))
    for k in range(2):  # member k alone, fed its own predictions through predict()
        alone = model.with_params({name: v[k:k + 1] for name, v in model.params.items()})
        window = u[:3, :H]
        for t in range(3):
            nxt = alone.predict(window.reshape(3, H, 16), calibrated=False).mean.numpy()
            np.testing.assert_allclose(out.members[k, :, t].numpy(), nxt, atol=1e-12)
            window = np.concatenate([window[:, 1:], nxt[:, None]], axis=1)
    assert not torch.allclose(out.members[0], out.members[1])
    fine = rollout(model, heat(2, 2, grid=32), steps=2)  # an FNO rolls out on another grid
    assert fine.members.shape == (2, 2, 2, 1, 32)


def test_errors(data):
    u, maps = data
    model = linear_model(maps, 0.1, u)
    with pytest.raises(DataError, match="history"):
        rollout(model, u[:, :3], steps=2)
    with pytest.raises(DataError, match="c = 2"):  # h c matches, but 1 state of 4 channels
        rollout(model, u[:, :1].repeat(2, axis=2), steps=2)
    with pytest.raises(DataError, match="trajectories"):
        history_pairs(u[:, :2], 2)
    with pytest.raises(ConfigError, match="noise"):
        rollout(model, u[:, :H], 2, noise="propagate")
    quantile = fit_rollout(u, H, Config.from_dict({"model": {"head": "quantile"},
                                                   "train": {"members": 2, "epochs": 1}}))
    with pytest.raises(ConfigError, match="gaussian"):
        rollout(quantile, u[:, :H], 2, noise="sample")

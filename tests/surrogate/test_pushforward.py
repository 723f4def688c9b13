"""Pushforward and noise-injection training inputs: the previous-window map against the pairs,
the pushed inputs against each member's own ``predict``, the noise's moments, and the switched-off
path against a plain fit, bit for bit."""

import numpy as np
import pytest
import torch

from choral.config import Config
from choral.surrogate import Surrogate
from choral.surrogate.pushforward import TrainingInputs, previous_rows
from choral.surrogate.rollout import _held_out, fit_rollout, history_pairs, rollout

H, C = 2, 3


@pytest.fixture(scope="module")
def trajectories():
    return np.cumsum(np.random.default_rng(0).normal(size=(5, 9, C)), axis=1)


def test_previous_rows_hold_the_window_one_step_earlier(trajectories):
    X, Y = history_pairs(trajectories, H)
    prev = previous_rows(5, 9, H)
    assert (prev == -1).sum() == 5
    for j, p in enumerate(prev):
        if p < 0:  # a trajectory's first window: its first h states
            assert any(np.array_equal(X[j], u[:H].reshape(-1)) for u in trajectories)
            continue
        np.testing.assert_array_equal(X[j][:(H - 1) * C], X[p][C:])  # shifted by one state
        np.testing.assert_array_equal(X[j][(H - 1) * C:], Y[p])  # newest state = p's target


def fitted(trajectories):
    cfg = Config.from_dict({"model": {"hidden": [8]}, "calibration": {"method": "none"},
                            "train": {"members": 3, "epochs": 2, "dtype": "float64"}})
    X, Y = history_pairs(trajectories, H)
    return Surrogate(cfg).fit(X, Y), X


def test_pushed_inputs_are_each_members_own_prediction(trajectories):
    model, X = fitted(trajectories)
    Xs = torch.as_tensor(model.x_norm.transform(X))
    rows = torch.arange(len(X))
    hook = TrainingInputs(previous_rows(5, 9, H), H, C, pushforward=1.0)(model, Xs, rows)
    idx = torch.stack([torch.randperm(len(X), generator=torch.Generator().manual_seed(k))[:12]
                       for k in range(3)])  # (s, b): each member its own rows
    live = {k: v.clone().requires_grad_(True) for k, v in model.params.items()}  # as in training
    got = hook(model.forward, live, Xs[idx], idx)
    prev = previous_rows(5, 9, H)
    means = model.predict(X, calibrated=False).members().means.numpy()  # (s, n, c)
    for k in range(3):
        for b, r in enumerate(idx[k].tolist()):
            window = X[r].copy()
            if prev[r] >= 0:  # member k's prediction of the newest state from the window before
                window[(H - 1) * C:] = means[k, prev[r]]
            expected = model.x_norm.transform(window[None])[0]
            np.testing.assert_allclose(got[k, b].detach().numpy(), expected, atol=1e-10)
    assert not got.requires_grad  # no gradient flows through the pushed state


def test_input_noise_moments_and_seed(trajectories):
    model, X = fitted(trajectories)
    Xs = torch.as_tensor(model.x_norm.transform(X))
    make = TrainingInputs(previous_rows(5, 9, H), H, C, noise=0.1, seed=3)
    idx = torch.arange(len(X)).repeat(3, 60)  # 3 x 2100 rows of 6 values
    x = Xs[idx]
    eps = make(model, Xs, torch.arange(len(X)))(model.forward, model.params, x, idx) - x
    assert abs(float(eps.mean())) < 4 * 0.1 / eps.numel() ** 0.5
    assert abs(float(eps.std()) / 0.1 - 1) < 4 / (2 * eps.numel()) ** 0.5
    again = make(model, Xs, torch.arange(len(X)))(model.forward, model.params, x, idx) - x
    torch.testing.assert_close(again, eps, rtol=0, atol=0)


def config(**rollout):
    return Config.from_dict({"model": {"hidden": [8]}, "rollout": rollout,
                             "train": {"members": 2, "epochs": 3, "dtype": "float64"}})


def test_switched_off_equals_the_plain_fit_and_on_rolls_out(trajectories):
    off = fit_rollout(trajectories, H, config(pushforward=0.0, input_noise=0.0))
    kept, held = _held_out(5, 0.2, 0)
    assert len(held) == 1 and off.records["rollout"]["validation_trajectories"] == 1
    plain = Surrogate(config().updated(**{"data.history": H})).fit(
        *history_pairs(trajectories[kept], H))
    for k, v in plain.params.items():
        torch.testing.assert_close(off.params[k], v, rtol=0, atol=0)
    on = fit_rollout(trajectories, H, config(pushforward=0.5, input_noise=0.05))
    assert not torch.equal(on.params["layers.0.weight"], off.params["layers.0.weight"])
    out = rollout(on, trajectories[:, :H], steps=30, noise="sample")
    assert torch.isfinite(out.members).all() and out.members.shape == (2, 5, 30, C)
    assert set(on.records["rollout"]["spread_scale"]) == {"mean", "sample"}


@pytest.mark.parametrize("ensemble", ["swa", "prior"])
def test_other_ensemble_methods_train_on_the_hooked_inputs(trajectories, ensemble):
    fits = [fit_rollout(trajectories, H, config(pushforward=p).updated(
        **{"train.ensemble": ensemble, "rollout.validation": 0.0})) for p in (0.0, 1.0)]
    a, b = (next(iter(f.params.values())) for f in fits)
    assert a.shape == b.shape and not torch.equal(a, b)


def test_a_resumed_pushforward_fit_is_bit_identical(trajectories, tmp_path):
    """The pushed rows and the noise of a batch are drawn from that batch's own seed, so a fit
    interrupted mid-way and resumed from its checkpoint takes the uninterrupted fit's steps."""
    cfg = config(pushforward=0.5, input_noise=0.05).updated(
        **{"train.epochs": 5, "train.checkpoint_epochs": 1, "rollout.validation": 0.0})
    reference = fit_rollout(trajectories, H, cfg)

    def stop(epoch, *_):
        if epoch == 3:
            raise KeyboardInterrupt

    path = tmp_path / "fit.checkpoint"
    with pytest.raises(KeyboardInterrupt):
        fit_rollout(trajectories, H, cfg, checkpoint=path, on_epoch=stop)
    resumed = fit_rollout(trajectories, H, cfg, checkpoint=path)
    assert resumed.resumed
    for k, v in reference.params.items():
        torch.testing.assert_close(resumed.params[k], v, rtol=0, atol=0)

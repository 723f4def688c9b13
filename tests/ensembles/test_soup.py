"""Model soups: greedy acceptance, per-ingredient learning rates, one network saved and loaded."""

import numpy as np
import pytest
import torch

from choral.config import Config, TrainConfig
from choral.ensembles.soup import _scaled, greedy_soup, val_nll
from choral.ensembles.training import train_members
from choral.errors import ConfigError
from choral.networks import MLP
from choral.networks.heads import GaussianHead
from choral.networks.members import init_members, member_forward
from choral.surrogate import Surrogate


def _data(n=240, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, (n, 2))
    return X, np.sin(3 * X[:, :1]) * X[:, 1:] + 0.1 * rng.normal(size=(n, 1))


def _soup_config(**extra):
    return Config().updated(**{"train.members": 6, "train.ensemble": "soup", "train.epochs": 40,
                               "train.val_fraction": 0.25, "train.dtype": "float64",
                               "model.hidden": [32], "soup.lr_factors": [0.1, 0.5, 2.0],
                               **extra})


@pytest.fixture(scope="module")
def fitted():
    X, Y = _data()
    return Surrogate(_soup_config(**{"soup.save_ingredients": True})).fit(X, Y), X, Y


def test_greedy_soup_never_accepts_a_worse_ingredient(fitted):
    model, _, _ = fitted
    info = model.records["soup"]
    trace = info["greedy"]
    assert [t["own_nll"] for t in trace] == sorted(info["ingredient_val_nll"])
    best = trace[0]["soup_nll"]
    for step in trace[1:]:
        assert step["accepted"] == (step["soup_nll"] < best)
        best = min(best, step["soup_nll"])
    assert info["greedy_val_nll"] == best == info["val_nll"]
    assert best <= min(info["ingredient_val_nll"])
    assert sorted(info["accepted"]) == sorted(t["ingredient"] for t in trace if t["accepted"])


def test_soup_is_one_network_that_round_trips(fitted, tmp_path):
    model, X, _ = fitted
    assert next(iter(model.params.values())).shape[0] == 1
    model.save(tmp_path / "m")
    assert (tmp_path / "m" / "soup.json").is_file()
    loaded = Surrogate.load(tmp_path / "m")
    torch.testing.assert_close(loaded.predict(X[:7]).mean, model.predict(X[:7]).mean,
                               rtol=0, atol=0)
    parts = loaded.records["soup_ingredients"]
    keep = loaded.records["soup"]["accepted"]
    soup = {k: v[keep].mean(0, keepdim=True) for k, v in parts.items()}
    torch.testing.assert_close(loaded.with_params(soup).predict(X[:7]).mean,
                               model.predict(X[:7]).mean, rtol=1e-12, atol=1e-12)


def test_greedy_trace_matches_hand_averaged_soups():
    """Recompute every soup the greedy pass tried by averaging its ingredients by hand."""
    gen = torch.Generator().manual_seed(1)
    X = torch.randn(50, 2, generator=gen, dtype=torch.float64)
    Y = X[:, :1] - X[:, 1:]
    template, parts = init_members(lambda: MLP(2, 2, [8]), seeds=range(5), dtype=torch.float64)
    start = {k: v[:1] for k, v in parts.items()}
    parts = {k: start[k] + 0.3 * (v - start[k]) for k, v in parts.items()}  # near one start
    forward, loss = member_forward(template, "stacked"), GaussianHead().loss
    score = val_nll(forward, X, Y, loss)
    keep, trace = greedy_soup(parts, score)
    chosen = [trace[0]["ingredient"]]
    for step in trace[1:]:
        trial = chosen + [step["ingredient"]]
        net = {k: sum(v[i] for i in trial).unsqueeze(0) / len(trial) for k, v in parts.items()}
        out = forward(net, X.unsqueeze(0))
        mean, var = out[..., :1], torch.nn.functional.softplus(out[..., 1:]) + 1e-6
        nll = (0.5 * (torch.log(2 * torch.pi * var) + (Y - mean) ** 2 / var)).mean()
        assert step["soup_nll"] == pytest.approx(float(nll), rel=1e-9)
        if step["accepted"]:
            chosen = trial
    assert sorted(chosen) == keep.nonzero().flatten().tolist()


def test_scaled_parameters_act_as_a_per_member_learning_rate():
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(64, 2, generator=gen, dtype=torch.float64)
    Y = X[:, :1] ** 2
    template, init = init_members(lambda: MLP(2, 2, [8]), seeds=[1, 1], dtype=torch.float64)
    forward, loss = member_forward(template, "stacked"), GaussianHead().loss
    c = torch.tensor([1.0, 3.0], dtype=torch.float64)
    phi = {k: v / c.view(-1, *([1] * (v.ndim - 1))) for k, v in init.items()}
    cfg = TrainConfig(epochs=3, batch_size=16, lr=1e-3, weight_decay=0.0)
    got, _ = train_members(_scaled(forward, c), phi, X, Y, None, None, cfg, [5, 5], loss)
    fast, _ = train_members(forward, {k: v[1:] for k, v in init.items()}, X, Y, None, None,
                            cfg.model_copy(update={"lr": 3e-3}), [5], loss)
    slow, _ = train_members(forward, {k: v[:1] for k, v in init.items()}, X, Y, None, None, cfg,
                            [5], loss)
    for k in init:
        torch.testing.assert_close(got[k][1] * 3.0, fast[k][0], rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(got[k][0], slow[k][0], rtol=1e-10, atol=1e-12)


def test_soup_needs_validation_data():
    X, Y = _data(40)
    with pytest.raises(ConfigError, match="val_fraction"):
        Surrogate(_soup_config(**{"train.val_fraction": 0.0})).fit(X, Y)


def test_unet_soup_through_the_cli(tmp_path):
    """``choral fit --ensemble soup`` on fields: one U-Net network is saved."""
    import json

    from typer.testing import CliRunner

    from choral.cli.app import app

    rng = np.random.default_rng(0)
    X = rng.normal(size=(24, 1, 16))
    np.savez(tmp_path / "f.npz", X=X, Y=np.cumsum(X, axis=-1) / 4)
    (tmp_path / "c.toml").write_text('[model.unet]\ndepth = 1\nwidth = 4\n'
                                     '[train]\nval_fraction = 0.25\nbatch_size = 8\n')
    res = CliRunner().invoke(app, ["fit", "--data", str(tmp_path / "f.npz"), "--out",
                                   str(tmp_path / "m"), "--config", str(tmp_path / "c.toml"),
                                   "--ensemble", "soup", "--members", "3", "--epochs", "4",
                                   "--quiet", "--json"])
    assert res.exit_code == 0, (res.output, res.exception)
    summary = json.loads(res.stdout)
    assert summary["backbone"] == "unet" and summary["networks"] == 1
    info = json.loads((tmp_path / "m" / "soup.json").read_text())
    assert info["start_epochs"] == 2 and len(info["ingredient_val_nll"]) == 3

"""SWA, SWAG and MultiSWAG against hand computations, independent runs and sample statistics."""

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from choral.cli.app import app
from choral.config import Config
from choral.ensembles import METHODS, TrainContext
from choral.ensembles.flat import flatten
from choral.ensembles.schedule import collect_epochs, restarts, swa_factor
from choral.ensembles.snapshot import cycle_ends
from choral.ensembles.swag import SwagMoments
from choral.ensembles.training import train_members
from choral.networks import MLP
from choral.networks.heads import GaussianHead
from choral.networks.members import init_members, member_forward
from choral.surrogate import Surrogate


def context(method_cfg: dict, members: int = 2) -> TrainContext:
    """A tiny float64 MLP problem with ``members`` stacked initial members."""
    cfg = Config().updated(**{"train.members": members, "train.epochs": 6,
                              "train.batch_size": 16, "train.dtype": "float64",
                              "weightspace.pretrain": False, "weightspace.epochs": 6,
                              **method_cfg})
    template, params = init_members(lambda: MLP(2, 2, [5]), seeds=range(members),
                                    dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(48, 2, generator=gen, dtype=torch.float64)
    Y = X[:, :1] ** 2 + 0.1 * torch.randn(48, 1, generator=gen, dtype=torch.float64)
    loss = GaussianHead(floor=1e-6).loss
    return TrainContext(member_forward(template, "stacked"), params, X, Y, X[:8], Y[:8],
                        cfg.train, list(range(10, 10 + members)), loss, template=template,
                        weightspace=cfg.weightspace, soup=cfg.soup)


def recorded_run(ctx: TrainContext, members: int, lr_factor) -> list[dict]:
    """An independent run of the same training that keeps a copy of every epoch's weights."""
    seen = []
    init = {k: v[:members] for k, v in ctx.init_params.items()}
    train_members(ctx.forward, init, ctx.X, ctx.Y, ctx.X_val, ctx.Y_val, ctx.train,
                  ctx.batch_seeds[:members], ctx.loss, lr_factor=lr_factor,
                  after_epoch=lambda e, p: seen.append({k: v.clone() for k, v in p.items()}),
                  early_stopping=False)
    return seen


@pytest.mark.parametrize("schedule", ["constant", "cyclic"])
def test_swa_is_the_hand_computed_average_of_the_collected_epochs(schedule):
    ctx = context({"weightspace.swa_start": 0.3, "weightspace.schedule": schedule,
                   "weightspace.cycle_epochs": 2, "weightspace.swa_lr": 0.1})
    ws = ctx.weightspace
    epochs = recorded_run(ctx, 1, swa_factor(ws, 6))
    chosen = collect_epochs(ws, 6)
    assert chosen == ([2, 3, 4, 5] if schedule == "constant" else [3, 5])
    result = METHODS["swa"](ctx)
    for k, v in result.params.items():
        expected = sum(epochs[e][k] for e in chosen) / len(chosen)
        torch.testing.assert_close(v, expected, rtol=1e-12, atol=1e-12)
    assert result.history.epochs_run == 6
    assert result.records["swa"]["averaged"] == len(chosen)


def test_swag_moments_match_a_hand_computation():
    rng = np.random.default_rng(0)
    ws = rng.standard_normal((7, 3, 4))  # collections, members, weights
    swag = SwagMoments(rank=3)
    for w in ws:
        swag.update(torch.as_tensor(w))
    np.testing.assert_allclose(swag.mean, ws.mean(0), rtol=1e-12)
    np.testing.assert_allclose(swag.variance(), ws.var(0), rtol=1e-10)
    running = np.cumsum(ws, 0) / np.arange(1, 8)[:, None, None]
    np.testing.assert_allclose(swag.deviations(), (ws - running)[-3:].transpose(1, 0, 2),
                               rtol=1e-12)
    again = SwagMoments.from_tensors(swag.to_tensors())
    torch.testing.assert_close(again.covariance(), swag.covariance())


def assert_gaussian_moments(samples: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor):
    """Sample mean and covariance of ``samples`` (n, P) within 5 standard errors everywhere."""
    n = samples.shape[0]
    var = cov.diagonal()
    z_mean = (samples.mean(0) - mean) / (var / n).sqrt()
    assert z_mean.abs().max() < 5, z_mean
    se_cov = ((var[:, None] * var[None, :] + cov**2) / n).sqrt()
    z_cov = (torch.cov(samples.T) - cov) / se_cov
    assert z_cov.abs().max() < 5, z_cov.abs().max()


def test_swag_samples_follow_the_stored_full_covariance():
    """The sampled networks' weights have the stored mean and the *full* low-rank + diagonal
    covariance, which couples weights of different tensors (no per-tensor blocks)."""
    cfg = Config().updated(**{"train.members": 1, "train.epochs": 12, "train.ensemble": "swag",
                              "train.dtype": "float64", "model.hidden": [3],
                              "weightspace.samples": 20000, "weightspace.rank": 4,
                              "weightspace.swa_lr": 1.0, "weightspace.pretrain": False,
                              "weightspace.epochs": 12, "weightspace.swa_start": 0.5})
    rng = np.random.default_rng(1)
    X = rng.uniform(-1, 1, (64, 2))
    model = Surrogate(cfg).fit(X, X[:, :1] ** 2)
    moments = SwagMoments.from_tensors(model.records["swag"])
    cov = moments.covariance()[0]
    first, second = (v.numel() // v.shape[0] for v in list(model.params.values())[:2])
    corr = cov / torch.outer(cov.diagonal(), cov.diagonal()).sqrt()
    assert corr[:first, first:first + second].abs().max() > 0.3  # cross-tensor correlation
    assert_gaussian_moments(flatten(model.params), moments.mean[0], cov)


def test_multiswag_samples_each_member_from_its_own_moments():
    ctx = context({"weightspace.samples": 4000, "weightspace.rank": 3,
                   "weightspace.swa_lr": 1.0}, members=3)
    result = METHODS["multiswag"](ctx)
    moments = SwagMoments.from_tensors(result.records["swag"])
    flat = flatten(result.params).reshape(3, 4000, -1)  # member-major
    assert moments.mean.shape[0] == 3
    for i in range(3):
        assert_gaussian_moments(flat[i], moments.mean[i], moments.covariance()[i])
    single = METHODS["swag"](ctx)  # SWAG on member 0 equals MultiSWAG's first member
    first = SwagMoments.from_tensors(single.records["swag"])
    torch.testing.assert_close(first.mean[0], moments.mean[0])


def test_snapshot_keeps_the_weights_at_each_cycle_end():
    ctx = context({"weightspace.cycles": 3})
    epochs = recorded_run(ctx, 1, restarts(6, 3))
    result = METHODS["snapshot"](ctx)
    for k, v in result.params.items():
        expected = torch.cat([epochs[e][k] for e in cycle_ends(6, 3)])
        torch.testing.assert_close(v, expected, rtol=0, atol=0)


@pytest.mark.parametrize("method,networks", [("swa", 1), ("swag", 3), ("multiswag", 6),
                                             ("snapshot", 2)])
def test_fit_ensemble_saves_and_loads_like_any_surrogate(tmp_path, method, networks):
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (80, 2))
    np.savez(tmp_path / "d.npz", X=X, Y=X[:, :1] ** 2)
    (tmp_path / "c.toml").write_text("[weightspace]\nsamples = 3\ncycles = 2\nrank = 3\n"
                                     "epochs = 4\n")
    result = CliRunner().invoke(app, [
        "fit", "--data", str(tmp_path / "d.npz"), "--out", str(tmp_path / "m"), "--members", "2",
        "--epochs", "6", "--ensemble", method, "--config", str(tmp_path / "c.toml"), "--quiet",
        "--seed", "0"])
    assert result.exit_code == 0, result.output
    model = Surrogate.load(tmp_path / "m")
    assert model.config.train.ensemble == method
    pred = model.predict(X[:5])
    assert pred.member_means.shape == (networks, 5, 1)
    assert model.config.weightspace.samples == 3
    record = {"swa": "swa", "swag": "swag", "multiswag": "swag", "snapshot": "snapshot"}[method]
    stored = record + (".safetensors" if record == "swag" else ".json")
    assert (tmp_path / "m" / stored).is_file() and record in model.records


def test_pretrain_starts_the_collection_from_the_early_stopped_best_weights():
    ctx = context({"weightspace.pretrain": True, "weightspace.epochs": 3,
                   "weightspace.swa_start": 0.0, "train.patience": 2})
    best, pre = train_members(ctx.forward, {k: v[:1] for k, v in ctx.init_params.items()},
                              ctx.X, ctx.Y, ctx.X_val, ctx.Y_val, ctx.train,
                              ctx.batch_seeds[:1], ctx.loss)
    ws = ctx.weightspace
    second = context({"weightspace.epochs": 3, "train.epochs": 3})
    second.init_params = best
    epochs = recorded_run(second, 1, swa_factor(ws, 3))
    result = METHODS["swa"](ctx)
    for k, v in result.params.items():
        torch.testing.assert_close(v, sum(e[k] for e in epochs) / 3, rtol=1e-12, atol=1e-12)
    assert result.history.epochs_run == pre.epochs_run + 3


def test_multiswag_on_a_unet_for_fields_round_trips(tmp_path):
    """Flattening covers every U-Net weight: samples are networks the U-Net runs, saved and
    loaded with the same predictions."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((12, 1, 8, 8))
    cfg = Config.from_dict({
        "model": {"backbone": "unet", "activation": "gelu", "unet": {"depth": 2, "width": 4}},
        "train": {"members": 2, "epochs": 3, "ensemble": "multiswag", "batch_size": 4},
        "weightspace": {"epochs": 3, "samples": 2, "rank": 2}})
    model = Surrogate(cfg).fit(X, 2 * X)
    pred = model.predict(X[:3])
    assert pred.member_means.shape == (4, 3, 1, 8, 8)
    moments = model.records["swag"]
    assert moments["mean"].shape == (2, flatten(model.params).shape[1])
    model.save(tmp_path / "m")
    again = Surrogate.load(tmp_path / "m").predict(X[:3])
    torch.testing.assert_close(again.mean, pred.mean)

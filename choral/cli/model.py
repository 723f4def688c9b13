"""The verbs of one model: ``fit``, ``evaluate``, ``predict`` and ``report``."""

from __future__ import annotations

import itertools
import json
import math
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.table import Table

from choral.cli.common import (
    BatchOpt,
    DataOpt,
    DeviceOpt,
    EpochLog,
    JsonOpt,
    ModelOpt,
    SampleDimOpt,
    StreamOpt,
    XOpt,
    YOpt,
    err,
    load_xy,
    out,
    progress,
    streams,
    with_channels,
)
from choral.cli.rollout import predict_rollout, report_rollout, trajectories_for_fit
from choral.config import CALIBRATIONS, Config
from choral.data import XARRAY, load_data, save_blocks, save_data
from choral.ensembles import METHODS
from choral.errors import DataError
from choral.evaluation.metrics import evaluate as score
from choral.surrogate import Surrogate
from choral.surrogate.cascade import Rules, fit_first_stage
from choral.surrogate.cascade import cascade as run_cascade
from choral.surrogate.rollout import fit_rollout

__all__ = ["evaluate", "fit", "predict", "report"]


def fit(data: DataOpt, out_dir: Annotated[Path, typer.Option("--out", help="Model directory.")],
        config: Annotated[Path | None, typer.Option(help="TOML config file.")] = None,
        members: Annotated[int | None, typer.Option(help="Ensemble members.")] = None,
        ensemble: Annotated[str | None, typer.Option(
            help=f"One of: {', '.join(METHODS)}.")] = None,
        epochs: Annotated[int | None, typer.Option(help="Maximum epochs.")] = None,
        seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
        backend: Annotated[str | None, typer.Option(
            help="How members are evaluated: auto, stacked, vmap or loop; or ray: shards of "
                 "members trained as Ray tasks (train.cluster).")] = None,
        shards: Annotated[int | None, typer.Option(
            min=1, help="Shards of members with --backend ray (default: one per GPU or CPU).")
        ] = None,
        address: Annotated[str | None, typer.Option(
            help="Ray cluster to join with --backend ray (default: start a local one).")
        ] = None,
        backbone: Annotated[str | None, typer.Option(
            help="mlp (vectors), unet or fno (fields; fno needs the fno extra); default: "
                 "chosen from the data.")] = None,
        calibration: Annotated[str | None, typer.Option(
            help=f"Calibration on rows held out from training: {', '.join(CALIBRATIONS)}.")
        ] = None,
        no_channel_axis: Annotated[bool, typer.Option(
            "--no-channel-axis", help="Fields are stored as (n, *grid): add a channel axis.")
        ] = False,
        x: XOpt = None, y: YOpt = None, as_json: JsonOpt = False, device: DeviceOpt = None,
        resume: Annotated[bool | None, typer.Option(
            "--resume/--restart", help="Resume from OUT.checkpoint (an error when there is none "
            "for this configuration and data) or start over; default: resume when it matches.")
        ] = None,
        log_every: Annotated[float, typer.Option(
            help="Seconds between progress lines when stderr is not a terminal (batch jobs).")
        ] = 30.0,
        log: Annotated[bool, typer.Option(
            "--log", help="Also append each epoch as a JSON line to OUT.train.jsonl.")] = False,
        stream: StreamOpt = None, sample_dim: SampleDimOpt = None,
        history: Annotated[int | None, typer.Option(
            min=1, help="Fit one step of trajectories: Y (n, t, c, *grid) becomes pairs of the "
            "last H states (as channels) -> the next state (see predict --steps); default: "
            "[data] history.")] = None,
        pushforward: Annotated[float | None, typer.Option(
            min=0.0, max=1.0, help="With --history: probability that a training input's newest "
            "state is the member's own prediction ([rollout] pushforward).")] = None,
        input_noise: Annotated[float | None, typer.Option(
            min=0.0, help="With --history: std of Gaussian noise on the training inputs, in "
            "standardised units ([rollout] input_noise).")] = None,
        film: Annotated[bool, typer.Option(
            "--film", help="With --history: the file's X (n, k) holds each trajectory's "
            "parameters (e.g. viscosities); they condition the U-Net through FiLM.")] = False,
        quiet: Annotated[bool, typer.Option(help="No progress bar or lines.")] = False) -> None:
    """Train a surrogate on a data file and save it as a model directory.

    The training state is checkpointed to OUT.checkpoint (atomically; train.checkpoint_seconds,
    train.checkpoint_epochs): after a crash or kill, the same command resumes where it stopped.
    The checkpoint is removed when the model is saved."""
    cfg = (Config.from_toml(config) if config else Config()).updated(**{
        "train.members": members, "train.ensemble": ensemble, "train.epochs": epochs,
        "train.seed": seed, "train.device": device, "train.shards": shards,
        "train.address": address, **({"train.cluster": "ray"} if backend == "ray" else
                                     {"train.backend": backend}),
        "calibration.method": calibration, "data.x": x, "data.y": y,
        "data.sample_dim": sample_dim, "data.history": history,
        "rollout.pushforward": pushforward, "rollout.input_noise": input_noise,
        "data.channel_axis": False if no_channel_axis else None})
    X, Y = with_channels(load_data(data, x_key=cfg.data.x, y_key=cfg.data.y,
                                   lazy=streams(data, stream),
                                   sample_dim=cfg.data.sample_dim), cfg)
    history = cfg.data.history
    if history is not None:
        Y = trajectories_for_fit(Y, history)
    elif pushforward is not None or input_noise is not None or film:
        raise DataError("--pushforward, --input-noise and --film train on trajectories: give "
                        "--history (or [data] history)")
    fields = (Y.ndim - 1 if history is not None else X.ndim) > 2
    if backbone is None and cfg.model.backbone == "mlp" and fields:
        backbone = "unet"  # fields need the U-Net; the summary below says which was used
    cfg = cfg.updated(**{"model.backbone": backbone}).for_data(fields=fields)
    checkpoint = out_dir.with_name(out_dir.name + ".checkpoint")
    batch_job = not err.is_terminal and not quiet
    with progress() as bar, ExitStack() as files:
        task = bar.add_task("fit", total=cfg.train.epochs, info="",
                            visible=not quiet and not batch_job)
        jsonl = files.enter_context(open(f"{out_dir}.train.jsonl", "a")) if log else None
        lines = EpochLog(cfg.train.epochs, log_every if batch_job else None, sys.stderr, jsonl)

        def on_epoch(epoch, train_nll, val_nll, active):
            bar.update(task, completed=epoch + 1,
                       info=f"val nll {val_nll.mean():.3f}, {active} active")
            lines(epoch, train_nll, val_nll, active)

        model = Surrogate(cfg)
        if checkpoint.exists() and resume is not False and not quiet:
            err.print(f"found the checkpoint {checkpoint}: resuming if it matches")
        options = {"on_epoch": on_epoch, "checkpoint": checkpoint,
                   "resume": {None: "auto", True: "require", False: "never"}[resume]}
        if history is not None:
            model = fit_rollout(Y, history, cfg, conditions=np.asarray(X) if film else None,
                                **options)
        else:
            model.fit(X, Y, **options)
        bar.update(task, completed=cfg.train.epochs)
    model.save(out_dir)
    networks = next(iter(model.params.values())).shape[0]
    summary = {"model": str(out_dir), "backbone": cfg.model.backbone, "backend": model.backend,
               "device": str(model.device), "resumed": model.resumed,
               "ensemble": cfg.train.ensemble, "members": cfg.train.members, "networks": networks,
               "epochs_run": model.metrics["epochs_run"],
               "train_seconds": round(model.metrics["train_seconds"], 2),
               "calibration": model.metrics["calibration"]}
    if as_json:
        print(json.dumps(summary))
        return
    err.print(f"saved {cfg.train.ensemble} {cfg.model.backbone} ensemble of {networks} networks "
              f"({model.backend} backend on {model.device}, {summary['epochs_run']} epochs, "
              f"{summary['train_seconds']} s{', resumed' if model.resumed else ''}) to {out_dir}")
    err.print(_calibration_line(model.metrics["calibration"]))


def _calibration_line(info: dict) -> str:
    """One line on the self-calibration of ``fit`` (``metrics["calibration"]``)."""
    line = f"not calibrated ({info['reason']})" if info["method"] == "none" else \
        f"calibrated ({info['method']}) on {info['samples']} held-out samples"
    if "after" in info:
        before, after = info["before"], info["after"]
        line += (f"; on held-out folds of them: 90% coverage {before['coverage_90']:.3f} "
                 f"before, {after['coverage_90']:.3f} after; NLL {before['nll']:.4g} before, "
                 f"{after['nll']:.4g} after")
    return line


RegimeOpt = Annotated[str | None, typer.Option(
    "--regime", help="Regime of a TALL-masked merged model (choral merge --method tall).")]


def evaluate(model: ModelOpt, data: DataOpt, x: XOpt = None, y: YOpt = None,
             as_json: JsonOpt = False, device: DeviceOpt = None,
             batch_size: BatchOpt = None, regime: RegimeOpt = None) -> None:
    """Score a saved model on a data file (original units; NLL per target value)."""
    surrogate = Surrogate.load(model, device, regime=regime)
    X, Y = load_xy(surrogate, data, x, y, require_y=True)
    scores = score(surrogate.predict(X, batch_size=batch_size), Y)
    if as_json:  # strict JSON: an undefined score (NaN) or an infinite width is null
        print(json.dumps({k: v if math.isfinite(v) else None for k, v in scores.items()}))
        return
    table = Table("metric", "value", title=f"{model} on {data} ({len(X)} samples)")
    for key, value in scores.items():
        table.add_row(key, f"{value:.4g}")
    out.print(table)


def predict(model: ModelOpt, data: DataOpt,
            out_path: Annotated[Path, typer.Option(
                "--out", help="Output .npz/.h5/.csv, or .nc/.zarr for netCDF/zarr data.")],
            level: Annotated[float, typer.Option(help="Central interval level.")] = 0.9,
            x: XOpt = None, device: DeviceOpt = None, batch_size: BatchOpt = None,
            stream: StreamOpt = None, sample_dim: SampleDimOpt = None, regime: RegimeOpt = None,
            cascade: Annotated[bool, typer.Option(
                "--cascade", help="Early exit: run --first members on every row and the rest "
                "only where the prediction is undecided (--threshold, --cascade-ood, "
                "--top-fraction).")] = False,
            first: Annotated[int, typer.Option(
                min=1, help="Members every row gets with --cascade.")] = 2,
            threshold: Annotated[float | None, typer.Option(
                help="Decision threshold: rows whose interval straddles it are undecided.")
            ] = None,
            cascade_ood: Annotated[bool, typer.Option(
                "--cascade-ood", help="Rows flagged out of distribution are undecided.")
            ] = False,
            top_fraction: Annotated[float, typer.Option(
                min=0.0, max=1.0, help="This top fraction of each batch by predictive "
                "variance is undecided.")] = 0.0,
            first_stage_data: Annotated[Path | None, typer.Option(
                "--first-stage-data", help="Held-out data (with targets) to calibrate the "
                "first members on their own and scale their OOD score (recommended: they "
                "are over-confident under the full ensemble's calibration).")] = None,
            y: YOpt = None,
            steps: Annotated[int | None, typer.Option(
                min=1, help="Roll a model fitted with --history T steps on from the first H "
                "states of the data's trajectories Y (writes mean, std, member_std, members).")
            ] = None,
            noise: Annotated[str, typer.Option(
                help="With --steps: feed back member means (mean) or draws (sample).")
            ] = "mean",
            seed: Annotated[int, typer.Option(help="Seed of the draws of --noise sample.")] = 0,
            as_json: JsonOpt = False) -> None:
    """Write the predictive mean, std and central interval (arrays mean, std, lower, upper),
    calibrated when the model has a calibration, and the OOD score and flag (ood_score, ood).

    Rows are predicted ``--batch-size`` at a time (default: about 16 MiB of member outputs per
    batch), so the memory a prediction needs is bounded whatever the number of rows. With
    ``--stream`` (an HDF5 input) and an .h5 output, rows are read and written batch by batch,
    and the output holds the predictions only (not a copy of X). With netCDF or zarr data and
    a .nc or .zarr output, the output is a dataset with the input's coordinates and variables
    <y>_mean, <y>_std, <y>_lower, <y>_upper per target variable y, ood_score and ood.
    ``--regime`` picks a regime of a TALL-masked merged model. With ``--cascade`` the output
    also holds ``members_used`` per row, and the share of member forward passes used is
    printed."""
    surrogate = Surrogate.load(model, device, regime=regime)
    if steps is not None:
        return predict_rollout(surrogate, data, y, steps, out_path, noise, seed, as_json)
    lazy = streams(data, stream)
    X, _ = load_xy(surrogate, data, x, None, require_y=False, lazy=lazy, sample_dim=sample_dim)
    rows = batch_size or _batch_rows(surrogate)
    stage = None
    if cascade and first_stage_data is not None:
        stage = fit_first_stage(surrogate, *load_xy(surrogate, first_stage_data, x, y,
                                                    require_y=True, sample_dim=sample_dim), first)
    rules = Rules(first=first, threshold=threshold, level=level, ood=cascade_ood,
                  top_fraction=top_fraction, first_stage=stage) if cascade else None
    passes = [0, 0]

    def summaries(X_batch: np.ndarray) -> dict[str, np.ndarray]:
        if rules is None:
            return _summaries(surrogate, X_batch, level)
        result = run_cascade(surrogate, X_batch, rules)
        passes[0] += result.forward_passes
        passes[1] += result.total
        return result.summaries(level)

    batches = (summaries(X.read_slice(i, min(i + rows, len(X))) if lazy else X[i:i + rows])
               for i in range(0, len(X), rows))
    to_xarray = out_path.suffix.lower() in XARRAY
    if to_xarray and data.suffix.lower() not in XARRAY:
        raise DataError(f"--out {out_path.name}: netCDF/zarr output needs netCDF/zarr "
                        f"--data (for its coordinates); got {data.name}")
    if lazy and out_path.suffix.lower() in (".h5", ".hdf5"):
        head = next(batches)
        shapes = {k: (len(X), *v.shape[1:]) for k, v in head.items()}
        save_blocks(out_path, shapes, itertools.chain([head], batches))
    else:
        parts = list(batches)
        arrays = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        if to_xarray:
            from choral.xarrays import write_predictions

            cfg = surrogate.config.data
            write_predictions(out_path, data, x or cfg.x, cfg.y, arrays, level,
                              sample_dim or cfg.sample_dim)
        else:
            save_data(out_path, X.read_slice(0, len(X)) if lazy else X, None, **arrays)
    err.print(f"wrote predictions for {len(X)} samples to {out_path}")
    if rules is not None:
        err.print(f"cascade: {passes[0]} of {passes[1]} member forward passes "
                  f"({passes[0] / max(passes[1], 1):.1%})")


def _batch_rows(surrogate: Surrogate, budget: int = 2**24) -> int:
    """Rows whose member means and variances (float64) take about ``budget`` bytes."""
    networks = next(iter(surrogate.params.values())).shape[0]
    return max(1, budget // (16 * networks * math.prod(surrogate.y_shape)))


def _summaries(surrogate: Surrogate, X: np.ndarray, level: float) -> dict[str, np.ndarray]:
    """What ``predict`` writes for the rows ``X``, as numpy arrays."""
    raw = surrogate.predict(X, calibrated=False)  # one prediction serves both: OOD uses it raw
    pred = surrogate.apply_calibration(raw)
    lower, upper = pred.interval(level)
    arrays = {"mean": pred.mean, "std": pred.stddev, "lower": lower, "upper": upper,
              "aleatoric": pred.aleatoric, "epistemic": pred.epistemic}
    arrays = {k: v.cpu().numpy() for k, v in arrays.items()}
    if surrogate.ood_detector is not None:  # models saved before OOD detection have none
        arrays["ood_score"], arrays["ood"] = surrogate.ood(X, raw)
    return arrays


def report(model: ModelOpt, data: DataOpt,
           out_dir: Annotated[Path, typer.Option("--out", help="Report directory.")],
           x: XOpt = None, y: YOpt = None,
           examples: Annotated[int, typer.Option(help="Field samples to show.")] = 4,
           device: DeviceOpt = None, batch_size: BatchOpt = None,
           steps: Annotated[int | None, typer.Option(
               min=1, help="A model fitted with --history: report T-step rollouts from the first "
               "H states of the data's trajectories Y (which need H + T states).")] = None,
           noise: Annotated[str, typer.Option(
               help="With --steps: feed back member means (mean) or draws (sample).")] = "mean",
           seed: Annotated[int, typer.Option(help="Seed of the draws of --noise sample.")] = 0
           ) -> None:
    """Write an HTML report (index.html and PNGs): examples, calibration, errors, scores; for a
    calibrated model, the reliability diagram and calibration scores before and after it.
    With ``--steps``: per-step rel. L2, CRPS, correlation and spread-skill curves of rollouts."""
    from choral.evaluation.report import write_report  # matplotlib is slow to import: only here

    surrogate = Surrogate.load(model, device)
    if steps is not None:
        info = {"model": str(model), "data": str(data),
                "backbone": surrogate.config.model.backbone,
                "members": surrogate.config.train.members}
        index = report_rollout(surrogate, data, y, steps, out_dir, noise, seed, info)
        err.print(f"wrote report to {index}")
        return
    X, Y = load_xy(surrogate, data, x, y, require_y=True)
    raw = surrogate.predict(X, calibrated=False, batch_size=batch_size)  # serves both
    pred = surrogate.apply_calibration(raw)
    calibrator = surrogate.calibrator
    info = {"model": str(model), "data": str(data), "backbone": surrogate.config.model.backbone,
            "members": surrogate.config.train.members, "samples": len(X),
            "calibration": "none" if calibrator is None else calibrator.method}
    index = write_report(out_dir, X, Y, pred, score(pred, Y), title=f"choral report: {model.name}",
                         n_examples=examples, model_info=info,
                         uncalibrated=None if calibrator is None else raw)
    err.print(f"wrote report to {index}")

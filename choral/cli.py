"""The ``choral`` command line: simulate, fit, evaluate, predict, report, calibrate, finetune,
campaign, demo.

Every user error (bad data, bad config, damaged model directory) prints one message naming what is
wrong and exits with code 2; nothing half-written is left behind.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from choral.campaign.cli import campaign_app
from choral.cli_finetune import finetune
from choral.config import Config
from choral.data import load_data, save_data
from choral.errors import ChoralError
from choral.metrics import evaluate as score
from choral.simulators import KINDS
from choral.simulators import simulate as run_simulator
from choral.surrogate import Surrogate

try:  # typer >= 0.2x vendors click as typer._click (no `click` module); older typers use click
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover
    from click.exceptions import ClickException

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Probabilistic neural surrogates: vectorised ensembles with calibrated "
                       "mixture predictives.")
out = Console()
err = Console(stderr=True)
app.add_typer(campaign_app, name="campaign")

DataOpt = Annotated[Path, typer.Option("--data", help="Data file: .npz, .csv, .h5/.hdf5 or .pt.")]
ModelOpt = Annotated[Path, typer.Option("--model", help="Saved model directory.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one machine-readable JSON object.")]
XOpt = Annotated[str | None, typer.Option("--x", help="Name of the input array/columns.")]
YOpt = Annotated[str | None, typer.Option("--y", help="Name of the target array/columns.")]


@app.command()
def simulate(name: Annotated[str, typer.Argument(help=f"One of: {', '.join(KINDS)}.")],
             n: Annotated[int, typer.Option("--n", help="Number of runs.")] = 1000,
             seed: Annotated[int, typer.Option(help="Random seed of the input design.")] = 0,
             out_path: Annotated[Path, typer.Option("--out", help="Output .npz/.h5/.csv.")] = Path(
                 "data.npz"),
             resolution: Annotated[int | None, typer.Option(
                 help="Grid points per axis (field simulators: darcy, burgers).")] = None,
             workers: Annotated[int, typer.Option(
                 help="Processes solving in parallel (field simulators).")] = 1,
             fine: Annotated[int | None, typer.Option(
                 help="Fine solver grid per axis (field simulators; default: the protocol's)."
             )] = None) -> None:
    """Generate data with a built-in simulator (inputs sampled in its standard box)."""
    if KINDS.get(name) == "field":
        with _progress("samples") as bar:
            task = bar.add_task(f"simulate {name}", total=n, info="")
            options = {k: v for k, v in (("resolution", resolution), ("fine", fine)) if v}
            X, Y = run_simulator(name, n, seed, workers=workers, **options,
                                 progress=lambda done, total: bar.update(task, completed=done))
    else:
        extra = {k: v for k, v in (("resolution", resolution), ("fine", fine)) if v}
        X, Y = run_simulator(name, n, seed, **extra)  # options here are errors that name them
    save_data(out_path, X, Y)
    err.print(f"wrote {n} runs of {name} to {out_path} (X {X.shape}, Y {Y.shape})")


def _progress(unit: str = "epochs") -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                    TextColumn(f"{{task.completed}}/{{task.total}} {unit}"),
                    TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
                    console=err)


@app.command()
def fit(data: DataOpt, out_dir: Annotated[Path, typer.Option("--out", help="Model directory.")],
        config: Annotated[Path | None, typer.Option(help="TOML config file.")] = None,
        members: Annotated[int | None, typer.Option(help="Ensemble members.")] = None,
        ensemble: Annotated[str | None, typer.Option(
            help="deep, swa, swag, multiswag, snapshot or soup.")] = None,
        epochs: Annotated[int | None, typer.Option(help="Maximum epochs.")] = None,
        seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
        backend: Annotated[str | None, typer.Option(
            help="auto, stacked, vmap or loop.")] = None,
        backbone: Annotated[str | None, typer.Option(
            help="mlp (vectors) or unet (fields); default: chosen from the data.")] = None,
        no_channel_axis: Annotated[bool, typer.Option(
            "--no-channel-axis", help="Fields are stored as (n, *grid): add a channel axis.")
        ] = False,
        x: XOpt = None, y: YOpt = None, as_json: JsonOpt = False,
        quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False) -> None:
    """Train a surrogate on a data file and save it as a model directory."""
    cfg = (Config.from_toml(config) if config else Config()).updated(**{
        "train.members": members, "train.ensemble": ensemble, "train.epochs": epochs,
        "train.seed": seed,
        "train.backend": backend, "data.x": x, "data.y": y,
        "data.channel_axis": False if no_channel_axis else None})
    X, Y = _with_channels(load_data(data, x_key=cfg.data.x, y_key=cfg.data.y), cfg)
    if backbone is None and cfg.model.backbone == "mlp" and X.ndim > 2:
        backbone = "unet"  # fields need the U-Net; the summary below says which was used
    cfg = cfg.updated(**{"model.backbone": backbone})
    with _progress() as bar:
        task = bar.add_task("fit", total=cfg.train.epochs, info="", visible=not quiet)

        def on_epoch(epoch, train_nll, val_nll, active):
            bar.update(task, completed=epoch + 1,
                       info=f"val nll {val_nll.mean():.3f}, {active} active")

        model = Surrogate(cfg).fit(X, Y, on_epoch=on_epoch)
        bar.update(task, completed=cfg.train.epochs)
    model.save(out_dir)
    networks = next(iter(model.params.values())).shape[0]
    summary = {"model": str(out_dir), "backbone": cfg.model.backbone, "backend": model.backend,
               "ensemble": cfg.train.ensemble, "members": cfg.train.members, "networks": networks,
               "epochs_run": model.metrics["epochs_run"],
               "train_seconds": round(model.metrics["train_seconds"], 2)}
    if as_json:
        print(json.dumps(summary))
    else:
        err.print(f"saved {cfg.train.ensemble} {cfg.model.backbone} ensemble of {networks} "
                  f"networks "
                  f"({model.backend} backend, "
                  f"{summary['epochs_run']} epochs, {summary['train_seconds']} s) to {out_dir}")


def _with_channels(arrays: tuple, cfg: Config) -> tuple:
    """Insert the channel axis of fields stored as (n, *grid) when the config says so."""
    if cfg.data.channel_axis:
        return arrays
    return tuple(None if a is None else a[:, None] for a in arrays)


def _load_xy(model: Surrogate, data: Path, x: str | None, y: str | None, require_y: bool):
    cfg = model.config
    return _with_channels(load_data(data, x_key=x or cfg.data.x, y_key=y or cfg.data.y,
                                    require_y=require_y), cfg)


@app.command()
def evaluate(model: ModelOpt, data: DataOpt, x: XOpt = None, y: YOpt = None,
             as_json: JsonOpt = False) -> None:
    """Score a saved model on a data file (original units; NLL per target value)."""
    surrogate = Surrogate.load(model)
    X, Y = _load_xy(surrogate, data, x, y, require_y=True)
    scores = score(surrogate.predict(X), Y)
    if as_json:
        print(json.dumps(scores))
        return
    table = Table("metric", "value", title=f"{model} on {data} ({len(X)} samples)")
    for key, value in scores.items():
        table.add_row(key, f"{value:.4g}")
    out.print(table)


@app.command()
def predict(model: ModelOpt, data: DataOpt,
            out_path: Annotated[Path, typer.Option("--out", help="Output .npz/.h5/.csv.")],
            level: Annotated[float, typer.Option(help="Central interval level.")] = 0.9,
            x: XOpt = None) -> None:
    """Write the predictive mean, std and central interval (arrays mean, std, lower, upper),
    calibrated when the model has a calibration, and the OOD score and flag (ood_score, ood)."""
    surrogate = Surrogate.load(model)
    X, _ = _load_xy(surrogate, data, x, None, require_y=False)
    raw = surrogate.predict(X, calibrated=False)  # one prediction serves both: OOD uses it raw
    pred = surrogate.apply_calibration(raw)
    lower, upper = pred.interval(level)
    arrays = {"mean": pred.mean, "std": pred.stddev, "lower": lower, "upper": upper,
              "aleatoric": pred.aleatoric, "epistemic": pred.epistemic}
    if "ood.json" in surrogate.extras:  # models saved before OOD detection have none
        arrays["ood_score"], arrays["ood"] = surrogate.ood(X, raw)
    save_data(out_path, X, None, **{k: np.asarray(v) for k, v in arrays.items()})
    err.print(f"wrote predictions for {len(X)} samples to {out_path}")


@app.command()
def report(model: ModelOpt, data: DataOpt,
           out_dir: Annotated[Path, typer.Option("--out", help="Report directory.")],
           x: XOpt = None, y: YOpt = None,
           examples: Annotated[int, typer.Option(help="Field samples to show.")] = 4) -> None:
    """Write an HTML report (index.html and PNGs): examples, calibration, errors, scores."""
    from choral.report import write_report  # matplotlib is slow to import; only here

    surrogate = Surrogate.load(model)
    X, Y = _load_xy(surrogate, data, x, y, require_y=True)
    pred = surrogate.predict(X)
    info = {"model": str(model), "data": str(data), "backbone": surrogate.config.model.backbone,
            "members": surrogate.config.train.members, "samples": len(X)}
    index = write_report(out_dir, X, Y, pred, score(pred, Y), title=f"choral report: {model.name}",
                         n_examples=examples, model_info=info)
    err.print(f"wrote report to {index}")


@app.command()
def demo(out_dir: Annotated[Path, typer.Option("--out", help="Working directory.")] = Path(
        "demo-output"),
         n_train: Annotated[int, typer.Option(help="Darcy training samples.")] = 400,
         resolution: Annotated[int, typer.Option(help="Darcy grid points per axis.")] = 32,
         fine: Annotated[int, typer.Option(help="Darcy solver grid per axis.")] = 125,
         epochs: Annotated[int, typer.Option(help="Maximum training epochs.")] = 60) -> None:
    """Darcy flow end to end: simulate, fit a 4-member U-Net ensemble, evaluate, report."""
    train, test, model = out_dir / "darcy_train.h5", out_dir / "darcy_test.h5", out_dir / "model"
    workers = min(4, os.cpu_count() or 1)
    for path, n, seed in ((train, n_train, 0), (test, 100, 1)):
        simulate("darcy", n=n, seed=seed, out_path=path, resolution=resolution, workers=workers,
                 fine=fine)
    config = out_dir / "demo.toml"
    config.write_text(DEMO_CONFIG.format(epochs=epochs))
    fit(data=train, out_dir=model, config=config)
    evaluate(model=model, data=test)
    report(model=model, data=test, out_dir=out_dir / "report")
    err.print(f"demo done: open {out_dir / 'report' / 'index.html'}")


DEMO_CONFIG = """\
[model]
backbone = "unet"
activation = "gelu"
[model.unet]
depth = 3
width = 8
[train]
members = 4
epochs = {epochs}
batch_size = 16
lr = 3e-3
lr_schedule = "cosine"
patience = 20
"""


app.command("finetune")(finetune)
import choral.cli_calibrate  # noqa: E402,F401  (registers the calibrate verb)


def main() -> None:
    """Entry point: user errors become one line on stderr and exit code 2."""
    try:
        code = app(standalone_mode=False)  # an int when typer turned Ctrl-C etc. into an exit
    except ChoralError as exc:  # escape: names like run[v2].npz are not rich markup; no wrapping
        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        err.print("aborted")
        sys.exit(130)
    except ClickException as exc:  # usage errors: unknown verb or option, bad option value
        exc.show()
        sys.exit(exc.exit_code)
    if isinstance(code, int) and code:
        if code == 130:
            err.print("aborted")
        sys.exit(code)


if __name__ == "__main__":
    main()

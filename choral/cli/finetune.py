"""``choral finetune``: adapt a saved surrogate to a new regime with WiSE-FT interpolation.

Registered in :mod:`choral.cli.app`; prints the curve (NLL per target against alpha) as a table or
as JSON, and saves the interpolated model with the curve as ``wiseft.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from choral.cli.common import DeviceOpt, JsonOpt, ModelOpt, XOpt, YOpt, err, load_xy, out
from choral.surrogate import Surrogate
from choral.surrogate import finetune as wise_ft


def finetune(
        model: ModelOpt,
        data: Annotated[Path, typer.Option("--data", help="Data of the new regime.")],
        out_dir: Annotated[Path, typer.Option("--out", help="Directory for the tuned model.")],
        old_data: Annotated[Path | None, typer.Option(
            "--old-data", help="Validation data of the original regime (to choose alpha on "
                               "both regimes).")] = None,
        epochs: Annotated[int | None, typer.Option(help="Fine-tuning epochs.")] = None,
        lr_factor: Annotated[float | None, typer.Option(
            help="Fine-tuning learning rate as a multiple of train.lr.")] = None,
        alphas: Annotated[int | None, typer.Option(help="Points of the alpha curve.")] = None,
        x: XOpt = None, y: YOpt = None, as_json: JsonOpt = False, device: DeviceOpt = None,
) -> None:
    """Fine-tune a saved model on a new regime and keep the best WiSE-FT interpolation."""
    surrogate = Surrogate.load(model, device)
    surrogate.config = surrogate.config.updated(**{
        "finetune.epochs": epochs, "finetune.lr_factor": lr_factor, "finetune.alphas": alphas})
    X, Y = load_xy(surrogate, data, x, y, require_y=True)
    old = load_xy(surrogate, old_data, x, y, require_y=True) if old_data else None
    tuned, info = wise_ft(surrogate, X, Y, old)
    tuned.save(out_dir)
    if as_json:
        print(json.dumps({"model": str(out_dir), **info}))
        return
    regimes = info["selected_on"]
    table = Table("alpha", *[f"{r} nll" for r in regimes], "mean nll",
                  title=f"WiSE-FT curve (chosen alpha = {info['alpha']:.2f})")
    for row in info["curve"]:
        table.add_row(f"{row['alpha']:.2f}", *[f"{row[f'{r}_nll']:.4f}" for r in regimes],
                      f"{row['mean_nll']:.4f}")
    out.print(table)
    err.print(f"saved the WiSE-FT model (alpha = {info['alpha']:.2f}) to "
                               f"{out_dir}; curve in {out_dir / 'wiseft.json'}")

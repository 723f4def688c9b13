"""``choral finetune``: adapt a saved surrogate to a new regime with WiSE-FT interpolation.

Registered in :mod:`choral.cli`; prints the curve (NLL per target against alpha) as a table or
as JSON, and saves the interpolated model with the curve as ``wiseft.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from choral.surrogate import Surrogate
from choral.weightspace.wiseft import finetune as wise_ft


def finetune(
        model: Annotated[Path, typer.Option("--model", help="Saved model directory.")],
        data: Annotated[Path, typer.Option("--data", help="Data of the new regime.")],
        out_dir: Annotated[Path, typer.Option("--out", help="Directory for the tuned model.")],
        old_data: Annotated[Path | None, typer.Option(
            "--old-data", help="Validation data of the original regime (to choose alpha on "
                               "both regimes).")] = None,
        epochs: Annotated[int | None, typer.Option(help="Fine-tuning epochs.")] = None,
        lr_factor: Annotated[float | None, typer.Option(
            help="Fine-tuning learning rate as a multiple of train.lr.")] = None,
        alphas: Annotated[int | None, typer.Option(help="Points of the alpha curve.")] = None,
        x: Annotated[str | None, typer.Option("--x", help="Name of the input array.")] = None,
        y: Annotated[str | None, typer.Option("--y", help="Name of the target array.")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Fine-tune a saved model on a new regime and keep the best WiSE-FT interpolation."""
    from choral.cli import _load_xy  # here: choral.cli imports this module

    surrogate = Surrogate.load(model)
    surrogate.config = surrogate.config.updated(**{
        "finetune.epochs": epochs, "finetune.lr_factor": lr_factor, "finetune.alphas": alphas})
    X, Y = _load_xy(surrogate, data, x, y, require_y=True)
    old = _load_xy(surrogate, old_data, x, y, require_y=True) if old_data else None
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
    Console().print(table)
    Console(stderr=True).print(f"saved the WiSE-FT model (alpha = {info['alpha']:.2f}) to "
                               f"{out_dir}; curve in {out_dir / 'wiseft.json'}")

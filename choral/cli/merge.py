"""``choral merge``: merge surrogates fine-tuned from one pretrained surrogate.

Registered in :mod:`choral.cli.app` (it takes ``--models A B C``: the values after ``--models``
that no option claims are the models). See :mod:`choral.surrogate.merge` for the methods.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from choral.cli.common import DeviceOpt, JsonOpt, XOpt, YOpt, err, load_xy, out
from choral.errors import DataError
from choral.surrogate import Surrogate
from choral.surrogate.merge import METHODS
from choral.surrogate.merge import merge as merge_models

__all__ = ["merge"]


def merge(
        ctx: typer.Context,
        base: Annotated[Path, typer.Option("--base", help="The pretrained model directory.")],
        models: Annotated[list[Path], typer.Option(
            "--models", help="Fine-tuned model directories: --models A B C.")],
        out_dir: Annotated[Path, typer.Option("--out", help="Directory for the merged model.")],
        method: Annotated[str, typer.Option(help=f"One of {', '.join(METHODS)}.")] = "tall",
        name: Annotated[list[str] | None, typer.Option(
            "--name", help="Regime name of each model, in order (repeat; default: the "
                           "directory names).")] = None,
        val: Annotated[list[Path] | None, typer.Option(
            "--val", help="Validation data of each regime, in model order (repeat): chooses "
                          "the scale and the TALL lambdas.")] = None,
        scale: Annotated[float | None, typer.Option(
            help="lambda of theta_0 + lambda tau (default: chosen on --val, else 1 for ties "
                 "and balanced, 1/T for the sums).")] = None,
        density: Annotated[float, typer.Option(
            help="Fraction of each task vector kept (ties, breadcrumbs).")] = 0.2,
        gamma: Annotated[float, typer.Option(
            help="Fraction of the largest changes dropped (breadcrumbs).")] = 0.01,
        k: Annotated[int, typer.Option(
            "--k", help="Regimes that must use a weight for consensus to keep it.")] = 2,
        weight: Annotated[list[float] | None, typer.Option(
            "--weight", help="Weight of each regime's vector, in model order (repeat).")] = None,
        align: Annotated[bool, typer.Option(
            "--align", help="Permute each model's units to match the base first (fine-tunes "
                            "that did not start from the base).")] = False,
        criterion: Annotated[str, typer.Option(help="nll or rel_l2, for --val.")] = "nll",
        x: XOpt = None, y: YOpt = None, as_json: JsonOpt = False, device: DeviceOpt = None,
) -> None:
    """Merge fine-tunes of one pretrained model: task arithmetic, TIES, Breadcrumbs, a balanced
    soup, consensus merging, or TALL masks (one model that switches regime by
    ``predict --regime NAME``)."""
    paths = [*models, *map(Path, ctx.args)]
    if any(str(p).startswith("-") for p in ctx.args):
        raise DataError(f"unknown option among {ctx.args}")
    names = list(name) if name else [p.name for p in paths]
    pretrained = Surrogate.load(base, device)
    tuned = [Surrogate.load(p, device) for p in paths]
    data = [load_xy(pretrained, v, x, y, require_y=True) for v in val] if val else None
    merged, info = merge_models(pretrained, tuned, names, method, scale=scale, density=density,
                                gamma=gamma, k=k, weights=weight, align=align, val=data,
                                criterion=criterion)
    merged.save(out_dir)
    if as_json:
        print(json.dumps({"model": str(out_dir), **info}))
        return
    table = Table("setting", "value", title=f"{method} merge of {len(paths)} models")
    for key in ("regimes", "scale", "lambdas", "consensus_fraction", "mask_bytes"):
        if key in info:
            table.add_row(key, str(info[key]))
    out.print(table)
    err.print(f"saved the merged model to {out_dir}" +
              (f"; choose a regime with predict --regime {{{','.join(names)}}}"
               if method == "tall" else ""))

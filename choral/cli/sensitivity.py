"""The ``sensitivity`` verb: Sobol indices of a saved surrogate (:mod:`choral.sensitivity`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.table import Table

from choral.cli.common import DeviceOpt, JsonOpt, ModelOpt, XOpt, load_xy, out, progress
from choral.errors import DataError
from choral.sensitivity import KINDS, check_bounds, sobol_indices
from choral.surrogate import Surrogate

__all__ = ["input_box", "parse_bounds", "sensitivity"]


def parse_bounds(text: str, d: int) -> np.ndarray:
    """``--bounds``: a JSON list of [lower, upper] pairs, one per input, e.g. ``[[0, 1], [2, 3]]``.

    >>> parse_bounds("[[0, 1], [2, 3]]", 2).tolist()
    [[0.0, 1.0], [2.0, 3.0]]
    """
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise DataError(f"--bounds must be a JSON list of [lower, upper] pairs such as "
                        f"[[0, 1], [2, 3]]; got {text!r}") from None
    return check_bounds(value, d)


def input_box(surrogate: Surrogate, bounds: str | None, data: Path | None,
              x: str | None) -> np.ndarray:
    """The input box (d, 2) of ``--bounds``, else of ``--data``'s inputs, else the box of the
    inputs the model was fitted on (``metrics["input_box"]``; models saved before it have none)."""
    d = surrogate.x_shape[0]
    if bounds is not None:
        return parse_bounds(bounds, d)
    if data is not None:
        X, _ = load_xy(surrogate, data, x, None, require_y=False)
        return check_bounds(np.stack([X.min(0), X.max(0)], axis=1), d)
    if "input_box" in surrogate.metrics:
        return check_bounds(surrogate.metrics["input_box"], d)
    raise DataError("give the input box: --bounds [[lower, upper], ...] or --data FILE (the box "
                    "of its inputs); this model does not record its training inputs' box")


def sensitivity(
        model: ModelOpt,
        n: Annotated[int, typer.Option("--n", min=2, help="Base samples, a power of 2; the "
                                       "surrogate runs on n (d + 2) inputs.")] = 4096,
        bounds: Annotated[str | None, typer.Option(
            help="Input box as JSON [[lower, upper], ...], one pair per input (default: "
                 "--data's box, else the box of the inputs the model was fitted on).")] = None,
        data: Annotated[Path | None, typer.Option(
            "--data", help="Take the input box from this data file's X (min and max per "
                           "input) when --bounds is not given, e.g. the training data.")] = None,
        level: Annotated[float, typer.Option(help="Level of the intervals.")] = 0.9,
        resamples: Annotated[int, typer.Option(min=2, help="Bootstrap resamples.")] = 200,
        seed: Annotated[int, typer.Option(help="Seed of the Sobol' sequence and bootstrap.")] = 0,
        x: XOpt = None, as_json: JsonOpt = False, device: DeviceOpt = None) -> None:
    """First-order and total Sobol indices of a saved surrogate on a box of uniform inputs.

    Each member's mean function gets its own indices (Saltelli 2010 first-order and Jansen 1999
    total estimators, scipy.stats.sobol_indices); the estimate is their mean and the error bar
    combines their spread (epistemic) and the bootstrap Monte Carlo error."""
    surrogate = Surrogate.load(model, device)
    if len(surrogate.x_shape) != 1:
        raise DataError(f"sensitivity needs a model of vector inputs (n, d); this one takes "
                        f"inputs of shape (n, {', '.join(map(str, surrogate.x_shape))})")
    d = surrogate.x_shape[0]
    box = input_box(surrogate, bounds, data, x)
    if not 0.0 < level < 1.0:
        raise DataError(f"--level must be in (0, 1); got {level}")
    with progress("rows") as bar:
        task = bar.add_task("sensitivity", total=n * (d + 2), info="")
        res = sobol_indices(surrogate, box, n=n, resamples=resamples, seed=seed,
                            on_rows=lambda k: bar.advance(task, k))
    summary = res.to_dict(level=level)
    summary["bounds"] = box.tolist()
    if as_json:
        print(json.dumps(summary))
        return
    for j in range(res.first_members.shape[1]):
        table = Table("input", *(f"{k} ({100 * level:g}% interval)" for k in KINDS),
                      title=f"Sobol indices of output {j} ({res.first_members.shape[0]} members,"
                            f" n = {n})")
        for i, name in enumerate(summary["inputs"]):
            cells = [f"{summary[k]['estimate'][j][i]:.3f} [{summary[k]['lower'][j][i]:.3f}, "
                     f"{summary[k]['upper'][j][i]:.3f}]" for k in KINDS]
            table.add_row(name, *cells)
        out.print(table)

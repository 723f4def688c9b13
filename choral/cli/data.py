"""``choral simulate``: generate data with a built-in simulator."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from choral.cli.common import err, progress
from choral.data import save_data
from choral.simulators import FIELD_SIMULATORS, KINDS
from choral.simulators import simulate as run_simulator

__all__ = ["simulate"]


def simulate(name: Annotated[str, typer.Argument(help=f"One of: {', '.join(KINDS)}.")],
             n: Annotated[int, typer.Option("--n", help="Number of runs.")] = 1000,
             seed: Annotated[int, typer.Option(help="Random seed of the input design.")] = 0,
             out_path: Annotated[Path, typer.Option("--out", help="Output .npz/.h5/.csv.")] = Path(
                 "data.npz"),
             resolution: Annotated[int | None, typer.Option(
                 help="Grid points per axis (darcy, burgers, ks, darcy_modes).")] = None,
             workers: Annotated[int, typer.Option(
                 help="Processes solving in parallel (field simulators).")] = 1,
             fine: Annotated[int | None, typer.Option(
                 help="Fine solver grid per axis (field simulators; default: the protocol's)."
             )] = None,
             steps: Annotated[int | None, typer.Option(
                 help="States recorded per trajectory (ks; default 100).")] = None) -> None:
    """Generate data with a built-in simulator (inputs sampled in its standard box)."""
    if name in FIELD_SIMULATORS:  # options, workers and progress (darcy_modes: vector data)
        with progress("samples") as bar:
            task = bar.add_task(f"simulate {name}", total=n, info="")
            options = {k: v for k, v in (("resolution", resolution), ("fine", fine),
                                          ("steps", steps)) if v}
            X, Y = run_simulator(name, n, seed, workers=workers, **options,
                                 progress=lambda done, total: bar.update(task, completed=done))
    else:
        extra = {k: v for k, v in (("resolution", resolution), ("fine", fine), ("steps", steps))
                 if v}
        X, Y = run_simulator(name, n, seed, **extra)  # options here are errors that name them
    save_data(out_path, X, Y)
    err.print(f"wrote {n} runs of {name} to {out_path} (X {X.shape}, Y {Y.shape})")

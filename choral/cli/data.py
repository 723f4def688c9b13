"""``choral simulate``: generate data with a built-in simulator."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from choral.cli.common import err, progress
from choral.data import save_data
from choral.errors import DataError
from choral.simulators import FIELD_SIMULATORS, KINDS
from choral.simulators import simulate as run_simulator
from choral.simulators.burgers import burgers_trajectories

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
                 help="States recorded per trajectory (ks, default 100; burgers: trajectories "
                      "instead of u0 -> u(1)).")] = None,
             nu: Annotated[str | None, typer.Option(
                 help="burgers --steps: viscosities, comma-separated, taken in turn by the "
                      "trajectories (default 0.1,0.03,0.01); written as X (n, 1).")] = None
             ) -> None:
    """Generate data with a built-in simulator (inputs sampled in its standard box).

    ``burgers --steps T`` writes trajectories Y (n, T, 1, res), 0.05 time units apart, and
    their viscosities X (n, 1), to fit one model of the family (``fit --history --film``)."""
    if nu is not None and not (name == "burgers" and steps):
        raise DataError(f"--nu is for 'burgers --steps T' (trajectories); got {name!r}"
                        f"{'' if steps else ' without --steps'}")
    if name == "burgers" and steps:
        nus = (0.1, 0.03, 0.01) if nu is None else _numbers(nu, "--nu")
        options = {k: v for k, v in (("resolution", resolution), ("fine", fine)) if v}
        viscosity, Y = burgers_trajectories(n, seed, nus=nus, steps=steps, **options)
        X = viscosity[:, None]
    elif name in FIELD_SIMULATORS:  # options, workers and progress (darcy_modes: vector data)
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


def _numbers(text: str, name: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise DataError(f"{name} must be comma-separated numbers; got {text!r}") from None

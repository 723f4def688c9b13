"""What the verbs share: consoles, option types, progress bars and reading data for a model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from choral.config import Config
from choral.data import load_data
from choral.surrogate import Surrogate

out = Console()
err = Console(stderr=True)

DataOpt = Annotated[Path, typer.Option("--data", help="Data file: .npz, .csv, .h5/.hdf5 or .pt.")]
ModelOpt = Annotated[Path, typer.Option("--model", help="Saved model directory.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one machine-readable JSON object.")]
XOpt = Annotated[str | None, typer.Option("--x", help="Name of the input array/columns.")]
YOpt = Annotated[str | None, typer.Option("--y", help="Name of the target array/columns.")]


def progress(unit: str = "epochs") -> Progress:
    """A progress bar on stderr: description, bar, ``done/total unit``, info, elapsed time."""
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                    TextColumn(f"{{task.completed}}/{{task.total}} {unit}"),
                    TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
                    console=err)


def with_channels(arrays: tuple, cfg: Config) -> tuple:
    """Insert the channel axis of fields stored as (n, *grid) when the config says so."""
    if cfg.data.channel_axis:
        return arrays
    return tuple(None if a is None else a[:, None] for a in arrays)


def load_xy(model: Surrogate, data: Path, x: str | None, y: str | None,
            require_y: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """``X`` and ``Y`` of a data file, named and shaped as the model's training data was."""
    cfg = model.config
    return with_channels(load_data(data, x_key=x or cfg.data.x, y_key=y or cfg.data.y,
                                   require_y=require_y), cfg)

"""What the verbs share: consoles, option types, progress bars and reading data for a model."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import IO, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from choral.config import Config
from choral.data import load_data
from choral.errors import ConfigError
from choral.rows import H5Rows, Rows
from choral.surrogate import Surrogate

out = Console()
err = Console(stderr=True)

DataOpt = Annotated[Path, typer.Option(
    "--data", help="Data file: .npz, .csv, .h5/.hdf5, .pt, netCDF (.nc) or zarr (.zarr).")]
ModelOpt = Annotated[Path, typer.Option("--model", help="Saved model directory.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one machine-readable JSON object.")]
XOpt = Annotated[str | None, typer.Option(
    "--x", help="Name of the input array, or CSV columns / netCDF variables (a,b).")]
YOpt = Annotated[str | None, typer.Option(
    "--y", help="Name of the target array, or CSV columns / netCDF variables (a,b).")]
SampleDimOpt = Annotated[str | None, typer.Option(
    "--sample-dim", help="netCDF/zarr: the dimension of the samples (default: the first).")]
DeviceOpt = Annotated[str | None, typer.Option(
    "--device", help="auto, cpu, cuda or cuda:k (default: the config's train.device, auto).")]
BatchOpt = Annotated[int | None, typer.Option(
    "--batch-size", min=1, help="Rows per forward pass (bounds the memory of prediction).")]


def progress(unit: str = "epochs") -> Progress:
    """A progress bar on stderr: description, bar, ``done/total unit``, info, elapsed time."""
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                    TextColumn(f"{{task.completed}}/{{task.total}} {unit}"),
                    TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
                    console=err)


class EpochLog:
    """``on_epoch`` for runs whose stderr is a file (batch jobs): one plain line every
    ``every`` seconds (epoch, mean train/validation NLL, members active, elapsed, estimated
    remaining), and every epoch as a JSON line appended to ``jsonl`` when given.

    >>> import io, json, torch
    >>> stream, lines = io.StringIO(), io.StringIO()
    >>> log = EpochLog(10, every=0.0, stream=stream, jsonl=lines)
    >>> log(0, torch.tensor([1.0, 3.0]), torch.tensor([2.0, 2.0]), 2)
    >>> stream.getvalue().split()[:3]
    ['epoch', '1/10', 'train']
    >>> json.loads(lines.getvalue())["val_nll"]
    2.0
    """

    def __init__(self, epochs: int, every: float | None = 30.0, stream: IO | None = None,
                 jsonl: IO | None = None) -> None:
        self.epochs, self.every, self.stream, self.jsonl = epochs, every, stream, jsonl
        self.start = self.last = time.monotonic()
        self.first: int | None = None

    def __call__(self, epoch: int, train_nll: Any, val_nll: Any, active: int) -> None:
        now = time.monotonic()
        self.first = epoch if self.first is None else self.first  # a resumed run starts late
        elapsed = now - self.start
        row = {"epoch": epoch + 1, "train_nll": float(train_nll.mean()),
               "val_nll": float(val_nll.mean()), "active": active,
               "elapsed_s": round(elapsed, 3)}
        if self.jsonl is not None:
            self.jsonl.write(json.dumps(row) + "\n")
            self.jsonl.flush()
        if self.stream is None or self.every is None or now - self.last < self.every:
            return
        self.last = now
        left = elapsed / (epoch + 1 - self.first) * (self.epochs - epoch - 1)
        self.stream.write(
            f"epoch {epoch + 1}/{self.epochs}  train nll {row['train_nll']:.4g}  val nll "
            f"{row['val_nll']:.4g}  active {active}  elapsed {_clock(elapsed)}  remaining at "
            f"most {_clock(left)} (early stopping may end it sooner)\n")
        self.stream.flush()


def _clock(seconds: float) -> str:
    """``h:mm:ss``.

    >>> _clock(3725.2)
    '1:02:05'
    """
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


STREAM_ABOVE = 2**30
"""HDF5 files larger than this (bytes) are read on demand by default (``--stream``)."""
StreamOpt = Annotated[bool | None, typer.Option(
    "--stream/--no-stream", help="Read an HDF5, netCDF or zarr file on demand instead of into "
    "memory (default: HDF5 and netCDF files larger than 1 GiB).")]


def streams(data: Path, stream: bool | None) -> bool:
    """Whether to read ``data`` lazily: ``--stream`` as given, else for HDF5 or netCDF files
    above 1 GiB."""
    if stream is None:
        return data.suffix.lower() in (".h5", ".hdf5", ".nc", ".nc4", ".netcdf") and \
            data.is_file() and data.stat().st_size > STREAM_ABOVE
    return stream


def with_channels(arrays: tuple, cfg: Config) -> tuple:
    """Insert the channel axis of fields stored as (n, *grid) when the config says so."""
    if cfg.data.channel_axis:
        return arrays
    if any(isinstance(a, Rows) and not isinstance(a, H5Rows) for a in arrays):
        raise ConfigError("data.channel_axis = false is for arrays stored as (n, *grid); "
                          "netCDF/zarr variables are the channels already: drop it")
    return tuple(None if a is None else H5Rows(a.path, a.key, a.index, add_channel_axis=True)
                 if isinstance(a, H5Rows) else a[:, None] for a in arrays)


def load_xy(model: Surrogate, data: Path, x: str | None, y: str | None,
            require_y: bool, lazy: bool = False, sample_dim: str | None = None) -> tuple:
    """``X`` and ``Y`` of a data file, named and shaped as the model's training data was
    (``lazy``: HDF5 rows read on demand, :class:`~choral.rows.H5Rows`)."""
    cfg = model.config
    return with_channels(load_data(data, x_key=x or cfg.data.x, y_key=y or cfg.data.y,
                                   require_y=require_y, lazy=lazy,
                                   sample_dim=sample_dim or cfg.data.sample_dim), cfg)

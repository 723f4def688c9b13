"""Atomic writes and the saved-model directory format.

A saved surrogate is a directory of four files: ``config.json`` (everything needed to rebuild the
network), ``weights.safetensors`` (stacked member weights), ``normaliser.json`` and
``metrics.json``. Nothing in it is pickled; reading it never runs code.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from choral.errors import ModelFileError

FILES = ("config.json", "weights.safetensors", "normaliser.json", "metrics.json")


def _fsync(path: Path) -> None:
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, fsync it, then rename it over.

    A crash or an exception leaves either the old file or the new one, never a partial file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        _fsync(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_directory(path: str | Path, fill: Callable[[Path], None]) -> None:
    """Build a directory with ``fill(tmp_dir)`` beside ``path``, then swap it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    old = None
    try:
        fill(tmp)
        for f in tmp.iterdir():
            _fsync(f)
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not path.exists():
            os.replace(old, path)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_model_dir(path: str | Path, config: dict[str, Any], weights: dict[str, Tensor],
                    normaliser: dict[str, Any], metrics: dict[str, Any]) -> None:
    """Write the four files of a saved model atomically as one directory."""

    def fill(tmp: Path) -> None:
        for name, obj in (("config", config), ("normaliser", normaliser), ("metrics", metrics)):
            (tmp / f"{name}.json").write_text(json.dumps(obj, indent=2))
        save_file({k: v.detach().contiguous() for k, v in weights.items()},
                  str(tmp / "weights.safetensors"), metadata={"format": "choral"})

    atomic_directory(path, fill)


def read_model_dir(path: str | Path) -> tuple[dict, dict[str, Tensor], dict, dict]:
    """Read (config, weights, normaliser, metrics); a missing or corrupted file is an error."""
    path = Path(path)
    if not path.is_dir():
        raise ModelFileError(f"--model directory not found: {path}")
    missing = [f for f in FILES if not (path / f).is_file()]
    if missing:
        raise ModelFileError(f"model directory {path} is missing {', '.join(missing)} "
                             f"(a saved model holds {', '.join(FILES)})")
    jsons = {}
    for name in ("config", "normaliser", "metrics"):
        try:
            jsons[name] = json.loads((path / f"{name}.json").read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ModelFileError(f"{path / (name + '.json')} is corrupted: {exc}") from None
    try:
        weights = load_file(str(path / "weights.safetensors"))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelFileError(f"{path / 'weights.safetensors'} is corrupted: {exc}") from None
    return jsons["config"], weights, jsons["normaliser"], jsons["metrics"]

"""Atomic writes and the saved-model directory format.

A saved surrogate is a directory of four files: ``config.json`` (everything needed to rebuild the
network), ``weights.safetensors`` (stacked member weights), ``normaliser.json`` and
``metrics.json``, plus optional extras that methods add (e.g. ``calibration.json``,
``swag.safetensors``): any other ``*.json`` or ``*.safetensors`` file. Nothing in it is pickled;
reading it never runs code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from choral.atomic import atomic_directory, atomic_write
from choral.errors import ModelFileError

FILES = ("config.json", "weights.safetensors", "normaliser.json", "metrics.json")


def _write(path: Path, content: dict[str, Any], suffix: str | None = None) -> None:
    """Write ``content`` as JSON (``*.json``) or as tensors (``*.safetensors``)."""
    suffix = suffix or path.suffix
    if suffix == ".json":
        path.write_text(json.dumps(content, indent=2))
    elif suffix == ".safetensors":
        save_file({k: v.detach().contiguous() for k, v in content.items()}, str(path),
                  metadata={"format": "choral"})
    else:
        raise ValueError(f"model files end in .json or .safetensors; got {suffix!r}")


def _read(path: Path) -> dict[str, Any]:
    try:
        if path.suffix == ".json":
            return json.loads(path.read_text())
        return load_file(str(path))
    except (json.JSONDecodeError, UnicodeDecodeError, SafetensorError, OSError,
            ValueError) as exc:
        raise ModelFileError(f"{path} is corrupted: {exc}") from None


def write_model_dir(path: str | Path, config: dict[str, Any], weights: dict[str, Tensor],
                    normaliser: dict[str, Any], metrics: dict[str, Any],
                    extras: dict[str, dict[str, Any]] | None = None) -> None:
    """Write a saved model atomically as one directory; ``extras`` maps file names to contents."""
    files = {"config.json": config, "weights.safetensors": weights,
             "normaliser.json": normaliser, "metrics.json": metrics, **(extras or {})}

    def fill(tmp: Path) -> None:
        for name, content in files.items():
            _write(tmp / name, content)

    atomic_directory(path, fill)


def update_model_file(path: str | Path, name: str, content: dict[str, Any]) -> None:
    """Add or replace one extra file (e.g. ``calibration.json``) of a saved model atomically."""
    path = Path(path)
    if name in FILES:
        raise ValueError(f"{name} is a core model file; rewrite the whole directory instead")
    if not path.is_dir():
        raise ModelFileError(f"--model directory not found: {path}")
    atomic_write(path / name, lambda tmp: _write(tmp, content, Path(name).suffix))


def read_extras(path: str | Path) -> dict[str, dict[str, Any]]:
    """Every optional file of a saved model: {file name: JSON object or tensors}."""
    path = Path(path)
    return {f.name: _read(f) for f in sorted(path.iterdir())
            if f.suffix in (".json", ".safetensors") and f.name not in FILES and f.is_file()}


def read_model_dir(path: str | Path) -> tuple[dict, dict[str, Tensor], dict, dict]:
    """Read (config, weights, normaliser, metrics); a missing or corrupted file is an error."""
    path = Path(path)
    if not path.is_dir():
        raise ModelFileError(f"--model directory not found: {path}")
    missing = [f for f in FILES if not (path / f).is_file()]
    if missing:
        raise ModelFileError(f"model directory {path} is missing {', '.join(missing)} "
                             f"(a saved model holds {', '.join(FILES)})")
    config, weights, normaliser, metrics = (_read(path / name) for name in FILES)
    return config, weights, normaliser, metrics

"""The saved-model directory: the only module that knows its file names.

A saved surrogate is a directory holding ``config.json`` (everything needed to rebuild the
network), ``weights.safetensors`` (stacked member weights), ``normaliser.json`` and
``metrics.json``; optionally ``calibration.json`` (a post-hoc calibration), ``ood.json`` (the
out-of-distribution detector) and the records of ensemble methods (``swag.safetensors``,
``soup.json``, ``wiseft.json``, ...): a record is a JSON object or, when all its values are
tensors, a safetensors file. Nothing in it is pickled; reading it never runs code. The whole
directory is written atomically; a calibration is replaced atomically on its own.

Examples:
    >>> import tempfile, torch
    >>> from pathlib import Path
    >>> path = Path(tempfile.mkdtemp()) / "model"
    >>> write_model_dir(path, ModelFiles({"a": 1}, {"w": torch.zeros(2, 3)}, {}, {},
    ...                                  records={"soup": {"greedy": True}}))
    >>> sorted(p.name for p in path.iterdir())
    ['config.json', 'metrics.json', 'normaliser.json', 'soup.json', 'weights.safetensors']
    >>> read_model_dir(path).records
    {'soup': {'greedy': True}}
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from choral.atomic import atomic_directory, atomic_write
from choral.errors import ModelFileError

__all__ = ["CORE_FILES", "ModelFiles", "read_model_dir", "write_calibration", "write_model_dir"]

CORE_FILES = ("config.json", "weights.safetensors", "normaliser.json", "metrics.json")
_CALIBRATION, _OOD = "calibration.json", "ood.json"


@dataclass
class ModelFiles:
    """The content of a model directory, file by file (JSON objects and tensors)."""

    config: dict[str, Any]
    weights: dict[str, Tensor]
    normaliser: dict[str, Any]
    metrics: dict[str, Any]
    calibration: dict[str, Any] | None = None
    ood: dict[str, Any] | None = None
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Ensemble-method records by name (``swag``, ``soup``, ``wiseft``, ...)."""


def _is_tensors(content: dict[str, Any]) -> bool:
    return bool(content) and all(isinstance(v, Tensor) for v in content.values())


def _write(path: Path, content: dict[str, Any]) -> None:
    """Write ``content`` as tensors (``*.safetensors``) or as JSON."""
    if path.suffix == ".safetensors":
        save_file({k: v.detach().contiguous() for k, v in content.items()}, str(path),
                  metadata={"format": "choral"})
    else:
        path.write_text(json.dumps(content, indent=2))


def _read(path: Path) -> dict[str, Any]:
    try:
        if path.suffix == ".json":
            return json.loads(path.read_text())
        return load_file(str(path))
    except (json.JSONDecodeError, UnicodeDecodeError, SafetensorError, OSError,
            ValueError) as exc:
        raise ModelFileError(f"{path} is corrupted: {exc}") from None


def _file_names(files: ModelFiles) -> dict[str, dict[str, Any]]:
    names = dict(zip(CORE_FILES, (files.config, files.weights, files.normaliser, files.metrics),
                     strict=True))
    if files.calibration is not None:
        names[_CALIBRATION] = files.calibration
    if files.ood is not None:
        names[_OOD] = files.ood
    for name, content in files.records.items():
        file = f"{name}.safetensors" if _is_tensors(content) else f"{name}.json"
        if file in (*CORE_FILES, _CALIBRATION, _OOD):
            raise ValueError(f"record name {name!r} clashes with the model file {file}")
        names[file] = content
    return names


def write_model_dir(path: str | Path, files: ModelFiles) -> None:
    """Write a saved model atomically as one directory (see the module)."""
    names = _file_names(files)

    def fill(tmp: Path) -> None:
        for name, content in names.items():
            _write(tmp / name, content)

    atomic_directory(path, fill)


def write_calibration(path: str | Path, calibration: dict[str, Any]) -> None:
    """Add or replace the calibration of a saved model atomically."""
    path = Path(path)
    if not path.is_dir():
        raise ModelFileError(f"--model directory not found: {path}")
    atomic_write(path / _CALIBRATION, lambda tmp: _write(tmp, calibration))


def read_model_dir(path: str | Path) -> ModelFiles:
    """Read a saved model; a missing or corrupted file is a :class:`ModelFileError`."""
    path = Path(path)
    if not path.is_dir():
        raise ModelFileError(f"--model directory not found: {path}")
    missing = [f for f in CORE_FILES if not (path / f).is_file()]
    if missing:
        raise ModelFileError(f"model directory {path} is missing {', '.join(missing)} "
                             f"(a saved model holds {', '.join(CORE_FILES)})")
    files = ModelFiles(*(_read(path / name) for name in CORE_FILES))
    for f in sorted(path.iterdir()):
        if not f.is_file() or f.name in CORE_FILES or f.suffix not in (".json", ".safetensors"):
            continue
        content = _read(f)
        if f.name == _CALIBRATION:
            files.calibration = content
        elif f.name == _OOD:
            files.ood = content
        else:
            files.records[f.stem] = content
    return files

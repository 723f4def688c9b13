"""Atomic writes and the saved-model directory format.

A saved surrogate is a directory of four files: ``config.json`` (everything needed to rebuild the
network), ``weights.safetensors`` (stacked member weights), ``normaliser.json`` and
``metrics.json``. Nothing in it is pickled; reading it never runs code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from choral.atomic import atomic_directory
from choral.errors import ModelFileError

FILES = ("config.json", "weights.safetensors", "normaliser.json", "metrics.json")


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

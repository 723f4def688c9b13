"""The base of every settings table: strict pydantic models read from TOML.

Each stage owns the settings it reads (``choral.networks.config``, ``choral.ensembles.config``,
``choral.campaign.config``); :class:`choral.config.Config` assembles them. An unknown key or a
bad value is a :class:`~choral.errors.ConfigError` that names the dotted key, the value and what
was expected (:func:`describe`).

Examples:
    >>> class Table(Strict):
    ...     size: int = 1
    >>> validate(Table, {"size": "big"})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    choral.errors.ConfigError: invalid configuration: size = 'big': Input should be ...
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from choral.errors import ConfigError

__all__ = ["Strict", "describe", "read_toml", "validate"]

M = TypeVar("M", bound=BaseModel)


class Strict(BaseModel):
    """A settings table that rejects unknown keys and validates assignments."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def validate(model: type[M], values: dict[str, Any], what: str = "configuration") -> M:
    """``model`` validated from ``values``; errors become one :class:`ConfigError`."""
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(f"invalid {what}: {describe(exc)}") from None


def read_toml(path: str | Path, what: str) -> dict[str, Any]:
    """The tables of a TOML file; a missing or malformed file is a ConfigError naming ``what``."""
    path = Path(path)
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{what} not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{what} {path} is not valid TOML: {exc}") from None


def describe(exc: ValidationError) -> str:
    """Every error of ``exc`` as ``key = value: message`` (``unknown key 'k'`` for extras)."""
    parts = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            parts.append(f"unknown key {key!r}")
        else:
            parts.append(f"{key} = {err.get('input')!r}: {err['msg']}")
    return "; ".join(parts)

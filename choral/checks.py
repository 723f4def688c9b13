"""Shared checks of user input: integers, choices and numeric arrays, with errors that name
the argument, what was expected and what came.

Examples:
    >>> check_int(3, "k", minimum=1)
    3
    >>> check_int(True, "k", minimum=1)
    Traceback (most recent call last):
    ...
    choral.errors.DataError: k must be an integer >= 1; got k=True
    >>> as_float64([1, 2], "y").dtype
    torch.float64
    >>> like = torch.zeros(1)                    # on the device the result should share
    >>> as_float64([1, 2], "y", device=like.device).device == like.device
    True
"""

from __future__ import annotations

from collections.abc import Collection
from numbers import Integral
from typing import Any

import numpy as np
import torch

from choral.errors import ConfigError, DataError

__all__ = ["as_float64", "as_numpy", "check_bounds", "check_choice", "check_int"]


def check_int(value: Any, name: str, minimum: int | None = None,
              maximum: int | None = None) -> int:
    """``value`` as an ``int`` (Python or numpy integers, never ``bool``) inside
    [``minimum``, ``maximum``], or a :class:`DataError` naming ``name``."""
    ok = isinstance(value, Integral) and not isinstance(value, bool)
    if ok and minimum is not None and value < minimum:
        ok = False
    if ok and maximum is not None and value > maximum:
        ok = False
    if not ok:
        bounds = [f">= {minimum}" if minimum is not None else "",
                  f"<= {maximum}" if maximum is not None else ""]
        expected = " and ".join(b for b in bounds if b)
        raise DataError(f"{name} must be an integer{' ' + expected if expected else ''}; "
                        f"got {name}={value!r}")
    return int(value)


def check_choice(value: Any, name: str, allowed: Collection[Any]) -> Any:
    """``value`` if it is one of ``allowed``, else a :class:`ConfigError` naming ``name``."""
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(map(str, allowed))}; "
                          f"got {value!r}")
    return value


def as_float64(x: Any, name: str, finite: bool = True,
               device: torch.device | str | None = None) -> torch.Tensor:
    """``x`` (array, tensor or nested lists) as a detached float64 tensor, or a
    :class:`DataError` naming ``name``; with ``finite``, NaN and inf are errors too.

    With ``device`` the tensor is there (an array or list is created there directly);
    without, a tensor stays where it is and anything else is on the CPU."""
    try:
        t = torch.as_tensor(x.detach() if isinstance(x, torch.Tensor) else x,
                            dtype=torch.float64, device=device)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise DataError(f"{name} must be a numeric array or tensor; got "
                        f"{type(x).__name__}") from exc
    if finite and not bool(torch.isfinite(t).all()):
        raise DataError(f"{name} must be finite; got NaN or inf values")
    return t


def as_numpy(x: Any) -> np.ndarray:
    """``x`` (array, nested lists or a tensor on any device) as a float64 numpy array.

    >>> as_numpy(torch.ones(2)).tolist()
    [1.0, 1.0]
    """
    return np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x, dtype=np.float64)


def check_bounds(bounds: Any, d: int | None = None) -> np.ndarray:
    """``bounds`` as a float64 array (d, 2) with lower < upper, or a DataError naming it."""
    try:
        b = np.asarray(bounds, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"bounds must be numbers shaped (d, 2); got {bounds!r}") from exc
    if b.ndim != 2 or b.shape[1] != 2 or (d is not None and b.shape[0] != d):
        want = "(d, 2)" if d is None else f"({d}, 2), one row per input"
        raise DataError(f"bounds must have shape {want}; got shape {b.shape}")
    if not np.isfinite(b).all() or not (b[:, 0] < b[:, 1]).all():
        raise DataError(f"bounds must be finite with lower < upper in every row; got "
                        f"{b.tolist()}")
    return b

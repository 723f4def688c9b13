"""Named objective functionals: reduce a field (or multi-output) prediction to one number.

An objective is a callable taking draws ``y`` of shape (b, n, ...) (b draws of n samples, each
sample a field or vector of output values) to (b, n). Pass one as ``objective=`` to
:func:`~choral.acquisition.score` or :func:`~choral.acquisition.select_batch`: each ensemble
member's field is then reduced to that member's objective (moment-matched from its draws), so
Thompson sampling and EI act on a functional of member-coherent fields.

- :func:`misfit`: mean squared difference to a ``target`` field, over the output values,
  divided by ``scale`` (default: the mean square of the target, a relative misfit);
- :func:`maximum` / :func:`minimum`: the largest / smallest output value of the sample;
- :func:`average`: the mean output value.

:func:`objective` builds one from its name (``"misfit"`` needs ``target``).

Examples:
    >>> import torch
    >>> y = torch.tensor([[[1.0, 3.0], [0.0, 2.0]]])  # b=1 draw, n=2 samples, 2 values each
    >>> maximum()(y).tolist(), average()(y).tolist()
    ([[3.0, 2.0]], [[2.0, 1.0]])
    >>> misfit(torch.tensor([1.0, 1.0]), scale=1.0)(y).tolist()  # mean of (y - t)^2
    [[2.0, 1.0]]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from choral.errors import ConfigError, DataError

__all__ = ["NAMES", "average", "maximum", "minimum", "misfit", "objective"]

Objective = Callable[[Tensor], Tensor]
NAMES = ("misfit", "maximum", "minimum", "average")


def _values(y: Tensor) -> Tensor:
    """Draws (b, n, ...) flattened to (b, n, p)."""
    if y.ndim < 3:
        raise DataError(f"objective draws must have shape (b, n, ...) with the output values "
                        f"last; got shape {tuple(y.shape)}")
    return y.reshape(*y.shape[:2], -1)


def misfit(target: Any, scale: float | None = None) -> Objective:
    """``mean((y - target)^2) / scale`` over the output values of each sample: (b, n, ...) ->
    (b, n). ``target`` has one sample's output shape (...); ``scale`` defaults to
    ``mean(target^2)`` (a relative squared misfit; 1 where the target is all zero)."""
    t = torch.as_tensor(target, dtype=torch.float64)
    if t.numel() == 0 or not torch.isfinite(t).all():
        raise DataError(f"target must be a finite, non-empty field; got shape {tuple(t.shape)}")
    ms = float((t**2).mean())
    scale = (ms if ms > 0 else 1.0) if scale is None else float(scale)
    if not scale > 0:
        raise ConfigError(f"scale must be positive; got {scale}")
    flat = t.reshape(-1)

    def fn(y: Tensor) -> Tensor:
        v = _values(y)
        if v.shape[-1] != flat.numel():
            raise DataError(f"target has {flat.numel()} values; the draws have {v.shape[-1]} "
                            f"per sample (shape {tuple(y.shape)})")
        return ((v - flat.to(v.device, v.dtype)) ** 2).mean(-1) / scale

    return fn


def maximum() -> Objective:
    """The largest output value of each sample: (b, n, ...) -> (b, n)."""
    return lambda y: _values(y).amax(-1)


def minimum() -> Objective:
    """The smallest output value of each sample: (b, n, ...) -> (b, n)."""
    return lambda y: _values(y).amin(-1)


def average() -> Objective:
    """The mean output value of each sample: (b, n, ...) -> (b, n)."""
    return lambda y: _values(y).mean(-1)


def objective(name: str, target: Any = None, scale: float | None = None) -> Objective:
    """The objective named ``name`` (one of :data:`NAMES`); ``target`` and ``scale`` go to
    :func:`misfit` and are refused by the others.

    >>> objective("maximum")(torch.zeros(1, 1, 3)).shape
    torch.Size([1, 1])
    """
    if name not in NAMES:
        raise ConfigError(f"objective must be one of {', '.join(NAMES)}; got {name!r}")
    if name == "misfit":
        if target is None:
            raise ConfigError("objective 'misfit' needs target= (one sample's output field)")
        return misfit(target, scale)
    if target is not None or scale is not None:
        raise ConfigError(f"objective {name!r} takes no target or scale; got target="
                          f"{'given' if target is not None else None}, scale={scale!r}")
    return {"maximum": maximum, "minimum": minimum, "average": average}[name]()

"""Task vectors: stacked differences of fine-tuned ensembles from their common start.

Shapes: ``base`` (s, ...) is the pretrained ensemble; ``tuned`` a list of T ensembles (s, ...)
or one dict (T, s, ...); task vectors ``taus`` are (T, s, ...). Every merge works per member and
per tensor, as mergekit does per tensor: a tensor's entries are ranked within one member.

Examples:
    >>> import torch
    >>> base = {"w": torch.zeros(1, 3)}
    >>> taus = task_vectors(base, [{"w": torch.tensor([[1., 2., 3.]])},
    ...                            {"w": torch.tensor([[0., -1., 1.]])}])
    >>> taus["w"].shape
    torch.Size([2, 1, 3])
    >>> magnitude_ranks(taus)["w"][0, 0].tolist()
    [0, 1, 2]
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from choral.ensembles.params import Params
from choral.errors import ConfigError, DataError

__all__ = ["add", "check_fraction", "flat", "magnitude_ranks", "per_regime", "regime_weights",
           "task_vectors"]


def task_vectors(base: Params, tuned: Sequence[Params] | Params) -> Params:
    """``tau_t = theta_t - theta_0``: (T, s, ...) from ``base`` (s, ...) and ``tuned``."""
    stacked = tuned if isinstance(tuned, dict) else \
        {k: torch.stack([t[k] for t in tuned]) for k in base}
    if set(stacked) != set(base):
        raise DataError(f"fine-tuned models must have the base's parameters {sorted(base)}; "
                        f"got {sorted(stacked)}")
    for k, v in base.items():
        if tuple(stacked[k].shape[1:]) != tuple(v.shape):
            raise DataError(f"parameter {k!r} of the fine-tuned models must have the base's "
                            f"shape {tuple(v.shape)}; got {tuple(stacked[k].shape[1:])}")
    return {k: stacked[k] - v for k, v in base.items()}


def add(base: Params, tau: Params, scale: float = 1.0) -> Params:
    """``theta_0 + scale * tau``: (s, ...) from ``base`` and a merged vector ``tau`` (s, ...)."""
    return {k: v + scale * tau[k] for k, v in base.items()}


def flat(v: Tensor) -> Tensor:
    """(T, s, ...) -> (T, s, P): each member's tensor as one row."""
    return v.reshape(v.shape[0], v.shape[1], -1)


def magnitude_ranks(taus: Params) -> Params:
    """Rank of ``|tau|`` within its tensor and member: 0 (smallest) .. P - 1 (largest),
    (T, s, ...) integers; ties keep index order (a stable sort)."""
    out = {}
    for k, v in taus.items():
        order = torch.sort(flat(v).abs(), dim=-1, stable=True).indices
        ranks = torch.empty_like(order)
        ranks.scatter_(-1, order, torch.arange(order.shape[-1], device=v.device)
                       .expand_as(order).contiguous())
        out[k] = ranks.reshape(v.shape)
    return out


def regime_weights(taus: Params, weights: Sequence[float] | Tensor | None) -> Tensor:
    """Regime weights (T,) in the vectors' dtype and device (default: all 1)."""
    first = next(iter(taus.values()))
    if weights is None:
        return torch.ones(first.shape[0], dtype=first.dtype, device=first.device)
    w = torch.as_tensor(weights, dtype=first.dtype, device=first.device)
    if w.shape != (first.shape[0],):
        raise DataError(f"weights must be one per regime ({first.shape[0]}); got shape "
                        f"{tuple(w.shape)}")
    return w


def per_regime(w: Tensor, v: Tensor) -> Tensor:
    """Weights (T,) shaped to broadcast against ``v`` (T, ...)."""
    return w.view(-1, *([1] * (v.ndim - 1)))


def check_fraction(value: float, name: str) -> float:
    """``value`` if it is a number in [0, 1], else a :class:`ConfigError` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ConfigError(f"{name} must be a fraction in [0, 1]; got {name}={value!r}")
    return float(value)

"""Stacked parameter dicts: take members out, put them back, and mix them linearly.

Every dict maps parameter names to tensors with a leading member axis s, as
``torch.func.stack_module_state`` makes them.

Examples:
    >>> import torch
    >>> a = {"w": torch.zeros(2, 3)}; b = {"w": torch.ones(2, 3)}
    >>> lerp(a, b, torch.tensor([0.0, 0.25, 1.0]))["w"][:, 0, 0].tolist()
    [0.0, 0.25, 1.0]
    >>> member(stack([a, b]), 1)["w"].shape
    torch.Size([2, 3])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

Params = dict[str, Tensor]


def count(params: Params) -> int:
    """The number of stacked members s."""
    return next(iter(params.values())).shape[0]


def member(params: Params, i: int) -> Params:
    """Member ``i`` of stacked ``params`` (s, ...) -> (...)."""
    return {k: v[i] for k, v in params.items()}


def stack(nets: Sequence[Params]) -> Params:
    """Single networks (...) -> stacked (len(nets), ...)."""
    return {k: torch.stack([n[k] for n in nets]) for k in nets[0]}


def lerp(a: Params, b: Params, alphas: Tensor) -> Params:
    """Networks on the line ``(1 - alpha) a + alpha b``, one per alpha: (len(alphas), ...).

    ``a`` and ``b`` are single networks (...); the endpoints are reproduced exactly (0 and 1 pick
    one side: ``torch.lerp``'s formula switches sides at 0.5 for exactness).
    """
    return {k: torch.lerp(a[k].unsqueeze(0), b[k].unsqueeze(0),
                          alphas.to(a[k].dtype).view(-1, *([1] * a[k].ndim)))
            for k in a}


def average(params: Params, keep: Tensor | None = None) -> Params:
    """The uniform average of the members (selected by boolean ``keep`` (s,)): stacked (1, ...)."""
    if keep is None:
        keep = torch.ones(count(params), dtype=torch.bool)
    return {k: v[keep].mean(0, keepdim=True) for k, v in params.items()}

"""All weights of stacked members as one vector per member: (s, P) and back.

The dict-level helpers for the same stacked dicts (members, stacking, averages) are in
:mod:`choral.ensembles.params`.

Examples:
    >>> import torch
    >>> params = {"w": torch.arange(12.).reshape(2, 3, 2), "b": torch.tensor([[1.], [2.]])}
    >>> flat = flatten(params)
    >>> flat.shape, flat[1].tolist()
    (torch.Size([2, 7]), [6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 2.0])
    >>> back = unflatten(flat, params)
    >>> all(torch.equal(back[k], params[k]) for k in params)
    True
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from choral.ensembles.params import Params, count


def flatten(params: Params) -> Tensor:
    """Concatenate every tensor (s, ...) of ``params`` (in key order) into (s, P)."""
    s = count(params)
    return torch.cat([v.reshape(s, -1) for v in params.values()], dim=1)


def unflatten(flat: Tensor, like: Params) -> Params:
    """Split ``flat`` (s', P) into tensors shaped as ``like``'s (s, ...) but with s' members."""
    sizes = [math.prod(v.shape[1:]) for v in like.values()]
    if flat.shape[-1] != sum(sizes):
        raise ValueError(f"flat weights must have {sum(sizes)} columns; got {flat.shape}")
    parts = torch.split(flat, sizes, dim=-1)
    return {k: p.reshape(flat.shape[0], *v.shape[1:])
            for (k, v), p in zip(like.items(), parts, strict=True)}

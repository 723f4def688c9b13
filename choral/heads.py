"""Heteroscedastic Gaussian head: split a network output into a mean and a positive variance.

A member network returns 2 channels per target on axis ``dim``: the first half are means, the
second half raw variances mapped through ``softplus`` plus a floor.

Examples:
    >>> import torch
    >>> mean, var = gaussian_head(torch.tensor([[0.5, -30.0]]), floor=1e-3)
    >>> mean.tolist(), round(var.item(), 6)
    ([[0.5]], 0.001)
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional


def gaussian_head(out: Tensor, floor: float, dim: int = -1) -> tuple[Tensor, Tensor]:
    """Mean and variance from ``out`` (..., 2m, ...) split on ``dim``; each (..., m, ...)."""
    mean, raw = out.chunk(2, dim=dim)
    return mean, functional.softplus(raw) + floor


def gaussian_nll(mean: Tensor, var: Tensor, y: Tensor) -> Tensor:
    """Elementwise Gaussian negative log-likelihood, including the ``log(2 pi)/2`` constant.

    >>> round(gaussian_nll(torch.tensor(0.0), torch.tensor(1.0), torch.tensor(0.0)).item(), 6)
    0.918939
    """
    return 0.5 * (torch.log(var) + (y - mean) ** 2 / var + math.log(2 * math.pi))

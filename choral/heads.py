"""Distribution heads: how a member's raw output becomes a loss and a predictive distribution.

A head owns three things: how many output channels per target the backbone must produce
(``channels``), the per-member training loss, and the predictive distribution of stacked member
outputs. Member outputs carry the member axis first and the channels on axis 2:
(s, n, channels * m) for vectors, (s, n, channels * c_out, *grid) for fields.

The Gaussian head splits the channels into means and raw variances mapped through ``softplus``
plus a floor.

Examples:
    >>> import torch
    >>> mean, var = gaussian_head(torch.tensor([[0.5, -30.0]]), floor=1e-3)
    >>> mean.tolist(), round(var.item(), 6)
    ([[0.5]], 0.001)
    >>> head = GaussianHead(floor=1e-6)
    >>> head.channels, tuple(head.predictive(torch.zeros(3, 4, 2)).shape)
    (2, (4, 1))
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional

from choral.config import ModelConfig
from choral.predictive import GaussianMixture, Predictive


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


class Head:
    """The contract of a distribution head (subclasses: :class:`GaussianHead`, ...)."""

    channels: int
    """Backbone output channels per target value."""

    def loss(self, out: Tensor, y: Tensor) -> Tensor:
        """Mean loss per member (s,) of ``out`` (s, b, channels*m, ...) at ``y`` (s, b, m, ...)."""
        raise NotImplementedError

    def predictive(self, out: Tensor) -> Predictive:
        """The ensemble predictive of member outputs ``out`` (s, n, channels*m, ...)."""
        raise NotImplementedError


class GaussianHead(Head):
    """One heteroscedastic Gaussian per member and target value; the ensemble is their mixture."""

    channels = 2

    def __init__(self, floor: float = 1e-6) -> None:
        self.floor = floor

    def loss(self, out: Tensor, y: Tensor) -> Tensor:
        mean, var = gaussian_head(out, self.floor, dim=2)
        return gaussian_nll(mean, var, y).flatten(1).mean(1)

    def predictive(self, out: Tensor) -> GaussianMixture:
        return GaussianMixture(*gaussian_head(out.double(), self.floor, dim=2))


def make_head(cfg: ModelConfig) -> Head:
    """The head named by ``cfg`` (``model.head``)."""
    return GaussianHead(cfg.variance_floor)

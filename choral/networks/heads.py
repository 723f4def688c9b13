"""Distribution heads: how a member's raw output becomes a loss and a predictive distribution.

A head owns three things: how many output channels per target the backbone must produce
(``channels``), the per-member training loss, and the predictive distribution of stacked member
outputs. Member outputs carry the member axis first and the channels on axis 2:
(s, n, channels * m) for vectors, (s, n, channels * c_out, *grid) for fields.

The Gaussian head splits the channels into means and raw variances mapped through ``softplus``
plus a floor; :class:`MDNHead` predicts a mixture of K Gaussians and :class:`QuantileHead`
non-crossing quantiles on a grid of levels.

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

from choral.distributions import GaussianMixture, Predictive
from choral.distributions.base import pinball
from choral.distributions.quantile import QuantilePredictive, level_grid, moments


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


def beta_nll(mean: Tensor, var: Tensor, y: Tensor, beta: float) -> Tensor:
    """Elementwise Gaussian NLL whose value is :func:`gaussian_nll`'s and whose gradient is
    the beta-NLL's (Seitzer et al., 2022): the NLL's gradient times ``var ** beta``, the
    factor held constant.

    Under the plain NLL (``beta = 0``) the mean's gradient ``(mean - y) / var`` is weighted by
    the member's own precision, so a member learns little where it predicts a large variance;
    ``beta = 1`` gives the mean the squared error's gradient ``mean - y``, and ``beta = 0.5``
    lies between. The stationary variance (``var = (y - mean)^2`` pointwise) is the same for
    every ``beta``. Reporting the value of the NLL keeps validation, early stopping and the
    training history in NLL units.

    >>> mean = torch.tensor(1.0, requires_grad=True)
    >>> loss = beta_nll(mean, torch.tensor(4.0), torch.tensor(0.0), beta=1.0)
    >>> loss.backward(); round(loss.item(), 6), mean.grad.item()  # NLL's value, (mean - y)
    (1.737086, 1.0)
    """
    nll = gaussian_nll(mean, var, y)
    if beta == 0:
        return nll
    weight = var.detach() ** beta
    return nll.detach() + weight * (nll - nll.detach())


class Head:
    """The contract of a distribution head (subclasses: :class:`GaussianHead`, ...)."""

    channels: int
    """Backbone output channels per target value."""

    def loss(self, out: Tensor, y: Tensor) -> Tensor:
        """Mean loss per member (s,) of ``out`` (s, b, channels*m, ...) at ``y`` (s, b, m, ...)."""
        raise NotImplementedError

    def nll(self, out: Tensor, y: Tensor) -> Tensor:
        """Mean negative log-likelihood per member (s,), value and gradient alike (what a
        curvature needs); :meth:`loss` itself unless the head trains on another gradient."""
        return self.loss(out, y)

    def predictive(self, out: Tensor) -> Predictive:
        """The ensemble predictive of member outputs ``out`` (s, n, channels*m, ...)."""
        raise NotImplementedError

    def member_means(self, out: Tensor) -> Tensor:
        """Member means (s, n, m, ...) of ``out`` (s, n, channels*m, ...), differentiable and
        in ``out``'s dtype (what a gradient-based optimiser of the inputs needs)."""
        raise NotImplementedError


class GaussianHead(Head):
    """One heteroscedastic Gaussian per member and target value; the ensemble is their mixture.

    ``beta`` > 0 trains on the beta-NLL's gradient (:func:`beta_nll`); the loss's value, and
    :meth:`nll` at any ``beta``, is the Gaussian NLL.
    """

    channels = 2

    def __init__(self, floor: float = 1e-6, beta: float = 0.0) -> None:
        self.floor, self.beta = floor, beta

    def loss(self, out: Tensor, y: Tensor) -> Tensor:
        mean, var = gaussian_head(out, self.floor, dim=2)
        return beta_nll(mean, var, y, self.beta).flatten(1).mean(1)

    def nll(self, out: Tensor, y: Tensor) -> Tensor:
        mean, var = gaussian_head(out, self.floor, dim=2)
        return gaussian_nll(mean, var, y).flatten(1).mean(1)

    def predictive(self, out: Tensor) -> GaussianMixture:
        return GaussianMixture(*gaussian_head(out.double(), self.floor, dim=2))

    def member_means(self, out: Tensor) -> Tensor:
        return out.chunk(2, dim=2)[0]


class MDNHead(Head):
    """A mixture of ``K`` Gaussians per member and target value (a mixture-density network).

    The ``3 K`` channels per target are K mixture logits, K means and K raw variances
    (softplus plus a floor). The ensemble predictive is the mixture of all ``s K`` components,
    with per-sample weights ``softmax(logits) / s``, grouped by member (``members=s``).

    Examples:
        >>> head = MDNHead(components=2)
        >>> out = torch.zeros(3, 4, 6)  # s=3 members, n=4, 3 K m = 6 channels (m = 1)
        >>> pred = head.predictive(out)
        >>> pred.num_members, pred.num_components, tuple(pred.shape)
        (3, 6, (4, 1))
        >>> round(head.loss(out, torch.zeros(3, 4, 1))[0].item(), 6)  # -log N(0; 0, log 2)
        0.735683
    """

    def __init__(self, components: int = 5, floor: float = 1e-6) -> None:
        self.components, self.floor = components, floor
        self.channels = 3 * components

    def split(self, out: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Log weights, means, variances, each (s, n, K, m, ...), of ``out`` (s, n, 3Km, ...)."""
        logits, mean, raw = out.unflatten(2, (3, self.components, -1)).unbind(2)
        return torch.log_softmax(logits, 2), mean, functional.softplus(raw) + self.floor

    def loss(self, out: Tensor, y: Tensor) -> Tensor:
        logw, mean, var = self.split(out)
        logp = torch.logsumexp(logw - gaussian_nll(mean, var, y.unsqueeze(2)), dim=2)
        return -logp.flatten(1).mean(1)

    def predictive(self, out: Tensor) -> GaussianMixture:
        s = out.shape[0]
        logw, mean, var = (t.movedim(2, 1).flatten(0, 1) for t in self.split(out.double()))
        return GaussianMixture(mean, var, torch.exp(logw) / s, members=s)

    def member_means(self, out: Tensor) -> Tensor:
        logw, mean, _ = self.split(out)
        return (torch.exp(logw) * mean).sum(2)


class QuantileHead(Head):
    """Quantiles at ``levels`` per member and target value, trained on the pinball loss.

    The ``L`` channels per target are the lowest quantile and ``L - 1`` raw increments; the
    quantiles are their cumulative sums after ``softplus`` plus ``min_gap``, so they never
    cross. The ensemble predictive is :class:`~choral.distributions.QuantilePredictive` (members
    combined by quantile averaging or, with ``combine="mixture"``, mixed).

    Examples:
        >>> head = QuantileHead([0.25, 0.5, 0.75], min_gap=0.0)
        >>> q = head.quantiles(torch.tensor([[[0.0, 0.0, 0.0]]]))  # s=1, n=1, L m = 3
        >>> [round(v, 4) for v in q.ravel().tolist()]  # 0, then + softplus(0) = log 2 twice
        [0.0, 0.6931, 1.3863]
    """

    def __init__(self, levels: int | list[float] = 19, min_gap: float = 1e-3,
                 combine: str = "vincentise") -> None:
        self.levels = level_grid(levels)
        self.channels = len(self.levels)
        self.min_gap, self.combine = min_gap, combine

    def quantiles(self, out: Tensor) -> Tensor:
        """Nondecreasing quantiles (s, n, L, m, ...) of ``out`` (s, n, L m, ...)."""
        first, raw = out.unflatten(2, (self.channels, -1)).split([1, self.channels - 1], dim=2)
        return torch.cat([first, first + torch.cumsum(functional.softplus(raw)
                                                      + self.min_gap, dim=2)], dim=2)

    def loss(self, out: Tensor, y: Tensor) -> Tensor:
        q = self.quantiles(out)
        tau = self.levels.to(q.dtype).reshape((-1,) + (1,) * (q.ndim - 3))
        return pinball(y.unsqueeze(2) - q, tau).flatten(1).mean(1)

    def predictive(self, out: Tensor) -> QuantilePredictive:
        return QuantilePredictive(self.levels, self.quantiles(out.double()).movedim(2, -1),
                                  self.combine)

    def member_means(self, out: Tensor) -> Tensor:
        q = self.quantiles(out).movedim(2, -1)
        return moments(self.levels.to(q.dtype), q)[0]


HEADS = {"gaussian": GaussianHead, "mdn": MDNHead, "quantile": QuantileHead}
"""The heads by name (``model.head``)."""

"""Closed forms of improvement-based acquisitions for Gaussians and Gaussian mixtures.

For ``Y ~ N(mu, sigma^2)`` and an incumbent ``best``, the improvement is ``max(Y - best, 0)``
when maximising (``max(best - Y, 0)`` when minimising). With ``u = (mu - best) / sigma``
(``(best - mu) / sigma`` when minimising) its expectation is ``EI = sigma h(u)``,
``h(u) = phi(u) + u Phi(u)``. Improvement is linear in the distribution, so the EI of a mixture
``sum_i w_i N(mu_i, sigma_i^2)`` is ``sum_i w_i EI_i`` exactly and its log is a logsumexp.

``log h`` is evaluated without underflow far into the tail (as in BoTorch's LogEI,
Ament et al. 2023): for ``u <= -1``, ``h(u) = phi(u) (1 - |u| sqrt(pi/2) erfcx(|u|/sqrt 2))``,
and for ``u < -1/sqrt(eps)`` the asymptote ``log h(u) ~ log phi(u) - 2 log|u|``.
Everything is float64 tensors of matching (broadcastable) shapes.

Examples:
    >>> import torch
    >>> round(gaussian_ei(torch.tensor(0.0), torch.tensor(1.0), 0.0).item(), 6)  # = phi(0)
    0.398942
    >>> t = torch.tensor(0.0, dtype=torch.float64)
    >>> gaussian_ei(t, t + 1, 40.0, maximize=True).item()  # underflows; its log does not
    0.0
    >>> round(gaussian_log_ei(t, t + 1, 40.0, maximize=True).item(), 3)
    -808.299
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["gaussian_ei", "gaussian_log_ei", "log_h", "mixture_ei", "mixture_log_ei"]

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
_TAIL = -1.0 / math.sqrt(torch.finfo(torch.float64).eps)  # beyond: the asymptote is exact


def _u(mean: Tensor, std: Tensor, best: float | Tensor, maximize: bool) -> Tensor:
    """Standardised improvement ``u`` (broadcast shape)."""
    return (mean - best) / std if maximize else (best - mean) / std


def _log_phi(u: Tensor) -> Tensor:
    """Log of the standard normal density at ``u``."""
    return -0.5 * u * u - _LOG_SQRT_2PI


def gaussian_ei(mean: Tensor, std: Tensor, best: float | Tensor, maximize: bool = False) -> Tensor:
    """Expected improvement over ``best`` of ``N(mean, std^2)``; shape of the broadcast inputs."""
    u = _u(mean, std, best, maximize)
    return std * (torch.exp(_log_phi(u)) + u * torch.special.ndtr(u))


def log_h(u: Tensor) -> Tensor:
    """``log(phi(u) + u Phi(u))``, accurate for every finite ``u`` (same shape as ``u``).

    >>> import torch
    >>> round(log_h(torch.tensor(-1.0, dtype=torch.float64)).item(), 9)  # log(phi(-1) - Phi(-1))
    -2.485121026
    """
    log_phi = _log_phi(u)
    up = u.clamp_min(-1.0)
    direct = torch.log(torch.exp(_log_phi(up)) + up * torch.special.ndtr(up))
    a = (-u).clamp(1.0, -_TAIL)
    mid = log_phi + torch.log1p(-a * math.sqrt(math.pi / 2) * torch.special.erfcx(a / math.sqrt(2)))
    tail = log_phi - 2.0 * torch.log((-u).clamp_min(1.0))
    return torch.where(u > -1.0, direct, torch.where(u > _TAIL, mid, tail))


def gaussian_log_ei(mean: Tensor, std: Tensor, best: float | Tensor,
                    maximize: bool = False) -> Tensor:
    """``log EI`` of ``N(mean, std^2)`` over ``best``, finite where EI underflows to 0."""
    return torch.log(std) + log_h(_u(mean, std, best, maximize))


def mixture_ei(means: Tensor, stds: Tensor, weights: Tensor, best: float | Tensor,
               maximize: bool = False) -> Tensor:
    """EI of the mixture ``sum_i w_i N(means_i, stds_i^2)``: members (s, n, ...) -> (n, ...).

    >>> import torch
    >>> m, sd = torch.tensor([[0.0], [1.0]]), torch.ones(2, 1)
    >>> both = mixture_ei(m, sd, torch.tensor([0.5, 0.5]), 0.0, maximize=True)
    >>> torch.allclose(both, (gaussian_ei(m[0], sd[0], 0.0, True)
    ...                       + gaussian_ei(m[1], sd[1], 0.0, True)) / 2)
    True
    """
    w = weights.reshape((-1,) + (1,) * (means.ndim - 1))
    return (w * gaussian_ei(means, stds, best, maximize)).sum(0)


def mixture_log_ei(means: Tensor, stds: Tensor, weights: Tensor, best: float | Tensor,
                   maximize: bool = False) -> Tensor:
    """``log`` of :func:`mixture_ei` as a logsumexp over members; (s, n, ...) -> (n, ...)."""
    logw = torch.log(weights).reshape((-1,) + (1,) * (means.ndim - 1))
    return torch.logsumexp(logw + gaussian_log_ei(means, stds, best, maximize), dim=0)

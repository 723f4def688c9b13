"""The surrogate likelihood of observed outputs, with the ensemble's epistemic uncertainty in it.

Observations are ``y_obs = f(x) + e`` with ``e ~ N(0, sigma^2)`` independent per output value.
Each member ``k`` of ``s`` believes ``f(x)`` has a distribution with means ``mu_k(x)`` and
variances ``var_k(x)`` per output value (a Gaussian, or a mixture of ``K`` Gaussians per value
for a mixture-density member), and a member is one coherent function: it answers for all the
outputs of ``x`` at once. So the likelihood is the member mixture's *joint* likelihood,

    log p(y_obs | x) = logsumexp_k [log w_k + sum_j log N(y_obs_j; mu_kj(x), var_kj(x) + s2_j)]

(``w_k = 1 / s``, ``s2_j = sigma_j^2``), the Predictive contract's ``log_prob(y, joint=True)``
of the predictive with the noise variance added to every member (a Gaussian convolved with
the noise is a Gaussian with the variances summed). It is written here again, differentiably,
because MCMC needs its gradient with respect to ``x``; a test checks it against the
predictive's.

Examples:
    >>> import torch
    >>> members = lambda x: (torch.stack([x, -x]), torch.ones(2, *x.shape))  # s=2, m=d=1
    >>> lik = SurrogateLikelihood(members, y_obs=[1.0], noise=1.0)
    >>> x = torch.tensor([[1.0]], dtype=torch.float64)
    >>> # 0.5 N(1; 1, 2) + 0.5 N(1; -1, 2)
    >>> import math
    >>> ref = math.log(0.5 * (math.exp(0) + math.exp(-1.0)) / math.sqrt(4 * math.pi))
    >>> round(lik(x).item() - ref, 12)
    0.0
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from choral.checks import as_float64
from choral.errors import ConfigError, DataError
from choral.evaluation.calibration import scale_factor
from choral.networks.heads import GaussianHead, MDNHead, gaussian_head

__all__ = ["MemberMoments", "SurrogateLikelihood", "member_moments"]

MemberMoments = Callable[[Tensor], tuple[Tensor, ...]]
"""``x (n, d) -> (means, variances)`` each (s, n, ...), or ``(means, variances, log_weights)``
each (s, K, n, ...) for members that are mixtures of ``K`` components per value."""

_LOG_2PI = math.log(2.0 * math.pi)


def member_moments(model: Any) -> MemberMoments:
    """The differentiable member distributions of a fitted surrogate, in original units.

    Gaussian heads give means and variances (s, n, ...); mixture-density heads their
    components (s, K, n, ...) with log weights. A scale calibration (``scale``,
    ``pit_scale``) spreads the member means about their mean and scales every variance by its
    factor squared, as :meth:`~choral.surrogate.Surrogate.predict` does; the other calibrations
    recalibrate quantiles or intervals, not densities, and are not applied.
    """
    head = model.head
    if not isinstance(head, GaussianHead | MDNHead):
        raise ConfigError(f"inference needs members with densities (model.head gaussian or "
                          f"mdn); this model's head is {type(head).__name__}")
    params = model.params
    first = next(iter(params.values()))
    m_dims = 1 + len(model.y_shape)

    def moments(x: Tensor) -> tuple[Tensor, ...]:
        x_loc, x_scale = (torch.as_tensor(a, dtype=x.dtype, device=x.device)
                          for a in model.x_norm.loc_scale(x.ndim))
        y_loc, y_scale = (torch.as_tensor(a, dtype=x.dtype, device=x.device)
                          for a in model.y_norm.loc_scale(m_dims))
        xs = ((x - x_loc) / x_scale).to(first.device, first.dtype)
        out = model.forward(params, xs.expand(first.shape[0], *xs.shape)).to(x.device, x.dtype)
        factor = scale_factor(model.calibrator, model.y_shape)
        c = None if factor is None else factor.to(x.device, x.dtype)
        if isinstance(head, GaussianHead):
            mean, var = gaussian_head(out, head.floor, dim=2)
            mean, var = mean * y_scale + y_loc, var * y_scale**2
            if c is not None:
                centre = mean.mean(0)
                mean, var = centre + c * (mean - centre), var * c**2
            return mean, var
        logw, mean, var = (t.movedim(2, 1) for t in head.split(out))  # (s, K, n, ...)
        mean, var = mean * y_scale + y_loc, var * y_scale**2
        if c is not None:
            centre = (torch.exp(logw) * mean).sum(1).mean(0)
            mean, var = centre + c * (mean - centre), var * c**2
        return mean, var, logw

    return moments


class SurrogateLikelihood:
    """``log p(y_obs | x)`` (n,) of inputs ``x`` (n, d) through a surrogate's members.

    Args:
        model: a fitted surrogate, or a :data:`MemberMoments` function.
        y_obs: the observed outputs (...) (the model's output shape: (m,) or (c, *grid)), or
            (1, ...).
        noise: the observation noise standard deviation ``sigma`` > 0, a number or an array
            broadcastable to the output shape.
        mask: optional booleans of the output shape: only the values where it is true were
            observed (e.g. sparse sensors on a field); the others do not enter the likelihood.
    """

    def __init__(self, model: Any, y_obs: Any, noise: Any, mask: Any = None) -> None:
        self.moments = model if callable(model) and not hasattr(model, "params") else \
            member_moments(model)
        y = as_float64(y_obs, "y_obs")
        shape = getattr(model, "y_shape", None)
        if shape is not None:
            shape = tuple(shape)
            if tuple(y.shape) == (1, *shape):
                y = y[0]
            if tuple(y.shape) != shape:
                raise DataError(f"y_obs must have the model's output shape {shape} (or "
                                f"(1, {', '.join(map(str, shape))})); got {tuple(y.shape)}")
        self.y_obs = y
        sigma = as_float64(noise, "noise")
        if not bool((sigma > 0).all()):
            raise DataError(f"noise must be a standard deviation > 0; got {sigma.tolist()}")
        try:
            self.noise_var = torch.broadcast_to(sigma**2, y.shape).clone()
        except RuntimeError:
            raise DataError(f"noise must be a number or broadcastable to y_obs's shape "
                            f"{tuple(y.shape)}; got shape {tuple(sigma.shape)}") from None
        self.mask = None
        if mask is not None:
            mask = torch.as_tensor(mask, dtype=torch.bool)
            if mask.shape != y.shape or not bool(mask.any()):
                raise DataError(f"mask must be booleans of y_obs's shape {tuple(y.shape)} with "
                                f"at least one true; got shape {tuple(mask.shape)}")
            self.mask = mask

    def __call__(self, x: Tensor) -> Tensor:
        """The member mixture's joint log-likelihood (n,) of ``y_obs`` at ``x`` (n, d)."""
        out = self.moments(x)
        y, noise = (t.to(x.device, x.dtype) for t in (self.y_obs, self.noise_var))
        if len(out) == 2:
            mean, var = out
            logp = _log_normal(y, mean, var + noise)  # (s, n, ...)
        else:
            mean, var, logw = out
            logp = torch.logsumexp(logw + _log_normal(y, mean, var + noise), dim=1)
        if logp.shape[2:] != y.shape:
            raise DataError(f"the members' outputs have shape {tuple(logp.shape[2:])} per "
                            f"sample; y_obs has {tuple(y.shape)}")
        if self.mask is not None:
            logp = logp * self.mask.to(logp.device)
        per_member = logp.flatten(2).sum(2)  # (s, n)
        return torch.logsumexp(per_member, dim=0) - math.log(per_member.shape[0])


def _log_normal(y: Tensor, mean: Tensor, var: Tensor) -> Tensor:
    return -0.5 * ((y - mean) ** 2 / var + torch.log(var) + _LOG_2PI)

"""Priors over a simulator's inputs: torch distributions with event shape (d,).

A prior is any :class:`torch.distributions.Distribution` whose samples are (d,) vectors and
whose support torch can map to R^d (:func:`torch.distributions.biject_to`): a box-uniform
(:func:`box_prior`, the default), a diagonal Gaussian (:func:`gaussian_prior`), or one the
user brings (e.g. a ``MultivariateNormal``). MCMC runs on the unconstrained space of that map.

Examples:
    >>> prior = box_prior([[0.0, 1.0], [-2.0, 2.0]])
    >>> prior.sample((5,)).shape, prior.support.check(prior.sample((3,))).all().item()
    (torch.Size([5, 2]), True)
    >>> round(prior.log_prob(torch.zeros(2, dtype=torch.float64)).item(), 6)  # log(1 / 4)
    -1.386294
"""

from __future__ import annotations

from typing import Any

import torch
from torch.distributions import Distribution, Independent, Normal, Uniform, biject_to

from choral.checks import as_float64, check_bounds
from choral.errors import DataError

__all__ = ["box_prior", "check_prior", "gaussian_prior"]


def box_prior(bounds: Any) -> Distribution:
    """Independent uniforms on the box ``bounds`` (d, 2), float64."""
    b = torch.as_tensor(check_bounds(bounds))
    return Independent(Uniform(b[:, 0], b[:, 1]), 1)


def gaussian_prior(loc: Any, scale: Any) -> Distribution:
    """Independent Gaussians ``N(loc_i, scale_i^2)``, ``loc`` (d,), ``scale`` (d,) or a number."""
    loc = as_float64(loc, "loc").reshape(-1)
    scale = torch.broadcast_to(as_float64(scale, "scale"), loc.shape)
    if not bool((scale > 0).all()):
        raise DataError(f"scale must be > 0; got {scale.tolist()}")
    return Independent(Normal(loc, scale), 1)


def check_prior(prior: Any, d: int) -> Distribution:
    """``prior`` if it is a distribution of (d,) vectors with a support torch can map to R^d."""
    if not isinstance(prior, Distribution):
        raise DataError(f"prior must be a torch.distributions.Distribution; got "
                        f"{type(prior).__name__}")
    if tuple(prior.event_shape) != (d,) or tuple(prior.batch_shape) != ():
        raise DataError(f"prior must draw vectors of the model's {d} inputs (event shape "
                        f"({d},), no batch shape); got event shape {tuple(prior.event_shape)} "
                        f"and batch shape {tuple(prior.batch_shape)}")
    try:
        biject_to(prior.support)
    except NotImplementedError:
        raise DataError(f"prior's support {prior.support} has no map to R^d "
                        f"(torch.distributions.biject_to)") from None
    return prior

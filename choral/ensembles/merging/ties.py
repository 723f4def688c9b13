"""TIES merging (Yadav et al. 2023): trim, elect sign, disjoint mean.

1. Trim: keep the ``density`` fraction of each task vector's entries with the largest magnitude,
   per tensor and member (``int(density * P)`` of its ``P`` entries), zero the rest.
2. Elect: the sign of each weight is the sign of the summed (weighted) trimmed mass,
   ``sign(sum_t w_t trim(tau_t))``, with a zero sum counted as positive.
3. Disjoint mean: average, per weight, only the trimmed entries whose sign agrees with the
   elected one, ``sum_t w_t a_t trim(tau_t) / sum_t w_t a_t`` (``a_t`` agreement; a weight no
   regime agrees on gets 0).

The merged model is ``theta_0 + lambda tau``. This is mergekit's ``ties`` (``consensus_method:
sum``, ``normalize: true``, magnitude sparsification) but for ``lambda``, which mergekit does not
have (its ``lambda = 1``); the TIES paper scales by ``lambda`` as here. Ties in magnitude are
broken by index order here and by ``torch.argsort`` in mergekit.

Examples:
    >>> import torch
    >>> taus = {"w": torch.tensor([[[0.5, -2.0, 0.1]], [[1.0, 1.0, -0.2]]])}
    >>> trim(taus, 2 / 3)["w"].tolist()
    [[[0.5, -2.0, 0.0]], [[1.0, 1.0, -0.0]]]
    >>> ties(taus, 2 / 3)["w"].tolist()      # elected signs +, -, +: means 0.75, -2, 0
    [[0.75, -2.0, 0.0]]
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from choral.ensembles.merging.vectors import (
    check_fraction,
    magnitude_ranks,
    per_regime,
    regime_weights,
)
from choral.ensembles.params import Params

__all__ = ["elect_sign", "ties", "trim"]


def trim(taus: Params, density: float) -> Params:
    """Task vectors (T, s, ...) with all but the top ``density`` fraction (by magnitude, per
    tensor and member) set to zero."""
    check_fraction(density, "density")
    out = {}
    for k, ranks in magnitude_ranks(taus).items():
        size = ranks[0, 0].numel()
        keep = ranks >= size - int(density * size)
        out[k] = taus[k] * keep
    return out


def elect_sign(taus: Params, weights: Tensor) -> Params:
    """The elected sign (s, ...) of every weight: +1 where ``sum_t w_t tau_t >= 0``, else -1."""
    return {k: torch.where((per_regime(weights, v) * v).sum(0) >= 0, 1.0, -1.0).to(v.dtype)
            for k, v in taus.items()}


def ties(taus: Params, density: float = 0.2,
         weights: Sequence[float] | Tensor | None = None) -> Params:
    """The TIES vector (s, ...) of task vectors (T, s, ...): trim to ``density``, elect signs,
    average the agreeing entries (weighted by ``weights`` (T,))."""
    w = regime_weights(taus, weights)
    trimmed = trim(taus, density)
    signs = elect_sign(trimmed, w)
    out = {}
    for k, v in trimmed.items():
        agree = (torch.sign(v) == signs[k]).to(v.dtype) * per_regime(w, v)
        total = agree.sum(0)
        out[k] = (agree * v).sum(0) / torch.where(total == 0, torch.ones_like(total), total)
    return out

"""Task arithmetic (Ilharco et al. 2023) and the balanced soup / WiSE-FT of several fine-tunes.

Task arithmetic sums the task vectors, ``tau = sum_t w_t tau_t``; the merged model is
``theta_0 + lambda tau`` (:func:`~choral.ensembles.merging.vectors.add`), as mergekit's
``task_arithmetic`` with ``normalize: false`` (mergekit has no ``lambda``: it is 1 there).

The balanced variant guards against an over-confident fine-tune, one that moved its weights far
more than the others (a long run, a large learning rate) and would dominate a plain sum or soup:
each regime's vector is rescaled, per tensor and member, to the mean norm of the regimes'
vectors of that tensor, and the rescaled vectors are averaged,
``tau = (1/T) sum_t (nbar / ||tau_t||) tau_t``. With ``lambda = 1`` and vectors of equal norms
this is the uniform soup of the fine-tunes; with one regime, ``theta_0 + lambda tau`` is WiSE-FT.

Examples:
    >>> import torch
    >>> taus = {"w": torch.tensor([[[3.0, 4.0]], [[0.0, 1.0]]], dtype=torch.float64)}  # norms 5, 1
    >>> task_arithmetic(taus)["w"].tolist()
    [[3.0, 5.0]]
    >>> balanced(taus)["w"].round(decimals=12).tolist()  # nbar = 3: (3/5 [3, 4] + 3 [0, 1]) / 2
    [[0.9, 2.7]]
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from choral.ensembles.merging.vectors import flat, per_regime, regime_weights
from choral.ensembles.params import Params

__all__ = ["balanced", "task_arithmetic"]


def task_arithmetic(taus: Params, weights: Sequence[float] | Tensor | None = None) -> Params:
    """``sum_t w_t tau_t``: (s, ...) from task vectors (T, s, ...) and weights (T,)."""
    w = regime_weights(taus, weights)
    return {k: (per_regime(w, v) * v).sum(0) for k, v in taus.items()}


def balanced(taus: Params) -> Params:
    """The mean of the task vectors (T, s, ...) after rescaling each one, per tensor and member,
    to the regimes' mean norm: (s, ...). A zero vector stays zero."""
    out = {}
    for k, v in taus.items():
        norms = flat(v).norm(dim=-1)                          # (T, s)
        target = norms.mean(0, keepdim=True)                   # (1, s)
        factor = torch.where(norms > 0, target / norms.clamp_min(torch.finfo(v.dtype).tiny),
                             torch.zeros_like(norms))
        out[k] = (factor.view(*factor.shape, *([1] * (v.ndim - 2))) * v).mean(0)
    return out

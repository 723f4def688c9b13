"""Model Breadcrumbs (Davari and Belilovsky 2024): drop the smallest and the largest changes.

Per tensor and member of each task vector (``P`` entries), the ``int(gamma * P)`` largest
magnitudes (outliers) and the smallest ones are masked so that ``int(density * P)`` entries stay
(when fewer than the outliers remain, fewer outliers are dropped); the masked vectors are summed,
``tau = sum_t w_t m_t tau_t``, and the model is ``theta_0 + lambda tau``.

This is mergekit's ``breadcrumbs`` (``magnitude_outliers`` sparsification, no rescaling,
``normalize: false``) but for ``lambda``, which mergekit does not have, and one edge case:
with ``int(gamma * P) = 0`` mergekit's mask ``indices[n_bot:-0]`` is empty and keeps nothing,
while here it keeps the ``int(density * P)`` largest entries.

Examples:
    >>> import torch
    >>> taus = {"w": torch.tensor([[[0.1, -5.0, 0.3, 1.0]]])}
    >>> breadcrumbs_mask(taus, density=0.5, gamma=0.25)["w"].tolist()
    [[[False, False, True, True]]]
    >>> breadcrumbs(taus, density=0.5, gamma=0.25)["w"].tolist()
    [[0.0, 0.0, 0.30000001192092896, 1.0]]
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from choral.ensembles.merging.vectors import (
    check_fraction,
    magnitude_ranks,
    per_regime,
    regime_weights,
)
from choral.ensembles.params import Params

__all__ = ["breadcrumbs", "breadcrumbs_mask"]


def breadcrumbs_mask(taus: Params, density: float = 0.9, gamma: float = 0.01) -> Params:
    """Boolean masks (T, s, ...): the entries kept after dropping the ``gamma`` fraction of the
    largest magnitudes and enough of the smallest to keep a ``density`` fraction."""
    check_fraction(density, "density")
    check_fraction(gamma, "gamma")
    out = {}
    for k, ranks in magnitude_ranks(taus).items():
        size = ranks[0, 0].numel()
        keep, top = int(density * size), int(gamma * size)
        bottom = size - keep - top
        if bottom < 0:  # too few left: drop fewer outliers
            top, bottom = top + bottom, 0
        out[k] = (ranks >= bottom) & (ranks < size - top)
    return out


def breadcrumbs(taus: Params, density: float = 0.9, gamma: float = 0.01,
                weights: Sequence[float] | Tensor | None = None) -> Params:
    """``sum_t w_t m_t tau_t`` (s, ...) with the masks of :func:`breadcrumbs_mask`."""
    w = regime_weights(taus, weights)
    masks = breadcrumbs_mask(taus, density, gamma)
    return {k: (per_regime(w, v) * v * masks[k]).sum(0) for k, v in taus.items()}

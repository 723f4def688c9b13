"""Merging fine-tuned surrogates through task vectors.

A pretrained ensemble ``theta_0`` (s members) fine-tuned to T regimes gives T ensembles
``theta_t``; their task vectors ``tau_t = theta_t - theta_0`` are stacked as one dict of tensors
(T, s, ...) and merged member by member, all members and regimes at once:

- :mod:`.vectors`: task vectors, adding a merged vector back, per-tensor magnitude ranks;
- :mod:`.arithmetic`: task arithmetic (``theta_0 + lambda sum_t w_t tau_t``) and the balanced
  soup / WiSE-FT (every regime's vector rescaled to the same norm per tensor, then averaged);
- :mod:`.ties`: TIES (trim, elect sign, disjoint mean);
- :mod:`.breadcrumbs`: Model Breadcrumbs (drop the smallest and the largest changes, then sum);
- :mod:`.tall`: TALL masks (one bit per weight and regime over a merged vector, packed) and
  consensus merging (keep weights that at least k regimes use);
- :mod:`.align`: permutation alignment of fine-tunes that did not start from ``theta_0``.
"""

from choral.ensembles.merging.arithmetic import balanced, task_arithmetic
from choral.ensembles.merging.breadcrumbs import breadcrumbs, breadcrumbs_mask
from choral.ensembles.merging.tall import (
    consensus,
    consensus_mask,
    pack_masks,
    regime_params,
    tall_masks,
    unpack_masks,
)
from choral.ensembles.merging.ties import elect_sign, ties, trim
from choral.ensembles.merging.vectors import add, task_vectors

__all__ = ["add", "balanced", "breadcrumbs", "breadcrumbs_mask", "consensus", "consensus_mask",
           "elect_sign", "pack_masks", "regime_params", "tall_masks", "task_arithmetic",
           "task_vectors", "ties", "trim", "unpack_masks"]

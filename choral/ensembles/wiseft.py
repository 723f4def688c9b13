"""WiSE-FT interpolation (Wortsman et al. 2022): ``(1 - alpha) theta_0 + alpha theta_ft``.

The weights of a trained ensemble ``theta_0`` and of its fine-tuned copy ``theta_ft`` are mixed
member by member; :mod:`choral.surrogate.finetune` fine-tunes a surrogate and chooses ``alpha``.

Examples:
    >>> import torch
    >>> a, b = {"w": torch.zeros(2, 3)}, {"w": torch.ones(2, 3)}
    >>> interpolate(a, b, 0.25)["w"][0].tolist()
    [0.25, 0.25, 0.25]
"""

from __future__ import annotations

import torch

from choral.ensembles.params import Params, lerp

__all__ = ["interpolate"]


def interpolate(theta_0: Params, theta_ft: Params, alpha: float) -> Params:
    """Stacked members of ``(1 - alpha) theta_0 + alpha theta_ft`` (s, ...); exact at 0 and 1."""
    first = next(iter(theta_0.values()))
    return {k: v[0] for k, v in lerp(theta_0, theta_ft,
                                        torch.tensor([alpha], dtype=first.dtype)).items()}

"""The one place a campaign asks for its next batch (:func:`propose`).

It calls :func:`choral.acquisition.select_batch`: greedy picks under refit-free fantasies, so a
batch spreads; ``best`` (the incumbent from the ledger) feeds expected improvement.

>>> import torch
>>> from choral.distributions import GaussianMixture
>>> def fn(X):  # two members that disagree more as x grows
...     m = torch.as_tensor(X)[None] * torch.tensor([1.0, -1.0]).view(2, 1, 1)
...     return GaussianMixture(m, torch.ones_like(m))
>>> propose("variance", fn, np.array([[0.0], [3.0], [1.0], [2.0]]), 1, best=None,
...         maximize=False, seed=0).tolist()
[[3.0]]
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from choral.acquisition import select_batch
from choral.acquisition.objectives import Objective
from choral.distributions import Predictive


def propose(kind: str, predictive_fn: Callable[[np.ndarray], Predictive],
            candidates: np.ndarray, k: int, *, best: float | None, maximize: bool,
            seed: int, objective: Objective | None = None) -> np.ndarray:
    """The next batch, (k, d) rows of ``candidates``; every campaign call comes through here.
    ``objective`` reduces each member's outputs to one number (see ``select_batch``)."""
    idx = select_batch(kind, predictive_fn, candidates, k, best=best, maximize=maximize,
                       seed=seed, objective=objective)
    idx = np.asarray(idx, dtype=np.int64)
    if len(np.unique(idx)) != len(idx):
        raise ValueError(f"acquisition {kind!r} returned repeated indices {idx.tolist()}")
    return candidates[idx]

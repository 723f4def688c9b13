"""The one place a campaign asks for its next batch (:func:`propose`).

:func:`select_batch` is a stand-in with the API of ``choral.acquisition.select_batch``: every
kind scores by the total predictive variance and takes the ``k`` best distinct candidates. When
``choral.acquisition`` lands, :func:`propose` switches to it by changing its import.

>>> import torch
>>> from choral.predictive import GaussianMixture
>>> def fn(X):  # two members that disagree more as x grows
...     m = torch.as_tensor(X)[None] * torch.tensor([1.0, -1.0]).view(2, 1, 1)
...     return GaussianMixture(m, torch.ones_like(m))
>>> select_batch("variance", fn, np.array([[0.0], [3.0], [1.0], [2.0]]), 2).tolist()
[1, 3]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from choral.predictive import Predictive


def select_batch(kind: str, predictive_fn: Callable[[np.ndarray], Predictive],
                 candidates: np.ndarray, k: int, *, best: float | None = None,
                 maximize: bool = False, beta: float = 2.0, reference: Any = None,
                 seed: int = 0) -> np.ndarray:
    """``k`` distinct row indices into ``candidates`` (q, d): the largest total variance first."""
    variance = np.asarray(predictive_fn(candidates).variance, dtype=np.float64)
    total = variance.reshape(len(candidates), -1).sum(axis=1)
    return np.argsort(-total, kind="stable")[:k]


def propose(kind: str, predictive_fn: Callable[[np.ndarray], Predictive],
            candidates: np.ndarray, k: int, *, best: float | None, maximize: bool,
            seed: int) -> np.ndarray:
    """The next batch, (k, d) rows of ``candidates``; every campaign call comes through here."""
    idx = select_batch(kind, predictive_fn, candidates, k, best=best, maximize=maximize,
                       seed=seed)
    idx = np.asarray(idx, dtype=np.int64)
    if len(np.unique(idx)) != len(idx):
        raise ValueError(f"acquisition {kind!r} returned repeated indices {idx.tolist()}")
    return candidates[idx]

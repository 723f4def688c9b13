"""Candidate scoring for a campaign round: the full ensemble, or a cascade that screens first.

Without a cascade every candidate is predicted by all ``s`` members and the batch is chosen
among all ``q`` candidates. With ``cascade_first = K`` (:func:`screen`):

1. the first ``K`` members predict every candidate (the model's calibration applied);
2. the campaign's acquisition scores that K-member predictive (the *cheap* score; ``best`` and
   ``seed`` as for the batch; negated for ``lcb``, which is minimised);
3. the top ``cascade_top_fraction`` of candidates by the cheap score (never fewer than the batch
   size) are predicted by all members (:func:`choral.surrogate.cascade.cascade`, its
   ``top_fraction`` rule; the first K members' outputs are reused);
4. the batch is chosen by :func:`~choral.acquisition.select_batch` *among the re-scored
   candidates only*, from their full-ensemble predictive, in the candidates' original order.

So every score that picks (and ranks) the batch is a full-ensemble score, compared only with
other full-ensemble scores; the cheap scores decide which candidates are eligible, never which
is picked. With ``cascade_top_fraction = 1`` every candidate is re-scored in order and the batch
is the non-cascade batch exactly. Member forward passes: ``K q + (s - K) q_top`` of ``s q``.

The round's ``max_std``/``mean_std`` (and the ``target_std`` stop rule) use each candidate's
predictive from the stage it ended in: K members for screened-out candidates.

>>> import torch
>>> from choral.distributions import GaussianMixture
>>> C = np.array([[0.0], [3.0], [1.0], [2.0]])
>>> def fn(X):  # two members that disagree more as x grows
...     m = torch.as_tensor(X)[None] * torch.tensor([1.0, -1.0]).view(2, 1, 1)
...     return GaussianMixture(m, torch.ones_like(m))
>>> full = screen(fn, None, C, "variance", 1, best=None, maximize=False, seed=0)
>>> full.batch.tolist(), full.fraction
([[3.0]], 1.0)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from choral.acquisition import MAXIMISED, score
from choral.acquisition.objectives import Objective
from choral.campaign.acquire import propose
from choral.distributions import Predictive
from choral.surrogate import Surrogate
from choral.surrogate.cascade import Rules, cascade

__all__ = ["Screened", "screen"]


@dataclass
class Screened:
    """A round's batch (k, d), the per-candidate predictive std (q, ...) from the stage each
    candidate ended in, and the member forward passes used of ``total`` (``s q``)."""

    batch: np.ndarray
    std: np.ndarray
    forward_passes: int
    total: int

    @property
    def fraction(self) -> float:
        """Share of the full ensemble's member forward passes used."""
        return self.forward_passes / self.total


def cheap_score(kind: str, best: float | None, maximize: bool, seed: int,
                objective: Objective | None = None) -> Callable[[Predictive], Tensor]:
    """The acquisition ``kind`` as a larger-is-better score (n,) of a predictive."""
    sign = 1.0 if MAXIMISED[kind] else -1.0
    return lambda pred: sign * score(kind, pred, best=best, maximize=maximize, seed=seed,
                                     objective=objective)


def screen(predict: Callable[[np.ndarray], Predictive], model: Surrogate | None,
           C: np.ndarray, kind: str, k: int, *, best: float | None, maximize: bool, seed: int,
           first: int | None = None, top_fraction: float = 1.0,
           objective: Objective | None = None) -> Screened:
    """Choose ``k`` of the candidates ``C`` (q, d) by ``kind``: with all members of ``predict``
    (``first=None``), or through a cascade of ``model`` screening with its ``first`` members
    and re-scoring the top ``top_fraction`` (see the module); ``objective`` reduces the
    outputs (:mod:`choral.acquisition.objectives`)."""
    if first is None:
        pred = predict(C)
        batch = propose(kind, lambda X: pred if X is C else predict(X), C, k, best=best,
                        maximize=maximize, seed=seed, objective=objective)
        s = pred.members()[2].shape[0]
        return Screened(batch, pred.stddev.cpu().numpy(), s * len(C), s * len(C))
    fraction = max(top_fraction, k / len(C))  # at least the batch is re-scored
    result = cascade(model, C, Rules(first=first, top_fraction=fraction,
                                     acquisition=cheap_score(kind, best, maximize, seed,
                                                             objective)))
    top = result.undecided.nonzero().flatten().cpu().numpy()  # ascending: the original order
    batch = propose(kind, lambda X: result.full, C[top], k, best=best, maximize=maximize,
                    seed=seed, objective=objective)
    std = result.first.stddev.clone()
    std[torch.as_tensor(top, device=std.device)] = result.full.stddev
    return Screened(batch, std.cpu().numpy(), result.forward_passes, result.total)

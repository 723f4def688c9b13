"""``acquisition = "posterior"``: spend simulations where the posterior mass of an inverse
problem is, and where the surrogate is unsure there.

Given an observation ``y_obs`` with Gaussian noise ``sigma`` (``[inference]`` in the campaign
file) and the box-uniform prior on the campaign's bounds, each round

1. weighs the round's ``q`` scrambled-Sobol candidates by the surrogate posterior,
   ``w_i ~ p(y_obs | x_i)`` (the member mixture's joint likelihood,
   :class:`~choral.inference.SurrogateLikelihood`, with the ensemble's epistemic uncertainty in
   it; the uniform prior is constant): sampling-importance weights from the prior;
2. keeps the highest-weight candidates holding a share ``mass`` of the weight (a discrete
   highest-posterior-density set; at least ``k`` candidates);
3. picks ``k`` distinct candidates among them by epistemic variance with refit-free fantasies
   (:func:`choral.acquisition.select_batch` ``"epistemic"``), so the batch spreads over the
   posterior's region where the members disagree.

Why importance weights on the candidates, not MCMC: the candidates are a space-filling cover of
the box, so the weights are deterministic given the round's seed (a resumed campaign proposes
the same batch), cost one batched forward pass, and need no convergence check. The cost: a
posterior much narrower than the candidates' spacing holds few candidates; raise
``candidates`` then (the set always keeps ``k``).

Examples:
    >>> import torch
    >>> from choral.distributions import GaussianMixture
    >>> C = np.linspace(0.0, 1.0, 11)[:, None]
    >>> lik = lambda x: -0.5 * ((x[:, 0] - 0.7) / 0.05) ** 2  # posterior near x = 0.7
    >>> def fn(X):  # two members that disagree more as x grows
    ...     m = torch.as_tensor(X)[None] * torch.tensor([1.0, -1.0]).view(2, 1, 1)
    ...     return GaussianMixture(m, torch.full_like(m, 1e-3))
    >>> C[posterior_batch(lik, fn, C, 2, mass=0.99, seed=0), 0].round(1).tolist()
    [0.8, 0.7]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from choral.acquisition import select_batch
from choral.checks import check_int
from choral.distributions import Predictive
from choral.inference import SurrogateLikelihood

__all__ = ["batch_within", "posterior_batch", "posterior_set", "surrogate_log_likelihood"]


def surrogate_log_likelihood(model: Any, observed: Any, noise: Any) -> Callable[[Tensor], Tensor]:
    """``x (n, d) -> log p(y_obs | x) (n,)`` through a fitted surrogate's members, no gradient."""
    lik = SurrogateLikelihood(model, observed, noise)

    def log_lik(x: Tensor) -> Tensor:
        with torch.no_grad():
            return lik(x)

    return log_lik


def posterior_set(log_lik: Callable[[Tensor], Tensor], candidates: np.ndarray, k: int,
                  mass: float) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the highest-weight candidates holding ``mass`` of the posterior weight (at
    least ``k`` of them), heaviest first, and all the normalised weights (q,)."""
    x = torch.as_tensor(candidates, dtype=torch.float64)
    logw = torch.nan_to_num(log_lik(x).double(), nan=-torch.inf).cpu()
    if not bool(torch.isfinite(logw).any()):
        logw = torch.zeros_like(logw)  # no information: every candidate weighs the same
    w = torch.softmax(logw, 0).numpy()
    order = np.argsort(-w, kind="stable")
    n = int(np.searchsorted(np.cumsum(w[order]), mass) + 1)
    return order[:max(n, k)], w


def posterior_batch(log_lik: Callable[[Tensor], Tensor],
                    predictive_fn: Callable[[np.ndarray], Predictive],
                    candidates: np.ndarray, k: int, *, mass: float = 0.95,
                    seed: int = 0) -> np.ndarray:
    """``k`` distinct indices (k,) into ``candidates`` (q, d): the most epistemically uncertain
    points (with fantasies between picks) inside the candidates' ``mass`` posterior set."""
    k = check_int(k, "k", minimum=1, maximum=len(candidates))
    keep, _ = posterior_set(log_lik, candidates, k, mass)
    return batch_within(keep, predictive_fn, candidates, k, seed=seed)


def batch_within(keep: np.ndarray, predictive_fn: Callable[[np.ndarray], Predictive],
                 candidates: np.ndarray, k: int, *, seed: int = 0) -> np.ndarray:
    """``k`` distinct indices (k,) into ``candidates`` (q, d), picked among ``keep`` (a
    :func:`posterior_set`) by epistemic variance with fantasies between picks."""
    idx = select_batch("epistemic", predictive_fn, candidates[keep], k, seed=seed)
    return keep[np.asarray(idx, dtype=np.int64)]

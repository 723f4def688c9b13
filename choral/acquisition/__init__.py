"""Acquisition functions on the predictive: which inputs to simulate next.

:func:`score` gives one number per candidate for a kind in :data:`KINDS` (``variance``,
``epistemic``, ``ivr``, ``ei``, ``logei``, ``ucb``, ``lcb``, ``thompson``);
:func:`select_batch` picks ``k`` distinct candidates greedily, conditioning the ensemble
members on each pick (refit-free kriging-believer fantasies), so a batch spreads; ``thompson``
draws one member function per pick instead (:func:`thompson_batch`). Closed forms live in
:mod:`choral.acquisition.closed_forms`; named objectives that reduce a field to the number
optimised (misfit to a target, maximum, ...) in :mod:`choral.acquisition.objectives`.

Examples:
    >>> import numpy as np
    >>> from choral.distributions import GaussianMixture
    >>> pred = GaussianMixture(np.array([[[0.0], [3.0]], [[0.0], [1.0]]]), np.ones((2, 2, 1)))
    >>> score("ei", pred, best=0.0, maximize=True).argmax().item()
    1
    >>> select_batch("ucb", lambda X: pred, np.zeros((2, 1)), 2).tolist()
    [1, 0]
"""

from choral.acquisition.batch import condition, select_batch
from choral.acquisition.closed_forms import (
    gaussian_ei,
    gaussian_log_ei,
    mixture_ei,
    mixture_log_ei,
)
from choral.acquisition.scores import KINDS, MAXIMISED, members_of, score
from choral.acquisition.thompson import thompson_batch

__all__ = [
    "KINDS",
    "MAXIMISED",
    "condition",
    "gaussian_ei",
    "gaussian_log_ei",
    "members_of",
    "mixture_ei",
    "mixture_log_ei",
    "score",
    "select_batch",
    "thompson_batch",
]

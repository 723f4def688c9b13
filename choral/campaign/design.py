"""Space-filling designs in the input box (scipy.stats.qmc): the initial design and candidates.

>>> box = np.array([[0.0, 1.0], [10.0, 20.0]])
>>> X = initial_design("lhs", 4, box, seed=0)
>>> X.shape, bool(np.all((X >= box[:, 0]) & (X <= box[:, 1])))
((4, 2), True)
>>> np.array_equal(X, initial_design("lhs", 4, box, seed=0))
True
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.stats import qmc

DESIGNS = ("sobol", "lhs")
"""Initial designs: scrambled Sobol points or a Latin hypercube (``scipy.stats.qmc``)."""


def initial_design(kind: str, n: int, box: np.ndarray, seed: int) -> np.ndarray:
    """``n`` points, (n, d), of a Latin hypercube (``"lhs"``) or scrambled Sobol (``"sobol"``)
    design in ``box`` (d, 2)."""
    d = len(box)
    engine = (qmc.LatinHypercube(d, rng=np.random.default_rng(seed)) if kind == "lhs"
              else qmc.Sobol(d, scramble=True, rng=np.random.default_rng(seed)))
    with warnings.catch_warnings():  # Sobol prefers powers of two; any n is still a valid design
        warnings.simplefilter("ignore", UserWarning)
        unit = engine.random(n)
    return qmc.scale(unit, box[:, 0], box[:, 1])


def candidates(n: int, box: np.ndarray, seed: int) -> np.ndarray:
    """``n`` scrambled-Sobol candidate points (n, d) in ``box`` for the acquisition to score.

    >>> candidates(8, np.array([[0.0, 1.0]]), seed=1).shape
    (8, 1)
    """
    return initial_design("sobol", n, box, seed)

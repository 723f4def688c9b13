"""Built-in analytic simulators: borehole (d=8), branin (d=2) and hartmann6 (d=6).

``simulate(name, n, seed)`` returns ``X`` of shape ``(n, d)`` and ``Y`` of shape ``(n, 1)``.

>>> X, Y = simulate("branin", 3, seed=0)
>>> X.shape, Y.shape
((3, 2), (3, 1))
"""

from __future__ import annotations

import numpy as np

from choral.errors import DataError
from choral.simulators.analytic import BOREHOLE, BRANIN, HARTMANN6, Simulator

SIMULATORS: dict[str, Simulator] = {s.name: s for s in (BOREHOLE, BRANIN, HARTMANN6)}

__all__ = ["SIMULATORS", "Simulator", "get_simulator", "simulate"]


def get_simulator(name: str) -> Simulator:
    """Return the built-in simulator called ``name``.

    >>> get_simulator("hartmann6").bounds.shape
    (6, 2)
    """
    try:
        return SIMULATORS[name]
    except (KeyError, TypeError):
        known = ", ".join(sorted(SIMULATORS))
        raise DataError(f"unknown simulator {name!r}; known simulators: {known}") from None


def simulate(name: str, n: int, seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Sample ``n`` inputs of simulator ``name`` and evaluate it.

    Returns ``(X, Y)`` with ``X`` of shape ``(n, d)`` and ``Y`` of shape ``(n, 1)``, float64.

    >>> simulate("branin", 3, seed=0)[0].shape
    (3, 2)
    >>> simulate("borehole", 2, seed=0)[1].shape
    (2, 1)
    """
    sim = get_simulator(name)
    X = sim.sample(n, seed)
    return X, sim(X)

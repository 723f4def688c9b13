"""Built-in simulators: analytic functions (vectors) and PDE solvers on FNO protocols (fields).

- ``"vector"`` simulators (:data:`SIMULATORS`): borehole (d=8), branin (d=2), hartmann6 (d=6),
  ishigami (d=3);
  ``simulate(name, n, seed)`` returns ``X`` of shape ``(n, d)`` and ``Y`` of shape ``(n, 1)``.
- ``"field"`` simulators (:data:`FIELD_SIMULATORS`): ``darcy`` returns ``X = a`` and ``Y = u`` of
  shape ``(n, 1, res, res)``; ``burgers`` returns ``X = u0`` and ``Y = u(t=1)`` of shape
  ``(n, 1, res)``; ``ks`` (Kuramoto-Sivashinsky, :mod:`~choral.simulators.ks`) returns the first
  state ``X`` (n, 1, res) and trajectories ``Y`` (n, steps, 1, res). They take ``resolution``,
  ``workers``, ``progress`` and solver options.
- ``darcy_modes`` (:mod:`~choral.simulators.darcy_modes`, in :data:`FIELD_SIMULATORS` for its
  options, but of kind ``"vector"``): ``X`` the ``modes`` leading GRF mode coefficients of a
  log-normal Darcy coefficient (n, modes), ``Y`` the solution at ``sensors^2`` nodes (n, 64).

:data:`KINDS` maps every name to its kind, so a caller can tell vector data from field data.

>>> X, Y = simulate("branin", 3, seed=0)
>>> X.shape, Y.shape
((3, 2), (3, 1))
>>> X, Y = simulate("darcy", 1, seed=0, resolution=5, fine=9)
>>> KINDS["darcy"], X.shape, Y.shape
('field', (1, 1, 5, 5), (1, 1, 5, 5))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from choral.errors import DataError
from choral.simulators.analytic import BOREHOLE, BRANIN, HARTMANN6, ISHIGAMI, Simulator
from choral.simulators.burgers import simulate_burgers
from choral.simulators.darcy import simulate_darcy
from choral.simulators.darcy_modes import simulate_darcy_modes
from choral.simulators.ks import simulate_ks
from choral.simulators.parallel import run_batches

__all__ = [
    "FIELD_SIMULATORS",
    "KINDS",
    "SIMULATORS",
    "FieldSimulator",
    "Simulator",
    "get_simulator",
    "run_batches",
    "simulate",
]


@dataclass(frozen=True)
class FieldSimulator:
    """A PDE simulator with options; its inputs and outputs are fields ``(n, c, *grid)``
    (``kind == "field"``), or vectors for ``kind == "vector"`` (``darcy_modes``).

    ``function(n, seed, **options)`` returns ``(X, Y)``; ``options`` names the keywords it takes.

    >>> FIELD_SIMULATORS["burgers"].options[:2]
    ('resolution', 'fine')
    """

    name: str
    function: Callable[..., tuple[np.ndarray, np.ndarray]]
    options: tuple[str, ...]
    kind: str = "field"

    def __call__(
        self, n: int, seed: int | None = None, **options: Any
    ) -> tuple[np.ndarray, np.ndarray]:
        """Run ``n`` samples; an option not in ``options`` raises :class:`DataError` naming it."""
        _check_options(self.name, options, self.options)
        return self.function(n, seed, **options)


def _check_options(name: str, given: dict[str, Any], allowed: tuple[str, ...]) -> None:
    for key in given:
        if key not in allowed:
            takes = ", ".join(allowed) if allowed else "no keyword arguments"
            raise DataError(
                f"simulator {name!r} got an unexpected argument {key!r}; it takes: {takes}"
            )


SIMULATORS: dict[str, Simulator] = {s.name: s for s in (BOREHOLE, BRANIN, HARTMANN6, ISHIGAMI)}
_COMMON = ("resolution", "fine", "fine_min", "workers", "progress")
FIELD_SIMULATORS: dict[str, FieldSimulator] = {
    "darcy": FieldSimulator("darcy", simulate_darcy, _COMMON + ("face",)),
    "burgers": FieldSimulator("burgers", simulate_burgers, _COMMON + ("t", "nu", "dt", "modes")),
    "ks": FieldSimulator("ks", simulate_ks, ("resolution", "workers", "progress", "length",
                                             "interval", "steps", "burn_in", "dt")),
    "darcy_modes": FieldSimulator("darcy_modes", simulate_darcy_modes,
                                  ("resolution", "modes", "sensors", "amplitude", "workers",
                                   "progress"), kind="vector"),
}
KINDS: dict[str, str] = {
    **dict.fromkeys(SIMULATORS, "vector"),
    **{name: sim.kind for name, sim in FIELD_SIMULATORS.items()},
}


def get_simulator(name: str) -> Simulator | FieldSimulator:
    """Return the built-in simulator called ``name`` (see :data:`KINDS` for its kind).

    >>> get_simulator("hartmann6").bounds.shape
    (6, 2)
    >>> get_simulator("darcy").kind
    'field'
    """
    if isinstance(name, str) and name in SIMULATORS:
        return SIMULATORS[name]
    if isinstance(name, str) and name in FIELD_SIMULATORS:
        return FIELD_SIMULATORS[name]
    raise DataError(
        f"unknown simulator {name!r}; known simulators: {', '.join(sorted(SIMULATORS))}"
        f"; field simulators: {', '.join(sorted(FIELD_SIMULATORS))}"
    )


def simulate(
    name: str, n: int, seed: int | None = None, **options: Any
) -> tuple[np.ndarray, np.ndarray]:
    """Sample ``n`` inputs of simulator ``name`` and evaluate it; float64 ``(X, Y)``.

    Vector simulators: ``X (n, d)``, ``Y (n, 1)``, no options. Field simulators: see the module.

    >>> simulate("branin", 3, seed=0)[0].shape
    (3, 2)
    >>> simulate("burgers", 2, seed=0, resolution=8, fine=64)[1].shape
    (2, 1, 8)
    """
    sim = get_simulator(name)
    if isinstance(sim, FieldSimulator):
        return sim(n, seed, **options)
    _check_options(name, options, ())
    X = sim.sample(n, seed)
    return X, sim(X)

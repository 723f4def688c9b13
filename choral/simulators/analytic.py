"""Analytic test functions used as cheap stand-ins for expensive simulators.

Every simulator maps inputs ``X`` of shape ``(n, d)`` (``n`` samples, ``d`` input features) to
outputs ``Y`` of shape ``(n, 1)``, both float64, and knows the box its inputs are drawn from.

>>> from choral.simulators.analytic import BRANIN
>>> X = BRANIN.sample(4, seed=0)
>>> X.shape, BRANIN(X).shape
((4, 2), (4, 1))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from choral.checks import check_int
from choral.errors import DataError


@dataclass(frozen=True)
class Simulator:
    """A named deterministic function on a box of inputs.

    ``bounds`` has shape ``(d, 2)`` (lower, upper per input), ``input_names`` has ``d`` entries and
    ``function`` maps ``X`` of shape ``(n, d)`` to ``Y`` of shape ``(n, 1)``.

    >>> from choral.simulators.analytic import HARTMANN6
    >>> HARTMANN6.bounds.shape, len(HARTMANN6.input_names)
    ((6, 2), 6)
    """

    name: str
    bounds: np.ndarray
    input_names: tuple[str, ...]
    function: Callable[[np.ndarray], np.ndarray]

    @property
    def d(self) -> int:
        """Number of input features ``d``."""
        return int(self.bounds.shape[0])

    def __call__(self, X: np.ndarray) -> np.ndarray:
        """Evaluate the simulator on ``X`` of shape ``(n, d)``; returns ``Y`` of shape ``(n, 1)``.

        >>> from choral.simulators.analytic import BRANIN
        >>> round(float(BRANIN([[np.pi, 2.275]])[0, 0]), 6)
        0.397887
        """
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.d:
            raise DataError(
                f"simulator {self.name!r} expects X of shape (n, {self.d}), got shape {X.shape}"
            )
        return np.asarray(self.function(X), dtype=np.float64).reshape(-1, 1)

    def sample(self, n: int, seed: int | None = None) -> np.ndarray:
        """Draw ``n`` inputs uniformly inside ``bounds``; returns ``X`` of shape ``(n, d)``.

        >>> from choral.simulators.analytic import BOREHOLE
        >>> BOREHOLE.sample(5, seed=1).shape
        (5, 8)
        """
        n = check_int(n, "n", minimum=1)
        rng = np.random.default_rng(seed)
        lo, hi = self.bounds[:, 0], self.bounds[:, 1]
        return lo + (hi - lo) * rng.random((int(n), self.d))


def _borehole(X: np.ndarray) -> np.ndarray:
    rw, r, Tu, Hu, Tl, Hl, L, Kw = X.T
    log_ratio = np.log(r / rw)
    denom = log_ratio * (1.0 + 2.0 * L * Tu / (log_ratio * rw**2 * Kw) + Tu / Tl)
    return (2.0 * np.pi * Tu * (Hu - Hl) / denom)[:, None]


def _branin(X: np.ndarray) -> np.ndarray:
    x1, x2 = X[:, 0], X[:, 1]
    b, c, t = 5.1 / (4.0 * np.pi**2), 5.0 / np.pi, 1.0 / (8.0 * np.pi)
    return ((x2 - b * x1**2 + c * x1 - 6.0) ** 2 + 10.0 * (1.0 - t) * np.cos(x1) + 10.0)[:, None]


_H6_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])
_H6_A = np.array(
    [
        [10.0, 3.0, 17.0, 3.5, 1.7, 8.0],
        [0.05, 10.0, 17.0, 0.1, 8.0, 14.0],
        [3.0, 3.5, 1.7, 10.0, 17.0, 8.0],
        [17.0, 8.0, 0.05, 10.0, 0.1, 14.0],
    ]
)
_H6_P = 1e-4 * np.array(
    [
        [1312, 1696, 5569, 124, 8283, 5886],
        [2329, 4135, 8307, 3736, 1004, 9991],
        [2348, 1451, 3522, 2883, 3047, 6650],
        [4047, 8828, 8732, 5743, 1091, 381],
    ],
    dtype=np.float64,
)


def _ishigami(X: np.ndarray, a: float = 7.0, b: float = 0.1) -> np.ndarray:
    x1, x2, x3 = X.T
    return (np.sin(x1) + a * np.sin(x2) ** 2 + b * x3**4 * np.sin(x1))[:, None]


def ishigami_indices(a: float = 7.0, b: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """The analytic first-order and total Sobol indices, each (3,), of the Ishigami function
    ``sin x1 + a sin^2 x2 + b x3^4 sin x1`` with independent inputs uniform on [-pi, pi]
    (Ishigami and Homma 1990; Sobol' and Levitan 1999).

    >>> first, total = ishigami_indices()
    >>> [round(v, 4) for v in first.tolist()], [round(v, 4) for v in total.tolist()]
    ([0.3139, 0.4424, 0.0], [0.5576, 0.4424, 0.2437])
    """
    v1 = 0.5 * (1.0 + b * np.pi**4 / 5.0) ** 2
    v2 = a**2 / 8.0
    v13 = b**2 * np.pi**8 * (1.0 / 18.0 - 1.0 / 50.0)
    total_variance = v1 + v2 + v13
    first = np.array([v1, v2, 0.0]) / total_variance
    return first, np.array([v1 + v13, v2, v13]) / total_variance


def _hartmann6(X: np.ndarray) -> np.ndarray:
    inner = np.sum(_H6_A * (X[:, None, :] - _H6_P) ** 2, axis=2)  # (n, 4)
    return -(np.exp(-inner) @ _H6_ALPHA)[:, None]


BOREHOLE = Simulator(
    name="borehole",
    bounds=np.array(
        [
            [0.05, 0.15],
            [100.0, 50000.0],
            [63070.0, 115600.0],
            [990.0, 1110.0],
            [63.1, 116.0],
            [700.0, 820.0],
            [1120.0, 1680.0],
            [9855.0, 12045.0],
        ]
    ),
    input_names=("rw", "r", "Tu", "Hu", "Tl", "Hl", "L", "Kw"),
    function=_borehole,
)
BRANIN = Simulator(
    name="branin",
    bounds=np.array([[-5.0, 10.0], [0.0, 15.0]]),
    input_names=("x1", "x2"),
    function=_branin,
)
ISHIGAMI = Simulator(
    name="ishigami",
    bounds=np.tile([-np.pi, np.pi], (3, 1)),
    input_names=("x1", "x2", "x3"),
    function=_ishigami,
)
HARTMANN6 = Simulator(
    name="hartmann6",
    bounds=np.tile([0.0, 1.0], (6, 1)),
    input_names=tuple(f"x{i}" for i in range(1, 7)),
    function=_hartmann6,
)

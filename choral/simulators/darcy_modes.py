"""Darcy flow whose log-coefficient is a truncated GRF: ``k`` mode coefficients in, the solution
at sparse sensors out (a small Bayesian inverse problem).

The field ``U = sum_j xi_j c_j phi_j`` keeps the ``k`` leading modes of FNO's Neumann GRF
(:func:`choral.simulators.grf.grf2d`, ``alpha = 2``, ``tau = 3``): its Karhunen-Loeve
eigenfunctions are ``phi_j(x, y) = w_j cos(pi k1 x) cos(pi k2 y)`` with ``w_j = sqrt(2)`` to the
number of nonzero wavenumbers, and standard deviations ``c_j`` (:func:`dct_coefficients`). The
leading modes have the smallest ``k1^2 + k2^2`` (ties: smaller ``k1`` first), the mean mode
left out: ``(0, 1), (1, 0), (1, 1), (0, 2), ...``. With ``xi ~ N(0, I_k)`` and every other
mode zero, ``U`` at the cell centres ``((i + 1/2) / s)`` is grf2d's field (a test checks this
against scipy's inverse DCT). The coefficient is log-normal, ``a = exp(amplitude U)``
(``amplitude = 2``: the pointwise std of ``log a`` is about 0.56 with 12 modes), and the solution
``u`` of ``-div(a grad u) = 1``, ``u = 0`` on the boundary, is the 5-point scheme of
:func:`~choral.simulators.darcy.solve_darcy` on ``resolution`` nodes per axis.

:func:`simulate_darcy_modes` returns ``X = xi`` (n, k) and ``Y`` = ``u`` at ``sensors^2``
nodes, an even ``sensors x sensors`` lattice (:func:`sensor_nodes`), shape (n, sensors^2).

Examples:
    >>> leading_modes(4).tolist()
    [[0, 1], [1, 0], [1, 1], [0, 2]]
    >>> X, Y = simulate_darcy_modes(2, seed=0, resolution=9, modes=3, sensors=2)
    >>> X.shape, Y.shape, bool((Y > 0).all())
    ((2, 3), (2, 4), True)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from choral.checks import check_int
from choral.errors import DataError
from choral.simulators.darcy import solve_darcy
from choral.simulators.grf import dct_coefficients
from choral.simulators.parallel import run_batches

__all__ = ["coefficient_field", "leading_modes", "log_coefficient", "mode_basis",
           "sensor_nodes", "simulate_darcy_modes"]

AMPLITUDE = 2.0


def leading_modes(k: int) -> np.ndarray:
    """Wavenumbers ``(k1, k2)`` of the ``k`` leading GRF modes, shape (k, 2), mean mode excluded.

    Ordered by ``k1^2 + k2^2`` (the GRF's standard deviations decrease with it), then ``k1``.
    """
    k = check_int(k, "modes", minimum=1)
    r = int(np.ceil(np.sqrt(k))) + 1  # k modes lie within this radius
    k1, k2 = np.meshgrid(np.arange(r + 1), np.arange(r + 1), indexing="ij")
    k1, k2 = k1.ravel()[1:], k2.ravel()[1:]  # drop (0, 0)
    order = np.lexsort((k1, k1**2 + k2**2))
    return np.stack([k1[order], k2[order]], axis=1)[:k]


def mode_basis(k: int, points: np.ndarray, alpha: float = 2.0, tau: float = 3.0) -> np.ndarray:
    """``c_j phi_j`` of the ``k`` leading modes on the grid ``points`` x ``points``: (k, p, p).

    ``points`` (p,) are coordinates in [0, 1]; entry ``[j, i1, i2]`` is at
    ``(points[i1], points[i2])``.
    """
    modes = leading_modes(k)
    kmax = int(modes.max()) + 1
    c = dct_coefficients(kmax, alpha, tau)[modes[:, 0], modes[:, 1]]  # (k,)
    w = np.sqrt(2.0) ** (modes > 0).sum(1)
    x = np.asarray(points, dtype=np.float64)
    cos = np.cos(np.pi * modes[:, :, None] * x)  # (k, 2, p)
    return (c * w)[:, None, None] * cos[:, 0, :, None] * cos[:, 1, None, :]


def log_coefficient(xi: np.ndarray, points: np.ndarray, amplitude: float = AMPLITUDE) -> np.ndarray:
    """``log a = amplitude U`` on ``points`` x ``points`` for mode coefficients ``xi`` (n, k):
    (n, p, p)."""
    xi = np.asarray(xi, dtype=np.float64)
    if xi.ndim != 2 or not np.isfinite(xi).all():
        raise DataError(f"xi must be finite mode coefficients (n, k); got shape {xi.shape}")
    return amplitude * np.einsum("nk,kij->nij", xi, mode_basis(xi.shape[1], points))


def coefficient_field(xi: np.ndarray, resolution: int, amplitude: float = AMPLITUDE) -> np.ndarray:
    """The coefficient ``a`` (n, N, N) at the solver's nodes ``i / (N - 1)``, ``N = resolution``."""
    nodes = np.linspace(0.0, 1.0, check_int(resolution, "resolution", minimum=3))
    return np.exp(log_coefficient(xi, nodes, amplitude))


def sensor_nodes(resolution: int, sensors: int) -> np.ndarray:
    """Node indices (sensors,) per axis of an even sensor lattice: the nodes nearest to
    ``(j + 1/2) / sensors``; all interior and distinct.

    >>> sensor_nodes(33, 8).tolist()
    [2, 6, 10, 14, 18, 22, 26, 30]
    """
    n = check_int(resolution, "resolution", minimum=3)
    s = check_int(sensors, "sensors", minimum=1)
    idx = np.rint((np.arange(s) + 0.5) / s * (n - 1)).astype(int)
    if len(set(idx.tolist())) != s or idx.min() < 1 or idx.max() > n - 2:
        raise DataError(f"sensors={s} per axis need distinct interior nodes; resolution="
                        f"{n} has {n - 2} interior nodes per axis")
    return idx


def _solve_batch(xi: np.ndarray, resolution: int, amplitude: float,
                 sensors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = coefficient_field(xi, resolution, amplitude)
    u = np.stack([solve_darcy(ai) for ai in a])
    return xi, u[:, sensors[:, None], sensors[None, :]].reshape(len(xi), -1)


def simulate_darcy_modes(
    n: int,
    seed: int | None = None,
    resolution: int = 33,
    *,
    modes: int = 12,
    sensors: int = 8,
    amplitude: float = AMPLITUDE,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` draws ``xi ~ N(0, I_modes)`` (n, modes) and ``u`` at the sensors (n, sensors^2).

    Sensor ``j1 * sensors + j2`` is node ``(sensor_nodes[j1], sensor_nodes[j2])``. The draws are
    made in this process from ``seed``; solves run here or in ``workers`` processes.
    """
    n = check_int(n, "n", minimum=1)
    modes = check_int(modes, "modes", minimum=1)
    idx = sensor_nodes(resolution, sensors)
    if not np.isfinite(amplitude) or amplitude < 0:
        raise DataError(f"amplitude must be a finite number >= 0, got amplitude={amplitude}")
    xi = np.random.default_rng(seed).standard_normal((n, modes))
    batches = (xi[i:i + 16] for i in range(0, n, 16))
    return run_batches(_solve_batch, batches, (resolution, float(amplitude), idx), n, workers,
                       progress)

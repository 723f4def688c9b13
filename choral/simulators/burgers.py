"""Viscous Burgers equation in 1-D, FNO protocol (Li et al. 2020).

``u_t + u u_x = nu u_xx`` on ``[0, 1)`` periodic, ``nu = 0.1``, target ``u(., t = 1)``, initial
``u0 ~ N(0, 625 (-Laplacian + 25 I)^-2)``: :func:`choral.simulators.grf.grf1d_coefficients` with
``sigma = 25, tau = 5, gamma = 2`` and FNO's 4096 modes. :func:`solve_burgers` is pseudo-spectral
in space (real FFT, 2/3 dealiasing of ``(u^2 / 2)_x``) with the ETDRK4 time stepper of Cox &
Matthews (2002) in the contour-integral form of Kassam & Trefethen (2005): diffusion is integrated
exactly, so the step is set by accuracy (default ``dt = 1e-3``), not by ``nu k^2``. Data are
generated on a fine grid of ``fine = stride * res`` points (default the smallest ``>= 1024``; FNO
used 8192) and subsampled; the solver drops the modes its grid cannot hold (``k >= fine / 2``,
damped within ``~1e-6`` time units), while ``X`` holds the exact point values of the drawn ``u0``.

:func:`simulate_burgers` returns ``X = u0`` and ``Y = u(t)``, float64, of shape ``(n, 1, res)``
at ``x_j = j / res``.

>>> X, Y = simulate_burgers(2, seed=0, resolution=8, fine=64)
>>> X.shape, Y.shape
((2, 1, 8), (2, 1, 8))
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import numpy as np
from scipy.fft import irfft, rfft

from choral.checks import check_int
from choral.errors import DataError
from choral.simulators.grf import fourier_to_grid, grf1d_coefficients
from choral.simulators.parallel import run_batches

__all__ = ["burgers_trajectories", "etdrk4_coefficients", "etdrk4_step", "simulate_burgers",
           "solve_burgers"]

FNO_MODES = 4096  # FNO's GRF1(s/2, ...) with s = 8192
FINE_MIN = 1024
BATCH = 16  # samples per solve (vectorised) and per task handed to a worker


def etdrk4_coefficients(hL: np.ndarray, contour: int = 32) -> tuple[np.ndarray, ...]:
    """ETDRK4 coefficients for a real diagonal ``hL`` (Kassam & Trefethen 2005, eq. 2.5, Fig. 6).

    Returns ``(exp(hL), exp(hL/2), Q, f1, f2, f3)``, each of ``hL``'s shape, with ``Q, f1, f2, f3``
    the paper's coefficients divided by ``h``; evaluated by a mean over ``contour`` points on the
    unit circle around each ``hL``, which avoids the cancellation of the closed forms near 0.

    >>> E, E2, Q, f1, f2, f3 = etdrk4_coefficients(np.array([0.0]))  # limits at hL = 0
    >>> [round(float(v[0]), 12) for v in (E, Q, f1, f2, f3)]
    [1.0, 0.5, 0.166666666667, 0.166666666667, 0.166666666667]
    """
    r = np.exp(1j * np.pi * (np.arange(1, contour + 1) - 0.5) / contour)
    z = hL[..., None] + r
    ez = np.exp(z)

    def avg(values: np.ndarray) -> np.ndarray:
        return np.real(values.mean(axis=-1))

    Q = avg((np.exp(z / 2) - 1) / z)
    f1 = avg((-4 - z + ez * (4 - 3 * z + z**2)) / z**3)
    f2 = avg((2 + z + ez * (z - 2)) / z**3)
    f3 = avg((-4 - 3 * z - z**2 + ez * (4 - z)) / z**3)
    return np.exp(hL), np.exp(hL / 2), Q, f1, f2, f3


@lru_cache(maxsize=8)
def _stepper(N: int, nu: float, h: float) -> tuple[np.ndarray, ...]:
    k = 2.0 * np.pi * np.arange(N // 2 + 1)
    E, E2, Q, f1, f2, f3 = etdrk4_coefficients(-nu * k**2 * h)
    g = -0.5j * k * (np.arange(N // 2 + 1) < N / 3)  # (u^2/2)_x with 2/3 dealiasing
    return E, E2, h * Q, h * f1, h * f2, h * f3, g


def solve_burgers(u0: np.ndarray, t: float = 1.0, nu: float = 0.1, dt: float = 1e-3) -> np.ndarray:
    """Integrate Burgers from ``u0`` of shape ``(b, N)`` (values at ``j / N``) to time ``t``.

    Takes ``ceil(t / dt)`` equal ETDRK4 steps; returns ``u(t)`` of shape ``(b, N)``.

    >>> x = np.arange(64) / 64
    >>> u = solve_burgers(np.sin(2 * np.pi * x)[None], t=0.5)
    >>> abs(float(u.mean())) < 1e-15 and float(abs(u).max()) < 0.2
    True
    """
    u0 = np.atleast_2d(np.asarray(u0, dtype=np.float64))
    N, steps = u0.shape[-1], max(1, int(np.ceil(t / dt - 1e-9)))
    E, E2, Q, f1, f2, f3, g = _stepper(N, float(nu), float(t) / steps)

    def nonlinear(v: np.ndarray) -> np.ndarray:
        return g * rfft(irfft(v, n=N) ** 2)

    v = rfft(u0)
    for _ in range(steps):
        v = etdrk4_step(v, nonlinear, (E, E2, Q, f1, f2, f3))
    return irfft(v, n=N)


def etdrk4_step(v: np.ndarray, nonlinear: Callable[[np.ndarray], np.ndarray],
                coefficients: tuple[np.ndarray, ...]) -> np.ndarray:
    """One ETDRK4 step (Cox & Matthews 2002) of ``v_t = L v + N(v)`` in Fourier space: ``v``
    (b, K), ``nonlinear`` the map ``v -> N(v)``, ``coefficients`` ``(E, E2, h Q, h f1, h f2,
    h f3)`` of :func:`etdrk4_coefficients` for the diagonal ``L h``."""
    E, E2, Q, f1, f2, f3 = coefficients
    Nv = nonlinear(v)
    a = E2 * v + Q * Nv
    Na = nonlinear(a)
    b = E2 * v + Q * Na
    Nb = nonlinear(b)
    c = E2 * a + Q * (2 * Nb - Nv)
    return E * v + f1 * Nv + 2 * f2 * (Na + Nb) + f3 * nonlinear(c)


def fine_grid(
    resolution: int, fine: int | None = None, fine_min: int = FINE_MIN
) -> tuple[int, int]:
    """Return ``(fine, stride)``, ``fine = stride * resolution``, the smallest ``>= fine_min``.

    >>> fine_grid(256), fine_grid(8192), fine_grid(100), fine_grid(8, fine=64)
    ((1024, 4), (8192, 1), (1100, 11), (64, 8))
    """
    res = check_int(resolution, "resolution", minimum=3)
    if fine is not None:
        if check_int(fine, "fine", minimum=3) % res:
            raise DataError(f"fine must be a multiple of resolution = {res}, got fine={fine!r}")
        return int(fine), int(fine) // res
    stride = max(1, -(-check_int(fine_min, "fine_min", minimum=3) // res))
    return stride * res, stride


def _solve_batch(
    c: np.ndarray, fine: int, stride: int, t: float, nu: float, dt: float
) -> tuple[np.ndarray, np.ndarray]:
    """Fourier coefficients ``(b, K + 1)`` -> ``(u0, u(t))`` at the ``res`` output points."""
    res = fine // stride
    q = -(-(2 * c.shape[-1] - 1) // res)  # res * q points resolve every drawn mode
    X = fourier_to_grid(c, res * q)[:, ::q]  # exact point values of u0, whatever the fine grid
    return X, solve_burgers(fourier_to_grid(c, fine), t, nu, dt)[:, ::stride]


def simulate_burgers(
    n: int,
    seed: int | None = None,
    resolution: int = 1024,
    *,
    fine: int | None = None,
    fine_min: int = FINE_MIN,
    t: float = 1.0,
    nu: float = 0.1,
    dt: float = 1e-3,
    modes: int = FNO_MODES,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` Burgers samples: ``X = u0``, ``Y = u(t)``, float64, shape ``(n, 1, resolution)``.

    Initial conditions are drawn in this process from ``seed`` (``modes`` Fourier modes, the same
    function on every grid), then solved in batches of 16, in ``workers`` processes when
    ``workers > 1`` (same arrays as ``workers=1``); ``progress(done, n)`` follows the batches.

    >>> X, Y = simulate_burgers(1, seed=1, resolution=4, fine=32)
    >>> bool(abs(Y).max() < abs(X).max())
    True
    """
    n = check_int(n, "n", minimum=1)
    fine, stride = fine_grid(resolution, fine, fine_min)
    for name, value in (("t", t), ("nu", nu), ("dt", dt)):
        if not np.isfinite(value) or value <= 0:
            raise DataError(f"{name} must be a positive number, got {name}={value!r}")
    modes, rng = check_int(modes, "modes", minimum=1), np.random.default_rng(seed)
    draws = (grf1d_coefficients(rng, min(BATCH, n - i), modes) for i in range(0, n, BATCH))
    X, Y = run_batches(_solve_batch, draws, (fine, stride, t, nu, dt), n, workers, progress)
    return X[:, None], Y[:, None]


def burgers_trajectories(
    n: int,
    seed: int | None = None,
    resolution: int = 128,
    nus: tuple[float, ...] = (0.1, 0.03, 0.01),
    *,
    interval: float = 0.05,
    steps: int = 20,
    fine: int | None = None,
    dt: float = 1e-3,
    modes: int = FNO_MODES,
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` Burgers trajectories from FNO-protocol initial conditions, ``nus`` in turn.

    Trajectory ``i`` has viscosity ``nus[i % len(nus)]`` and records ``steps`` states
    ``interval`` apart, the first ``u0``. Returns ``nu`` (n,) and ``Y`` (n, steps, 1, res).

    >>> nu, Y = burgers_trajectories(3, 0, resolution=8, fine=64, steps=2, modes=16)
    >>> nu.tolist(), Y.shape
    ([0.1, 0.03, 0.01], (3, 2, 1, 8))
    """
    n, steps = check_int(n, "n", minimum=1), check_int(steps, "steps", minimum=1)
    fine, stride = fine_grid(resolution, fine)
    if not nus or any(not np.isfinite(v) or v <= 0 for v in nus):
        raise DataError(f"nus must be positive numbers, got nus={nus!r}")
    nu = np.asarray(nus, dtype=np.float64)[np.arange(n) % len(nus)]
    u = fourier_to_grid(grf1d_coefficients(np.random.default_rng(seed), n, modes), fine)
    Y = np.empty((n, steps, 1, fine // stride))
    for value in np.unique(nu):
        rows, state = nu == value, u[nu == value]
        for t in range(steps):
            Y[rows, t, 0] = state[:, ::stride]
            state = solve_burgers(state, interval, float(value), dt) if t < steps - 1 else state
    return nu, Y

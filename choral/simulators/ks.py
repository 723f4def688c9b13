"""Kuramoto-Sivashinsky equation in 1-D: chaotic trajectories for autoregressive surrogates.

``u_t + u u_x + u_xx + u_xxxx = 0`` on ``[0, L)`` periodic, by default ``L = 22`` (the
domain of Cvitanovic, Davidchack & Siminos 2010 and of many rollout studies; ``L = 32 pi`` is
Kassam & Trefethen's), on ``N = resolution`` points ``x_j = j L / N``. In Fourier space
``v_t = (k^2 - k^4) v - (i k / 2) F[u^2]`` with ``k = 2 pi j / L``: :func:`solve_ks` integrates
the linear part exactly and the nonlinear one by ETDRK4 (Cox & Matthews 2002) with the
contour-integral coefficients of Kassam & Trefethen (2005), shared with Burgers
(:func:`choral.simulators.burgers.etdrk4_coefficients`); ``(u^2)_x`` is 2/3-dealiased.

:func:`simulate_ks` draws smooth random initial conditions (zero mean, the lowest ``4`` modes
with Gaussian amplitudes), integrates through a burn-in of ``burn_in`` time units, which is
discarded, and records ``steps`` states ``interval`` time units apart. It returns ``X``, the
first recorded state (n, 1, N), and ``Y``, the trajectories (n, steps, 1, N), float64.

>>> X, Y = simulate_ks(2, seed=0, resolution=16, steps=3, burn_in=1.0)
>>> X.shape, Y.shape, bool((X == Y[:, 0]).all())
((2, 1, 16), (2, 3, 1, 16), True)
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import numpy as np
from scipy.fft import irfft, rfft

from choral.checks import check_int
from choral.errors import DataError
from choral.simulators.burgers import etdrk4_coefficients, etdrk4_step
from choral.simulators.parallel import run_batches

__all__ = ["ks_wavenumbers", "simulate_ks", "solve_ks"]

LENGTH = 22.0
BATCH = 16
LOW_MODES = 4


def ks_wavenumbers(N: int, length: float = LENGTH) -> np.ndarray:
    """The ``N // 2 + 1`` real-FFT wavenumbers ``2 pi j / length``.

    >>> ks_wavenumbers(4, 2 * np.pi).tolist()
    [0.0, 1.0, 2.0]
    """
    return 2.0 * np.pi * np.arange(N // 2 + 1) / length


@lru_cache(maxsize=8)
def _stepper(N: int, length: float, h: float, nonlinear: bool) -> tuple[np.ndarray, ...]:
    k = ks_wavenumbers(N, length)
    E, E2, Q, f1, f2, f3 = etdrk4_coefficients((k**2 - k**4) * h)
    g = -0.5j * k * (np.arange(N // 2 + 1) < N / 3) * nonlinear  # -(u^2/2)_x, 2/3 dealiased
    return E, E2, h * Q, h * f1, h * f2, h * f3, g


def solve_ks(u0: np.ndarray, t: float, length: float = LENGTH, dt: float = 0.05,
             times: int = 1, nonlinear: bool = True) -> np.ndarray:
    """Integrate KS from ``u0`` (b, N) for ``times`` intervals of ``t``; ``(b, times, N)``.

    Each interval takes ``ceil(t / dt)`` equal ETDRK4 steps. ``nonlinear=False`` drops
    ``u u_x`` (then the solver is exact: ``v_k(t) = exp((k^2 - k^4) t) v_k(0)``).

    >>> x = np.arange(32) * 22 / 32
    >>> u = solve_ks(np.cos(2 * np.pi * x / 22)[None], t=1.0, times=2)
    >>> u.shape, abs(float(u.mean())) < 1e-14
    ((1, 2, 32), True)
    """
    u0 = np.atleast_2d(np.asarray(u0, dtype=np.float64))
    N, sub = u0.shape[-1], max(1, int(np.ceil(t / dt - 1e-9)))
    E, E2, Q, f1, f2, f3, g = _stepper(N, float(length), float(t) / sub, bool(nonlinear))

    def nl(v: np.ndarray) -> np.ndarray:
        return g * rfft(irfft(v, n=N) ** 2)

    v, out = rfft(u0), []
    for _ in range(times):
        for _ in range(sub):
            v = etdrk4_step(v, nl, (E, E2, Q, f1, f2, f3))
        out.append(irfft(v, n=N))
    return np.stack(out, axis=1)


def _solve_batch(u0: np.ndarray, length: float, interval: float, dt: float, steps: int,
                 burn_in: float) -> tuple[np.ndarray]:
    if burn_in > 0:
        u0 = solve_ks(u0, burn_in, length, dt)[:, 0]
    first = u0[:, None]
    rest = solve_ks(u0, interval, length, dt, times=steps - 1) if steps > 1 else first[:, :0]
    return (np.concatenate([first, rest], axis=1),)


def _initial(rng: np.random.Generator, b: int, N: int) -> np.ndarray:
    """Zero-mean smooth states (b, N): modes 1..4 with standard complex Gaussian amplitudes."""
    v = np.zeros((b, N // 2 + 1), dtype=complex)
    modes = min(LOW_MODES, N // 2 - 1)
    v[:, 1:modes + 1] = (rng.standard_normal((b, modes)) + 1j * rng.standard_normal((b, modes)))
    return irfft(v * N / 4, n=N)


def simulate_ks(
    n: int,
    seed: int | None = None,
    resolution: int = 64,
    *,
    length: float = LENGTH,
    interval: float = 0.25,
    steps: int = 100,
    burn_in: float = 100.0,
    dt: float = 0.05,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` KS trajectories: ``X`` (n, 1, resolution), ``Y`` (n, steps, 1, resolution).

    ``steps`` states ``interval`` apart after ``burn_in`` time units; solver step ``dt``.
    Batches of 16 trajectories, in ``workers`` processes when ``workers > 1`` (same arrays).
    """
    n, N = check_int(n, "n", minimum=1), check_int(resolution, "resolution", minimum=8)
    steps = check_int(steps, "steps", minimum=1)
    for name, value in (("length", length), ("interval", interval), ("dt", dt)):
        if not np.isfinite(value) or value <= 0:
            raise DataError(f"{name} must be a positive number, got {name}={value!r}")
    if not np.isfinite(burn_in) or burn_in < 0:
        raise DataError(f"burn_in must be a number >= 0, got burn_in={burn_in!r}")
    rng = np.random.default_rng(seed)
    draws = (_initial(rng, min(BATCH, n - i), N) for i in range(0, n, BATCH))
    args = (float(length), float(interval), float(dt), steps, float(burn_in))
    (Y,) = run_batches(_solve_batch, draws, args, n, workers, progress)
    return Y[:, 0, None].copy(), Y[:, :, None]

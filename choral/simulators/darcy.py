"""Darcy flow on the unit square, FNO protocol (Li et al. 2020).

``-div(a grad u) = f`` on ``(0, 1)^2`` with ``u = 0`` on the boundary, ``f = 1`` and
``a = psi(GRF)``, ``psi(z) = 12 if z >= 0 else 3``, GRF from :func:`choral.simulators.grf.grf2d`
with ``alpha = 2, tau = 3``. :func:`solve_darcy` is the second-order 5-point finite-difference
scheme on the node grid ``x_i = i / (N - 1)`` (boundary nodes included), the coefficient on a cell
face being the *arithmetic* mean of its two nodes as in FNO's ``solve_gwf`` (``face="harmonic"``
is offered too), solved by a sparse direct LU (SuperLU ``splu``, minimum-degree ordering).

Data are generated on a fine grid of ``fine = (res - 1) * stride + 1`` nodes and subsampled with
``stride`` (FNO: 421 -> 85, 141, 211, 421). The GRF is drawn with FNO's DCT at ``s = fine`` and its
values are used at the fine nodes (FNO's script spline-interpolates them half a cell, to the nodes).

:func:`simulate_darcy` returns ``X = a`` and ``Y = u``, float64, of shape ``(n, 1, res, res)``;
``X[..., i, j]`` is at ``(x_i, y_j)``.

>>> X, Y = simulate_darcy(2, seed=0, resolution=5, fine=17)
>>> X.shape, Y.shape, sorted(set(X.ravel().tolist())) <= [3.0, 12.0]
((2, 1, 5, 5), (2, 1, 5, 5), True)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import splu

from choral.checks import check_int
from choral.errors import DataError
from choral.simulators.grf import grf2d
from choral.simulators.parallel import run_batches

__all__ = ["darcy_coefficients", "darcy_matrix", "fine_grid", "simulate_darcy", "solve_darcy"]

FNO_FINE = 421  # FNO generates on 421 x 421 nodes
SMALL_FINE = 200  # default lower bound on the fine grid when res does not divide FNO's


def _face_mean(a: np.ndarray, b: np.ndarray, face: str) -> np.ndarray:
    if face == "arithmetic":
        return 0.5 * (a + b)
    if face == "harmonic":
        return 2.0 * a * b / (a + b)
    raise DataError(f"face must be 'arithmetic' or 'harmonic', got face={face!r}")


def darcy_matrix(a: np.ndarray, face: str = "arithmetic") -> sp.csc_matrix:
    """Matrix of ``-div(a grad .)`` times ``h^2`` on the ``m = N - 2`` squared interior nodes.

    ``a`` of shape ``(N, N)`` holds the coefficient at all nodes; the result is ``(m^2, m^2)``,
    symmetric, interior node ``(i, j)`` (``1 <= i, j <= N - 2``) at row ``(i - 1) m + (j - 1)``.

    >>> darcy_matrix(np.ones((4, 4))).toarray()[0].tolist()  # 5-point Laplacian, m = 2
    [4.0, -1.0, -1.0, 0.0]
    """
    fx = _face_mean(a[1:, 1:-1], a[:-1, 1:-1], face)  # (N-1, m): faces between i and i+1
    fy = _face_mean(a[1:-1, 1:], a[1:-1, :-1], face)  # (m, N-1): faces between j and j+1
    m = a.shape[0] - 2
    diag = (fx[:-1] + fx[1:] + fy[:, :-1] + fy[:, 1:]).ravel()
    off_x = -fx[1:-1].ravel()  # (i, j) -- (i+1, j)
    off_y = -fy[:, 1:-1]  # (i, j) -- (i, j+1), none across rows
    off_y = np.concatenate([off_y, np.zeros((m, 1))], axis=1).ravel()[:-1]
    bands = [(diag, 0), (off_y, 1), (off_y, -1), (off_x, m), (off_x, -m)]
    bands = [(values, k) for values, k in bands if values.size]  # m = 1: the diagonal only
    return sp.diags([v for v, _ in bands], [k for _, k in bands], format="csc")


def solve_darcy(a: np.ndarray, f: float | np.ndarray = 1.0, face: str = "arithmetic") -> np.ndarray:
    """Solve ``-div(a grad u) = f`` with ``u = 0`` on the boundary; ``a``, ``f``, ``u``: ``(N, N)``.

    ``a`` and ``f`` are given at the nodes ``(i h, j h)``, ``h = 1 / (N - 1)`` (``f`` may be a
    scalar); ``u`` is returned at the same nodes, zero on the boundary.

    >>> u = solve_darcy(np.ones((3, 3)))  # one interior node: 4 u / h^2 = 1, h = 1/2
    >>> float(u[1, 1])
    0.0625
    """
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape[0] < 3:
        raise DataError(f"a must have shape (N, N) with N >= 3, got shape {a.shape}")
    if not np.all(np.isfinite(a)) or np.any(a <= 0):
        raise DataError("a must be finite and positive at every node")
    N, f = a.shape[0], np.asarray(f, dtype=np.float64)
    if f.shape not in ((), a.shape):
        raise DataError(f"f must be a number or have the shape of a {a.shape}, got shape {f.shape}")
    rhs = np.broadcast_to(f, a.shape)[1:-1, 1:-1] / (N - 1) ** 2
    u = np.zeros_like(a)
    # symmetric positive definite: symmetric ordering, no pivoting off the diagonal
    lu = splu(
        darcy_matrix(a, face),
        permc_spec="MMD_AT_PLUS_A",
        diag_pivot_thresh=0.0,
        options={"SymmetricMode": True},
    )
    u[1:-1, 1:-1] = lu.solve(rhs.ravel()).reshape(N - 2, N - 2)
    return u


def fine_grid(
    resolution: int, fine: int | None = None, fine_min: int | None = None
) -> tuple[int, int]:
    """Return ``(fine, stride)`` with ``fine = (resolution - 1) * stride + 1``.

    Without ``fine``, the smallest stride giving ``fine >= fine_min``; ``fine_min`` defaults to 421
    when ``resolution - 1`` divides 420 (FNO's grids: 85, 141, 211, 421) and to 200 otherwise.

    >>> fine_grid(85), fine_grid(32), fine_grid(64), fine_grid(9, fine=33)
    ((421, 5), (218, 7), (253, 4), (33, 4))
    """
    r = check_int(resolution, "resolution", minimum=3) - 1
    if fine is not None:
        if (check_int(fine, "fine", minimum=3) - 1) % r:
            raise DataError(f"fine - 1 must be a multiple of resolution - 1 = {r}, got fine={fine}")
        return int(fine), (int(fine) - 1) // r
    if fine_min is None:
        fine_min = FNO_FINE if (FNO_FINE - 1) % r == 0 else SMALL_FINE
    stride = max(1, -(-(check_int(fine_min, "fine_min", minimum=3) - 1) // r))
    return r * stride + 1, stride


def darcy_coefficients(
    rng: np.random.Generator, n: int, s: int, alpha: float = 2.0, tau: float = 3.0
) -> np.ndarray:
    """``a = psi(GRF)`` of shape ``(n, s, s)``: 12 where the field is ``>= 0``, else 3.

    >>> a = darcy_coefficients(np.random.default_rng(0), 1, 8)
    >>> a.shape, set(np.unique(a).tolist()) <= {3.0, 12.0}
    ((1, 8, 8), True)
    """
    return np.where(grf2d(rng, n, s, alpha, tau) >= 0.0, 12.0, 3.0)


def _solve_batch(a: np.ndarray, stride: int, face: str) -> tuple[np.ndarray, np.ndarray]:
    """Solve each of ``a`` ``(b, fine, fine)``; return subsampled ``(a, u)``, ``(b, res, res)``."""
    u = np.stack([solve_darcy(ai, 1.0, face) for ai in a])
    return a[:, ::stride, ::stride], u[:, ::stride, ::stride]


def simulate_darcy(
    n: int,
    seed: int | None = None,
    resolution: int = 85,
    *,
    fine: int | None = None,
    fine_min: int | None = None,
    face: str = "arithmetic",
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` Darcy samples: ``X = a``, ``Y = u``, float64, shape ``(n, 1, resolution, resolution)``.

    Coefficients are drawn in this process from ``seed``, one sample after the other on the fine
    grid (see :func:`fine_grid`), and solved here or, when ``workers > 1``, in ``workers`` processes
    (same arrays as ``workers=1``). ``progress(done, n)`` is called as samples finish.

    >>> X, Y = simulate_darcy(1, seed=3, resolution=3, fine=9)
    >>> bool(Y[0, 0, 1, 1] > 0) and float(abs(Y[0, 0, 0]).max()) == 0.0
    True
    """
    n = check_int(n, "n", minimum=1)
    fine, stride = fine_grid(resolution, fine, fine_min)
    _face_mean(1.0, 1.0, face)  # validates face before any work
    rng = np.random.default_rng(seed)
    draws = (darcy_coefficients(rng, 1, fine) for _ in range(n))  # in order, one at a time
    X, Y = run_batches(_solve_batch, draws, (stride, face), n, workers, progress)
    return X[:, None], Y[:, None]

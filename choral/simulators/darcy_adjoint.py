"""The Darcy solver as a differentiable torch function, its gradient by the adjoint method.

``u = A(a)^-1 b`` with ``A`` the symmetric 5-point matrix of
:func:`~choral.simulators.darcy.darcy_matrix` (arithmetic face means) and ``b = h^2``. For a
loss ``L(u)`` the adjoint ``lambda = A^-1 dL/du`` (``A`` symmetric: the same LU factors) gives
``dL/df = -(lambda_p - lambda_q)(u_p - u_q)`` for the face ``f`` between nodes ``p`` and ``q``
(``A = sum_f f (e_p - e_q)(e_p - e_q)^T`` on the interior nodes; boundary values are zero), and
each face passes half of that to each of its two nodes. One extra triangular solve per
gradient: this is the numerical solver that an MCMC with gradients (HMC) can run on.

:func:`sensor_map` composes it with the mode field of :mod:`~choral.simulators.darcy_modes`:
``xi (n, k) -> u at the sensors (n, sensors^2)``, differentiable in ``xi``.

Examples:
    >>> import torch
    >>> a = torch.ones(3, 3, dtype=torch.float64, requires_grad=True)
    >>> u = darcy_solve(a)  # one interior node: 4 u / h^2 = 1, h = 1/2
    >>> u[1, 1].item()
    0.0625
    >>> # u = h^2 / (sum of the 4 face means), each (a_centre + a_edge) / 2: du/da = -h^2 2 / 16
    >>> u[1, 1].backward(); a.grad[1, 1].item()
    -0.03125
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from scipy.sparse.linalg import splu
from torch import Tensor

from choral.errors import DataError
from choral.simulators.darcy import darcy_matrix
from choral.simulators.darcy_modes import AMPLITUDE, mode_basis, sensor_nodes

__all__ = ["darcy_solve", "sensor_map"]


def _valid(a: np.ndarray) -> bool:
    return bool(np.all(np.isfinite(a)) and np.all(a > 0))


def _factor(a: np.ndarray):
    return splu(darcy_matrix(a), permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0,
                 options={"SymmetricMode": True})


def _pad(interior: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros((n, n))
    out[1:-1, 1:-1] = interior.reshape(n - 2, n - 2)
    return out


class _Solve(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a: Tensor) -> Tensor:  # a (b, N, N)
        arrays = a.detach().cpu().numpy().astype(np.float64)
        n = arrays.shape[-1]
        lus = [_factor(ai) if _valid(ai) else None for ai in arrays]
        rhs = np.full((n - 2) ** 2, 1.0 / (n - 1) ** 2)
        u = np.stack([_pad(lu.solve(rhs), n) if lu else np.full((n, n), np.nan) for lu in lus])
        ctx.lus, ctx.u = lus, u
        return torch.as_tensor(u, dtype=a.dtype, device=a.device)

    @staticmethod
    @np.errstate(over="ignore", invalid="ignore")  # extreme a: inf/NaN, for the caller to judge
    def backward(ctx, grad: Tensor) -> Tensor:
        g = grad.detach().cpu().numpy().astype(np.float64)
        n = g.shape[-1]
        out = np.zeros_like(g)
        for b, (lu, u) in enumerate(zip(ctx.lus, ctx.u, strict=True)):
            if lu is None:  # no solution (NaN): no gradient
                continue
            lam = _pad(lu.solve(np.ascontiguousarray(g[b, 1:-1, 1:-1]).ravel()), n)
            fx = -0.5 * (lam[1:, 1:-1] - lam[:-1, 1:-1]) * (u[1:, 1:-1] - u[:-1, 1:-1])
            fy = -0.5 * (lam[1:-1, 1:] - lam[1:-1, :-1]) * (u[1:-1, 1:] - u[1:-1, :-1])
            out[b, 1:, 1:-1] += fx
            out[b, :-1, 1:-1] += fx
            out[b, 1:-1, 1:] += fy
            out[b, 1:-1, :-1] += fy
        return torch.as_tensor(out, dtype=grad.dtype, device=grad.device)


def darcy_solve(a: Tensor) -> Tensor:
    """``u`` solving ``-div(a grad u) = 1``, ``u = 0`` on the boundary; ``a``, ``u``: (N, N) or
    (b, N, N) at the nodes ``i / (N - 1)``, as :func:`~choral.simulators.darcy.solve_darcy`
    (arithmetic faces), differentiable in ``a`` (adjoint gradient).

    A field ``a`` with a non-finite or non-positive value gets a NaN solution (and zero
    gradient) instead of an error, so that a sampler proposing an overflowing ``exp(log a)``
    rejects the proposal (log density NaN) and carries on.
    """
    if a.ndim not in (2, 3) or a.shape[-1] != a.shape[-2] or a.shape[-1] < 3:
        raise DataError(f"a must have shape (N, N) or (b, N, N) with N >= 3, got "
                        f"{tuple(a.shape)}")
    u = _Solve.apply(a.reshape(-1, *a.shape[-2:]))
    return u.reshape(a.shape)


def sensor_map(resolution: int = 33, modes: int = 12, sensors: int = 8,
               amplitude: float = AMPLITUDE) -> Callable[[Tensor], Tensor]:
    """``xi (n, modes) -> u`` at the sensors (n, sensors^2), as
    :func:`~choral.simulators.darcy_modes.simulate_darcy_modes`, differentiable in ``xi``."""
    basis = mode_basis(modes, np.linspace(0.0, 1.0, resolution))
    idx = torch.as_tensor(sensor_nodes(resolution, sensors))

    def forward(xi: Tensor) -> Tensor:
        phi = torch.as_tensor(basis, dtype=xi.dtype, device=xi.device)
        a = torch.exp(amplitude * torch.einsum("nk,kij->nij", xi, phi))
        u = darcy_solve(a)
        return u[:, idx[:, None], idx[None, :]].reshape(len(xi), -1)

    return forward

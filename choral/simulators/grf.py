"""Gaussian random fields: the random inputs of the built-in PDE simulators (FNO protocols).

Two fields, both with zero mean mode, drawn from a numpy ``Generator``:

- :func:`grf2d`: ``n`` fields of shape ``(n, s, s)`` on the unit square with covariance
  ``tau^(2 alpha - 2) (-Laplacian + tau^2 I)^(-alpha)`` under Neumann boundary conditions, sampled
  with the inverse orthonormal DCT exactly as the FNO MATLAB script ``GRF(alpha, tau, s)``:
  ``L = s * coef * xi``, ``L[0, 0] = 0``, ``U = idct2(L)`` with
  ``coef[k1, k2] = tau^(alpha-1) (pi^2 (k1^2 + k2^2) + tau^2)^(-alpha/2)``. Values sit at the cell
  centres ``((i + 1/2) / s, (j + 1/2) / s)``; ``U[..., i, j]`` is at ``(x_i, y_j)``.
- :func:`grf1d`: ``n`` periodic fields of shape ``(n, s)`` on ``[0, 1)`` at ``x_j = j / s`` with
  covariance ``sigma^2 (-Laplacian + tau^2 I)^(-gamma)`` (eigenfunctions ``sqrt(2) cos(2 pi k x)``,
  ``sqrt(2) sin(2 pi k x)``), as the FNO Burgers script ``GRF1``. The draw is made in Fourier space
  by :func:`grf1d_coefficients` (complex ``c`` of shape ``(n, K + 1)``, ``u = sum_k c_k e^{2 pi i k
  x} + c.c.``), so a field drawn with ``K`` modes is the same function on every grid.

>>> import numpy as np
>>> grf2d(np.random.default_rng(0), 2, 8).shape
(2, 8, 8)
>>> grf1d(np.random.default_rng(0), 3, 16).shape
(3, 16)
"""

from __future__ import annotations

import numpy as np
from scipy.fft import idctn, irfft

from choral.checks import check_int

__all__ = [
    "dct_coefficients",
    "fourier_to_grid",
    "grf1d",
    "grf1d_coefficients",
    "grf1d_variances",
    "grf2d",
]


def dct_coefficients(s: int, alpha: float = 2.0, tau: float = 3.0) -> np.ndarray:
    """FNO's ``coef``, shape ``(s, s)``: ``tau^(alpha-1) (pi^2 (k1^2 + k2^2) + tau^2)^(-alpha/2)``.

    >>> round(float(dct_coefficients(4)[0, 0]), 12)  # tau^(alpha-1) / tau^alpha = 1 / tau
    0.333333333333
    """
    k = np.arange(check_int(s, "s", minimum=1), dtype=np.float64)
    lam = np.pi**2 * (k[:, None] ** 2 + k[None, :] ** 2) + tau**2
    return tau ** (alpha - 1.0) * lam ** (-alpha / 2.0)


def grf2d(
    rng: np.random.Generator, n: int, s: int, alpha: float = 2.0, tau: float = 3.0
) -> np.ndarray:
    """Draw ``n`` Neumann fields of shape ``(n, s, s)`` with FNO's ``GRF(alpha, tau, s)``.

    The orthonormal DCT of a field is ``s * coef * xi`` with ``xi`` standard normal and the mean
    mode set to zero, so ``scipy.fft.dctn(U, axes=(-2, -1), norm="ortho")`` recovers it.

    >>> U = grf2d(np.random.default_rng(1), 1, 5)
    >>> abs(float(U.mean())) < 1e-12  # zero mean mode
    True
    """
    n, s = check_int(n, "n", minimum=1), check_int(s, "s", minimum=1)
    L = s * dct_coefficients(s, alpha, tau) * rng.standard_normal((n, s, s))
    L[:, 0, 0] = 0.0
    return idctn(L, axes=(-2, -1), norm="ortho")


def grf1d_variances(
    modes: int, sigma: float = 25.0, tau: float = 5.0, gamma: float = 2.0
) -> np.ndarray:
    """Covariance eigenvalues ``sigma^2 ((2 pi k)^2 + tau^2)^(-gamma)``, shape ``(modes + 1,)``.

    Entry ``k`` is ``E |c_k|^2`` of the Fourier coefficient ``c_k``; entry 0 (the mean) is 0.

    >>> v = grf1d_variances(2)
    >>> float(v[0]), round(float(v[1]), 6)
    (0.0, 0.150332)
    """
    k = np.arange(check_int(modes, "modes", minimum=0) + 1, dtype=np.float64)
    var = sigma**2 * ((2.0 * np.pi * k) ** 2 + tau**2) ** (-gamma)
    var[0] = 0.0
    return var


def grf1d_coefficients(
    rng: np.random.Generator,
    n: int,
    modes: int,
    sigma: float = 25.0,
    tau: float = 5.0,
    gamma: float = 2.0,
) -> np.ndarray:
    """Fourier coefficients ``c`` (complex, shape ``(n, modes + 1)``) of ``n`` periodic fields.

    ``u(x) = sum_{k=1}^{modes} 2 Re(c_k e^{2 pi i k x})``, ``c_k = sd_k (xi_k - i eta_k) / sqrt(2)``
    with ``sd_k^2`` from :func:`grf1d_variances` (the cos and sin amplitudes of GRF1); ``c_0 = 0``.

    >>> c = grf1d_coefficients(np.random.default_rng(0), 2, 4)
    >>> c.shape, complex(c[0, 0])
    ((2, 5), 0j)
    """
    n = check_int(n, "n", minimum=1)
    sd = np.sqrt(grf1d_variances(modes, sigma, tau, gamma) / 2.0)
    xi = rng.standard_normal((n, 2, modes + 1))
    return sd * (xi[:, 0] - 1j * xi[:, 1])


def fourier_to_grid(c: np.ndarray, s: int) -> np.ndarray:
    """Evaluate ``u(x) = sum_k 2 Re(c_k e^{2 pi i k x})`` at ``x_j = j / s``; ``(n, K+1)->(n, s)``.

    Modes ``k >= s / 2`` are dropped (they are not resolved on ``s`` points).

    >>> fourier_to_grid(np.array([[0, 0.5]]), 4).round(12)  # cos(2 pi x)
    array([[ 1.,  0., -1.,  0.]])
    """
    s = check_int(s, "s", minimum=2)
    keep = min(c.shape[-1], (s + 1) // 2)  # k < s / 2
    spec = np.zeros(c.shape[:-1] + (s // 2 + 1,), dtype=np.complex128)
    spec[..., :keep] = c[..., :keep]
    return irfft(spec * s, n=s, axis=-1)


def grf1d(
    rng: np.random.Generator,
    n: int,
    s: int,
    sigma: float = 25.0,
    tau: float = 5.0,
    gamma: float = 2.0,
    modes: int | None = None,
) -> np.ndarray:
    """Draw ``n`` periodic fields of shape ``(n, s)`` at ``x_j = j / s`` (default ``s // 2`` modes).

    >>> u = grf1d(np.random.default_rng(2), 2, 32)
    >>> u.shape, bool(abs(u.mean(axis=1)).max() < 1e-12)
    ((2, 32), True)
    """
    modes = check_int(s, "s", minimum=2) // 2 if modes is None else modes
    return fourier_to_grid(grf1d_coefficients(rng, n, modes, sigma, tau, gamma), s)

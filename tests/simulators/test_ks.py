"""Tests of the Kuramoto-Sivashinsky simulator against independent facts: the exact linear
solution, conservation of the mean, the exact energy balance, the order of ETDRK4."""

import numpy as np
import pytest

from choral.errors import DataError
from choral.simulators import KINDS, simulate
from choral.simulators.burgers import burgers_trajectories, simulate_burgers
from choral.simulators.ks import ks_wavenumbers, simulate_ks, solve_ks

L = 22.0


def _energies(u: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Spatial means of u^2, u_x^2, u_xx^2 from the Fourier coefficients (Parseval)."""
    N = u.shape[-1]
    v = np.fft.rfft(u, axis=-1) / N
    w = np.full(N // 2 + 1, 2.0)
    w[0] = w[-1] = 1.0
    k = ks_wavenumbers(N, L)
    return tuple((w * k ** (2 * p) * abs(v) ** 2).sum(-1) for p in (0, 1, 2))


def test_linear_case_matches_exact_fourier_solution():
    N, t = 32, 0.7
    rng = np.random.default_rng(0)
    u0 = rng.standard_normal((3, N))
    u = solve_ks(u0, t, L, dt=0.1, times=2, nonlinear=False)
    k = ks_wavenumbers(N, L)
    for j, time in enumerate((t, 2 * t)):  # independent: numpy's FFT and exp((k^2 - k^4) t)
        exact = np.fft.irfft(np.exp((k**2 - k**4) * time) * np.fft.rfft(u0), n=N)
        np.testing.assert_allclose(u[:, j], exact, rtol=0, atol=1e-12)


def test_mean_conserved_and_energy_balance_on_the_attractor():
    X, Y = simulate_ks(8, seed=1, resolution=64, steps=800, burn_in=50.0)
    u = Y[:, :, 0]
    shifted = solve_ks(u[:2, 0] + 0.3, 5.0, L, times=2)  # a non-zero mean is conserved too
    np.testing.assert_allclose(shifted.mean(-1), 0.3, atol=1e-13)
    assert np.abs(u.mean(-1)).max() < 1e-13
    # d/dt <u^2>/2 = <u_x^2> - <u_xx^2> (u u_x conserves energy): on the attractor the time means
    # of the two dissipation terms agree; a bounded energy, never blowing up.
    e0, e1, e2 = _energies(u)
    assert abs(e1.mean() / e2.mean() - 1) < 0.02
    assert 0.5 < np.sqrt(e0.mean()) < 2.5 and e0.max() < 10.0
    # the same identity pointwise in time: finite difference of <u^2>/2 vs trapezoidal integral
    dE = 0.5 * (e0[:, 1:] - e0[:, :-1])
    integral = 0.25 * 0.5 * ((e1 - e2)[:, 1:] + (e1 - e2)[:, :-1])
    scale = np.abs(integral).max()
    assert np.abs(dE - integral).max() < 0.05 * scale


def test_etdrk4_is_fourth_order():
    _, Y = simulate_ks(2, seed=2, resolution=64, steps=1, burn_in=60.0)
    u0 = Y[:, 0, 0]
    ref = solve_ks(u0, 4.0, L, dt=0.25 / 256)
    err = [np.abs(solve_ks(u0, 4.0, L, dt=h) - ref).max() for h in (0.1, 0.05, 0.025, 0.0125)]
    ratios = np.array(err[:-1]) / np.array(err[1:])
    # halving dt divides the error by 2^order: rising towards 16 (ETDRK4's order reduction on
    # stiff problems fades as dt -> 0); above 2^3.4, beyond any third-order method
    assert np.all(np.diff(ratios) > 0) and 10.5 < ratios[-1] < 17


def test_registered_and_reproducible():
    X, Y = simulate("ks", 3, seed=4, resolution=16, steps=4, burn_in=2.0)
    assert KINDS["ks"] == "field" and X.shape == (3, 1, 16) and Y.shape == (3, 4, 1, 16)
    X2, Y2 = simulate_ks(3, 4, 16, steps=4, burn_in=2.0, workers=2)
    assert np.array_equal(Y, Y2) and np.array_equal(X[:, 0], Y[:, 0, 0])
    with pytest.raises(DataError, match="burn_in"):
        simulate_ks(1, 0, 16, burn_in=-1.0)
    with pytest.raises(DataError, match="fine"):
        simulate("ks", 1, 0, fine=32)


def test_burgers_trajectories_with_several_viscosities():
    nus = (0.1, 0.02)
    nu, Y = burgers_trajectories(4, 5, resolution=128, nus=nus, interval=0.5, steps=3,
                                 fine=128, dt=1e-2, modes=32)
    assert nu.tolist() == [0.1, 0.02, 0.1, 0.02] and Y.shape == (4, 3, 1, 128)
    # the nu = 0.1 rows at t = 1 are the one-shot FNO-protocol targets of the same draws
    X1, Y1 = simulate_burgers(4, 5, resolution=128, fine=128, dt=1e-2, modes=32)
    np.testing.assert_allclose(Y[:, 0], X1, rtol=0, atol=1e-12)
    np.testing.assert_allclose(Y[::2, 2], Y1[::2], atol=1e-8)
    # zero mean: E(t) <= E(0) exp(-2 nu (2 pi)^2 t) for each row's own nu (Poincare)
    u = Y[:, :, 0]
    assert np.abs(u.mean(-1)).max() < 1e-12
    E = (u**2).mean(-1)
    bound = E[:, :1] * np.exp(-2 * nu[:, None] * (2 * np.pi) ** 2 * 0.5 * np.arange(3))
    assert np.all(E <= bound * (1 + 1e-6) + 1e-15)
    assert np.all(E[1::2, 2] / E[1::2, 0] > E[::2, 2] / E[::2, 0])  # less viscous, less decay

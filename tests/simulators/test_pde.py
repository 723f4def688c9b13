"""Tests of the PDE simulators (Darcy, Burgers) and their Gaussian random fields, against
closed forms: manufactured solutions, Cole-Hopf, prescribed covariance spectra."""

import re

import numpy as np
import pytest
from scipy.fft import dctn, rfft
from scipy.special import ive

from choral.errors import DataError
from choral.simulators import FIELD_SIMULATORS, KINDS, SIMULATORS, get_simulator, simulate
from choral.simulators.burgers import simulate_burgers, solve_burgers
from choral.simulators.darcy import darcy_coefficients, fine_grid, solve_darcy
from choral.simulators.grf import dct_coefficients, grf1d, grf1d_variances, grf2d

NU = 0.1


# ---------------------------------------------------------------- Gaussian random fields


def _max_z(power: np.ndarray, expected: np.ndarray, sd_of_ratio: float) -> float:
    """Largest |mean ratio - 1| over modes, in standard errors."""
    return float(np.max(np.abs(power / expected - 1.0)) / sd_of_ratio)


def test_grf2d_dct_spectrum_matches_coefficients():
    n, s = 2000, 8
    L = dctn(grf2d(np.random.default_rng(0), n, s), axes=(-2, -1), norm="ortho")
    assert np.max(np.abs(L[:, 0, 0])) < 1e-12  # zero mean mode
    power = (L**2).mean(axis=0).ravel()[1:]  # E L_k^2 = (s coef_k)^2, chi^2_1 / n: sd sqrt(2/n)
    se = np.sqrt(2.0 / n)
    assert _max_z(power, (s * dct_coefficients(s)).ravel()[1:] ** 2, se) < 5.0
    wrong = (s * dct_coefficients(s, alpha=2.2)).ravel()[1:] ** 2  # the same test can fail
    assert _max_z(power, wrong, se) > 20.0


def test_grf2d_pointwise_variance_from_explicit_cosines():
    # KL expansion written out with numpy cosines, independent of scipy's DCT conventions:
    # U(x, y) = sum_k coef_k xi_k sqrt(w1 w2) cos(pi k1 x) cos(pi k2 y), x = (i + 1/2) / s.
    n, s = 3000, 6
    x = (np.arange(s) + 0.5) / s
    k = np.arange(s)
    w = np.where(k == 0, 1.0, 2.0)
    c2 = w[:, None] * np.cos(np.pi * k[:, None] * x) ** 2  # (k, i)
    coef2 = dct_coefficients(s) ** 2
    coef2[0, 0] = 0.0
    var = np.einsum("ab,ai,bj->ij", coef2, c2, c2)
    U = grf2d(np.random.default_rng(1), n, s)
    assert np.max(np.abs(U.var(axis=0) / var - 1.0)) < 5.0 * np.sqrt(2.0 / n)
    assert np.max(np.abs(U.mean(axis=(1, 2)))) < 1e-12


def test_grf1d_fourier_spectrum_and_variance():
    n, s = 4000, 64
    u = grf1d(np.random.default_rng(2), n, s)
    c = rfft(u, axis=-1) / s
    assert np.max(np.abs(c[:, 0])) < 1e-12
    power = (np.abs(c[:, 1 : s // 2]) ** 2).mean(axis=0)  # E|c_k|^2 = sigma^2 lam_k^-gamma
    expected = 625.0 * ((2 * np.pi * np.arange(1, s // 2)) ** 2 + 25.0) ** -2.0
    np.testing.assert_allclose(grf1d_variances(s // 2 - 1)[1:], expected, rtol=1e-14)
    assert _max_z(power, expected, 1.0 / np.sqrt(n)) < 5.0  # |c|^2 / E|c|^2 ~ Exp(1)
    assert _max_z(power, 1.1 * expected, 1.0 / np.sqrt(n)) > 5.0
    pointwise = 2.0 * expected.sum()  # stationary: Var u(x) = sum_k 2 sigma^2 lam_k^-gamma
    assert abs(u.var() / pointwise - 1.0) < 0.05


def test_grf_seeds_reproduce():
    for draw in (lambda r: grf2d(r, 2, 8), lambda r: grf1d(r, 2, 16)):
        a, b = draw(np.random.default_rng(7)), draw(np.random.default_rng(7))
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, draw(np.random.default_rng(8)))


# ---------------------------------------------------------------- Darcy


def _manufactured(N):
    x = np.linspace(0.0, 1.0, N)
    X, Y = np.meshgrid(x, x, indexing="ij")
    a = 1.0 + 0.5 * X + 0.25 * np.sin(2 * np.pi * Y)
    ax, ay = 0.5, 0.5 * np.pi * np.cos(2 * np.pi * Y)
    sx, sy, cx, cy = np.sin(np.pi * X), np.sin(np.pi * Y), np.cos(np.pi * X), np.cos(np.pi * Y)
    u = sx * sy
    f = -(ax * np.pi * cx * sy + ay * np.pi * sx * cy) + a * 2 * np.pi**2 * u
    return a, f, u


@pytest.mark.parametrize("face", ["arithmetic", "harmonic"])
def test_darcy_manufactured_solution_second_order(face):
    errors = []
    for N in (33, 65):
        a, f, u = _manufactured(N)
        errors.append(np.max(np.abs(solve_darcy(a, f, face) - u)))
    order = np.log2(errors[0] / errors[1])
    assert 1.8 < order < 2.2, (errors, order)
    assert errors[1] < 1e-3


def test_darcy_maximum_principle_and_scaling():
    a = darcy_coefficients(np.random.default_rng(0), 1, 41)[0]
    u = solve_darcy(a)
    assert np.all(u[1:-1, 1:-1] > 0)
    assert np.all(u[[0, -1]] == 0) and np.all(u[:, [0, -1]] == 0)
    np.testing.assert_allclose(solve_darcy(3.0 * a), u / 3.0, rtol=1e-10, atol=0)


def test_darcy_transposition_symmetry():
    a = darcy_coefficients(np.random.default_rng(1), 1, 41)[0]
    u = solve_darcy(a)
    np.testing.assert_allclose(solve_darcy(a.T), u.T, rtol=0, atol=1e-10 * u.max())
    sym = np.maximum(a, a.T)
    us = solve_darcy(sym)
    np.testing.assert_allclose(us, us.T, rtol=0, atol=1e-10 * us.max())


def test_darcy_fine_grid_protocol():
    assert fine_grid(85) == (421, 5) and fine_grid(141) == (421, 3)
    assert fine_grid(211) == (421, 2) and fine_grid(421) == (421, 1)
    for res in (32, 64):
        fine, stride = fine_grid(res)
        assert fine == (res - 1) * stride + 1 and fine >= 200 and fine - (res - 1) < 200


def test_darcy_outputs_are_subsamples_of_the_fine_solution():
    X9, Y9 = simulate("darcy", 2, seed=4, resolution=9, fine=33)
    X17, Y17 = simulate("darcy", 2, seed=4, resolution=17, fine=33)
    assert X9.shape == Y9.shape == (2, 1, 9, 9) and X9.dtype == Y9.dtype == np.float64
    np.testing.assert_array_equal(X9, X17[..., ::2, ::2])
    np.testing.assert_array_equal(Y9, Y17[..., ::2, ::2])
    assert set(np.unique(X9)) <= {3.0, 12.0} and np.all(Y9[..., 1:-1, 1:-1] > 0)


# ---------------------------------------------------------------- Burgers


def _cole_hopf(A, x, t):
    """u = -2 nu phi_x / phi, phi = heat kernel on the real line * phi0 (trapezoid quadrature),
    phi0(y) = exp(-(1 / (2 nu)) int_0^y A sin(2 pi s) ds)."""
    y = np.arange(-6.0, 7.0, 1.0 / 2048)
    phi0 = np.exp(-A * (1.0 - np.cos(2 * np.pi * y)) / (4 * np.pi * NU))
    d = x[:, None] - y[None, :]
    G = np.exp(-(d**2) / (4 * NU * t))
    phi, phi_x = G @ phi0, (-d / (2 * NU * t) * G) @ phi0
    return -2 * NU * phi_x / phi


def _cole_hopf_bessel(A, x, t, K=60):
    """The same solution from phi0's Fourier series, whose coefficients are I_k(A / (4 pi nu))."""
    k = np.arange(1, K)[:, None]
    w = ive(k, A / (4 * np.pi * NU)) * np.exp(-NU * (2 * np.pi * k) ** 2 * t)
    phi = ive(0, A / (4 * np.pi * NU)) + 2 * (w * np.cos(2 * np.pi * k * x)).sum(0)
    phi_x = -2 * (w * 2 * np.pi * k * np.sin(2 * np.pi * k * x)).sum(0)
    return -2 * NU * phi_x / phi


@pytest.mark.parametrize(("A", "t"), [(0.5, 1.0), (2.0, 1.0), (2.0, 0.1)])
def test_burgers_against_cole_hopf(A, t):
    x = np.arange(128) / 128
    exact = _cole_hopf(A, x, t)
    np.testing.assert_allclose(
        exact, _cole_hopf_bessel(A, x, t), rtol=0, atol=1e-12 * np.abs(exact).max()
    )
    u = solve_burgers(A * np.sin(2 * np.pi * x)[None], t=t, nu=NU)[0]
    assert np.max(np.abs(u - exact)) < 1e-6 * np.max(np.abs(exact))


def test_burgers_conserves_mean_and_dissipates_energy():
    u = grf1d(np.random.default_rng(3), 3, 256)
    shifted = solve_burgers(u + 0.7, t=0.5)
    np.testing.assert_allclose(shifted.mean(axis=1), 0.7, rtol=0, atol=1e-10)
    energy = [np.mean(u**2, axis=1)]
    for _ in range(10):
        u = solve_burgers(u, t=0.1)
        energy.append(np.mean(u**2, axis=1))
    energy = np.array(energy)  # (11, 3)
    assert np.all(np.diff(energy, axis=0) < 0)
    # zero mean: dE/dt = -2 nu |u_x|^2 <= -2 nu (2 pi)^2 E (Poincare), the advection conserves E
    bound = energy[0] * np.exp(-2 * NU * (2 * np.pi) ** 2 * 0.1 * np.arange(11))[:, None]
    assert np.all(energy <= bound * (1 + 1e-9))


def test_burgers_fine_grids_converge():
    Y = {f: simulate_burgers(2, 5, resolution=32, fine=f, dt=1e-2)[1] for f in (64, 128, 512)}
    err = [np.linalg.norm(Y[f] - Y[512]) / np.linalg.norm(Y[512]) for f in (64, 128)]
    assert err[1] < err[0] and err[1] < 1e-8


def test_burgers_default_fine_grid_agrees_with_fno_8192():
    X, Y = simulate_burgers(1, 6, resolution=256, dt=1e-2)  # fine = 1024 by default
    X8, Y8 = simulate_burgers(1, 6, resolution=256, fine=8192, dt=1e-2)
    np.testing.assert_array_equal(X, X8)  # exact point values of the same u0
    assert np.linalg.norm(Y - Y8) / np.linalg.norm(Y8) < 1e-6


def test_burgers_shapes_and_targets():
    X, Y = simulate("burgers", 3, seed=0, resolution=16, fine=64)
    assert X.shape == Y.shape == (3, 1, 16) and X.dtype == Y.dtype == np.float64
    assert np.all(np.isfinite(Y)) and np.abs(Y).max() < np.abs(X).max()


# ---------------------------------------------------------------- registry, workers, errors


def test_registry_kinds():
    assert (
        set(KINDS)
        == set(SIMULATORS) | set(FIELD_SIMULATORS)
        == {"borehole", "branin", "hartmann6", "ishigami", "darcy", "burgers", "ks", "darcy_modes"}
    )
    assert KINDS["darcy_modes"] == "vector"
    assert KINDS["branin"] == "vector" and KINDS["darcy"] == KINDS["burgers"] == "field"
    assert get_simulator("burgers").kind == "field"
    assert simulate("branin", 2, seed=0)[0].shape == (2, 2)


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("darcy", {"resolution": 9, "fine": 33}),
        ("burgers", {"resolution": 16, "fine": 64, "dt": 1e-2}),
    ],
)
def test_workers_give_identical_arrays_and_progress(name, options):
    n = 20 if name == "burgers" else 3  # burgers: two batches of 16 and 4
    calls = []
    X1, Y1 = simulate(name, n, 11, workers=1, **options)
    X2, Y2 = simulate(name, n, 11, workers=2, progress=lambda d, t: calls.append((d, t)), **options)
    np.testing.assert_array_equal(X1, X2)
    np.testing.assert_array_equal(Y1, Y2)
    assert calls[-1] == (n, n) and [d for d, _ in calls] == sorted(d for d, _ in calls)
    X3, _ = simulate(name, n, 12, **options)
    assert not np.array_equal(X1, X3)


@pytest.mark.parametrize(
    ("name", "kwargs", "argument"),
    [
        ("darcy", {"resolution": 2}, "resolution=2"),
        ("burgers", {"resolution": 2}, "resolution=2"),
        ("darcy", {"n": 0}, "n=0"),
        ("burgers", {"n": -1}, "n=-1"),
        ("darcy", {"workers": 0}, "workers=0"),
        ("darcy", {"resolution": 9, "fine": 34}, "fine=34"),
        ("burgers", {"resolution": 16, "fine": 100}, "fine=100"),
        ("burgers", {"dt": 0.0}, "dt=0.0"),
        ("darcy", {"face": "geometric"}, "face='geometric'"),
        ("darcy", {"bogus": 1}, "'bogus'"),
        ("branin", {"resolution": 8}, "'resolution'"),
    ],
)
def test_bad_arguments_name_themselves(name, kwargs, argument):
    kwargs = {"n": 1, "seed": 0, "resolution": 5, "fine": None, **kwargs}
    if KINDS[name] == "vector":
        kwargs.pop("fine")
    with pytest.raises(DataError, match=re.escape(argument)):
        simulate(name, **kwargs)


def test_unknown_name_lists_both_kinds():
    with pytest.raises(DataError, match=r"'nope'.*borehole, branin, hartmann6.*burgers, darcy"):
        simulate("nope", 1)

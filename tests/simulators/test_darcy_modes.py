"""The Darcy mode simulator and its differentiable solver, against a direct GRF evaluation
(scipy's inverse DCT), the sparse solver and finite differences."""

import re

import numpy as np
import pytest
import torch
from scipy.fft import idctn

from choral.errors import DataError
from choral.simulators import KINDS, simulate
from choral.simulators.darcy import solve_darcy
from choral.simulators.darcy_adjoint import darcy_solve, sensor_map
from choral.simulators.darcy_modes import (
    coefficient_field,
    leading_modes,
    log_coefficient,
    sensor_nodes,
    simulate_darcy_modes,
)
from choral.simulators.grf import dct_coefficients


def test_mode_field_is_grf2d_with_only_the_leading_modes():
    # grf2d's recipe (L = s coef xi, U = idct2(L)) with xi zero beyond the k leading modes
    s, k = 12, 10
    xi = np.random.default_rng(0).standard_normal((3, k))
    modes = leading_modes(k)
    L = np.zeros((3, s, s))
    L[:, modes[:, 0], modes[:, 1]] = s * dct_coefficients(s)[modes[:, 0], modes[:, 1]] * xi
    direct = idctn(L, axes=(-2, -1), norm="ortho")
    centres = (np.arange(s) + 0.5) / s
    np.testing.assert_allclose(log_coefficient(xi, centres, amplitude=1.0), direct, atol=1e-12)
    np.testing.assert_allclose(log_coefficient(xi, centres, amplitude=2.0), 2 * direct, atol=1e-12)


def test_leading_modes_have_the_largest_standard_deviations():
    c = dct_coefficients(20)
    c[0, 0] = 0.0
    for k in (1, 5, 12, 30):
        m = leading_modes(k)
        ours = np.sort(c[m[:, 0], m[:, 1]])
        assert len({tuple(r) for r in m.tolist()}) == k and (m.sum(1) > 0).all()
        np.testing.assert_allclose(ours, np.sort(c.ravel())[::-1][:k][::-1])  # the k largest


def test_simulator_is_the_solver_at_the_sensors_and_registered():
    X, Y = simulate("darcy_modes", 5, seed=3, resolution=17, modes=4, sensors=4)
    assert KINDS["darcy_modes"] == "vector" and X.shape == (5, 4) and Y.shape == (5, 16)
    idx = sensor_nodes(17, 4)
    assert idx.tolist() == [2, 6, 10, 14]
    a = coefficient_field(X, 17)
    for i in range(5):
        np.testing.assert_array_equal(Y[i], solve_darcy(a[i])[np.ix_(idx, idx)].ravel())
    X2, Y2 = simulate_darcy_modes(5, seed=3, resolution=17, modes=4, sensors=4, workers=2)
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(Y, Y2)
    np.testing.assert_allclose(X.std(), 1.0, atol=0.5)  # standard normal coefficients


@pytest.mark.parametrize(("kwargs", "text"), [({"sensors": 8, "resolution": 9}, "sensors=8"),
                                              ({"modes": 0}, "modes=0"),
                                              ({"amplitude": -1.0}, "amplitude=-1.0")])
def test_bad_arguments_name_themselves(kwargs, text):
    with pytest.raises(DataError, match=re.escape(text)):
        simulate_darcy_modes(1, **{"resolution": 9, "sensors": 2, **kwargs})


def test_differentiable_solve_matches_the_sparse_solver_and_finite_differences():
    a = (torch.rand(2, 6, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
         + 0.5).requires_grad_(True)
    u = darcy_solve(a)
    for i in range(2):
        np.testing.assert_allclose(u[i].detach().numpy(), solve_darcy(a[i].detach().numpy()),
                                   atol=1e-15)
    assert torch.autograd.gradcheck(darcy_solve, (a,))
    f = sensor_map(resolution=7, modes=3, sensors=2)
    xi = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(f, (xi,))
    X, Y = simulate_darcy_modes(3, seed=1, resolution=7, modes=3, sensors=2)
    np.testing.assert_allclose(f(torch.as_tensor(X)).numpy(), Y, rtol=1e-12)


def test_invalid_coefficient_gives_nan_not_an_error():
    a = torch.ones(2, 5, 5, dtype=torch.float64)
    a[1, 2, 2] = float("inf")
    a.requires_grad_(True)
    u = darcy_solve(a)
    assert torch.isfinite(u[0]).all() and torch.isnan(u[1]).all()
    u[0].sum().backward()
    assert torch.isfinite(a.grad[0]).all() and (a.grad[1] == 0).all()
    with pytest.raises(DataError, match=r"\(2, 3\)"):
        darcy_solve(torch.ones(2, 3))

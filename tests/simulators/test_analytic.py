"""Tests of the built-in analytic simulators against published facts."""

import math
import re

import numpy as np
import pytest

from choral.errors import DataError
from choral.simulators import SIMULATORS, get_simulator, simulate
from choral.simulators.analytic import Simulator, ishigami_indices

BRANIN_MIN = 0.397887
BRANIN_ARGMINS = [(-math.pi, 12.275), (math.pi, 2.275), (9.42478, 2.475)]
HARTMANN6_MIN = -3.32237
HARTMANN6_ARGMIN = [0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573]
BOREHOLE_MID = {
    "rw": 0.10, "r": 25050.0, "Tu": 89335.0, "Hu": 1050.0,
    "Tl": 89.55, "Hl": 760.0, "L": 1400.0, "Kw": 10950.0,
}  # fmt: skip


def _borehole_point(**overrides):
    p = {**BOREHOLE_MID, **overrides}
    return np.array([[p[k] for k in get_simulator("borehole").input_names]], dtype=np.float64)


def test_registry_contents():
    assert set(SIMULATORS) == {"borehole", "branin", "hartmann6", "ishigami"}
    for name, d in [("borehole", 8), ("branin", 2), ("hartmann6", 6), ("ishigami", 3)]:
        sim = get_simulator(name)
        assert isinstance(sim, Simulator)
        assert sim.bounds.shape == (d, 2)
        assert len(sim.input_names) == d
        assert np.all(sim.bounds[:, 0] < sim.bounds[:, 1])


@pytest.mark.parametrize("x", BRANIN_ARGMINS)
def test_branin_global_minima(x):
    y = get_simulator("branin")(np.array([x], dtype=np.float64))
    assert y.shape == (1, 1) and y.dtype == np.float64
    assert abs(y[0, 0] - BRANIN_MIN) < 1e-5


def test_branin_samples_never_below_minimum():
    _, Y = simulate("branin", 20000, seed=0)
    assert Y.min() >= BRANIN_MIN - 1e-6


def test_hartmann6_global_minimum():
    y = get_simulator("hartmann6")(np.array([HARTMANN6_ARGMIN], dtype=np.float64))
    assert abs(y[0, 0] - HARTMANN6_MIN) < 1e-4


def test_hartmann6_samples_never_below_minimum():
    _, Y = simulate("hartmann6", 20000, seed=1)
    assert Y.min() >= HARTMANN6_MIN - 1e-4
    assert Y.max() <= 0.0


def test_borehole_hand_computed_value():
    # Step by step at the centre of the box, independent of the library's vectorised formula.
    log_r_over_rw = math.log(25050.0 / 0.10)  # ln(250500)
    assert math.isclose(log_r_over_rw, 12.4312142, abs_tol=1e-7)
    numerator = 2.0 * math.pi * 89335.0 * 290.0  # 2 pi Tu (Hu - Hl)
    leakage = 2.0 * 1400.0 * 89335.0 / (log_r_over_rw * 0.01 * 10950.0)  # 2 L Tu / (ln rw^2 Kw)
    ratio = 89335.0 / 89.55  # Tu / Tl
    expected = numerator / (log_r_over_rw * (1.0 + leakage + ratio))
    assert math.isclose(expected, 70.872913, rel_tol=1e-7)
    y = get_simulator("borehole")(_borehole_point())
    assert y.shape == (1, 1)
    assert math.isclose(y[0, 0], expected, rel_tol=1e-12)


def test_borehole_monotonicity():
    sim = get_simulator("borehole")
    heads = [sim(_borehole_point(Hu=hu, Hl=760.0))[0, 0] for hu in (990.0, 1050.0, 1110.0)]
    radii = [sim(_borehole_point(rw=rw))[0, 0] for rw in (0.05, 0.10, 0.15)]
    lengths = [sim(_borehole_point(L=length))[0, 0] for length in (1120.0, 1400.0, 1680.0)]
    assert heads[0] < heads[1] < heads[2]
    assert radii[0] < radii[1] < radii[2]
    assert lengths[0] > lengths[1] > lengths[2]


@pytest.mark.parametrize("name", sorted(SIMULATORS))
def test_samples_inside_bounds_and_shapes(name):
    sim = get_simulator(name)
    X, Y = simulate(name, 500, seed=3)
    assert X.shape == (500, sim.bounds.shape[0]) and Y.shape == (500, 1)
    assert X.dtype == np.float64 and Y.dtype == np.float64
    assert np.all(X >= sim.bounds[:, 0]) and np.all(X <= sim.bounds[:, 1])
    assert np.all(np.isfinite(Y))


@pytest.mark.parametrize("name", sorted(SIMULATORS))
def test_seed_reproducibility(name):
    X1, Y1 = simulate(name, 50, seed=7)
    X2, Y2 = simulate(name, 50, seed=7)
    X3, _ = simulate(name, 50, seed=8)
    np.testing.assert_array_equal(X1, X2)
    np.testing.assert_array_equal(Y1, Y2)
    assert not np.array_equal(X1, X3)


def test_wrong_number_of_columns():
    with pytest.raises(DataError, match=r"'branin'.*\(n, 2\).*\(4, 3\)"):
        get_simulator("branin")(np.zeros((4, 3)))


def test_one_dimensional_input():
    with pytest.raises(DataError, match=r"'hartmann6'.*\(n, 6\).*\(6,\)"):
        get_simulator("hartmann6")(np.zeros(6))


@pytest.mark.parametrize("n", [0, -3, 2.5])
def test_bad_n(n):
    with pytest.raises(DataError, match=rf"n={re.escape(repr(n))}"):
        simulate("borehole", n, seed=0)


def test_unknown_name():
    with pytest.raises(DataError, match=r"'nope'.*borehole, branin, hartmann6"):
        get_simulator("nope")
    with pytest.raises(DataError, match="unknown simulator"):
        simulate("nope", 3, seed=0)


def test_ishigami_values():
    sim = get_simulator("ishigami")
    x = np.array([[0.0, 0.0, 0.0], [math.pi / 2, math.pi / 2, 1.0], [-math.pi / 2, 0.0, 2.0]])
    # sin x1 + 7 sin^2 x2 + 0.1 x3^4 sin x1
    np.testing.assert_allclose(sim(x)[:, 0], [0.0, 1.0 + 7.0 + 0.1, -1.0 - 1.6], atol=1e-12)


def test_ishigami_indices_match_a_large_sample_estimate():
    """The closed-form indices against scipy's Saltelli/Jansen estimates on the true function
    (2^16 base samples: Monte Carlo error about 0.005)."""
    from scipy import stats

    sim = get_simulator("ishigami")
    dists = [stats.uniform(-math.pi, 2 * math.pi)] * 3
    res = stats.sobol_indices(func=lambda x: sim(x.T).T, n=2**16, dists=dists, rng=0)
    first, total = ishigami_indices()
    np.testing.assert_allclose(np.ravel(res.first_order), first, atol=0.015)
    np.testing.assert_allclose(np.ravel(res.total_order), total, atol=0.015)
    assert abs(first[0] - 0.3139) < 1e-4 and abs(first[1] - 0.4424) < 1e-4 and first[2] == 0

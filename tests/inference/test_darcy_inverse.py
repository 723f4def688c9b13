"""The Darcy inverse problem on a small grid: HMC (``infer``) on the numerical solver with its
adjoint gradient agrees with the posterior computed by quadrature on a grid of the two mode
coefficients; a field report of that posterior draws the mean and std of the coefficient."""

import numpy as np
import torch

from choral.inference import gaussian_prior, infer
from choral.simulators.darcy_adjoint import sensor_map
from choral.simulators.darcy_modes import simulate_darcy_modes

RES, MODES, SENSORS = 9, 2, 3


def _problem():
    X, Y = simulate_darcy_modes(1, seed=5, resolution=RES, modes=MODES, sensors=SENSORS)
    sigma = 0.05 * float(np.sqrt((Y**2).mean()))
    y_obs = Y[0] + sigma * np.random.default_rng(0).standard_normal(Y.shape[1])
    return X[0], y_obs, sigma


def _quadrature(f, y_obs, sigma):
    """Posterior mean and std of xi (2,) by a coarse then a fine grid (Riemann sums)."""
    def moments(lo, hi, k):
        axes = [np.linspace(lo[i], hi[i], k) for i in range(2)]
        grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 2)
        with torch.no_grad():
            u = f(torch.as_tensor(grid)).numpy()
        logp = -0.5 * (((u - y_obs) / sigma) ** 2).sum(1) - 0.5 * (grid**2).sum(1)
        w = np.exp(logp - logp.max())
        w /= w.sum()
        mean = w @ grid
        return mean, np.sqrt(w @ (grid - mean) ** 2)

    mean, std = moments(np.full(2, -4.0), np.full(2, 4.0), 31)
    return moments(mean - 7 * std, mean + 7 * std, 41)


def test_hmc_on_the_solver_matches_quadrature_and_covers_the_truth():
    truth, y_obs, sigma = _problem()
    f = sensor_map(RES, MODES, SENSORS)
    mean, std = _quadrature(f, y_obs, sigma)
    assert np.all(std < 0.3)  # informative: far narrower than the N(0, 1) prior

    def solver(x):  # the solver as the one "member" of the likelihood, no model variance
        u = f(x)
        return u[None], torch.zeros_like(u)[None]

    post = infer(solver, y_obs, sigma, gaussian_prior(np.zeros(MODES), 1.0), chains=4,
                 warmup=100, draws=150, steps=5, seed=0)
    samples = post.flat
    assert post.rhat.max() < 1.05
    np.testing.assert_array_less(np.abs(samples.mean(0) - mean), 0.2 * std)
    np.testing.assert_allclose(samples.std(0), std, rtol=0.2)
    lo, hi = np.quantile(samples, [0.005, 0.995], axis=0)
    assert np.all((lo <= truth) & (truth <= hi))

"""Named objective functionals, checked against numpy and against the closed-form moments of a
squared misfit of Gaussian fields."""

import numpy as np
import pytest
import torch

from choral.acquisition import members_of, scores, select_batch
from choral.acquisition.objectives import maximum, minimum, misfit, objective
from choral.distributions import GaussianMixture
from choral.errors import ConfigError, DataError


def test_functionals_match_numpy_on_fields():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(3, 4, 1, 5, 5))  # b=3 draws, n=4 samples, fields (1, 5, 5)
    t = rng.normal(size=(1, 5, 5))
    flat = y.reshape(3, 4, -1)
    got = misfit(t)(torch.from_numpy(y)).numpy()
    want = ((flat - t.ravel()) ** 2).mean(-1) / (t**2).mean()
    np.testing.assert_allclose(got, want, rtol=1e-12)
    np.testing.assert_allclose(misfit(t, scale=2.0)(torch.from_numpy(y)).numpy(),
                               ((flat - t.ravel()) ** 2).mean(-1) / 2.0, rtol=1e-12)
    np.testing.assert_array_equal(maximum()(torch.from_numpy(y)).numpy(), flat.max(-1))
    np.testing.assert_array_equal(minimum()(torch.from_numpy(y)).numpy(), flat.min(-1))
    np.testing.assert_allclose(objective("average")(torch.from_numpy(y)).numpy(),
                               flat.mean(-1), rtol=1e-12)


def _field_mixture(rng, s, n, p):
    means = rng.normal(size=(s, n, p))
    var = rng.uniform(0.05, 0.3, size=(s, n, p))
    return means, var, GaussianMixture(torch.from_numpy(means), torch.from_numpy(var))


@pytest.mark.parametrize("chunk", [None, 7])
def test_member_misfit_moments_match_the_closed_form(monkeypatch, chunk):
    # y ~ N(mu, v) per value: E (y - t)^2 = d^2 + v and Var (y - t)^2 = 2 v^2 + 4 v d^2, d = mu - t
    if chunk is not None:  # force the candidates through many small chunks
        monkeypatch.setattr(scores, "_CHUNK", chunk * 4000 * 3 * 6)
    rng = np.random.default_rng(1)
    s, n, p = 3, 20, 6
    means, var, pred = _field_mixture(rng, s, n, p)
    t = rng.normal(size=p)
    m = members_of(pred, misfit(t, scale=1.0), draws=4000, seed=2)
    d2 = (means - t) ** 2
    mean_want = (d2 + var).mean(-1)
    var_want = (2 * var**2 + 4 * var * d2).sum(-1) / p**2
    se = np.sqrt(var_want / 4000)
    assert np.all(np.abs(m.means[..., 0].numpy() - mean_want) < 5 * se)
    np.testing.assert_allclose(m.variances[..., 0].numpy(), var_want, rtol=0.15)


def test_thompson_on_a_misfit_takes_each_members_closest_field():
    # nearly noise-free members: a draw's pick is the candidate whose member field is nearest
    rng = np.random.default_rng(3)
    s, n, p = 4, 30, 9
    means = rng.normal(size=(s, n, p))
    pred = GaussianMixture(torch.from_numpy(means), torch.full((s, n, p), 1e-10,
                                                               dtype=torch.float64))
    t = rng.normal(size=p)
    best_of_member = ((means - t) ** 2).mean(-1).argmin(1)
    for seed in range(8):
        pick = select_batch("thompson", lambda X: pred, np.zeros((n, 1)), 1,
                            objective=misfit(t), seed=seed)[0]
        assert pick in best_of_member


def test_bad_arguments_are_named():
    with pytest.raises(ConfigError, match="objective must be one of"):
        objective("median")
    with pytest.raises(ConfigError, match="needs target"):
        objective("misfit")
    with pytest.raises(ConfigError, match="takes no target"):
        objective("maximum", target=np.zeros(3))
    with pytest.raises(DataError, match="target has 3 values"):
        misfit(np.zeros(3))(torch.zeros(1, 2, 4))
    with pytest.raises(DataError, match="finite"):
        misfit(np.array([np.nan]))

"""Thompson sampling: checked against argsort of the member means and against the draw law."""

import numpy as np
import pytest
import torch

from choral.acquisition import score, select_batch, thompson_batch
from choral.distributions import GaussianMixture, Members
from choral.errors import DataError


def _members(means, weights=None):
    means = torch.as_tensor(np.asarray(means, dtype=np.float64))
    s = means.shape[0]
    w = torch.full((s,), 1.0 / s, dtype=torch.float64) if weights is None else \
        torch.as_tensor(weights, dtype=torch.float64)
    return Members(means, torch.ones_like(means), w)


def test_one_member_is_the_ordering_of_its_mean():
    rng = np.random.default_rng(0)
    mu = rng.normal(size=(1, 30, 1))
    m = _members(mu)
    for maximize in (True, False):
        order = np.argsort(-mu[0, :, 0] if maximize else mu[0, :, 0])
        got = thompson_batch(m, 7, maximize=maximize, seed=3).numpy()
        np.testing.assert_array_equal(got, order[:7])


def test_member_optima_are_chosen_with_the_member_weights():
    # member i's optimum is candidate i; over many seeds a single pick follows the weights
    s, n = 4, 10
    mu = np.zeros((s, n, 1))
    mu[np.arange(s), np.arange(s), 0] = 1.0
    weights = np.array([0.1, 0.2, 0.3, 0.4])
    m = _members(mu, weights)
    draws = 4000
    picks = np.array([thompson_batch(m, 1, maximize=True, seed=i).item() for i in range(draws)])
    freq = np.bincount(picks, minlength=n)[:s] / draws
    se = np.sqrt(weights * (1 - weights) / draws)
    assert np.all(np.abs(freq - weights) < 4 * se), (freq, weights)
    assert np.bincount(picks, minlength=n)[s:].sum() == 0


def test_batch_slots_are_distinct_and_each_is_a_member_optimum():
    # uniform weights: each slot's pick is the best untaken point of some member
    rng = np.random.default_rng(1)
    mu = rng.normal(size=(3, 50, 1))
    m = _members(mu)
    idx = thompson_batch(m, 50, maximize=False, seed=5).numpy()
    assert sorted(idx.tolist()) == list(range(50))
    taken = set()
    for j in idx[:10]:
        bests = [min(set(range(50)) - taken, key=lambda c: mu[i, c, 0]) for i in range(3)]
        assert j in bests
        taken.add(int(j))


def test_select_batch_and_score_thompson_through_a_predictive():
    X = np.linspace(0, 1, 20)[:, None]
    means = np.stack([np.sin(6 * X), np.cos(6 * X)])  # (2, 20, 1)

    def fn(x):
        return GaussianMixture(means[:, :len(x)], np.full((2, len(x), 1), 0.1))

    idx = select_batch("thompson", fn, X, 5, maximize=True, seed=2)
    assert len(set(idx.tolist())) == 5
    s = score("thompson", fn(X), maximize=False, seed=2).numpy()
    assert any(np.allclose(s, -means[i, :, 0]) for i in range(2))
    with pytest.raises(DataError, match="one output value"):
        thompson_batch(_members(np.zeros((2, 3, 2))), 1)


def test_thompson_on_a_field_through_an_objective():
    # one member with (nearly) noise-free 3-value outputs: picks follow its objective's order
    rng = np.random.default_rng(2)
    means = rng.normal(size=(1, 15, 3))
    X = np.arange(15.0)[:, None]

    def fn(x):
        return GaussianMixture(means, np.full((1, 15, 3), 1e-12))

    idx = select_batch("thompson", fn, X, 4, maximize=True,
                       objective=lambda y: y.max(-1).values)
    np.testing.assert_array_equal(idx, np.argsort(-means[0].max(-1))[:4])

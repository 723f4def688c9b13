"""Initial designs and the stand-in batch selection, checked against their definitions."""

import numpy as np

from choral.acquisition import select_batch
from choral.campaign.acquire import propose
from choral.campaign.design import candidates, initial_design
from choral.distributions import GaussianMixture

BOX = np.array([[-2.0, 2.0], [0.0, 10.0], [5.0, 6.0]])


def test_lhs_has_one_point_per_stratum_in_every_input():
    n = 13
    X = initial_design("lhs", n, BOX, seed=4)
    unit = (X - BOX[:, 0]) / (BOX[:, 1] - BOX[:, 0])
    for j in range(len(BOX)):
        assert sorted(np.floor(unit[:, j] * n).astype(int)) == list(range(n))


def test_sobol_is_balanced_and_seeded():
    X = initial_design("sobol", 16, BOX, seed=1)  # a power of two: balanced in halves
    unit = (X - BOX[:, 0]) / (BOX[:, 1] - BOX[:, 0])
    assert ((unit >= 0) & (unit <= 1)).all()
    assert ((unit < 0.5).sum(axis=0) == 8).all()
    assert not np.array_equal(X, initial_design("sobol", 16, BOX, seed=2))
    np.testing.assert_array_equal(candidates(16, BOX, seed=1), X)


def test_batch_starts_at_the_largest_total_variance_and_is_distinct():
    rng = np.random.default_rng(0)
    C = rng.uniform(size=(50, 2))
    means = rng.normal(size=(3, 50, 2))

    def predictive(X):  # members disagree by a fixed per-candidate spread
        return GaussianMixture(means[:, : len(X)], np.ones_like(means[:, : len(X)]))

    idx = select_batch("variance", predictive, C, 7)
    spread = means.var(axis=0).sum(axis=1)  # epistemic part; the aleatoric part is constant
    assert len(set(idx.tolist())) == 7
    assert idx[0] == np.argmax(spread)  # later picks are spread by fantasies, not top-k
    np.testing.assert_array_equal(propose("variance", predictive, C, 7, best=0.0,
                                          maximize=False, seed=0), C[idx])


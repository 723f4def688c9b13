"""Rollout scores against hand computations and closed forms."""

import math

import numpy as np
import pytest
import torch
from scipy.stats import norm

from choral.distributions import GaussianMixture
from choral.errors import DataError
from choral.evaluation.rollout import (
    correlation_per_step,
    correlation_time,
    crps_per_step,
    relative_l2_per_step,
    rollout_scores,
    spread_scale,
    spread_skill_per_step,
)


def test_relative_l2_per_step_by_hand():
    y = torch.ones(2, 3, 1, 4)
    mean = y * torch.tensor([1.0, 1.5, 3.0]).reshape(1, 3, 1, 1)
    np.testing.assert_allclose(relative_l2_per_step(mean, y).numpy(), [0.0, 0.5, 2.0])


def test_correlation_and_its_time_from_an_orthogonal_error():
    # mean_t = v + c_t w with w orthogonal to v, both centred, |w| = |v|: corr = 1/sqrt(1 + c^2)
    v = torch.tensor([1.0, -1.0, 1.0, -1.0])
    w = torch.tensor([1.0, 1.0, -1.0, -1.0])
    c = torch.tensor([0.0, 0.5, 0.7, 0.8, 0.1], dtype=torch.float64)  # 0.781 < 0.8 at step 3
    y = v.expand(1, 5, 4)
    mean = (v + c[:, None] * w)[None]
    np.testing.assert_allclose(correlation_per_step(mean, y).numpy(), (1 + c**2).rsqrt().numpy(),
                               rtol=1e-12)
    assert correlation_time(mean, y) == 3  # the first drop counts, not the later recovery
    assert correlation_time(mean, y, threshold=0.7) == 5  # never below: T
    np.testing.assert_allclose(correlation_per_step(3 * y + 2, y).numpy(), 1.0)  # affine


def test_spread_skill_is_one_for_exchangeable_members_and_closed_form_otherwise():
    g = torch.Generator().manual_seed(0)
    s, n = 3, 20000
    y = torch.randn(n, 2, 5, generator=g, dtype=torch.float64)
    members = torch.randn(s, n, 2, 5, generator=g, dtype=torch.float64)
    ratio = spread_skill_per_step(members, y)
    assert torch.all((ratio - 1).abs() < 0.02)  # without (s+1)/s it would be sqrt(3/4) = 0.87
    # members N(0, 1/4), truth N(0, 1): sqrt(4/3) * 0.5 / sqrt(1 + 1/12)
    ratio = spread_skill_per_step(0.5 * members, y)
    assert torch.all((ratio - math.sqrt(4 / 3) * 0.5 / math.sqrt(13 / 12)).abs() < 0.01)


def test_spread_scale_makes_the_first_half_ratio_one():
    g = torch.Generator().manual_seed(4)
    s, n, T = 4, 500, 8
    y = torch.randn(n, T, 6, generator=g, dtype=torch.float64)
    noise = torch.randn(s, n, T, 6, generator=g, dtype=torch.float64)
    members = y + 0.3 * noise  # member mean correlates with y at 0.99 ...
    members[:, :, 4:] = noise[:, :, 4:]  # ... until step 4: correlation time 4, window 2
    assert correlation_time(members.mean(0), y) == 4
    a = spread_scale(members, y)
    mean = members.mean(0)
    ratio = spread_skill_per_step(mean + a * (members - mean), y)
    assert float(ratio[:2].log().mean().exp()) == pytest.approx(1.0, abs=1e-12)
    # members whose errors are independent of the truth: spread sqrt(s) x the mean's error
    assert 1 / a == pytest.approx(math.sqrt((s + 1) / s) * math.sqrt(s), rel=0.05)
    members[:, :, 2:4] *= 3.0  # steps after the window do not count
    assert spread_scale(members, y) == pytest.approx(a, rel=1e-12)


def test_crps_per_step_matches_the_gaussian_closed_form():
    rng = np.random.default_rng(1)
    mu, sd, y = rng.normal(size=(3, 4, 2)), rng.uniform(0.5, 2, size=(3, 4, 2)), \
        rng.normal(size=(4, 3, 2))
    preds = [GaussianMixture(mu[t][None], sd[t][None] ** 2) for t in range(3)]
    z = (y.transpose(1, 0, 2) - mu) / sd
    exact = (sd * (z * (2 * norm.cdf(z) - 1) + 2 * norm.pdf(z) - 1 / np.sqrt(np.pi))).mean((1, 2))
    np.testing.assert_allclose(crps_per_step(preds, y).numpy(), exact, rtol=1e-6)
    scores = rollout_scores(torch.as_tensor(mu).expand(2, 3, 4, 2).movedim(1, 2), preds, y)
    assert scores["crps"] == pytest.approx(exact.tolist(), rel=1e-6)
    assert len(scores["relative_l2"]) == 3 and isinstance(scores["correlation_time"], int)


def test_errors():
    with pytest.raises(DataError, match="same shape"):
        relative_l2_per_step(torch.zeros(2, 3, 4), torch.zeros(2, 3, 5))
    with pytest.raises(DataError, match="s >= 2"):
        spread_skill_per_step(torch.zeros(1, 2, 3, 4), torch.zeros(2, 3, 4))
    with pytest.raises(DataError, match="T = 1"):
        crps_per_step([GaussianMixture(torch.zeros(1, 2, 1), torch.ones(1, 2, 1))],
                      torch.zeros(2, 3, 1))

"""Cascade candidate scoring in campaigns: top_fraction = 1 is the plain campaign, a small
fraction spends the computed forward passes and picks among the re-scored top candidates, and
a cascade campaign resumes after a crash as if it never stopped."""

import math

import numpy as np
import pytest

from choral.acquisition import score, select_batch
from choral.campaign.config import CampaignConfig
from choral.campaign.design import candidates
from choral.campaign.ledger import Ledger
from choral.campaign.runner import round_seed, run_campaign
from choral.errors import ConfigError
from choral.surrogate import Surrogate

SURROGATE = {"model": {"hidden": [16]}, "train": {"members": 4, "epochs": 15}}


def config(**kw):
    values = {"bounds": [[0.0, 1.0], [0.0, 1.0]], "initial": 5, "batch_size": 3, "budget": 11,
              "candidates": 64, "surrogate": SURROGATE, "seed": 3, **kw}
    return CampaignConfig.from_dict(values)


def smooth(X):
    """(1, 2) -> (1, 1)."""
    return np.sin(3 * X[:, :1]) + X[:, 1:] ** 2


def ledger(workdir):
    with Ledger(workdir / "ledger.db") as led:
        return led.table(), led.rounds()


class Crash(BaseException):
    """Stands in for kill -9."""


def test_top_fraction_one_is_the_plain_campaign(tmp_path):
    run_campaign(config(), tmp_path / "plain", simulator=smooth)
    run_campaign(config(cascade_first=1, cascade_top_fraction=1.0), tmp_path / "cascade",
                 simulator=smooth)
    (plain, plain_rounds), (casc, casc_rounds) = ledger(tmp_path / "plain"), \
        ledger(tmp_path / "cascade")
    assert casc == plain  # the same batches, bit for bit
    for a, b in zip(plain_rounds[1:], casc_rounds[1:], strict=True):
        assert a["scores"]["member_pass_fraction"] == b["scores"]["member_pass_fraction"] == 1.0
        assert a["scores"]["max_std"] == b["scores"]["max_std"]


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """An uninterrupted campaign screening with 1 of 4 members, re-scoring the top 25%."""
    d = tmp_path_factory.mktemp("small")
    cfg = config(cascade_first=1, cascade_top_fraction=0.25)
    run_campaign(cfg, d, simulator=smooth)
    return cfg, d


def test_small_top_fraction_passes_and_batch(small):
    cfg, d = small
    rows, rounds = ledger(d)
    q, s, first, top = 64, 4, 1, math.ceil(0.25 * 64)
    for info in rounds[1:]:
        assert info["scores"]["member_passes"] == first * q + (s - first) * top  # 112
        assert info["scores"]["member_pass_fraction"] == pytest.approx(112 / 256, abs=0)
        r, seed = info["round"], round_seed(cfg.seed, info["round"])
        model = Surrogate.load(d / info["model"])
        C = candidates(q, cfg.box(), seed)
        X = np.array([row[3] for row in rows if row[1] < r])
        Y = np.array([row[4] for row in rows if row[1] < r])
        # a second route: the first member as its own surrogate, calibrated like the model
        one = model.with_params({n: v[:1] for n, v in model._check_fitted().items()})
        cheap = score("variance", model.apply_calibration(one.predict(C, calibrated=False)))
        chosen = np.sort(np.argsort(-cheap.numpy(), kind="stable")[:top])
        idx = select_batch("variance", model.predict, C[chosen], 3, best=float(Y[:, 0].min()),
                           seed=seed)
        batch = np.array([row[3] for row in rows if row[1] == r])
        np.testing.assert_allclose(batch, C[chosen][idx], rtol=0, atol=0)
        assert len(X) == 5 + 3 * (r - 1)


def test_cascade_campaign_resumes(small, tmp_path):
    cfg, d = small
    count = {"n": 0}

    def crash_at_7(X):
        count["n"] += 1
        if count["n"] == 7:
            raise Crash
        return smooth(X)

    with pytest.raises(Crash):
        run_campaign(cfg, tmp_path, simulator=crash_at_7)
    summary = run_campaign(cfg, tmp_path, simulator=smooth)
    assert summary["recovered"] == {"running": 1, "corrupt": 0}
    assert ledger(tmp_path) == ledger(d)


@pytest.mark.parametrize("kw", [{"cascade_first": 5}, {"cascade_first": 0},
                                {"cascade_first": 2, "cascade_top_fraction": 0.0}])
def test_cascade_config_errors(kw):
    with pytest.raises(ConfigError, match="cascade_"):
        config(**kw)

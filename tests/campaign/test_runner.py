"""The campaign loop: budget, failures, distinct batches, seeds, and resuming after a crash in
each state (the crash is a BaseException raised inside the run, which stops the process's work
exactly where a kill would, leaving the ledger as it was committed)."""

import numpy as np
import pytest

from choral.campaign.config import CampaignConfig
from choral.campaign.ledger import INLINE_MAX, Ledger
from choral.campaign.runner import run_campaign
from choral.errors import CampaignError, ConfigError

TINY = {"model": {"hidden": [16]}, "train": {"members": 2, "epochs": 20}}


def config(**kw):
    values = {"bounds": [[0.0, 1.0], [0.0, 1.0]], "initial": 5, "batch_size": 3, "budget": 11,
              "candidates": 64, "surrogate": TINY, "seed": 7, **kw}
    return CampaignConfig.from_dict(values)


def smooth(X):
    """(1, 2) -> (1, 1)."""
    return np.sin(3 * X[:, :1]) + X[:, 1:] ** 2


def wide(X):
    """(1, 2) -> (1, INLINE_MAX + 4): an output large enough to go to a file."""
    return smooth(X) * np.linspace(1, 2, INLINE_MAX + 4)


class Crash(BaseException):
    """Stands in for kill -9: not an Exception, so nothing records it."""


def table(workdir):
    """The ledger as comparable rows: (id, round, state, x, y, error)."""
    with Ledger(workdir / "ledger.db") as led:
        return led.table()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted campaign with file outputs."""
    d = tmp_path_factory.mktemp("ref")
    summary = run_campaign(config(), d, simulator=wide)
    return d, summary


def test_reference_spends_the_budget_in_rounds(reference):
    d, summary = reference
    assert summary["counts"] == {"pending": 0, "running": 0, "done": 11, "failed": 0}
    assert summary["rounds"] == 3 and summary["stop"] == "budget of 11 runs spent"
    rows = table(d)
    assert [r[1] for r in rows] == [0] * 5 + [1] * 3 + [2] * 3
    for _, _, _, x, y, _ in rows:  # every output is the simulator's at its input
        np.testing.assert_allclose(y, wide(np.array([x]))[0])
    X = np.array([r[3] for r in rows])
    assert len(np.unique(X, axis=0)) == len(X)  # batch points (and all points) are distinct
    assert (d / "models/round_2/weights.safetensors").is_file()


def test_reproducible_from_the_seed(reference, tmp_path):
    run_campaign(config(), tmp_path / "a", simulator=wide)
    assert table(tmp_path / "a") == table(reference[0])
    run_campaign(config(seed=8), tmp_path / "b", simulator=wide)
    assert table(tmp_path / "b")[0][3] != table(reference[0])[0][3]


def test_running_again_repeats_nothing(reference):
    d, _ = reference
    before = table(d)
    summary = run_campaign(config(), d, simulator=wide)
    assert table(d) == before and summary["recovered"] == {"running": 0, "corrupt": 0}


def crash_at(call: int, fn=wide, where: str = "simulator"):
    """A simulator, or an on_run hook, that raises Crash on its ``call``-th call."""
    count = {"n": 0}

    def hook(arg):
        count["n"] += 1
        if count["n"] == call:
            raise Crash
        return fn(arg) if where == "simulator" else None

    return hook


@pytest.mark.parametrize("call", [3, 7])
def test_resume_after_crash_while_running(reference, tmp_path, call):
    with pytest.raises(Crash):
        run_campaign(config(), tmp_path, simulator=crash_at(call))
    counts = Ledger(tmp_path / "ledger.db").counts()
    assert counts["running"] == 1 and counts["done"] == call - 1
    summary = run_campaign(config(), tmp_path, simulator=wide)
    assert summary["recovered"] == {"running": 1, "corrupt": 0}
    assert table(tmp_path) == table(reference[0])


def test_resume_after_crash_with_runs_pending(reference, tmp_path):
    with pytest.raises(Crash):  # the crash comes right after run 6 was recorded done
        run_campaign(config(), tmp_path, simulator=wide,
                     on_run=crash_at(6, where="hook"))
    counts = Ledger(tmp_path / "ledger.db").counts()
    assert counts == {"pending": 2, "running": 0, "done": 6, "failed": 0}
    calls = []
    run_campaign(config(), tmp_path, simulator=lambda X: calls.append(X) or wide(X))
    assert len(calls) == 5  # the two pending runs and the last round; no done run repeated
    assert table(tmp_path) == table(reference[0])


def test_resume_after_half_written_output(reference, tmp_path):
    with pytest.raises(Crash):
        run_campaign(config(), tmp_path, simulator=crash_at(4))
    f = tmp_path / "outputs/run_2.npy"
    f.write_bytes(f.read_bytes()[:40])  # run 2 is done but its file is torn
    summary = run_campaign(config(), tmp_path, simulator=wide)
    assert summary["recovered"] == {"running": 1, "corrupt": 1}
    assert table(tmp_path) == table(reference[0])


def test_failures_are_recorded_and_the_campaign_goes_on(tmp_path):
    def flaky(X):
        if X[0, 0] > 0.6:
            raise RuntimeError(f"no convergence at {X[0, 0]:.2f}")
        return smooth(X)

    summary = run_campaign(config(), tmp_path, simulator=flaky)
    c = summary["counts"]
    assert c["failed"] >= 1 and c["done"] + c["failed"] == 11 and c["pending"] == 0
    led = Ledger(tmp_path / "ledger.db")
    for r in led.runs("failed"):
        assert r.x[0] > 0.6 and r.error == f"RuntimeError: no convergence at {r.x[0]:.2f}"
    assert all(r.x[0] <= 0.6 for r in led.runs("done"))


def test_stopping_rules(tmp_path):
    s = run_campaign(config(stop={"max_rounds": 1}), tmp_path / "a", simulator=smooth)
    assert s["stop"] == "max_rounds = 1 reached" and s["counts"]["done"] == 8
    s = run_campaign(config(stop={"target_std": 1e6}), tmp_path / "b", simulator=smooth)
    assert s["stop"].startswith("largest predictive std") and s["counts"]["done"] == 5
    again = run_campaign(config(stop={"target_std": 1e6}), tmp_path / "b", simulator=smooth)
    assert again["stop"] == s["stop"] and again["counts"] == s["counts"]


def test_all_failing_stops_with_a_reason(tmp_path):
    s = run_campaign(config(), tmp_path, simulator=lambda X: 1 / 0)
    assert s["stop"].startswith("fewer than 2 runs succeeded") and s["counts"]["failed"] == 5


def test_another_config_in_the_same_workdir_is_refused(reference):
    with pytest.raises(CampaignError, match="different config"):
        run_campaign(config(seed=99), reference[0], simulator=wide)


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="bounds are required"):
        CampaignConfig.from_dict({"simulator": {"command": "true"}})
    with pytest.raises(ConfigError, match=r"bounds\[0\] = \[1.0, 0.0\]"):
        config(bounds=[[1.0, 0.0]])
    with pytest.raises(ConfigError, match="surrogate.*unknown key 'trian'"):
        config(surrogate={"trian": {}})
    with pytest.raises(ConfigError, match="acquisition"):
        config(acquisition="random")


def test_a_second_run_on_the_same_workdir_is_refused(tmp_path):
    def nested(X):  # a second campaign started while the first is inside a run
        with pytest.raises(CampaignError, match="another `choral campaign run` is working"):
            run_campaign(config(), tmp_path, simulator=smooth)
        nested.checked = True
        return smooth(X)

    run_campaign(config(budget=5), tmp_path / "other", simulator=smooth)  # other dirs are free
    run_campaign(config(budget=5), tmp_path, simulator=nested)
    assert nested.checked
    led = Ledger(tmp_path / "ledger.db")
    assert [r.attempts for r in led.runs()] == [1] * 5


def test_warm_refits_continue_from_the_last_round_and_resume(tmp_path):
    warm = config(refit="warm", warm_fraction=0.5)
    run_campaign(warm, tmp_path / "ref", simulator=smooth)
    models = tmp_path / "ref" / "models"
    norms = [(models / f"round_{r}" / "normaliser.json").read_text() for r in (1, 2)]
    assert norms[0] == norms[1]  # round 2 kept round 1's units: it started from its members
    assert '"epochs": 10' in (models / "round_2" / "config.json").read_text()
    assert '"epochs": 20' in (models / "round_1" / "config.json").read_text()
    with pytest.raises(Crash):
        run_campaign(warm, tmp_path / "b", simulator=crash_at(9, smooth))
    run_campaign(warm, tmp_path / "b", simulator=smooth)
    assert table(tmp_path / "b") == table(tmp_path / "ref")


@pytest.mark.parametrize("ensemble", ["laplace", "prior"])
def test_thompson_campaign_with_posterior_members(tmp_path, ensemble):
    surrogate = {"model": {"hidden": [16]},
                 "train": {"members": 2, "epochs": 20, "ensemble": ensemble},
                 "posterior": {"samples": 4}}
    run_campaign(config(acquisition="thompson", surrogate=surrogate), tmp_path,
                 simulator=smooth)
    rows = table(tmp_path)
    assert len(rows) == 11 and all(r[2] == "done" for r in rows)
    X = np.array([r[3] for r in rows])
    assert len(np.unique(X, axis=0)) == len(X)


def field(X):
    """(n, 2) -> (n, 5): a small 'field' of five values per run."""
    return np.sin(3 * X[:, :1] + np.arange(5)) + X[:, 1:] ** 2


def test_field_objective_campaign_acts_on_the_misfit(tmp_path, acquisition="thompson"):
    from choral.acquisition import select_batch
    from choral.acquisition.objectives import misfit
    from choral.campaign.design import candidates
    from choral.campaign.runner import round_seed
    from choral.surrogate import Surrogate

    target = field(np.array([[0.3, 0.6]]))[0]
    cfg = config(acquisition=acquisition, objective="misfit", target=target.tolist())
    run_campaign(cfg, tmp_path, simulator=field)
    rows = table(tmp_path)
    X, Y = np.array([r[3] for r in rows]), np.array([r[4] for r in rows])
    J = ((Y - target) ** 2).mean(1) / (target**2).mean()  # the misfit, in numpy
    with Ledger(tmp_path / "ledger.db") as led:
        rounds = led.rounds()
    for r in (1, 2):  # round r fitted on the runs before it; its best is their least misfit
        before = np.array([row[1] for row in rows]) < r
        assert rounds[r]["scores"]["best"] == pytest.approx(J[before].min(), rel=1e-12)
        # the batch is what select_batch picks with the misfit objective from that model
        model = Surrogate.load(tmp_path / "models" / f"round_{r}")
        C = candidates(cfg.candidates, cfg.box(), round_seed(cfg.seed, r))
        idx = select_batch(acquisition, model.predict, C, 3, best=float(J[before].min()),
                           seed=round_seed(cfg.seed, r), objective=misfit(target))
        np.testing.assert_array_equal(X[np.array([row[1] for row in rows]) == r], C[idx])


def test_misfit_needs_a_target():
    with pytest.raises(ConfigError, match="target go together"):
        config(objective="misfit")
    with pytest.raises(ConfigError, match="target go together"):
        config(objective="maximum", target=[1.0])

"""The campaign ledger: its state machine, output files and crash recovery (real SQLite)."""

import itertools
import sqlite3

import numpy as np
import pytest

from choral.campaign.ledger import INLINE_MAX, STATES, Ledger, sha256
from choral.errors import CampaignError

# Written out by hand from the issue, independently of ledger.TRANSITIONS.
LEGAL = {("pending", "running"), ("running", "done"), ("running", "failed"),
         ("running", "pending"), ("done", "pending")}


@pytest.fixture
def ledger(tmp_path):
    led = Ledger(tmp_path / "ledger.db")
    yield led
    led.close()


def _put_in(led: Ledger, state: str) -> int:
    """A fresh run brought into ``state`` through legal steps."""
    (run_id,) = led.add_round(len(led.rounds()), np.zeros((1, 2)))
    if state != "pending":
        led.start(run_id)
    if state == "done":
        led.finish(run_id, np.ones(1))
    if state == "failed":
        led.fail(run_id, "boom")
    return run_id


def _move(led: Ledger, run_id: int, new: str) -> None:
    led._move(run_id, new)


@pytest.mark.parametrize(("old", "new"), list(itertools.product(STATES, STATES)))
def test_transitions_legal_or_raise(ledger, old, new):
    run_id = _put_in(ledger, old)
    if (old, new) in LEGAL:
        _move(ledger, run_id, new)
        assert ledger.runs()[0].state == new
    else:
        with pytest.raises(CampaignError, match=f"cannot go from {old} to {new}"):
            _move(ledger, run_id, new)
        assert ledger.runs()[0].state == old  # the failed transition changed nothing


def test_unknown_run_and_wal_mode(ledger):
    with pytest.raises(CampaignError, match="no run with id 99"):
        ledger.start(99)
    mode = ledger.db.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_outputs_inline_and_in_files_round_trip(ledger, tmp_path):
    small, large = np.arange(3.0), np.linspace(0, 1, INLINE_MAX + 5).reshape(-1, 1)
    a, b = ledger.add_round(0, np.array([[0.0], [1.0]]))
    for run_id, y in ((a, small), (b, large)):
        ledger.start(run_id)
        ledger.finish(run_id, y)
    runs = ledger.runs("done")
    np.testing.assert_array_equal(runs[0].y, small)
    np.testing.assert_array_equal(runs[1].y, large)
    path, checksum = ledger.db.execute("SELECT path, checksum FROM runs WHERE id = ?",
                                       (b,)).fetchone()
    assert path == f"outputs/run_{b}.npy" and checksum == sha256(tmp_path / path)
    assert ledger.db.execute("SELECT path FROM runs WHERE id = ?", (a,)).fetchone()[0] is None
    other = Ledger(tmp_path / "ledger.db")  # a second connection sees the commits
    np.testing.assert_array_equal(other.runs("done")[1].y, large)
    other.close()


def test_data_stacks_done_runs_in_id_order(ledger):
    ids = ledger.add_round(0, np.array([[0.0], [1.0], [2.0]]))
    for run_id in reversed(ids):
        ledger.start(run_id)
    ledger.finish(ids[2], np.array([20.0]))
    ledger.fail(ids[1], "boom")
    ledger.finish(ids[0], np.array([0.0]))
    X, Y = ledger.data()
    np.testing.assert_array_equal(X, [[0.0], [2.0]])
    np.testing.assert_array_equal(Y, [[0.0], [20.0]])


def test_recover_in_flight_and_half_written(ledger, tmp_path):
    ids = ledger.add_round(0, np.arange(8.0).reshape(4, 2))
    y = np.arange(INLINE_MAX + 1.0)
    for run_id in ids[:3]:
        ledger.start(run_id)
    ledger.finish(ids[0], y)
    ledger.finish(ids[1], y)  # ids[2] stays running: the crash came while it ran
    f = tmp_path / f"outputs/run_{ids[1]}.npy"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])  # a half-written output
    with pytest.raises(CampaignError, match=f"output of run {ids[1]}.*checksum"):
        ledger.runs("done")
    assert ledger.recover() == {"running": 1, "corrupt": 1}
    assert [r.state for r in ledger.runs()] == ["done", "pending", "pending", "pending"]
    assert ledger.recover() == {"running": 0, "corrupt": 0}  # idempotent
    np.testing.assert_array_equal(ledger.runs("done")[0].y, y)


def test_missing_output_file_is_recovered(ledger, tmp_path):
    (run_id,) = ledger.add_round(0, np.zeros((1, 1)))
    ledger.start(run_id)
    ledger.finish(run_id, np.zeros(INLINE_MAX + 1))
    (tmp_path / f"outputs/run_{run_id}.npy").unlink()
    assert ledger.recover()["corrupt"] == 1
    assert ledger.counts() == {"pending": 1, "running": 0, "done": 0, "failed": 0}


def test_round_insert_is_all_or_nothing(ledger):
    ledger.add_round(0, np.zeros((2, 1)))
    with pytest.raises(sqlite3.IntegrityError):
        ledger.add_round(0, np.zeros((3, 1)))  # the same round again: rolled back whole
    assert sum(ledger.counts().values()) == 2 and len(ledger.rounds()) == 1


def test_bind_refuses_another_campaign(ledger):
    ledger.bind("config", {"seed": 0})
    ledger.bind("config", {"seed": 0})
    with pytest.raises(CampaignError, match="different config"):
        ledger.bind("config", {"seed": 1})
    assert ledger.meta("config") == {"seed": 0}

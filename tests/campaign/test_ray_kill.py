"""SIGKILL of a campaign driver on the Ray backend mid-campaign, then a resume (issue 13).

``choral campaign run --backend ray`` runs in a subprocess (its own session, its own local Ray
runtime under a private temp dir) against an importable simulator slow enough (0.3 s a run) to
be caught mid-campaign. Once the ledger shows finished runs and runs in flight, the driver gets
SIGKILL, as from the OOM killer or ``kill -9``. The test then checks that:

* the Ray processes started for the driver that run or schedule simulations (workers, raylet,
  GCS) die with it on their own, so no stale simulation races the resumed one. Ray's dashboard
  and runtime-env agents can outlive it for a minute or more (they try to report the raylet's
  death to the dead GCS): that is Ray's behaviour, not choral's, so the test just kills them;
* the same command run again takes the workdir (no stale lock), puts the in-flight runs back to
  pending and runs them again (a second attempt), re-runs none of the finished ones, whose rows
  and output files stay as they were, and spends the budget;
* the final ledger (ids, rounds, states, inputs, outputs, errors) and the round scores equal
  those of the same campaign run uninterrupted in process: on Ray too, a resume loses,
  duplicates and changes nothing.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from choral.campaign.config import CampaignConfig
from choral.campaign.ledger import Ledger, sha256
from choral.campaign.runner import run_campaign

ray = pytest.importorskip("ray")

BUDGET = 9
WAIT = 90.0  # seconds any one phase may take before the test gives up
AGENTS = ("ray::DashboardAgent", "ray::RuntimeEnvAgent")

SIMULATOR = '''
"""(1, 2) -> (1, 20): slow, logs each call, fails on part of the box."""
import json, os, time
import numpy as np

DELAY = float(os.environ.get("SLOW_SIM_DELAY", "0"))


def f(X):
    time.sleep(DELAY)
    log = os.environ.get("SLOW_SIM_LOG")
    if log:
        with open(log, "a") as fh:
            fh.write(json.dumps(X[0].tolist()) + "\\n")
    if X[0, 1] > 0.85:
        raise ValueError("outside the solver's range")
    return (np.sin(3 * X[:, :1]) + X[:, 1:] ** 2) * np.linspace(1, 2, 20)
'''

CAMPAIGN = f"""
seed = 5
bounds = [[0.0, 1.0], [0.0, 1.0]]
initial = 6
batch_size = 3
budget = {BUDGET}
candidates = 64

[simulator]
function = "choral_slow_sim:f"

[surrogate]
model = {{ hidden = [16] }}
train = {{ members = 2, epochs = 20 }}
"""


# -- processes ----------------------------------------------------------------------------------
def session(sid: int) -> dict[int, str]:
    """Live (not zombie) processes of session ``sid``: pid -> command name (Linux /proc)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmd = (entry / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
        except (OSError, ValueError):
            continue  # not a process, or gone meanwhile
        state, _, _, sess = stat.rsplit(")", 1)[1].split()[:4]
        if int(sess) == sid and state != "Z":
            found[int(entry.name)] = cmd or stat.split("(", 1)[1].rsplit(")", 1)[0]
    return found


def kill_session(sid: int) -> None:
    """SIGKILL whatever is left of session ``sid`` and wait until it is gone."""
    for pid in session(sid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    wait_for(lambda: not session(sid), 15.0, f"processes of session {sid} to die")


def wait_for(ready, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert time.monotonic() < deadline, f"timed out after {timeout:g} s waiting for {what}"
        time.sleep(0.05)


@pytest.fixture
def sessions():
    """Session ids of the drivers started; whatever is left of them is killed at the end."""
    sids: list[int] = []
    yield sids
    for sid in sids:
        kill_session(sid)


@pytest.fixture
def ray_tmp():
    """A short private RAY_TMPDIR (Ray's socket paths must stay under 107 characters)."""
    path = tempfile.mkdtemp(prefix="choral-ray-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


# -- the driver ---------------------------------------------------------------------------------
def write_campaign(d: Path) -> Path:
    (d / "choral_slow_sim.py").write_text(SIMULATOR)
    (d / "campaign.toml").write_text(CAMPAIGN)
    return d / "campaign.toml"


def start_driver(d: Path, ray_tmp: str, name: str) -> subprocess.Popen:
    """``choral campaign run --backend ray`` in its own session; output in ``d / name.*``."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    path = [str(d), *filter(None, [env.get("PYTHONPATH")])]  # the simulator is importable
    env.update(PYTHONPATH=os.pathsep.join(path),
               SLOW_SIM_DELAY="0.3", SLOW_SIM_LOG=str(d / f"{name}.calls"),
               OMP_NUM_THREADS="1",  # the thread count of the in-process reference fit
               RAY_TMPDIR=ray_tmp, RAY_USAGE_STATS_ENABLED="0")
    cmd = [sys.executable, "-m", "choral.cli", "campaign", "run", "campaign.toml",
           "--workdir", "wd", "--backend", "ray", "--json"]
    with open(d / f"{name}.out", "w") as out, open(d / f"{name}.err", "w") as err:
        return subprocess.Popen(cmd, cwd=d, env=env, stdout=out, stderr=err,
                                start_new_session=True)


def counts(db: Path) -> dict[str, int]:
    """Runs per state, read-only; {} while the ledger or its schema is not there yet."""
    try:
        con = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, timeout=5.0)
    except sqlite3.Error:
        return {}
    try:
        return dict(con.execute("SELECT state, COUNT(*) FROM runs GROUP BY state"))
    except sqlite3.Error:
        return {}
    finally:
        con.close()


def mid_campaign(driver: subprocess.Popen, d: Path) -> bool:
    assert driver.poll() is None, f"driver exited early:\n{(d / 'killed.err').read_text()}"
    c = counts(d / "wd" / "ledger.db")
    return c.get("done", 0) + c.get("failed", 0) >= 2 and c.get("running", 0) >= 1


def snapshot(wd: Path) -> dict:
    """The ledger's rows, attempts and output-file hashes, keyed by run id."""
    with Ledger(wd / "ledger.db") as led:
        runs, rows = led.runs(), led.table()
    return {"rows": {row[0]: row for row in rows},
            "attempts": {r.id: r.attempts for r in runs},
            "state": {r.id: r.state for r in runs},
            "files": {p.name: sha256(p) for p in (wd / "outputs").glob("*.npy")}}


def calls(path: Path) -> list[list[float]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def reference(d: Path, monkeypatch) -> tuple[dict, list[tuple], list[dict]]:
    """The same campaign uninterrupted, in process, without the delay."""
    monkeypatch.delenv("SLOW_SIM_DELAY", raising=False)
    monkeypatch.delenv("SLOW_SIM_LOG", raising=False)
    spec = importlib.util.spec_from_file_location("choral_slow_sim_ref",
                                                  d / "choral_slow_sim.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    summary = run_campaign(CampaignConfig.from_toml(d / "campaign.toml"), d / "ref",
                           simulator=module.f)
    with Ledger(d / "ref" / "ledger.db") as led:
        return summary, led.table(), led.rounds()


# -- the test -----------------------------------------------------------------------------------
def kill_mid_campaign(d: Path, ray_tmp: str, sessions: list[int]) -> None:
    driver = start_driver(d, ray_tmp, "killed")
    sessions.append(driver.pid)
    wait_for(lambda: mid_campaign(driver, d), WAIT, "finished and in-flight runs")
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    # What runs or schedules simulations dies with the driver (Ray's kernel fate-sharing).
    wait_for(lambda: set(session(driver.pid).values()) <= set(AGENTS), 20.0,
             f"Ray's workers, raylet and GCS to die with the driver: {session(driver.pid)}")
    kill_session(driver.pid)


def resume(d: Path, ray_tmp: str, sessions: list[int]) -> dict:
    driver = start_driver(d, ray_tmp, "resumed")
    sessions.append(driver.pid)
    try:
        driver.wait(timeout=WAIT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the resumed campaign did not finish:\n{(d / 'resumed.err').read_text()}")
    assert driver.returncode == 0, (d / "resumed.err").read_text()
    wait_for(lambda: not session(driver.pid), 20.0,  # RayBackend.close() stopped its runtime
             f"the resumed driver's Ray runtime to stop: {session(driver.pid)}")
    return json.loads((d / "resumed.out").read_text())


def test_sigkill_of_the_ray_driver_then_resume(tmp_path, ray_tmp, sessions, monkeypatch):
    write_campaign(tmp_path)
    wd = tmp_path / "wd"
    kill_mid_campaign(tmp_path, ray_tmp, sessions)
    at_kill = snapshot(wd)
    finished = [i for i, s in at_kill["state"].items() if s in ("done", "failed")]
    in_flight = [i for i, s in at_kill["state"].items() if s == "running"]
    assert len(finished) >= 2 and in_flight and at_kill["files"]

    summary = resume(tmp_path, ray_tmp, sessions)
    ref_summary, ref_table, ref_rounds = reference(tmp_path, monkeypatch)
    assert summary["recovered"] == {"running": len(in_flight), "corrupt": 0}
    assert summary["counts"] == ref_summary["counts"]
    assert sum(summary["counts"].values()) == BUDGET and summary["counts"]["failed"] >= 1
    assert summary["stop"] == ref_summary["stop"] == f"budget of {BUDGET} runs spent"

    final = snapshot(wd)
    assert list(final["rows"]) == list(range(1, BUDGET + 1))  # none lost, none twice
    assert list(final["rows"].values()) == ref_table  # the uninterrupted campaign's ledger
    with Ledger(wd / "ledger.db") as led:
        assert [r["scores"] for r in led.rounds()] == [r["scores"] for r in ref_rounds]
    for i in finished:  # finished before the kill: kept as they were, outputs untouched
        assert final["rows"][i] == at_kill["rows"][i]
    assert {k: final["files"][k] for k in at_kill["files"]} == at_kill["files"]
    assert final["attempts"] == {i: 2 if i in in_flight else 1 for i in final["rows"]}
    rerun = calls(tmp_path / "resumed.calls")  # what the resumed driver simulated
    assert len(rerun) == BUDGET - len(finished)
    assert not [x for x in rerun if x in [final["rows"][i][3] for i in finished]]
    assert all(final["rows"][i][3] in rerun for i in in_flight)

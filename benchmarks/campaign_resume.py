"""Kill a running campaign with SIGKILL at random moments, resume it, and check the ledger.

    python benchmarks/campaign_resume.py [--kills 25] [--seed 0] [--budget 100] [--sleep 0.1]

An uninterrupted reference campaign runs first (a subprocess of ``choral campaign run``). Then the
same campaign is started, killed a random delay after its first simulator call (so the kill lands
in a run, a fit or a ledger write, not in start-up), started again, ... ``--kills`` times, and
finally run to the end. Checked: the final ledger equals the reference run for run (ids, rounds,
states, inputs, outputs bit for bit); every output file passes its checksum; no run that was done
at a kill was ever evaluated again (from the simulator's own call log). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from choral.campaign.ledger import Ledger, sha256  # noqa: E402
from choral.simulators import SIMULATORS  # noqa: E402

CAMPAIGN = """
seed = {seed}
bounds = {bounds}
design = "lhs"
initial = 8
batch_size = 4
budget = {budget}
candidates = 256
[simulator]
function = "_campaign_sim:slow_borehole"
[surrogate]
model = {{ hidden = [32] }}
train = {{ members = 2, epochs = 50 }}
"""


def command(toml: Path, workdir: Path) -> list[str]:
    return [sys.executable, "-c", "from choral.cli.app import main; main()", "campaign", "run",
            str(toml), "--workdir", str(workdir), "--json"]


def environment(log: Path, sleep: float) -> dict[str, str]:
    path = os.pathsep.join([str(ROOT), str(ROOT / "benchmarks"), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "CHORAL_BENCH_LOG": str(log),
            "CHORAL_BENCH_SLEEP": str(sleep), "OMP_NUM_THREADS": "1"}


def table(workdir: Path) -> list:
    with Ledger(workdir / "ledger.db") as led:
        return led.table()


def snapshot(workdir: Path) -> dict:
    """Ledger counts and done inputs right after a kill (nothing is recovered yet)."""
    if not (workdir / "ledger.db").is_file():
        return {"counts": None, "done": set()}
    with Ledger(workdir / "ledger.db") as led:
        rows = led.db.execute("SELECT state, x FROM runs").fetchall()
        return {"counts": led.counts(), "done": {x for s, x in rows if s == "done"}}


def calls(log: Path) -> list[str]:
    """The simulator's call log as canonical JSON inputs (a line torn by a kill is None)."""
    out = []
    for line in log.read_text().splitlines():
        try:
            out.append(json.dumps(json.loads(line)))
        except json.JSONDecodeError:
            out.append(None)
    return out


def started(proc: subprocess.Popen, log: Path, before: int, limit: float = 60.0) -> bool:
    """Wait until ``proc`` makes its first simulator call (past start-up and recovery)."""
    end = time.perf_counter() + limit
    while time.perf_counter() < end and proc.poll() is None:
        if log.exists() and len(calls(log)) > before:
            return True
        time.sleep(0.02)
    return proc.poll() is None


def files_intact(workdir: Path) -> bool:
    with Ledger(workdir / "ledger.db") as led:
        rows = led.db.execute("SELECT path, checksum FROM runs WHERE path IS NOT NULL").fetchall()
    return all(sha256(workdir / p) == c for p, c in rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=25)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--budget", type=int, default=100, help="simulator runs in the campaign")
    ap.add_argument("--sleep", type=float, default=0.1, help="seconds per simulator run")
    ap.add_argument("--delay", type=float, nargs=2, default=(0.0, 1.5),
                    help="kill this long (uniform, s) after the first simulator call of a start")
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="campaign_resume_"))
    toml = tmp / "campaign.toml"
    bounds = SIMULATORS["borehole"].bounds.tolist()
    toml.write_text(CAMPAIGN.format(seed=args.seed, bounds=bounds,
                                     budget=args.budget))

    start = time.perf_counter()
    ref_log = tmp / "ref_calls.log"
    subprocess.run(command(toml, tmp / "ref"), env=environment(ref_log, args.sleep), check=True,
                   capture_output=True)
    ref_seconds = time.perf_counter() - start

    log, work = tmp / "calls.log", tmp / "killed"
    env = environment(log, args.sleep)
    kills, violations = [], 0
    start = time.perf_counter()
    for _ in range(args.kills):
        before = len(calls(log)) if log.exists() else 0
        proc = subprocess.Popen(command(toml, work), env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        if not started(proc, log, before):  # ran to the end (or died) before its first run
            kills.append({"delay": None, "finished_before_kill": proc.returncode})
            break
        delay = float(rng.uniform(*args.delay))  # counted from its first simulator call
        try:
            proc.wait(delay)
            kills.append({"delay": delay, "finished_before_kill": proc.returncode})
            break
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        snap = snapshot(work)
        kills.append({"delay": delay, "counts": snap["counts"],
                      "log_at_kill": len(calls(log)) if log.exists() else 0,
                      "done": snap["done"]})
    final = subprocess.run(command(toml, work), env=env, capture_output=True, text=True,
                           check=True)
    killed_seconds = time.perf_counter() - start

    log_calls = calls(log)
    for k in kills:  # a run done at a kill must never be evaluated after it
        later = set(log_calls[k.get("log_at_kill", len(log_calls)):])
        violations += len(later & {json.dumps(json.loads(x)) for x in k.get("done", set())})
    ref, got = table(tmp / "ref"), table(work)
    done_x = [json.dumps(r[3]) for r in got if r[2] == "done"]
    in_flight = sum(1 for k in kills if k.get("counts") and k["counts"]["running"])
    result = {
        "benchmark": "campaign_resume", "machine": platform.node(), "cpus": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "kills": sum(1 for k in kills if "finished_before_kill" not in k),
        "kills_with_run_in_flight": in_flight,
        "kills_between_runs": sum(1 for k in kills if k.get("counts") and
                                  not k["counts"]["running"]),
        "kills_before_ledger_existed": sum(1 for k in kills if "counts" in k and
                                           k["counts"] is None),
        "kill_delays_s": [None if k["delay"] is None else round(k["delay"], 2) for k in kills],
        "runs_done": len(done_x), "runs_reference": len(ref),
        "done_runs_unique": len(done_x) == len(set(done_x)),
        "done_runs_re_evaluated": violations,
        "simulator_calls": len(log_calls), "simulator_calls_reference": len(calls(ref_log)),
        "output_files_intact": files_intact(work),
        "ledger_equals_reference": got == ref,
        "final_summary": json.loads(final.stdout),
        "reference_seconds": round(ref_seconds, 1),
        "killed_total_seconds": round(killed_seconds, 1),
    }
    result["passed"] = (result["ledger_equals_reference"] and result["output_files_intact"]
                        and result["done_runs_unique"] and violations == 0)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

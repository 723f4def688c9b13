"""Kill ``choral fit`` with SIGKILL at 10 random moments, rerun it each time, and check that the
saved weights equal those of an uninterrupted fit, bit for bit (issue 13).

Protocol: borehole, 2,000 rows; 5 members of 2 x 64, 1,000 epochs without early stopping (every
epoch counts), checkpoint every 0.5 s. The uninterrupted fit runs first; then the same command
is started and killed after a time drawn uniformly from 1 s to half the time the uninterrupted
fit would still need from the checkpoint's epoch (so kills land in start-up, data loading,
training steps and checkpoint writes alike), 10 times, and finally run to the end; each kill
records where the checkpoint stood. Prints one
JSON object (also written to ``results/resume.json``):

    python benchmarks/resume.py [--kills 10] [--seed 0]
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
import torch
from safetensors.numpy import load_file

from choral.data import save_data
from choral.simulators import simulate

EPOCHS = 1000
CONFIG = f"""
[train]
members = 5
epochs = {EPOCHS}
patience = {EPOCHS}
checkpoint_seconds = 0.5
[model]
hidden = [64, 64]
"""


def command(d: Path, out: Path) -> list[str]:
    return [sys.executable, "-c", "from choral.cli import main; main()", "fit", "--data",
            str(d / "train.npz"), "--out", str(out), "--config", str(d / "fit.toml"), "--json",
            "--quiet"]


def position(checkpoint: Path) -> dict[str, int] | None:
    """Where the checkpoint stands: the epoch and the step within it (None without one)."""
    if not checkpoint.exists():
        return None
    state = torch.load(checkpoint, weights_only=True)["current"]
    return None if state is None else {"epoch": state["epoch"], "step": state["batch"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    d = Path(tempfile.mkdtemp(prefix="choral-resume-"))
    X, Y = simulate("borehole", 2000, seed=0)
    save_data(d / "train.npz", X, Y)
    (d / "fit.toml").write_text(CONFIG)
    start = time.perf_counter()
    subprocess.run(command(d, d / "whole"), check=True, capture_output=True)
    whole_seconds = time.perf_counter() - start
    out, checkpoint = d / "killed", d / "killed.checkpoint"
    kills = []
    for _ in range(args.kills):
        done = (position(checkpoint) or {"epoch": 0})["epoch"] / EPOCHS
        at = float(rng.uniform(1.0, max(2.0, 0.5 * (1 - done) * whole_seconds)))
        proc = subprocess.Popen(command(d, out), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(at)
        if proc.poll() is not None:
            raise SystemExit(f"the fit ended before the kill at {at:.1f} s: lengthen it")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        kills.append({"after_s": round(at, 2), "checkpoint": position(checkpoint)})
        print(json.dumps(kills[-1]), file=sys.stderr)
    start = time.perf_counter()
    done = subprocess.run(command(d, out), check=True, capture_output=True, text=True)
    last_seconds = time.perf_counter() - start
    want, got = load_file(d / "whole/weights.safetensors"), load_file(out / "weights.safetensors")
    result = {
        "benchmark": "resume", "kills": kills,
        "bit_identical": want.keys() == got.keys() and all(np.array_equal(want[k], got[k])
                                                          for k in want),
        "resumed": json.loads(done.stdout)["resumed"],
        "checkpoint_removed": not checkpoint.exists(),
        "uninterrupted_seconds": round(whole_seconds, 1),
        "final_run_seconds": round(last_seconds, 1),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                   f"torch {torch.__version__}",
    }
    text = json.dumps(result, indent=1)
    print(text)
    (Path(__file__).parent / "results/resume.json").write_text(text + "\n")


if __name__ == "__main__":
    main()

"""``choral fit`` killed with SIGKILL and run again resumes from its checkpoint and saves the same
weights, bit for bit, as an uninterrupted fit; a batch job's stderr gets progress lines.

The fits run the real entry point in processes of their own (``kill -9`` needs a process).
``benchmarks/resume.py`` does the same at 10 random moments of a longer fit.
"""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from safetensors.numpy import load_file

from choral.data import save_data
from choral.simulators import simulate

CONFIG = """
[train]
members = 3
epochs = 120
patience = 120
checkpoint_seconds = 0.2
[model]
hidden = [16]
"""


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("resume")
    X, Y = simulate("borehole", 200, seed=0)
    save_data(d / "train.npz", X, Y)
    (d / "fit.toml").write_text(CONFIG)
    return d


def _command(d, out, *extra):
    return [sys.executable, "-c", "from choral.cli import main; main()", "fit", "--data",
            str(d / "train.npz"), "--out", str(out), "--config", str(d / "fit.toml"),
            "--seed", "3", "--json", *extra]


def _run(d, out, *extra):
    done = subprocess.run(_command(d, out, *extra), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), done.stderr


def _kill_after_checkpoint(d, out):
    """Start a fit, SIGKILL it once it has written a checkpoint and trained past it a little."""
    checkpoint = out.with_name(out.name + ".checkpoint")
    proc = subprocess.Popen(_command(d, out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not checkpoint.exists():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "no checkpoint was written"
        time.sleep(0.05)
    time.sleep(0.3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    return checkpoint


def test_kill_9_then_rerun_resumes_bit_identical(data, tmp_path):
    whole, _ = _run(data, tmp_path / "whole")
    assert whole["resumed"] is False
    checkpoint = _kill_after_checkpoint(data, tmp_path / "killed")
    assert checkpoint.exists() and not (tmp_path / "killed").exists()
    again, stderr = _run(data, tmp_path / "killed")
    assert again["resumed"] is True and "resuming" in stderr
    assert not checkpoint.exists()  # a finished fit removes its checkpoint
    want = load_file(tmp_path / "whole" / "weights.safetensors")
    got = load_file(tmp_path / "killed" / "weights.safetensors")
    assert want.keys() == got.keys()
    assert all(np.array_equal(want[k], got[k]) for k in want)
    assert again["epochs_run"] == whole["epochs_run"]


def test_resume_without_checkpoint_is_an_error_and_restart_ignores_one(data, tmp_path):
    done = subprocess.run(_command(data, tmp_path / "m", "--resume"), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and "checkpoint" in done.stderr and "missing" in done.stderr
    checkpoint = _kill_after_checkpoint(data, tmp_path / "m")
    summary, _ = _run(data, tmp_path / "m", "--restart", "--epochs", "3")
    assert summary["resumed"] is False and not checkpoint.exists()


def test_batch_job_gets_progress_lines_and_json_log(data, tmp_path):
    out = tmp_path / "m"
    summary, stderr = _run(data, out, "--epochs", "5", "--log-every", "0", "--log")
    lines = [line for line in stderr.splitlines() if line.startswith("epoch ")]
    assert len(lines) == summary["epochs_run"] == 5
    assert "epoch 5/5" in lines[-1] and "active 3" in lines[-1] and "remaining" in lines[-1]
    rows = [json.loads(r) for r in (tmp_path / "m.train.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4, 5]
    assert set(rows[0]) == {"epoch", "train_nll", "val_nll", "active", "elapsed_s"}

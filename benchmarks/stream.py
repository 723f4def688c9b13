"""Peak memory of ``choral fit`` and ``choral predict`` streaming a Darcy HDF5 file of >= 4 GiB.

Protocol (issue 13): the file comes from ``stream_data.py`` (Darcy on a 32 x 32 grid, float64 X
and Y, one sample a chunk); it is generated first when ``--data`` does not exist. ``choral fit
--stream`` trains a small U-Net ensemble (2 members, width 8, depth 2, batch 64) for
``--epochs`` epochs on it, then ``choral predict --stream`` writes the predictions of every row
to an .h5 file. Each runs as a process of its own; its peak resident memory (``ru_maxrss``) is
read when it ends. Target: at most 1.5 GiB each. Prints one JSON object (also written to
``results/stream.json``):

    python benchmarks/stream.py --data /tmp/darcy32.h5 [--gib 4.0] [--epochs 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).parent
CONFIG = """
[model]
backbone = "unet"
[model.unet]
width = 8
depth = 2
[train]
members = 2
batch_size = 64
epochs = {epochs}
"""


def peak_rss(args: list[str]) -> tuple[float, float]:
    """Run ``choral ARGS`` in a process of its own; (peak RSS in GiB, seconds)."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", "from choral.cli import main; main()", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak, not the largest child's
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"choral {' '.join(args)} failed: {proc.stderr.read()}")
    return usage.ru_maxrss / 2**20, seconds  # ru_maxrss is in KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--gib", type=float, default=4.0)
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    if not args.data.exists():
        subprocess.run([sys.executable, str(HERE / "stream_data.py"), "--out", str(args.data),
                        "--gib", str(args.gib), "--grid", "32", "--fine", "32"], check=True)
    work = Path(tempfile.mkdtemp(prefix="choral-stream-"))
    (work / "fit.toml").write_text(CONFIG.format(epochs=args.epochs))
    fit_gib, fit_s = peak_rss(["fit", "--data", str(args.data), "--out", str(work / "model"),
                               "--config", str(work / "fit.toml"), "--stream", "--quiet"])
    pred_gib, pred_s = peak_rss(["predict", "--model", str(work / "model"), "--data",
                                 str(args.data), "--out", str(work / "pred.h5"), "--stream"])
    metrics = json.loads((work / "model" / "metrics.json").read_text())
    result = {
        "benchmark": "stream", "file_gib": round(args.data.stat().st_size / 2**30, 2),
        "rows": metrics["n_train"] + metrics["n_val"] + metrics["n_calibration"],
        "epochs": metrics["epochs_run"],
        "fit_peak_rss_gib": round(fit_gib, 3), "fit_seconds": round(fit_s, 1),
        "predict_peak_rss_gib": round(pred_gib, 3), "predict_seconds": round(pred_s, 1),
        "predictions_gib": round((work / "pred.h5").stat().st_size / 2**30, 2),
        "target_gib": 1.5, "met": max(fit_gib, pred_gib) <= 1.5,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                   f"{os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') / 2**30:.0f} GiB, "
                   f"torch {torch.__version__}",
    }
    text = json.dumps(result, indent=1)
    print(text)
    (HERE / "results/stream.json").write_text(text + "\n")


if __name__ == "__main__":
    main()

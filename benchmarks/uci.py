"""Deep Ensembles UCI protocol: 5 members, one hidden layer of 50, the 20 given splits.

    python benchmarks/uci.py --data ../shared/data/uci [--splits 20] [--jobs 2]
    python benchmarks/uci.py --data ../shared/data/uci --validation   # for choosing defaults

Scores are in the targets' original units: NLL per test target, RMSE, and coverage of the central
90% interval, as mean and standard error over splits, next to the published table in
``../shared/reference/deep_ensembles_uci.csv``. Every data set uses the same configuration:
choral's defaults with the protocol's architecture, so the scores are those of the predictive
calibrated by ``fit`` itself; ``uncalibrated_*`` are the same model's before that calibration.
``--validation`` scores on a validation split
carved out of each training split instead of on the test split; defaults are chosen that way only.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

UNCALIBRATED = ("nll", "coverage_90", "calibration_error")
DATASETS = ["bostonHousing", "concrete", "energy", "wine-quality-red", "yacht"]
REFERENCE = Path(__file__).resolve().parents[1] / ".." / "shared" / "reference" / \
    "deep_ensembles_uci.csv"


def load_split(root: Path, name: str, k: int) -> tuple[np.ndarray, ...]:
    folder = root / name
    data = np.loadtxt(folder / "data.txt")
    feats = np.loadtxt(folder / "index_features.txt", dtype=int).reshape(-1)
    target = int(np.loadtxt(folder / "index_target.txt"))
    train = np.loadtxt(folder / f"index_train_{k}.txt", dtype=int)
    test = np.loadtxt(folder / f"index_test_{k}.txt", dtype=int)
    X, y = data[:, feats], data[:, target:target + 1]
    return X[train], y[train], X[test], y[test]


def run_one(task: tuple) -> dict:
    import torch

    from choral.config import Config
    from choral.evaluation.metrics import evaluate
    from choral.surrogate import Surrogate

    torch.set_num_threads(1)
    root, name, k, validation, overrides = task
    X, y, Xt, yt = load_split(Path(root), name, k)
    if validation:  # hold out 20% of the training split; the test split is never read
        perm = np.random.default_rng(k).permutation(len(X))
        cut = int(0.8 * len(X))
        X, y, Xt, yt = X[perm[:cut]], y[perm[:cut]], X[perm[cut:]], y[perm[cut:]]
    cfg = Config().updated(**{"train.members": 5, "model.hidden": [50], **overrides})
    start = time.perf_counter()
    model = Surrogate(cfg).fit(X, y)
    seconds = time.perf_counter() - start
    raw = model.predict(Xt, calibrated=False)
    scores = evaluate(model.apply_calibration(raw), yt)
    before = evaluate(raw, yt)
    return {"dataset": name, "split": k, "seconds": seconds,
            "epochs": model.metrics["epochs_run"], **scores,
            **{f"uncalibrated_{key}": before[key] for key in UNCALIBRATED}}


def reference() -> dict[str, dict[str, float]]:
    if not REFERENCE.exists():
        return {}
    lines = [ln for ln in REFERENCE.read_text().splitlines() if not ln.startswith("#")]
    return {row["dataset"]: {k: float(v) for k, v in row.items() if k != "dataset" and v}
            for row in csv.DictReader(lines)}


def summarise(rows: list[dict], ref: dict) -> dict:
    out = {}
    for name in sorted({r["dataset"] for r in rows}):
        rs = [r for r in rows if r["dataset"] == name]
        entry = {"splits": len(rs), "nll_per_split": [round(r["nll"], 4) for r in rs]}
        for key in ("nll", "rmse", "crps", "coverage_90", "calibration_error",
                    "std_error_spearman", "seconds", *(f"uncalibrated_{k}" for k in UNCALIBRATED)):
            v = np.array([r[key] for r in rs])
            entry[key] = float(v.mean())
            entry[f"{key}_se"] = float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else None
        if name in ref:
            entry["paper_nll"], entry["paper_rmse"] = ref[name]["nll_mean"], ref[name]["rmse_mean"]
            entry["nll_at_or_below_paper"] = entry["nll"] <= ref[name]["nll_mean"]
        entry["coverage_in_[0.87,0.93]"] = 0.87 <= entry["coverage_90"] <= 0.93
        out[name] = entry
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--datasets", nargs="+", default=DATASETS)
    parser.add_argument("--splits", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=os.cpu_count())
    parser.add_argument("--validation", action="store_true")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="config overrides, e.g. train.lr=0.001 (JSON values)")
    args = parser.parse_args()
    overrides = {k: json.loads(v) for k, v in (s.split("=", 1) for s in args.set)}
    tasks = [(str(args.data), name, k, args.validation, overrides)
             for name in args.datasets for k in range(args.splits)]
    start = time.perf_counter()
    with ProcessPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(run_one, tasks))
    result = {"benchmark": "uci", "mode": "validation" if args.validation else "test",
              "overrides": overrides, "splits": args.splits, "machine": platform.machine(),
              "cpus": os.cpu_count(), "wall_seconds": time.perf_counter() - start,
              "datasets": summarise(rows, reference())}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

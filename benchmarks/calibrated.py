"""Issue 12: is ``choral fit``'s default uncertainty calibrated, with no step after it?

    python benchmarks/calibrated.py borehole [--seeds 3]
    python benchmarks/calibrated.py quantile --data ../shared/data/uci [--splits 20] [--jobs 2]
    python benchmarks/calibrated.py demo --out /tmp/choral-demo

``borehole``: per seed, 1000 training and 2000 test inputs (and 2000 / 500), choral's default
configuration against the same with ``calibration.method = "none"`` (the behaviour before issue
12: no rows held out, no calibration), fitted one after the other in one process: test RMSE, NLL,
90% coverage, calibration error, the rank correlation of |error| and std, and the fit seconds
(the ratio of the two is the fit-time target, <= 1.3). ``quantile``: the quantile head on the
UCI Boston and concrete splits (Deep Ensembles protocol: 5 members, one hidden layer of 50),
90% coverage on the test split with fit's own CQR calibration and without it (the same model's
uncalibrated predictive). ``demo``: ``choral demo`` in-process, then the test scores of the
saved model, calibrated and not. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

KEYS = ("rmse", "nll", "coverage_90", "coverage_50", "calibration_error", "std_error_spearman")


def _scores(pred, y) -> dict:
    from choral.evaluation.metrics import evaluate

    scores = evaluate(pred, y)
    return {k: scores[k] for k in KEYS + (("rel_l2",) if "rel_l2" in scores else ())}


def borehole(args: argparse.Namespace) -> dict:
    import torch

    from choral.config import Config
    from choral.simulators.analytic import BOREHOLE
    from choral.surrogate import Surrogate

    torch.set_num_threads(1)
    runs = []
    for n_train, n_test in ((1000, 2000), (2000, 500)):
        for seed in range(args.seeds):
            X, Xt = BOREHOLE.sample(n_train, seed=seed), BOREHOLE.sample(n_test, seed=100 + seed)
            Y, Yt = BOREHOLE(X), BOREHOLE(Xt)
            row = {"n_train": n_train, "n_test": n_test, "seed": seed}
            for method in ("auto", "none"):
                cfg = Config().updated(**{"train.seed": seed, "calibration.method": method})
                start = time.perf_counter()
                model = Surrogate(cfg).fit(X, Y)
                row[f"{method}_fit_seconds"] = time.perf_counter() - start
                row[method] = _scores(model.predict(Xt), Yt)
                row[f"{method}_calibration"] = model.metrics["calibration"]
                if method == "auto":
                    row["auto_uncalibrated"] = _scores(model.predict(Xt, calibrated=False), Yt)
            row["fit_time_ratio"] = row["auto_fit_seconds"] / row["none_fit_seconds"]
            print(json.dumps({k: row[k] for k in ("n_train", "seed", "fit_time_ratio")}),
                  flush=True, file=__import__("sys").stderr)
            runs.append(row)
    return {"runs": runs, "summary": _summary(runs, ("n_train",))}


def _summary(runs: list[dict], by: tuple[str, ...]) -> dict:
    out = {}
    for key in sorted({tuple(r[b] for b in by) for r in runs}):
        rs = [r for r in runs if tuple(r[b] for b in by) == key]
        cell = {}
        for part in ("auto", "none", "auto_uncalibrated"):
            for metric in KEYS:
                v = np.array([r[part][metric] for r in rs if part in r])
                if len(v):
                    cell[f"{part}.{metric}"] = float(v.mean())
                    cell[f"{part}.{metric}_se"] = float(v.std(ddof=1) / np.sqrt(len(v))) \
                        if len(v) > 1 else None
        if "fit_time_ratio" in rs[0]:
            cell["fit_time_ratio"] = float(np.mean([r["fit_time_ratio"] for r in rs]))
        out["/".join(map(str, key))] = cell
    return out


def _quantile_split(task: tuple) -> dict:
    import torch
    from uci import load_split  # run as a script: benchmarks/ is on sys.path

    from choral.config import Config
    from choral.surrogate import Surrogate

    torch.set_num_threads(1)
    root, name, k = task
    X, y, Xt, yt = load_split(Path(root), name, k)
    cfg = Config().updated(**{"train.members": 5, "model.hidden": [50], "model.head": "quantile"})
    model = Surrogate(cfg).fit(X, y)
    raw = model.predict(Xt, calibrated=False)
    return {"dataset": name, "split": k, "calibration": model.metrics["calibration"]["method"],
            "auto": _scores(model.apply_calibration(raw), yt),
            "auto_uncalibrated": _scores(raw, yt)}


def quantile(args: argparse.Namespace) -> dict:
    tasks = [(str(args.data), name, k) for name in args.datasets for k in range(args.splits)]
    with ProcessPoolExecutor(args.jobs) as pool:
        runs = list(pool.map(_quantile_split, tasks))
    return {"runs": runs, "summary": _summary(runs, ("dataset",))}


def demo(args: argparse.Namespace) -> dict:
    from choral.cli.demo import demo as run_demo
    from choral.data import load_data
    from choral.surrogate import Surrogate

    start = time.perf_counter()
    run_demo(out_dir=args.out)
    seconds = time.perf_counter() - start
    model = Surrogate.load(args.out / "model")
    X, Y = load_data(args.out / "darcy_test.h5")
    raw = model.predict(X, calibrated=False)
    return {"seconds": seconds, "metrics": {k: model.metrics[k] for k in (
                "n_train", "n_val", "n_calibration", "calibration", "train_seconds")},
            "auto": _scores(model.apply_calibration(raw), Y),
            "auto_uncalibrated": _scores(raw, Y)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="case", required=True)
    p = sub.add_parser("borehole")
    p.add_argument("--seeds", type=int, default=3)
    p = sub.add_parser("quantile")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--datasets", nargs="+", default=["bostonHousing", "concrete"])
    p.add_argument("--splits", type=int, default=20)
    p.add_argument("--jobs", type=int, default=1)
    p = sub.add_parser("demo")
    p.add_argument("--out", type=Path, default=Path("demo-output"))
    args = parser.parse_args()
    start = time.perf_counter()
    result = {"borehole": borehole, "quantile": quantile, "demo": demo}[args.case](args)
    print(json.dumps({"benchmark": f"calibrated-{args.case}", "machine": platform.machine(),
                      "processor": platform.processor(), "cpus": os.cpu_count(),
                      "wall_seconds": time.perf_counter() - start, **result}, indent=1))


if __name__ == "__main__":
    main()

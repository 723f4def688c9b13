"""Issue 12: is ``choral fit``'s default uncertainty calibrated, with no step after it?

    python benchmarks/calibrated.py borehole [--seeds 10] [--jobs 2]
    python benchmarks/calibrated.py quantile --data ../shared/data/uci [--splits 20] [--jobs 2]
    python benchmarks/calibrated.py demo --out /tmp/choral-demo
    cd benchmarks && python calibrated.py select --data ../../shared/data/uci [--splits 20]

``borehole``: per seed, 1000 training and 2000 test inputs (and 2000 / 500), choral's default
configuration against the same with ``calibration.method = "none"`` (the behaviour before issue
12: no rows held out, no calibration), fitted one after the other in one process: test RMSE, NLL,
90% coverage, calibration error, the rank correlation of |error| and std, and the fit seconds
(the ratio of their means is the fit-time target, <= 1.3; early stopping makes single fits
vary by 2x, so the seconds per epoch are compared too). ``quantile``: the quantile head on the
UCI Boston and concrete splits (Deep Ensembles protocol: 5 members, one hidden layer of 50),
90% coverage on the test split with fit's own CQR calibration and without it (the same model's
uncalibrated predictive). ``demo``: ``choral demo`` in-process, then the test scores of the
saved model, calibrated and not. ``select`` (how the default was chosen; the test splits are never
read): on each UCI training split, 20% is carved out as a pseudo-test set; the default fit holds
out its calibration rows from the rest, every candidate is fitted on those rows and scored on the
pseudo-test set (candidates: none, scale, pit_scale, isotonic, conformal, and
pit_scale kept only when it lowers the NLL on held-out folds of the calibration rows); the data
set ``borehole`` is 1000 simulated training rows per split. Prints one JSON object.
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


def _borehole_run(task: tuple[int, int, int]) -> dict:
    import torch

    from choral.config import Config
    from choral.simulators.analytic import BOREHOLE
    from choral.surrogate import Surrogate

    torch.set_num_threads(1)
    n_train, n_test, seed = task
    X, Xt = BOREHOLE.sample(n_train, seed=seed), BOREHOLE.sample(n_test, seed=100 + seed)
    Y, Yt = BOREHOLE(X), BOREHOLE(Xt)
    row = {"n_train": n_train, "n_test": n_test, "seed": seed}
    for method in ("auto", "none"):  # side by side in one process
        cfg = Config().updated(**{"train.seed": seed, "calibration.method": method})
        start = time.perf_counter()
        model = Surrogate(cfg).fit(X, Y)
        row[f"{method}_fit_seconds"] = time.perf_counter() - start
        row[f"{method}_epochs"] = model.metrics["epochs_run"]
        row[method] = _scores(model.predict(Xt), Yt)
        row[f"{method}_calibration"] = model.metrics["calibration"]
        if method == "auto":
            row["auto_uncalibrated"] = _scores(model.predict(Xt, calibrated=False), Yt)
    return row


def borehole(args: argparse.Namespace) -> dict:
    tasks = [(n_train, n_test, seed) for n_train, n_test in ((1000, 2000), (2000, 500))
             for seed in range(args.seeds)]
    with ProcessPoolExecutor(args.jobs) as pool:
        runs = list(pool.map(_borehole_run, tasks))
    summary = _summary(runs, ("n_train",))
    for key, cell in summary.items():
        rs = [r for r in runs if str(r["n_train"]) == key]
        cell["fit_seconds_auto"] = float(np.mean([r["auto_fit_seconds"] for r in rs]))
        cell["fit_seconds_none"] = float(np.mean([r["none_fit_seconds"] for r in rs]))
        cell["fit_time_ratio"] = cell["fit_seconds_auto"] / cell["fit_seconds_none"]
        cell["seconds_per_epoch_ratio"] = float(
            np.mean([r["auto_fit_seconds"] / r["auto_epochs"] for r in rs])
            / np.mean([r["none_fit_seconds"] / r["none_epochs"] for r in rs]))
    return {"runs": runs, "summary": summary}


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


CANDIDATES = ("none", "scale", "pit_scale", "isotonic", "conformal")


def _select_split(task: tuple) -> list[dict]:
    import torch
    from uci import load_split  # run as a script: benchmarks/ is on sys.path

    from choral.config import Config
    from choral.evaluation.calibration import cross_fit, fit_calibrator
    from choral.surrogate import Surrogate
    from choral.surrogate.model import member_seeds, split_indices

    torch.set_num_threads(1)
    root, name, k = task
    if name == "borehole":  # 1000 fresh training inputs per "split" (no test set at all)
        from choral.simulators.analytic import BOREHOLE

        X = BOREHOLE.sample(1000, seed=5000 + k)
        y = BOREHOLE(X)
    else:
        X, y, _, _ = load_split(Path(root), name, k)  # the test split is never read
    perm = np.random.default_rng(k).permutation(len(X))
    cut = int(0.8 * len(X))
    X, y, Xt, yt = X[perm[:cut]], y[perm[:cut]], X[perm[cut:]], y[perm[cut:]]
    cfg = Config().updated(**{"train.members": 5, "model.hidden": [50]})
    model = Surrogate(cfg).fit(X, y)
    _, _, split_seed = member_seeds(cfg.train.seed, cfg.train.members)
    _, cal = split_indices(len(X), cfg.calibration.fraction, split_seed + 1)  # fit's own rows
    Xc, yc = X[cal.numpy()], y[cal.numpy()]
    raw_cal, raw = model.predict(Xc, calibrated=False), model.predict(Xt, calibrated=False)
    preds = {m: raw if m == "none" else fit_calibrator(m, raw_cal, yc).apply(raw)
             for m in CANDIDATES}
    held_out = cross_fit("pit_scale", raw_cal, yc)
    better = held_out["after"]["nll"] < held_out["before"]["nll"]
    preds["pit_scale_if_nll_drops"] = preds["pit_scale"] if better else raw
    return [{"dataset": name, "split": k, "method": m, "n_calibration": len(cal),
             "auto": _scores(p, yt)} for m, p in preds.items()]


def select(args: argparse.Namespace) -> dict:
    tasks = [(str(args.data), name, k) for name in args.datasets for k in range(args.splits)]
    with ProcessPoolExecutor(args.jobs) as pool:
        runs = [r for rs in pool.map(_select_split, tasks) for r in rs]
    return {"runs": runs, "summary": _summary(runs, ("dataset", "method"))}


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
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--jobs", type=int, default=2)
    p = sub.add_parser("quantile")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--datasets", nargs="+", default=["bostonHousing", "concrete"])
    p.add_argument("--splits", type=int, default=20)
    p.add_argument("--jobs", type=int, default=1)
    p = sub.add_parser("select")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--datasets", nargs="+", default=["bostonHousing", "concrete", "energy",
                                                     "wine-quality-red", "yacht", "borehole"])
    p.add_argument("--splits", type=int, default=20)
    p.add_argument("--jobs", type=int, default=2)
    p = sub.add_parser("demo")
    p.add_argument("--out", type=Path, default=Path("demo-output"))
    args = parser.parse_args()
    start = time.perf_counter()
    cases = {"borehole": borehole, "quantile": quantile, "select": select, "demo": demo}
    result = cases[args.case](args)
    print(json.dumps({"benchmark": f"calibrated-{args.case}", "machine": platform.machine(),
                      "processor": platform.processor(), "cpus": os.cpu_count(),
                      "wall_seconds": time.perf_counter() - start, **result}, indent=1))


if __name__ == "__main__":
    main()

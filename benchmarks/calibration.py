"""Post-hoc calibration on UCI splits and OOD detection on borehole inputs outside their box.

    python benchmarks/calibration.py uci --data ../shared/data/uci --datasets yacht --splits 2
    python benchmarks/calibration.py ood [--n-train 1000] [--seeds 3]
    python benchmarks/calibration.py ood-darcy --data ../shared/data/neuralop

``uci``: on each of the given splits, 20% of the training split (seeded by the split) becomes the
calibration set; the Deep Ensembles protocol's model (5 members, one hidden layer of 50, choral's
defaults) trains on the other 80%; every method (none, scale, isotonic, conformal) is fitted on the
calibration set and scored on the test split: 90% and 50% coverage, calibration error (PIT), NLL,
mean 90% interval width; mean and standard error over splits. Conformal changes intervals only, so
its NLL and calibration error are the uncalibrated ones.

``ood``: a surrogate fitted on borehole inputs in the box; AUROC of its OOD score (and of the
density and epistemic parts alone) for in-box test inputs against inputs pushed outside the box
(every input, or one input per row, mapped into a band ``--shift`` box widths wide just outside
the box, on a random side), and the false-alarm rate on in-box inputs (target: alpha = 5%).
``ood-darcy``: the same for a small U-Net ensemble on neuraloperator's 16x16 Darcy fields against
coefficient fields of another contrast. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from uci import DATASETS, load_split  # run as a script: benchmarks/ is on sys.path

METHODS = ("none", "scale", "isotonic", "conformal")
KEYS = ("coverage_90", "coverage_50", "calibration_error", "nll", "interval_width_90")


def run_split(task: tuple) -> list[dict]:
    import torch

    from choral.config import Config
    from choral.evaluation.metrics import evaluate
    from choral.surrogate import Surrogate

    torch.set_num_threads(1)
    root, name, k, overrides = task
    X, y, Xt, yt = load_split(Path(root), name, k)
    perm = np.random.default_rng(k).permutation(len(X))
    cut = int(0.8 * len(X))
    Xc, yc, X, y = X[perm[cut:]], y[perm[cut:]], X[perm[:cut]], y[perm[:cut]]
    cfg = Config().updated(**{"train.members": 5, "model.hidden": [50], **overrides})
    start = time.perf_counter()
    model = Surrogate(cfg).fit(X, y)
    seconds = time.perf_counter() - start
    rows = []
    for method in METHODS:
        model.extras.pop("calibration.json", None)
        if method != "none":
            model.calibrate(Xc, yc, method)
        scores = evaluate(model.predict(Xt), yt)
        rows.append({"dataset": name, "split": k, "method": method, "n_cal": len(Xc),
                     "fit_seconds": seconds, **{key: scores[key] for key in KEYS}})
    print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


def summarise(rows: list[dict]) -> dict:
    out = {}
    for name in sorted({r["dataset"] for r in rows}):
        entry = {}
        for method in METHODS:
            rs = [r for r in rows if r["dataset"] == name and r["method"] == method]
            cell = {"splits": len(rs), "n_cal": rs[0]["n_cal"]}
            for key in (*KEYS, "fit_seconds"):
                v = np.array([r[key] for r in rs])
                cell[key] = float(v.mean())
                cell[f"{key}_se"] = float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else None
            entry[method] = cell
        raw, conf = entry["none"], entry["conformal"]
        entry["conformal_coverage_90_in_[0.89,0.91]"] = 0.89 <= conf["coverage_90"] <= 0.91
        entry["conformal_width_ratio"] = conf["interval_width_90"] / raw["interval_width_90"]
        entry["uncalibrated_was_calibrated"] = abs(raw["coverage_90"] - 0.9) <= 0.03
        out[name] = entry
    return out


def uci(args: argparse.Namespace) -> dict:
    overrides = {k: json.loads(v) for k, v in (s.split("=", 1) for s in args.set)}
    tasks = [(str(args.data), name, k, overrides) for name in args.datasets
             for k in range(args.first_split, args.first_split + args.splits)]
    with ProcessPoolExecutor(args.jobs) as pool:
        rows = [r for rs in pool.map(run_split, tasks) for r in rs]
    return {"overrides": overrides, "splits": args.splits, "first_split": args.first_split,
            "datasets": summarise(rows), "rows": rows}


def shifted(box: np.ndarray, X: np.ndarray, shift: float, seed: int, every: bool) -> np.ndarray:
    """``X`` (n, d) in the box mapped into the band ``shift`` box widths wide just outside it,
    on a random side: every input (``every``) or one random input per row (the rest unchanged).
    """
    lo, hi = box[:, 0], box[:, 1]
    rng = np.random.default_rng(seed)
    u = (X - lo) / (hi - lo)
    out = np.where(rng.random(X.shape) < 0.5, lo - shift * (hi - lo) * u,
                   hi + shift * (hi - lo) * u)
    if every:
        return out
    pick = np.eye(X.shape[1], dtype=bool)[rng.integers(0, X.shape[1], len(X))]
    return np.where(pick, out, X)


def ood(args: argparse.Namespace) -> dict:
    from sklearn.metrics import roc_auc_score

    from choral.config import Config
    from choral.evaluation.ood import OODDetector, pooled_features
    from choral.simulators.analytic import BOREHOLE
    from choral.surrogate import Surrogate

    results = []
    for seed in range(args.seeds):
        X = BOREHOLE.sample(args.n_train, seed=seed)
        cfg = Config().updated(**{"train.members": 5, "train.seed": seed,
                                  "train.epochs": args.epochs})
        model = Surrogate(cfg).fit(X, BOREHOLE(X))
        inside = BOREHOLE.sample(args.n_test, seed=1000 + seed)
        entry = {"seed": seed}
        det = OODDetector.from_dict(model.extras["ood.json"])
        for shift, every in [(s, e) for s in args.shift for e in (True, False)]:
            outside = shifted(BOREHOLE.bounds, BOREHOLE.sample(args.n_test, seed=2000 + seed),
                              shift, seed, every)
            labels = np.r_[np.zeros(len(inside)), np.ones(len(outside))]
            both = np.vstack([inside, outside])
            features = pooled_features(model.x_norm.transform(both))
            epistemic = model._epistemic(both)
            score, flag = det(features, epistemic)  # = model.ood(both), predicting once
            parts = det._parts(features, epistemic)
            entry[f"shift_{shift}_{'all' if every else 'one'}_inputs"] = {
                "auroc": float(roc_auc_score(labels, score)),
                "auroc_density_only": float(roc_auc_score(labels, parts[:, 0])),
                "auroc_epistemic_only": float(roc_auc_score(labels, parts[:, 1])),
                "flag_rate_outside": float(flag[len(inside):].mean())}
        entry["false_alarm_rate_inside"] = float(model.ood(inside)[1].mean())
        results.append(entry)
        print(json.dumps(entry), file=sys.stderr, flush=True)
    summary = {}
    for key in [k for k in results[0] if k.startswith("shift_")]:
        summary[key] = {m: float(np.mean([r[key][m] for r in results])) for m in results[0][key]}
        summary[key]["auroc_at_least_0.9"] = summary[key]["auroc"] >= 0.9
    summary["false_alarm_rate_inside"] = float(np.mean([r["false_alarm_rate_inside"]
                                                        for r in results]))
    return {"n_train": args.n_train, "n_test": args.n_test, "seeds": args.seeds,
            "summary": summary, "per_seed": results}


def ood_darcy(args: argparse.Namespace) -> dict:
    """Darcy fields (neuraloperator's 16x16 files, binary coefficients): AUROC of the OOD score,
    in-distribution test inputs against the same inputs with another contrast (1s become k)."""
    import torch
    from sklearn.metrics import roc_auc_score

    from choral.config import Config
    from choral.surrogate import Surrogate

    def read(name: str, n: int) -> tuple[np.ndarray, np.ndarray]:
        d = torch.load(args.data / name, weights_only=True)
        return (d["x"][:n, None].double().numpy(), d["y"][:n, None].double().numpy())

    X, Y = read(f"darcy_train_{args.resolution}.pt", args.n_train)
    Xt, _ = read(f"darcy_test_{args.resolution}.pt", args.n_test)
    cfg = Config.from_dict({
        "model": {"backbone": "unet", "activation": "gelu", "unet": {"depth": 2, "width": 8}},
        "train": {"members": 4, "epochs": args.epochs, "batch_size": 16, "lr": 3e-3}})
    start = time.perf_counter()
    model = Surrogate(cfg).fit(X, Y)
    fit_seconds = time.perf_counter() - start
    s_in, f_in = model.ood(Xt)
    out = {"n_train": args.n_train, "n_test": args.n_test, "resolution": args.resolution,
           "epochs": args.epochs, "fit_seconds": fit_seconds,
           "false_alarm_rate_inside": float(f_in.mean())}
    labels = np.r_[np.zeros(len(Xt)), np.ones(len(Xt))]
    for k in args.contrast:
        s_out, f_out = model.ood(Xt * k)
        out[f"contrast_x{k}"] = {"auroc": float(roc_auc_score(labels, np.r_[s_in, s_out])),
                                 "flag_rate_outside": float(f_out.mean())}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("uci")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--datasets", nargs="+", default=DATASETS)
    p.add_argument("--splits", type=int, default=2)
    p.add_argument("--first-split", type=int, default=0)
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="config overrides, e.g. train.epochs=300 (JSON values)")
    p = sub.add_parser("ood")
    p.add_argument("--n-train", type=int, default=1000)
    p.add_argument("--n-test", type=int, default=500)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--shift", type=float, nargs="+", default=[0.1, 0.5])
    p.add_argument("--epochs", type=int, default=200)
    p = sub.add_parser("ood-darcy")
    p.add_argument("--data", type=Path, required=True, help="folder of darcy_*_16.pt")
    p.add_argument("--n-train", type=int, default=500)
    p.add_argument("--n-test", type=int, default=200)
    p.add_argument("--resolution", type=int, default=16)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--contrast", type=float, nargs="+", default=[0.5, 2.0])
    args = parser.parse_args()
    start = time.perf_counter()
    result = {"uci": uci, "ood": ood, "ood-darcy": ood_darcy}[args.what](args)
    print(json.dumps({"benchmark": f"calibration-{args.what}", "machine": platform.machine(),
                      "cpus": os.cpu_count(), "wall_seconds": time.perf_counter() - start,
                      **result}, indent=2))


if __name__ == "__main__":
    main()

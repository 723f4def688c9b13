"""Weight-space ensembles side by side on UCI regression: one network, a 5-member deep ensemble,
SWA, SWAG, MultiSWAG, snapshot ensembles (and any other registered method, e.g. ``soup``).

    python benchmarks/weightspace.py --data ../shared/data/uci [--datasets yacht energy]
        [--splits 1] [--epochs 50] [--set weightspace.rank=20 ...]

(from a checkout: ``PYTHONPATH=. python benchmarks/weightspace.py ...``)

Every method uses the UCI protocol's network (one hidden layer of 50) and choral's defaults; the
deep ensemble and the single network stop early (patience 100, at most ``train.epochs``), the
weight-space methods use ``weightspace``'s defaults (early-stopped pretraining, then
``weightspace.epochs`` epochs). Scores on the test split in original units: NLL per
target, CRPS, RMSE, 90% coverage. Cost: training network-epochs (networks x epochs actually
computed: a stacked run computes stopped members too) and wall seconds; prediction forward
passes per input (networks evaluated) and wall seconds. The target: SWAG or MultiSWAG within 5%
of the deep ensemble's NLL at <= 1/3 of its training network-epochs. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from uci import load_split  # noqa: E402

ORDER = ["single", "deep", "swa", "swag", "multiswag", "snapshot", "soup"]


def run_method(X, y, Xt, yt, method: str, epochs: int, overrides: dict) -> dict:
    from choral.config import Config
    from choral.ensembles.params import count
    from choral.evaluation.metrics import evaluate
    from choral.surrogate import Surrogate

    members = 1 if method == "single" else 5
    cfg = Config().updated(**{"train.members": members, "model.hidden": [50],
                              "train.ensemble": "deep" if method == "single" else method,
                              "weightspace.epochs": epochs, **overrides})
    start = time.perf_counter()
    model = Surrogate(cfg).fit(X, y)
    train_s = time.perf_counter() - start
    start = time.perf_counter()
    pred = model.predict(Xt)
    predict_s = time.perf_counter() - start
    scores = evaluate(pred, yt)
    trained = len(model.metrics["best_epoch"])  # networks trained in the stacked run
    networks = count(model.params)
    return {"nll": scores["nll"], "crps": scores["crps"], "rmse": scores["rmse"],
            "coverage_90": scores["coverage_90"],
            "train_network_epochs": trained * model.metrics["epochs_run"],
            "train_seconds": train_s, "predict_forward_passes": networks,
            "predict_seconds": predict_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--datasets", nargs="+", default=["yacht", "energy", "bostonHousing"])
    parser.add_argument("--splits", type=int, default=1)
    parser.add_argument("--first-split", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs of the weight-space runs (weightspace.epochs; default: "
                             "the config's)")
    parser.add_argument("--methods", nargs="+", default=None)
    parser.add_argument("--validation", action="store_true",
                        help="score on 20%% of each training split (for choosing settings)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="config overrides for every method, e.g. weightspace.rank=10")
    args = parser.parse_args()
    import torch

    from choral.ensembles.registry import METHODS

    torch.set_num_threads(1)
    overrides = {k: json.loads(v) for k, v in (s.split("=", 1) for s in args.set)}
    methods = [m for m in (args.methods or ORDER) if m == "single" or m in METHODS]
    rows, start = [], time.perf_counter()
    for name in args.datasets:
        for k in range(args.first_split, args.first_split + args.splits):
            data = load_split(args.data, name, k)
            if args.validation:  # as benchmarks/uci.py: the test split is never read
                X, y = data[:2]
                perm = np.random.default_rng(k).permutation(len(X))
                cut = int(0.8 * len(X))
                data = X[perm[:cut]], y[perm[:cut]], X[perm[cut:]], y[perm[cut:]]
            for method in methods:
                row = run_method(*data, method, args.epochs, overrides)
                rows.append({"dataset": name, "split": k, "method": method, **row})
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    print(json.dumps({"benchmark": "weightspace", "epochs": args.epochs, "overrides": overrides,
                      "mode": "validation" if args.validation else "test",
                      "machine": platform.machine(), "cpus": os.cpu_count(),
                      "wall_seconds": time.perf_counter() - start, "rows": rows,
                      "target": targets(rows)}, indent=2))


def targets(rows: list[dict]) -> dict:
    """Per data set and split: is SWAG or MultiSWAG within 5% of the deep ensemble's NLL at
    <= 1/3 of its training network-epochs?"""
    out = {}
    for key in sorted({(r["dataset"], r["split"]) for r in rows}):
        by = {r["method"]: r for r in rows if (r["dataset"], r["split"]) == key}
        if "deep" not in by:
            continue
        deep = by["deep"]
        checks = {}
        for m in ("swag", "multiswag"):
            if m in by:
                gap = (by[m]["nll"] - deep["nll"]) / abs(deep["nll"])
                cost = by[m]["train_network_epochs"] / deep["train_network_epochs"]
                checks[m] = {"nll_gap_vs_deep": round(gap, 4), "cost_vs_deep": round(cost, 3),
                             "met": bool(gap <= 0.05 and cost <= 1 / 3)}
        out[f"{key[0]}/{key[1]}"] = checks
    return out


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()

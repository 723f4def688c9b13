"""How choral's training defaults were chosen: validation NLL on UCI, never the test splits.

Each candidate runs ``benchmarks/uci.py``'s protocol in ``--validation`` mode (20% of each
training split held out; the test indices are never read) on the first few splits of all five
data sets; candidates are ranked per data set by mean validation NLL, and the one with the best
average rank wins. One configuration for every data set.

    python benchmarks/uci_select.py --data ../shared/data/uci [--splits 5]
"""

from __future__ import annotations

import argparse
import json
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from uci import DATASETS, run_one

ROUNDS = {  # round 2 combines what helped in round 1
    1: {
        "default": {},
        "lr=1e-3": {"train.lr": 1e-3},
        "lr=1e-2": {"train.lr": 1e-2},
        "wd=1e-3": {"train.weight_decay": 1e-3},
        "wd=1e-2": {"train.weight_decay": 1e-2},
        "batch=32": {"train.batch_size": 32},
        "batch=128": {"train.batch_size": 128},
        "patience=100": {"train.patience": 100},
        "patience=20": {"train.patience": 20},
    },
    2: {
        "lr=1e-2": {"train.lr": 1e-2},
        "lr=1e-2,patience=100": {"train.lr": 1e-2, "train.patience": 100},
        "lr=1e-2,batch=32": {"train.lr": 1e-2, "train.batch_size": 32},
        "lr=1e-2,batch=32,patience=100": {"train.lr": 1e-2, "train.batch_size": 32,
                                          "train.patience": 100},
        "lr=1e-2,cosine": {"train.lr": 1e-2, "train.lr_schedule": "cosine"},
        "lr=1e-2,cosine,epochs=500": {"train.lr": 1e-2, "train.lr_schedule": "cosine",
                                      "train.epochs": 500},
        "batch=32,patience=100": {"train.batch_size": 32, "train.patience": 100},
    },
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--splits", type=int, default=5)
    parser.add_argument("--round", type=int, default=max(ROUNDS), choices=sorted(ROUNDS))
    parser.add_argument("--jobs", type=int, default=os.cpu_count())
    args = parser.parse_args()
    candidates = ROUNDS[args.round]
    tasks = [(str(args.data), name, k, True, overrides) for overrides in candidates.values()
             for name in DATASETS for k in range(args.splits)]
    with ProcessPoolExecutor(args.jobs) as pool:
        rows = iter(pool.map(run_one, tasks))
    scores = {c: {d: [next(rows) for _ in range(args.splits)] for d in DATASETS}
              for c in candidates}
    nll = {c: {d: float(np.mean([r["nll"] for r in rs])) for d, rs in v.items()}
           for c, v in scores.items()}
    cover = {c: {d: float(np.mean([r["coverage_90"] for r in rs])) for d, rs in v.items()}
             for c, v in scores.items()}
    ranks = {c: 0.0 for c in candidates}
    for d in DATASETS:
        for r, c in enumerate(sorted(candidates, key=lambda c: nll[c][d])):
            ranks[c] += (r + 1) / len(DATASETS)
    best = min(ranks, key=ranks.get)
    print(json.dumps({"benchmark": "uci_select", "round": args.round, "splits": args.splits,
                      "validation_nll": nll, "coverage_90": cover,
                      "mean_rank": ranks, "chosen": best, "overrides": candidates[best]}, indent=2))


if __name__ == "__main__":
    main()

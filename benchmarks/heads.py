"""Density heads side by side: Gaussian, mixture-density (MDN) and quantile members.

    PYTHONPATH=. python benchmarks/heads.py --data ../shared/data/uci [--datasets yacht concrete]
        [--heads gaussian mdn quantile quantile_mixture] [--jobs 2]

A bimodal synthetic problem (``y = sin(3x) +- (0.6 + 0.4 x)`` with equal odds, noise 0.1), on
which the MDN must beat the Gaussian head in NLL, and split 0 of a few UCI sets (the Deep
Ensembles protocol's architecture: 5 members, one hidden layer of 50; choral's other defaults).
Scores (NLL per target, CRPS, coverage of the central 90 % interval, interval score, RMSE) are
in the targets' original units. Prints one JSON object.
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

HEADS = {"gaussian": {"model.head": "gaussian"},
         "mdn": {"model.head": "mdn", "model.components": 3},
         "quantile": {"model.head": "quantile", "model.quantile_levels": 19},
         "quantile_mixture": {"model.head": "quantile", "model.quantile_levels": 19,
                              "model.quantile_combine": "mixture"}}
KEYS = ("nll", "crps", "coverage_90", "interval_score_90", "rmse", "calibration_error")


def bimodal(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """X (n, 1) uniform on [-1, 1]; Y (n, 1) on one of two branches, picked by a fair coin."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (n, 1))
    sign = np.where(rng.random((n, 1)) < 0.5, -1.0, 1.0)
    return x, np.sin(3 * x) + sign * (0.6 + 0.4 * x) + 0.1 * rng.standard_normal((n, 1))


def load(root: str | None, name: str) -> tuple[np.ndarray, ...]:
    if name == "bimodal":
        return (*bimodal(1000, 0), *bimodal(2000, 1))
    from uci import load_split  # benchmarks/uci.py, next to this file

    return load_split(Path(root), name, 0)


def run_one(task: tuple) -> dict:
    import torch

    from choral.config import Config
    from choral.evaluation.metrics import evaluate
    from choral.surrogate import Surrogate

    torch.set_num_threads(1)
    root, name, head, epochs, levels = task
    X, y, Xt, yt = load(root, name)
    cfg = Config().updated(**{"train.members": 5, "model.hidden": [50], "train.epochs": epochs,
                              **HEADS[head]})
    if levels and cfg.model.head == "quantile":
        cfg = cfg.updated(**{"model.quantile_levels": levels})
    start = time.perf_counter()
    model = Surrogate(cfg).fit(X, y)
    scores = evaluate(model.predict(Xt), yt)
    return {"dataset": name, "head": head, "seconds": round(time.perf_counter() - start, 1),
            "epochs_run": model.metrics["epochs_run"],
            **{k: round(scores[k], 4) for k in KEYS}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="folder of the UCI sets (omit for the bimodal only)")
    parser.add_argument("--datasets", nargs="+",
                        default=["bimodal", "yacht", "bostonHousing", "concrete"])
    parser.add_argument("--epochs", type=int, default=1000)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--heads", nargs="+", default=list(HEADS), choices=list(HEADS))
    parser.add_argument("--quantile-levels", type=int, default=None,
                        help="number of levels of the quantile heads (default 19)")
    args = parser.parse_args()
    names = args.datasets if args.data else ["bimodal"]
    tasks = [(args.data, name, head, args.epochs, args.quantile_levels)
             for name in names for head in args.heads]
    start = time.perf_counter()
    with ProcessPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(run_one, tasks))
    table = {name: {r["head"]: {k: v for k, v in r.items() if k not in ("dataset", "head")}
                    for r in rows if r["dataset"] == name} for name in names}
    bi = table.get("bimodal", {})
    beats = bi["mdn"]["nll"] < bi["gaussian"]["nll"] if {"mdn", "gaussian"} <= set(bi) else None
    print(json.dumps({"benchmark": "heads", "machine": platform.machine(), "cpus": os.cpu_count(),
                      "epochs": args.epochs, "quantile_levels": args.quantile_levels or 19,
                      "wall_seconds": round(time.perf_counter() - start),
                      "mdn_beats_gaussian_nll_on_bimodal": beats,
                      "results": table}, indent=2))


if __name__ == "__main__":
    main()

"""Model soups on the UCI sets: greedy and uniform soup against the best ingredient.

    python benchmarks/soup.py --data ../shared/data/uci [--splits 2] [--epochs 300]

Per data set and split: ``train.ensemble = "soup"`` with ``--members`` ingredients (one hidden
layer of 50, as in the Deep Ensembles protocol) fine-tuned from one shared start. Scores:
validation NLL (the head's loss in standardised units, on the validation rows carved out of the
training split, which choose both the ingredients' best epochs and the greedy soup) and test NLL
per target in original units, for the greedy soup, the uniform soup, the best ingredient (by
validation NLL) and, as a reference, the mixture of all ingredients (an ensemble costing
``members`` forward passes). Target: greedy soup NLL <= best ingredient's on validation and test.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
from uci import DATASETS, load_split


def run_one(root: Path, name: str, k: int, members: int, epochs: int) -> dict:
    import torch

    from choral.config import Config
    from choral.ensembles.params import average
    from choral.evaluation.metrics import nll
    from choral.surrogate import Surrogate

    torch.set_num_threads(1)
    X, y, Xt, yt = load_split(root, name, k)
    cfg = Config().updated(**{"train.members": members, "model.hidden": [50],
                              "train.ensemble": "soup", "train.epochs": epochs,
                              "train.seed": k, "soup.save_ingredients": True})
    start = time.perf_counter()
    model = Surrogate(cfg).fit(X, y)
    seconds = time.perf_counter() - start
    info = model.extras["soup.json"]
    parts = model.extras["soup_ingredients.safetensors"]
    best = int(np.argmin(info["ingredient_val_nll"]))

    def test_nll(params: dict) -> float:
        return nll(model.with_params(params).predict(Xt), yt)

    uniform = average(parts)
    return {"dataset": name, "split": k, "seconds": round(seconds, 1),
            "accepted": len(info["accepted"]),
            "val_nll": {"greedy": info["greedy_val_nll"], "uniform": info["uniform_val_nll"],
                        "best_ingredient": info["ingredient_val_nll"][best]},
            "test_nll": {"greedy": nll(model.predict(Xt), yt), "uniform": test_nll(uniform),
                         "best_ingredient": test_nll({k_: v[best:best + 1]
                                                      for k_, v in parts.items()}),
                         "ingredient_mixture": test_nll(parts)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="UCI root folder")
    parser.add_argument("--datasets", nargs="*", default=DATASETS)
    parser.add_argument("--splits", type=int, default=2)
    parser.add_argument("--members", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=300)
    args = parser.parse_args()
    start = time.perf_counter()
    rows = [run_one(args.data, name, k, args.members, args.epochs)
            for name in args.datasets for k in range(args.splits)]
    tol = 1e-9
    met = {"val": all(r["val_nll"]["greedy"] <= r["val_nll"]["best_ingredient"] + tol
                      for r in rows),
           "test": all(r["test_nll"]["greedy"] <= r["test_nll"]["best_ingredient"] + tol
                       for r in rows)}
    print(json.dumps({"benchmark": "soup", "members": args.members, "epochs": args.epochs,
                      "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
                      "seconds": round(time.perf_counter() - start, 1),
                      "target_met": met, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()

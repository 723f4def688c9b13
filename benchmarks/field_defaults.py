"""Choose the field training defaults on validation data carved out of a training file.

    python benchmarks/field_defaults.py --data ../shared/data/neuralop --set darcy
        [--members 3] [--epochs 30] [--val 200] [--rows N] [--backbone fno]
        [--candidates 1e-2:constant 3e-3:cosine 1e-3:cosine 5e-3:cosine:0.5]

Protocol. The training file of ``--set`` (``{set}_train_16.pt``; the test file is never read)
is split once (seed 0; only ``--rows`` of it when given): ``--val`` samples are set aside as
validation data, the rest is handed to ``Surrogate.fit`` (which itself holds out 10% for
calibration and 10% for early stopping). Each candidate (learning rate, schedule and, when a
third field is given, ``train.nll_beta``, else 0; the same batch size, epochs and members) is
fitted and scored on the validation samples: relative L2 of
the mean, 90% coverage, NLL, training seconds and epochs run. Prints one JSON object; the
candidate with the lowest validation relative L2 is the one to make the field default
(``choral.ensembles.config.FIELD_DEFAULTS``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from neuralop_small import load  # noqa: E402

CANDIDATES = ["1e-2:constant", "3e-3:cosine", "1e-3:cosine"]
"""``lr:schedule[:nll_beta]``; the first is the vector default."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--set", choices=["darcy", "burgers"], default="darcy")
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--val", type=int, default=200)
    parser.add_argument("--rows", type=int, default=None,
                        help="use only this many rows of the training file (val included)")
    parser.add_argument("--backbone", choices=["fno", "unet"], default="fno")
    parser.add_argument("--modes", type=int, default=8)
    parser.add_argument("--candidates", nargs="+", default=CANDIDATES,
                        help="lr:schedule[:nll_beta] ...")
    args = parser.parse_args()
    from choral.config import Config
    from choral.evaluation.metrics import evaluate
    from choral.surrogate import Surrogate

    X, Y = load(args.data, args.set, "train")
    perm = np.random.default_rng(0).permutation(len(X))[:args.rows]
    val, fit = perm[:args.val], perm[args.val:]
    model = {"backbone": args.backbone}
    if args.backbone == "fno":
        model["fno"] = {"modes": args.modes}
    rows = []
    for text in args.candidates:
        lr, schedule, *beta = text.split(":")
        cand = {"lr": float(lr), "lr_schedule": schedule,
                "nll_beta": float(beta[0]) if beta else 0.0}
        cfg = Config.from_dict({"model": model, "train": {
            "members": args.members, "epochs": args.epochs, "batch_size": 32, "patience": 20,
            **cand}})
        start = time.perf_counter()
        sur = Surrogate(cfg).fit(X[fit], Y[fit])
        seconds = time.perf_counter() - start
        scores = evaluate(sur.predict(X[val]), Y[val])
        rows.append({**cand, "val_rel_l2": scores["rel_l2"], "val_coverage_90":
                     scores["coverage_90"], "val_nll": scores["nll"], "fit_seconds": seconds,
                     "epochs_run": sur.metrics["epochs_run"]})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    best = min(rows, key=lambda r: r["val_rel_l2"])
    print(json.dumps({"benchmark": "field_defaults", "set": args.set, "backbone": args.backbone,
                      "members": args.members, "epochs": args.epochs, "n_fit": len(fit),
                      "n_val": len(val), "torch_threads": torch.get_num_threads(),
                      "candidates": rows, "chosen": best}, indent=2))


if __name__ == "__main__":
    main()

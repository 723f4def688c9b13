"""choral U-Net ensemble next to neuraloperator's FNO on neuraloperator's small Darcy and Burgers.

    python benchmarks/neuralop_small.py --data ../shared/data/neuralop [--budget 300] [--members 4]
        [--threads 1] [--fno-lr 5e-3] [--sets darcy burgers]

Protocol. Files (``torch.load(weights_only=True)``): ``darcy_{train,test}_16.pt`` (x: bool
coefficient mask (n, 16, 16) -> float (n, 1, 16, 16); y: solution -> (n, 1, 16, 16)) and
``burgers_{train,test}_16.pt`` (x: initial condition (n, 16) -> (n, 1, 16); target: the last
time step ``y[:, -1, :]`` -> (n, 1, 16)). For each set, in one run, one after the other on this
machine, with the same wall-clock budget per model (``--budget`` seconds):

- choral: a ``--members``-member U-Net ensemble (depth 2, GELU, no normalisation; width 16 for
  Darcy, 32 with circular padding for periodic Burgers; AdamW, lr 3e-3, batch 32, Gaussian NLL,
  10% of the training files held out for early stopping). Group norm rescales each sample and so
  hides the amplitude that drives Burgers' nonlinearity: a single MSE U-Net reached rel L2 0.21
  with it and 0.006 without, in 60 epochs; on Darcy 16 both gave 0.10. The library has no time
  limit, so ``epochs`` is set to ``budget / seconds per epoch``, timed on the second epoch of a
  two-epoch fit, with a cosine schedule (see ``benchmarks/_fno_peer.py``).
- FNO (``neuralop.models.FNO``): n_modes (8, 8) or (8,), hidden 32, 4 layers, otherwise
  neuraloperator's defaults; Adam (lr ``--fno-lr``, weight decay 1e-4), batch 32, relative-L2
  loss, pointwise unit Gaussian normalisers for inputs and targets, cosine schedule over the budget.

Reported for both: relative L2 on the test files (mean over samples of ||pred - y|| / ||y||),
RMSE, seconds, epochs and parameter counts; for choral also NLL, CRPS, 90% coverage and the
calibration error (all of :func:`choral.evaluation.metrics.evaluate`). No published numbers exist
for these files: this is a side-by-side comparison only. Prints one JSON object.
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
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _fno_peer import (  # noqa: E402
    choral_params,
    fit_choral,
    predict_fno,
    relative_l2,
    train_fno,
)


def load(root: Path, name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(X, Y) of one file as float64 (n, 1, *grid)."""
    data = torch.load(root / f"{name}_{split}_16.pt", weights_only=True)
    x, y = data["x"].double(), data["y"].double()
    if name == "burgers":
        y = y[:, -1, :]  # the last time step
    return x[:, None].numpy(), y[:, None].numpy()


def choral_config(name: str, members: int) -> dict:
    unet = {"depth": 2, "width": 16 if name == "darcy" else 32, "norm": "none"}
    if name == "burgers":
        unet["padding_mode"] = "circular"
    return {"model": {"backbone": "unet", "activation": "gelu", "unet": unet},
            "train": {"members": members, "batch_size": 32, "lr": 3e-3, "seed": 0}}


def run_set(root: Path, name: str, args: argparse.Namespace) -> dict:
    from choral.evaluation.metrics import evaluate

    X, Y = load(root, name, "train")
    Xt, Yt = load(root, name, "test")
    model, info = fit_choral(choral_config(name, args.members), X, Y, args.budget)
    start = time.perf_counter()
    scores = evaluate(model.predict(Xt), Yt)
    ours = {**scores, **info, "predict_seconds": time.perf_counter() - start,
            **choral_params(model), "config": choral_config(name, args.members)}

    dim = X.ndim - 2
    fno = {"n_modes": (8,) * dim, "hidden": 32, "n_layers": 4}
    state, finfo = train_fno(X, Y, args.budget, fno, lr=args.fno_lr, batch_size=32,
                             schedule="cosine", seed=0)
    pred = predict_fno(state, Xt)
    peer = {"rel_l2": relative_l2(pred, Yt), "rmse": float(np.sqrt(((pred - Yt) ** 2).mean())),
            **finfo}
    return {"n_train": len(X), "n_test": len(Xt), "grid": list(X.shape[2:]),
            "choral": ours, "fno": peer,
            "choral_rel_l2_below_fno": ours["rel_l2"] <= peer["rel_l2"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="folder with the *_16.pt files")
    parser.add_argument("--budget", type=float, default=300.0, help="seconds per model and set")
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--fno-lr", type=float, default=5e-3)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1 is robust on a shared machine)")
    parser.add_argument("--sets", nargs="+", default=["darcy", "burgers"],
                        choices=["darcy", "burgers"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    results = {name: run_set(args.data, name, args) for name in args.sets}
    print(json.dumps({"benchmark": "neuralop_small", "budget_seconds": args.budget,
                      "members": args.members, "machine": platform.machine(),
                      "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                      "wall_seconds": time.perf_counter() - start, "datasets": results},
                     indent=2))


if __name__ == "__main__":
    main()

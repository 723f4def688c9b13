"""FNO Darcy protocol: a choral U-Net ensemble and neuraloperator's FNO side by side.

    python benchmarks/darcy_fno.py [--resolution 85] [--n-train 1000] [--n-test 100]
        [--budget 3600] [--workers 2] [--cache benchmarks/cache] [--threads 1]
        [--members 4] [--width 16] [--depth 3] [--norm none] [--lr 3e-3] [--fno-schedule step]
        [--device cuda] [--precision bf16-mixed]
    python benchmarks/darcy_fno.py --resolution 17 --n-train 40 --n-test 10 --budget 20  # smoke

Protocol (Li et al. 2020, ``../shared/reference/fno_darcy.csv``). Data: ``simulate("darcy", n,
seed, resolution=...)``: ``-div(a grad u) = 1``, ``a`` = 12 / 3 thresholded GRF, solved on the
421 x 421 grid and subsampled (85, 141, 211, 421); training set seed 0, test set seed 1, cached
as ``.npz`` in ``--cache`` (keyed by n, resolution and seed) so reruns skip generation. On this
machine, one after the other, each model gets the same wall-clock budget (``--budget`` seconds):

- choral: ``--members`` U-Net members (depth 3, width 16, GELU, no normalisation (see
  ``neuralop_small.py``: group norm hides the sample's amplitude), zero padding;
  AdamW, lr 3e-3, batch 20, Gaussian NLL, 10% of the training set held out for early stopping);
  ``epochs = budget / seconds per epoch`` (timed on the second epoch of a two-epoch fit) with a
  cosine schedule, since the library has no time limit (``benchmarks/_fno_peer.py``).
- FNO (``neuralop.models.FNO``) as in the paper as far as applicable: n_modes (12, 12), hidden 32,
  4 Fourier layers with a pointwise linear skip and no channel MLP, linear lifting, projection
  through 128 channels, grid coordinates appended, zero domain padding (1/17 of the grid per side,
  5 points at s=85; the reference code pads 9 on one side); Adam (lr 1e-3, weight decay 1e-4),
  batch 20, relative-L2 loss, pointwise unit Gaussian normalisers for ``a`` and ``u``; the step
  schedule (halve the rate every fifth of the budget, the paper's step 100 of 500 epochs).

Reported: relative L2 of both next to the paper's FNO figure for this resolution (s85: 0.0108),
choral's NLL, CRPS, 90% coverage and calibration error, training seconds and epochs of both, the
generation seconds, and whether the targets were met (choral rel L2 <= paper FNO; 90% coverage in
[0.87, 0.93]) as booleans next to the measured numbers. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import csv
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

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / ".." / "shared" / "reference" / "fno_darcy.csv"
COVERAGE = (0.87, 0.93)


def paper_fno(resolution: int) -> float | None:
    """The paper's FNO relative L2 at this resolution, or None where the table has none."""
    if not REFERENCE.exists():
        return None
    rows = csv.DictReader(ln for ln in REFERENCE.read_text().splitlines()
                          if not ln.startswith("#"))
    row = next((r for r in rows if r["model"] == "FNO"), {})
    value = row.get(f"s{resolution}")
    return float(value) if value else None


def dataset(n: int, seed: int, args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, dict]:
    """(X, Y) float64 (n, 1, res, res) from the cache or the simulator, and how it was made."""
    from choral.simulators import simulate

    path = args.cache / f"darcy_n{n}_r{args.resolution}_s{seed}.npz"
    if path.exists():
        with np.load(path) as f:
            X, Y, seconds = f["X"], f["Y"], float(f["seconds"])
        return X.astype(np.float64), Y.astype(np.float64), \
            {"seconds": seconds, "cached": True, "file": str(path)}
    start = time.perf_counter()
    X, Y = simulate("darcy", n, seed, resolution=args.resolution, workers=args.workers)
    seconds = time.perf_counter() - start
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        np.savez(f, X=X.astype(np.float32), Y=Y.astype(np.float32), seconds=seconds)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return X.astype(np.float32).astype(np.float64), Y.astype(np.float32).astype(np.float64), \
        {"seconds": seconds, "cached": False, "file": str(path)}


def choral_config(args: argparse.Namespace) -> dict:
    unet = {"depth": args.depth, "width": args.width, "norm": args.norm, "padding_mode": "zeros"}
    return {"model": {"backbone": "unet", "activation": "gelu", "unet": unet},
            "train": {"members": args.members, "batch_size": 20, "lr": args.lr, "seed": 0,
                      "device": args.device, "precision": args.precision}}


FNO_PAPER = {"n_modes": (12, 12), "hidden": 32, "n_layers": 4, "use_channel_mlp": False,
             "fno_skip": "linear", "lifting_channel_ratio": 0, "projection_channel_ratio": 4,
             "domain_padding": 1 / 17}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=85)
    parser.add_argument("--n-train", type=int, default=1000)
    parser.add_argument("--n-test", type=int, default=100)
    parser.add_argument("--budget", type=float, default=3600.0, help="training seconds per model")
    parser.add_argument("--workers", type=int, default=2, help="processes for data generation")
    parser.add_argument("--cache", type=Path, default=ROOT / "benchmarks" / "cache")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1 is robust on a shared machine)")
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--norm", choices=["none", "group", "instance"], default="none")
    parser.add_argument("--lr", type=float, default=3e-3, help="choral's learning rate")
    parser.add_argument("--fno-schedule", choices=["step", "cosine"], default="step")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:k (both models)")
    parser.add_argument("--precision", choices=["32", "bf16-mixed"], default="32",
                        help="choral's train.precision")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from choral.evaluation.metrics import evaluate

    start = time.perf_counter()
    X, Y, gen_train = dataset(args.n_train, 0, args)
    Xt, Yt, gen_test = dataset(args.n_test, 1, args)

    model, info = fit_choral(choral_config(args), X, Y, args.budget)
    ours = {**evaluate(model.predict(Xt), Yt), **info, **choral_params(model),
            "config": choral_config(args)}
    state, finfo = train_fno(X, Y, args.budget, FNO_PAPER, lr=1e-3, weight_decay=1e-4,
                             batch_size=20, schedule=args.fno_schedule, seed=0,
                             device=args.device)
    pred = predict_fno(state, Xt)
    peer = {"rel_l2": relative_l2(pred, Yt), "rmse": float(np.sqrt(((pred - Yt) ** 2).mean())),
            **finfo}

    paper = paper_fno(args.resolution)
    cov = ours["coverage_90"]
    targets = {
        "paper_fno_rel_l2": paper, "choral_rel_l2": ours["rel_l2"],
        "fno_peer_rel_l2": peer["rel_l2"],
        "choral_rel_l2_at_or_below_paper": None if paper is None else ours["rel_l2"] <= paper,
        "coverage_90": cov, "coverage_90_in_[0.87,0.93]": COVERAGE[0] <= cov <= COVERAGE[1],
        "choral_rel_l2_at_or_below_fno_peer": ours["rel_l2"] <= peer["rel_l2"],
    }
    n_gen = args.n_train + args.n_test
    gen_seconds = gen_train["seconds"] + gen_test["seconds"]
    print(json.dumps({
        "benchmark": "darcy_fno", "resolution": args.resolution, "n_train": args.n_train,
        "n_test": args.n_test, "budget_seconds": args.budget, "machine": platform.machine(),
        "device": torch.cuda.get_device_name(args.device) if "cuda" in args.device else "cpu",
        "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "generation": {"train": gen_train, "test": gen_test, "seconds": gen_seconds,
                       "seconds_per_sample": gen_seconds / n_gen, "workers": args.workers},
        "targets": targets, "choral": ours, "fno": peer,
        "wall_seconds": time.perf_counter() - start}, indent=2))


if __name__ == "__main__":
    main()

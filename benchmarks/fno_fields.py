"""choral FNO ensembles (field defaults) next to neuraloperator's FNO, and resolution transfer.

    python benchmarks/fno_fields.py --data ../shared/data/neuralop --task darcy
    python benchmarks/fno_fields.py --data ../shared/data/neuralop --task burgers
    python benchmarks/fno_fields.py --task transfer [--n-train 1000] [--n-test 200]
    [--members 5] [--epochs N] [--max-train N] [--recalibrate K]

Tasks, each in one process, choral first, then the peer on this machine:

- ``darcy`` / ``burgers``: neuraloperator's small files (see ``neuralop_small.py``: Darcy 16x16,
  Burgers 16 points, target the last time step). choral: ``model.backbone = "fno"`` (modes 8,
  width 32, 4 layers: the peer's network) and every ``[train]`` setting at its field default
  (``FIELD_DEFAULTS``) but ``--members``/``--epochs`` when given. Peer: ``neuralop.models.FNO``,
  the same network, Adam (lr 5e-3, weight decay 1e-4), batch 32, relative-L2 loss, pointwise
  unit Gaussian normalisers, cosine schedule over a wall-clock budget equal to choral's
  training seconds (the same budget).
- ``transfer``: Darcy from the built-in simulator (``simulate("darcy")``: training set
  ``--n-train`` at 16x16 from a 121-node fine grid, seed 0; test sets of ``--n-test`` at 16x16
  (fine 121) and 32x32 (fine 125), seed 1). Both models are trained at 16x16 as above (the peer
  with per-channel normalisers, since pointwise ones exist only on the training grid) and
  evaluated at 16x16 and 32x32. With ``--recalibrate K``, choral is then recalibrated
  (``Surrogate.calibrate``, the default method) on ``K`` more 32x32 fields (seed 2) and scored
  again at 32x32 (``32_recalibrated``): the 16x16 calibration, interpolated, is not checked at
  the new grid (a ``GridWarning`` says so).

Reported: relative L2 (mean over samples of ||pred - y|| / ||y||) of both; choral's 90% coverage,
NLL, CRPS and calibration error; seconds, epochs and the member backend. Prints one JSON object.
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
from _fno_peer import predict_fno, relative_l2, train_fno  # noqa: E402
from neuralop_small import load  # noqa: E402

FNO = {"n_modes": (8, 8), "hidden": 32, "n_layers": 4}
TARGETS = {"darcy": {"rel_l2": 0.075}, "burgers": {}, "transfer": {}}
COVERAGE = (0.85, 0.95)


def simulated(n: int, seed: int, resolution: int, fine: int) -> tuple[np.ndarray, np.ndarray]:
    from choral.simulators import simulate

    return simulate("darcy", n, seed, resolution=resolution, fine=fine)


def fit_choral(X, Y, dim: int, args) -> tuple:
    from choral.config import Config
    from choral.surrogate import Surrogate

    train = {"members": args.members, "seed": 0}
    if args.epochs:
        train["epochs"] = args.epochs
    cfg = Config.from_dict({"model": {"backbone": "fno", "fno": {"modes": 8, "width": 32,
                                                                 "layers": 4}},
                            "train": train})
    start = time.perf_counter()
    model = Surrogate(cfg).fit(X, Y)
    info = {"fit_seconds": time.perf_counter() - start, **{
        k: model.metrics[k] for k in ("train_seconds", "epochs_run", "n_train", "n_val",
                                      "n_calibration", "backend")},
        "train_config": model.config.train.model_dump(include={
            "members", "epochs", "batch_size", "lr", "lr_schedule", "patience"})}
    return model, info


def peer(X, Y, budget: float, dim: int, pointwise: bool) -> tuple:
    fno = {**FNO, "n_modes": FNO["n_modes"][:dim]}
    return train_fno(X, Y, budget, fno, lr=5e-3, batch_size=32, schedule="cosine", seed=0,
                     pointwise=pointwise)


def scores(model, state, X, Y) -> dict:
    from choral.evaluation.metrics import evaluate

    ours = evaluate(model.predict(X), Y)
    keep = ("rel_l2", "coverage_90", "nll", "crps", "calibration_error")
    return {"choral": {k: ours[k] for k in keep},
            "fno": {"rel_l2": relative_l2(predict_fno(state, X), Y)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=["darcy", "burgers", "transfer"], required=True)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/neuralop"))
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=None, help="default: the field default")
    parser.add_argument("--max-train", type=int, default=None, help="use the first N rows")
    parser.add_argument("--n-train", type=int, default=1000)
    parser.add_argument("--n-test", type=int, default=200)
    parser.add_argument("--recalibrate", type=int, default=0,
                        help="transfer: recalibrate on this many 32x32 fields (seed 2)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    if args.task == "transfer":
        X, Y = simulated(args.n_train, 0, 16, 121)
        tests = {"16": simulated(args.n_test, 1, 16, 121), "32": simulated(args.n_test, 1, 32, 125)}
    else:
        X, Y = load(args.data, args.task, "train")
        tests = {"test": load(args.data, args.task, "test")}
    if args.max_train:
        X, Y = X[:args.max_train], Y[:args.max_train]
    dim = X.ndim - 2
    model, ours = fit_choral(X, Y, dim, args)
    state, theirs = peer(X, Y, ours["train_seconds"], dim, pointwise=args.task != "transfer")
    results = {name: scores(model, state, *data) for name, data in tests.items()}
    if args.task == "transfer" and args.recalibrate:
        model.calibrate(*simulated(args.recalibrate, 2, 32, 125))
        results["32_recalibrated"] = scores(model, state, *tests["32"])
    out = {"benchmark": "fno_fields", "task": args.task, "n_train": len(X),
           "n_test": {k: len(v[0]) for k, v in tests.items()}, "machine": platform.machine(),
           "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
           "choral": ours, "fno": {k: v for k, v in theirs.items() if k != "config"},
           "results": results, "wall_seconds": time.perf_counter() - start}
    first = next(iter(results.values()))
    cov = first["choral"]["coverage_90"]
    targets = {"coverage_90": cov, "coverage_in_[0.85,0.95]": COVERAGE[0] <= cov <= COVERAGE[1]}
    if args.task == "darcy":
        targets["rel_l2_at_or_below_0.075"] = first["choral"]["rel_l2"] <= 0.075
    if args.task == "burgers":
        targets["rel_l2_at_or_below_fno"] = first["choral"]["rel_l2"] <= first["fno"]["rel_l2"]
    if args.task == "transfer":
        r32 = results["32"]
        targets = {"choral_32": r32["choral"]["rel_l2"], "fno_32": r32["fno"]["rel_l2"],
                   "choral_32_no_worse_than_fno": r32["choral"]["rel_l2"]
                   <= r32["fno"]["rel_l2"], "coverage_90_32": r32["choral"]["coverage_90"]}
        if "32_recalibrated" in results:
            targets["coverage_90_32_recalibrated"] = \
                results["32_recalibrated"]["choral"]["coverage_90"]
    out["targets"] = targets
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

"""WiSE-FT on a regime shift of the borehole function: the alpha curve on both regimes.

    python benchmarks/wiseft.py [--n-old 600] [--n-new 150] [--epochs 300]

Old regime: borehole runs with the well radius r_w (input 0) below its median; new regime: above
it. A 5-member ensemble (one hidden layer of 50) is trained on the old regime and fine-tuned on
``--n-new`` runs of the new one (:func:`choral.ensembles.wiseft.finetune`, alpha chosen on
held-out old runs and a held-out fifth of the new runs). Reported: the validation curve and the
test NLL per target (original units) on fresh runs of both regimes at alpha = 0 (the old model),
1 (plain fine-tuning) and the chosen alpha. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np


def regimes(n: int, seed: int) -> tuple[tuple, tuple]:
    from choral.simulators import simulate

    X, Y = simulate("borehole", 2 * n, seed)
    low = X[:, 0] < 0.1  # the median of r_w ~ U(0.05, 0.15)
    return (X[low][:n], Y[low][:n]), (X[~low][:n], Y[~low][:n])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-old", type=int, default=600)
    parser.add_argument("--n-new", type=int, default=150)
    parser.add_argument("--epochs", type=int, default=300)
    args = parser.parse_args()
    import torch

    from choral.config import Config
    from choral.surrogate import Surrogate
    from choral.surrogate.finetune import curve, fine_weights

    torch.set_num_threads(1)
    start = time.perf_counter()
    (Xo, Yo), _ = regimes(args.n_old + 200, seed=0)
    _, (Xn, Yn) = regimes(args.n_new, seed=1)
    old_test, new_test = regimes(500, seed=2)
    cfg = Config().updated(**{"train.members": 5, "model.hidden": [50],
                              "train.epochs": args.epochs, "finetune.epochs": args.epochs})
    model = Surrogate(cfg).fit(Xo[:args.n_old], Yo[:args.n_old])
    theta_ft, _, val = fine_weights(model, Xn, Yn)
    val["old"] = (Xo[args.n_old:], Yo[args.n_old:])
    alphas = np.linspace(0, 1, 11)
    valid = curve(model, theta_ft, alphas, val)
    chosen = min(valid, key=lambda r: r["mean_nll"])["alpha"]
    test = curve(model, theta_ft, alphas, {"old": old_test, "new": new_test})
    print(json.dumps({"benchmark": "wiseft", "n_old": args.n_old, "n_new": args.n_new,
                      "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
                      "seconds": round(time.perf_counter() - start, 1), "alpha": chosen,
                      "validation_curve": valid, "test_curve": test}, indent=1))


if __name__ == "__main__":
    main()

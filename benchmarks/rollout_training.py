"""Choose the rollout training default (pushforward, input noise) on validation trajectories.

    python benchmarks/rollout_training.py [--n-train 48] [--t-train 100] [--n-val 16]
        [--members 3] [--epochs 20] [--seed 0] [--variants P:S ...] [--out FILE]

Only the KS training set of ``benchmarks/ks_rollout.py`` is used (seed 0: ``--n-train``
trajectories of ``--t-train`` states, L = 22, 64 points); its last ``--n-val`` trajectories
are held out whole and never trained on, the others train (``rollout.validation = 0``: no
spread scale, the same rows for every variant). Each variant (pushforward probability, input
noise in standardised units) fits the same FNO ensemble (modes 16, width 32, 4 layers, history
1) with the same seed, then rolls out over the validation trajectories from their first state
for ``t-train - 1`` steps. Reported per variant: correlation time of the ensemble mean (capped
at the horizon), mean per-step rel. L2 of the ensemble mean over the horizon and at a few steps,
fit seconds. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch

from choral.config import Config
from choral.evaluation.rollout import correlation_time, relative_l2_per_step
from choral.simulators.ks import simulate_ks
from choral.surrogate.rollout import fit_rollout, rollout

VARIANTS = ((0.0, 0.0), (0.5, 0.0), (1.0, 0.0), (0.0, 0.01), (0.0, 0.03))
"""(pushforward, input_noise) pairs tried."""


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n-train", type=int, default=48)
    p.add_argument("--t-train", type=int, default=100)
    p.add_argument("--n-val", type=int, default=16)
    p.add_argument("--members", type=int, default=3)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--variants", nargs="*", default=None,
                   help="pushforward:noise pairs to try (default: VARIANTS)")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    variants = VARIANTS if args.variants is None else \
        [tuple(float(v) for v in pair.split(":")) for pair in args.variants]
    _, u = simulate_ks(args.n_train, 0, 64, steps=args.t_train)
    fit, val = u[:-args.n_val], u[-args.n_val:]
    truth = val[:, 1:]
    results = []
    for pushforward, noise in variants:
        train = {"members": args.members, "seed": args.seed}
        if args.epochs:
            train["epochs"] = args.epochs
        cfg = Config.from_dict({
            "model": {"backbone": "fno", "fno": {"modes": 16, "width": 32, "layers": 4}},
            "train": train,
            "rollout": {"pushforward": pushforward, "input_noise": noise, "validation": 0.0}})
        start = time.perf_counter()
        model = fit_rollout(fit, 1, cfg)
        seconds = time.perf_counter() - start
        mean = rollout(model, val[:, :1], truth.shape[1]).mean
        rel = relative_l2_per_step(mean, truth)
        results.append({
            "pushforward": pushforward, "input_noise": noise, "fit_seconds": round(seconds, 1),
            "epochs_run": model.metrics["epochs_run"],
            "correlation_time": correlation_time(mean, truth),
            "relative_l2_mean": float(rel.mean()),
            "relative_l2_at": {t: float(rel[t - 1]) for t in (1, 10, 40, 80)
                               if t <= len(rel)}})
        print(json.dumps(results[-1]), flush=True)
    best = min(results, key=lambda r: (-r["correlation_time"], r["relative_l2_mean"]))
    report = {"args": vars(args), "machine": platform.processor() or platform.machine(),
              "torch": torch.__version__, "threads": torch.get_num_threads(),
              "horizon": truth.shape[1], "variants": results,
              "chosen": {k: best[k] for k in ("pushforward", "input_noise")},
              "rule": "longest validation correlation time, then lowest mean rel. L2"}
    text = json.dumps(report, indent=1, default=float)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()

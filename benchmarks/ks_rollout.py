"""KS rollouts: an FNO ensemble's mean trajectory next to each of its members alone.

    python benchmarks/ks_rollout.py [--n-train 32] [--t-train 100] [--n-test 16]
        [--steps 160] [--members 5] [--epochs 20] [--history 1] [--seed 0]
        [--pushforward P] [--input-noise S] [--validation F] [--out FILE]

Data (:mod:`choral.simulators.ks`): L = 22, 64 points, states 0.25 time units apart after a
burn-in of 100; ``--n-train`` trajectories of ``--t-train`` states (seed 0), ``--n-test`` of
``history + --steps`` states (seed 1). Model: ``model.backbone = "fno"`` (modes 16, width 32,
4 layers), field defaults for every ``[train]`` setting but ``--members``/``--epochs``, fitted
on one-step pairs (:func:`choral.surrogate.rollout.fit_rollout`, history ``--history``), with
``[rollout]`` ``pushforward`` / ``input_noise`` / ``validation`` from the flags (default: the
config defaults). ``validation`` of the training trajectories are held out whole and the
rollout spread scale is fitted there (never on the test set).

The single networks: the members of the same deep ensemble, each rolled out alone; they are
trained independently, so each is a network of the same architecture trained the same way
(same data, same settings, its own seed). Reported, per test set: correlation time (steps
until the trajectory-averaged Pearson correlation with the truth drops below 0.8) of the
ensemble mean (members feeding back their means) and of each member alone; spread-skill ratio
(sqrt((s+1)/s) spread / RMSE of the mean) averaged over the first half of the ensemble's
correlation time, with the member means fed back (``mean``) and with Gaussian draws
(``sample``), raw (``spread=False``) and with the spread scale fitted on the held-out training
trajectories (``calibrated``); the members alone are always rolled out raw;
per-step rel. L2 and CRPS at a few steps. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch

from choral.config import Config
from choral.evaluation.rollout import (
    correlation_time,
    crps_per_step,
    rollout_scores,
    spread_skill_per_step,
)
from choral.simulators.ks import simulate_ks
from choral.surrogate.rollout import fit_rollout, rollout

TARGET_SPREAD_SKILL = (0.8, 1.2)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n-train", type=int, default=32)
    p.add_argument("--t-train", type=int, default=100)
    p.add_argument("--n-test", type=int, default=16)
    p.add_argument("--steps", type=int, default=160)
    p.add_argument("--members", type=int, default=5)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--history", type=int, default=1)
    p.add_argument("--seed", type=int, default=0, help="training seed (members, batches)")
    p.add_argument("--pushforward", type=float, default=None)
    p.add_argument("--input-noise", type=float, default=None)
    p.add_argument("--validation", type=float, default=None)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    h = args.history
    start = time.perf_counter()
    _, train = simulate_ks(args.n_train, 0, 64, steps=args.t_train)
    _, test = simulate_ks(args.n_test, 1, 64, steps=h + args.steps)
    sim_seconds = time.perf_counter() - start
    train_cfg = {"members": args.members, "seed": args.seed}
    if args.epochs:
        train_cfg["epochs"] = args.epochs
    flags = {"pushforward": args.pushforward, "input_noise": args.input_noise,
             "validation": args.validation}
    cfg = Config.from_dict({"model": {"backbone": "fno",
                                      "fno": {"modes": 16, "width": 32, "layers": 4}},
                            "train": train_cfg,
                            "rollout": {k: v for k, v in flags.items() if v is not None}})
    start = time.perf_counter()
    model = fit_rollout(train, h, cfg)
    fit_seconds = time.perf_counter() - start
    truth = test[:, h:]
    result = {}
    for noise in ("mean", "sample"):
        raw = rollout(model, test[:, :h], args.steps, noise=noise, seed=0, spread=False)
        out = rollout(model, test[:, :h], args.steps, noise=noise, seed=0)
        scores = rollout_scores(out.members, out.predictives, truth)
        tau = scores["correlation_time"]
        half = max(1, tau // 2)
        raw_ss = spread_skill_per_step(raw.members, truth)
        crps_raw = crps_per_step(raw.predictives, truth)
        result[noise] = {
            "correlation_time_mean": tau,
            "spread_skill_first_half": float(np.mean(scores["spread_skill"][:half])),
            "spread_skill_first_half_raw": float(raw_ss[:half].mean()),
            "spread_skill_steps": half,
            "spread_scale": model.records["rollout"].get("spread_scale", {}).get(noise),
            "spread_skill_at": {t: scores["spread_skill"][t - 1] for t in (1, 10, 40, 80)
                                if t <= args.steps},
            "relative_l2_at": {t: scores["relative_l2"][t - 1] for t in (1, 10, 40, 80)
                               if t <= args.steps},
            "crps_at": {t: scores["crps"][t - 1] for t in (1, 10, 40, 80) if t <= args.steps},
            "crps_raw_at": {t: float(crps_raw[t - 1]) for t in (1, 10, 40, 80)
                            if t <= args.steps},
        }
        if noise == "mean":
            result[noise]["correlation_time_members"] = [
                correlation_time(raw.members[k], truth) for k in range(len(raw.members))]
    singles = result["mean"]["correlation_time_members"]
    ss = result["mean"]["spread_skill_first_half"], result["sample"]["spread_skill_first_half"]
    tau = result["mean"]["correlation_time_mean"]
    report = {
        "args": vars(args), "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "sim_seconds": round(sim_seconds, 1), "fit_seconds": round(fit_seconds, 1),
        "epochs_run": model.metrics["epochs_run"], "backend": model.backend,
        "n_pairs": model.metrics["n_train"], "rollout": model.records["rollout"], **result,
        "targets": {
            "correlation_time_ensemble_ge_single": {
                "ensemble": tau,
                "single_median": float(np.median(singles)), "single_max": max(singles),
                "met_vs_median": bool(tau >= np.median(singles)),
                "met_vs_every_member": tau >= max(singles)},
            "spread_skill_in_0.8_1.2": {
                "mean_noise": ss[0], "sample_noise": ss[1],
                "met_mean": TARGET_SPREAD_SKILL[0] <= ss[0] <= TARGET_SPREAD_SKILL[1],
                "met_sample": TARGET_SPREAD_SKILL[0] <= ss[1] <= TARGET_SPREAD_SKILL[1]}},
    }
    text = json.dumps(report, indent=1, default=float)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()

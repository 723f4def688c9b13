"""One U-Net ensemble for a family of Burgers equations: FiLM on the viscosity vs none.

    python benchmarks/burgers_family.py [--n-train 48] [--n-test 24] [--steps 11]
        [--resolution 64] [--members 3] [--epochs 20] [--seed 0] [--out FILE]

Data (:func:`choral.simulators.burgers.burgers_trajectories`, FNO-protocol initial states,
states 0.05 time units apart, fine grid 8x the output grid): ``--n-train`` trajectories with
viscosities 0.1, 0.05, 0.02, 0.01 in turn (seed 0), ``--n-test`` with the held-out viscosities
0.07, 0.03, 0.015 in turn (seed 1), between the training ones. Models: the same U-Net ensemble
(depth 3, width 16, circular padding, history 1, field defaults for ``[train]`` but
``--members``/``--epochs``) fitted with the viscosity as a FiLM condition (``conditions``) and
without it. Reported on the test trajectories: one-step rel. L2 (from every true state), and the
rollout from the first state: rel. L2 of the ensemble mean at the last step and averaged over the
steps, per held-out viscosity and overall; the same for persistence (the state kept as it is)
as a floor. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch

from choral.config import Config
from choral.evaluation.rollout import relative_l2_per_step
from choral.simulators.burgers import burgers_trajectories
from choral.surrogate.rollout import fit_rollout, history_pairs, rollout

TRAIN_NUS = (0.1, 0.05, 0.02, 0.01)
TEST_NUS = (0.07, 0.03, 0.015)


def scores(model, Y: np.ndarray, nu: np.ndarray, film: bool) -> dict:
    cond = nu[:, None] if film else None
    X1, Y1 = history_pairs(Y, 1, cond)
    mean = model.predict(X1).mean.cpu().numpy()
    one = np.linalg.norm((mean - Y1).reshape(len(Y1), -1), axis=1) / \
        np.linalg.norm(Y1.reshape(len(Y1), -1), axis=1)
    one = one.reshape(len(Y), -1).mean(1)  # per trajectory
    path = rollout(model, Y[:, :1], Y.shape[1] - 1, conditions=cond).mean
    rel = torch.stack([relative_l2_per_step(path[i:i + 1], Y[i:i + 1, 1:])
                       for i in range(len(Y))]).numpy()  # (n, T)
    out = {"one_step": float(one.mean()), "rollout_last": float(rel[:, -1].mean()),
           "rollout_mean": float(rel.mean())}
    out["by_nu"] = {str(v): {"one_step": float(one[nu == v].mean()),
                             "rollout_last": float(rel[nu == v, -1].mean())}
                    for v in np.unique(nu)}
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n-train", type=int, default=48)
    p.add_argument("--n-test", type=int, default=24)
    p.add_argument("--steps", type=int, default=11)
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--members", type=int, default=3)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    r = args.resolution
    start = time.perf_counter()
    nu_train, train = burgers_trajectories(args.n_train, 0, r, TRAIN_NUS, steps=args.steps,
                                           fine=8 * r)
    nu_test, test = burgers_trajectories(args.n_test, 1, r, TEST_NUS, steps=args.steps,
                                         fine=8 * r)
    sim_seconds = time.perf_counter() - start
    train_cfg = {"members": args.members, "seed": args.seed}
    if args.epochs:
        train_cfg["epochs"] = args.epochs
    cfg = Config.from_dict({"model": {"backbone": "unet", "unet": {
        "depth": 3, "width": 16, "padding_mode": "circular"}}, "train": train_cfg})
    report = {"args": vars(args), "machine": platform.processor() or platform.machine(),
              "torch": torch.__version__, "threads": torch.get_num_threads(),
              "sim_seconds": round(sim_seconds, 1), "train_nus": TRAIN_NUS,
              "test_nus": TEST_NUS}
    def rel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.linalg.norm((a - b).reshape(*a.shape[:2], -1), axis=2) / \
            np.linalg.norm(b.reshape(*b.shape[:2], -1), axis=2)

    kept = rel(np.repeat(test[:, :1], test.shape[1] - 1, 1), test[:, 1:])
    report["persistence"] = {"one_step": float(rel(test[:, :-1], test[:, 1:]).mean()),
                             "rollout_last": float(kept[:, -1].mean()),
                             "rollout_mean": float(kept.mean())}
    for name, film in (("film", True), ("unconditioned", False)):
        start = time.perf_counter()
        model = fit_rollout(train, 1, cfg, conditions=nu_train[:, None] if film else None)
        report[name] = {"fit_seconds": round(time.perf_counter() - start, 1),
                        "epochs_run": model.metrics["epochs_run"],
                        **scores(model, test, nu_test, film)}
        print(json.dumps({name: report[name]}), flush=True)
    report["film_better"] = {k: report["film"][k] < report["unconditioned"][k]
                             for k in ("one_step", "rollout_last", "rollout_mean")}
    text = json.dumps(report, indent=1, default=float)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()

"""Sobol indices through a surrogate against the truth: Ishigami and borehole.

    PYTHONPATH=. python benchmarks/sobol.py [--runs 500] [--n 8192] [--out FILE]

Ishigami (a = 7, b = 0.1, inputs uniform on [-pi, pi]^3): a surrogate fitted on ``--runs``
simulator runs (uniform random inputs, seed 0), its first-order and total indices through
:func:`choral.sensitivity.sobol_indices` (n base samples per member) against the analytic
indices (target: first-order within 0.02 of 0.314, 0.442, 0.000, with 90% intervals covering
them). Borehole (d = 8, its usual box): a surrogate fitted on ``--runs`` runs against a
large-sample estimate on the true function (scipy's estimators, n = 2^18 base samples, 2.6 M
evaluations). The surrogate's settings were chosen on a validation split of the training runs
(the default hold-outs), never on the reference indices. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np
import torch
from _report import emit  # run as a script: benchmarks/ is on sys.path

from choral.config import Config
from choral.sensitivity import sobol_indices
from choral.simulators import SIMULATORS
from choral.simulators.analytic import ishigami_indices
from choral.surrogate import Surrogate

SETTINGS = {"train.members": 5, "model.hidden": [128, 128, 128], "model.activation": "silu",
            "train.epochs": 3000, "train.patience": 300, "train.lr": 3e-3,
            "train.batch_size": 64, "train.seed": 0}


def fit(name: str, runs: int) -> tuple[Surrogate, float]:
    sim = SIMULATORS[name]
    X = sim.sample(runs, seed=0)
    start = time.perf_counter()
    model = Surrogate(Config().updated(**SETTINGS)).fit(X, sim(X))
    return model, time.perf_counter() - start


def compare(res, first_ref: np.ndarray, total_ref: np.ndarray, level: float) -> dict:
    out = {}
    for kind, ref in (("first", first_ref), ("total", total_ref)):
        lower, upper = res.interval(kind, level)
        est = getattr(res, kind)[0]
        out[kind] = {"reference": ref.round(4).tolist(), "estimate": est.round(4).tolist(),
                     "abs_error": np.abs(est - ref).round(4).tolist(),
                     "lower": lower[0].round(4).tolist(), "upper": upper[0].round(4).tolist(),
                     "covered": ((lower[0] <= ref) & (ref <= upper[0])).tolist(),
                     "epistemic_std": res.epistemic_std(kind)[0].round(4).tolist(),
                     "mc_std": res.mc_std(kind)[0].round(4).tolist()}
    return out


def truth(name: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """A large-sample estimate on the true function (one function: Monte Carlo error only)."""
    sim = SIMULATORS[name]
    res = sobol_indices(sim, sim.bounds, n=n, resamples=20, seed=123)
    return res.first[0], res.total[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--n", type=int, default=8192)
    parser.add_argument("--level", type=float, default=0.9)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.manual_seed(0)
    report = {"machine": platform.processor() or platform.machine(),
              "threads": torch.get_num_threads(), "omp": os.environ.get("OMP_NUM_THREADS"),
              "runs": args.runs, "n": args.n, "level": args.level, "settings": SETTINGS}
    for name in ("ishigami", "borehole"):
        model, seconds = fit(name, args.runs)
        start = time.perf_counter()
        res = sobol_indices(model, SIMULATORS[name].bounds, n=args.n, resamples=200, seed=0)
        took = time.perf_counter() - start
        first_ref, total_ref = ishigami_indices() if name == "ishigami" else \
            truth(name, 2**18)
        report[name] = {"fit_seconds": round(seconds, 1), "sobol_seconds": round(took, 2),
                        "reference": "analytic" if name == "ishigami" else
                        "true function, n = 2^18", **compare(res, first_ref, total_ref,
                                                             args.level)}
        first = report[name]["first"]
        report[name]["target_met"] = bool(max(first["abs_error"]) <= 0.02
                                          and all(first["covered"]))
        print(json.dumps({name: report[name]}), flush=True)
    emit(report, args.out)


if __name__ == "__main__":
    main()

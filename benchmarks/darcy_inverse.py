"""Darcy inverse problem: recover the coefficient field from 64 noisy sensor values of the
solution, by MCMC through a choral surrogate, against the same MCMC on the numerical solver.

    PYTHONPATH=. python benchmarks/darcy_inverse.py [--train 2000] [--problems 20] [--out FILE]

Forward model (:mod:`choral.simulators.darcy_modes`): ``log a = 2 U``, ``U`` the ``--modes``
(12) leading modes of FNO's GRF (alpha 2, tau 3) with coefficients ``xi ~ N(0, I)``; ``u`` solves
``-div(a grad u) = 1`` on 33 x 33 nodes; observed: ``u`` at an 8 x 8 sensor lattice (64 values)
plus Gaussian noise of standard deviation ``sigma = 0.01 x`` the RMS of the training outputs
(one number, the solution scale at the sensors, known to the sampler).

Surrogate: a 5-member choral MLP ensemble fitted on ``--train`` simulator runs (seed 0), inputs
``xi``, outputs the 64 sensor values. Problems: ``--problems`` true ``xi`` from the prior with
another seed (seed 1, never in training), noise seed 2. Posterior: ``choral.inference.infer``
(HMC, 8 chains, standard normal prior on ``xi``) through the surrogate likelihood (member mixture,
epistemic and aleatoric variances added to the noise). Reported per problem and averaged: the
90% central-interval coverage of the true log-coefficient (pointwise over the 33 x 33 nodes;
``a = exp(log a)`` is monotone, so it is the coverage of ``a``) and of the true ``xi``.

Solver: the same ``infer`` call (same prior, chains, steps, seed) with the likelihood through
the numerical solver itself (:func:`choral.simulators.darcy_adjoint.sensor_map`, exact Gaussian
likelihood, gradient by the adjoint method) on the first ``--solver-problems`` problems, with
``--solver-warmup``/``--solver-draws`` (defaults: the surrogate's); ``--solver-only I ...``
skips the surrogate and runs the solver's MCMC on problems ``I`` (a diagnostic). Prints JSON.
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
from choral.inference import gaussian_prior, infer
from choral.simulators.darcy_adjoint import sensor_map
from choral.simulators.darcy_modes import log_coefficient, simulate_darcy_modes
from choral.surrogate import Surrogate

SETTINGS = {"train.members": 5, "model.hidden": [128, 128, 128], "model.activation": "silu",
            "train.epochs": 2000, "train.patience": 200, "train.lr": 3e-3,
            "train.batch_size": 64, "train.seed": 0}
RES, SENSORS, LEVEL = 33, 8, 0.9


def field_coverage(samples: np.ndarray, truth: np.ndarray, nodes: np.ndarray) -> dict:
    """Coverage of the true log-coefficient (pointwise) and of the true xi by the central
    ``LEVEL`` intervals of the posterior draws (S, k)."""
    fields = log_coefficient(samples, nodes)  # (S, p, p)
    true = log_coefficient(truth[None], nodes)[0]
    lo, hi = np.quantile(fields, [(1 - LEVEL) / 2, (1 + LEVEL) / 2], axis=0)
    xlo, xhi = np.quantile(samples, [(1 - LEVEL) / 2, (1 + LEVEL) / 2], axis=0)
    return {"field_coverage": float(((true >= lo) & (true <= hi)).mean()),
            "xi_coverage": float(((truth >= xlo) & (truth <= xhi)).mean()),
            "field_rmse": float(np.sqrt(((fields.mean(0) - true) ** 2).mean())),
            "field_post_std": float(fields.std(0).mean()),
            "prior_field_std": float(np.sqrt((log_coefficient(np.eye(len(truth)), nodes) ** 2)
                                             .sum(0)).mean())}


def run(model, y_obs, sigma, truth, args, seed, warmup, draws, nodes) -> dict:
    prior = gaussian_prior(np.zeros(args.modes), 1.0)
    post = infer(model, y_obs, sigma, prior, chains=args.chains, warmup=warmup, draws=draws,
                 steps=args.steps, init_factor=args.init_factor, seed=seed)
    return {**field_coverage(post.flat, truth, nodes), "seconds": post.info["seconds"],
            "iterations": warmup + draws, "max_rhat": float(post.rhat.max()),
            "min_ess": float(post.ess.min()), "acceptance": post.info["acceptance"],
            "divergences": post.info["divergences"], "mean_xi": post.flat.mean(0).tolist()}


def surrogate_problems(args, X, Y, Xt, Yt, y_obs, sigma, nodes, report) -> list[dict]:
    """Fit the surrogate on (X, Y), run its MCMC on every problem; fills ``report``."""
    start = time.perf_counter()
    model = Surrogate(Config().updated(**{**SETTINGS, "train.epochs": args.epochs})).fit(X, Y)
    report["fit_seconds"] = round(time.perf_counter() - start, 1)
    print(json.dumps({"fit_seconds": report["fit_seconds"]}), flush=True)
    pred = model.predict(Xt)
    rel = float(np.sqrt(((pred.mean.numpy() - Yt) ** 2).mean()) / np.sqrt((Yt**2).mean()))
    report["surrogate_test_rel_rmse"] = rel
    print(json.dumps({"surrogate_test_rel_rmse": rel}), flush=True)
    problems = []
    for i in range(args.problems):
        problems.append(run(model, y_obs[i], sigma, Xt[i], args, i, args.warmup, args.draws,
                            nodes))
        print(json.dumps({"problem": i, **{k: v for k, v in problems[-1].items()
                                           if k != "mean_xi"}}), flush=True)
    report["problems"] = problems
    cov = np.array([p["field_coverage"] for p in problems])
    report["surrogate"] = {
        "field_coverage_mean": float(cov.mean()),
        "field_coverage_median": float(np.median(cov)),
        "xi_coverage_mean": float(np.mean([p["xi_coverage"] for p in problems])),
        "seconds_per_problem": float(np.mean([p["seconds"] for p in problems])),
        "seconds_per_iteration": float(np.mean([p["seconds"] / p["iterations"]
                                                for p in problems])),
        "max_rhat": float(max(p["max_rhat"] for p in problems)),
        "target_met": bool(0.85 <= cov.mean() <= 0.95)}
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--problems", type=int, default=20)
    parser.add_argument("--modes", type=int, default=12)
    parser.add_argument("--chains", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--draws", type=int, default=300)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--init-factor", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=SETTINGS["train.epochs"])
    parser.add_argument("--solver-problems", type=int, default=1)
    parser.add_argument("--solver-warmup", type=int, default=None)
    parser.add_argument("--solver-draws", type=int, default=None)
    parser.add_argument("--solver-only", type=int, nargs="+", default=None,
                        help="skip the surrogate; the solver MCMC on these problem indices")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.manual_seed(0)
    report = {"machine": platform.processor() or platform.machine(),
              "threads": torch.get_num_threads(), "omp": os.environ.get("OMP_NUM_THREADS"),
              "args": vars(args), "settings": {**SETTINGS, "train.epochs": args.epochs},
              "level": LEVEL, "resolution": RES, "sensors": SENSORS ** 2}
    start = time.perf_counter()
    X, Y = simulate_darcy_modes(args.train, seed=0, resolution=RES, modes=args.modes,
                                sensors=SENSORS)
    report["simulate_train_seconds"] = round(time.perf_counter() - start, 2)
    sigma = 0.01 * float(np.sqrt((Y**2).mean()))
    report["noise_sigma"] = sigma
    Xt, Yt = simulate_darcy_modes(args.problems, seed=1, resolution=RES, modes=args.modes,
                                  sensors=SENSORS)
    y_obs = Yt + sigma * np.random.default_rng(2).standard_normal(Yt.shape)
    nodes = np.linspace(0.0, 1.0, RES)
    problems = [] if args.solver_only is not None else surrogate_problems(
        args, X, Y, Xt, Yt, y_obs, sigma, nodes, report)
    solver_indices = range(args.solver_problems) if args.solver_only is None else args.solver_only
    exact = sensor_map(RES, args.modes, SENSORS)

    def solver_moments(x: torch.Tensor):  # one "member": the solver, no model variance
        u = exact(x)
        return u[None], torch.zeros_like(u)[None]

    warmup = args.warmup if args.solver_warmup is None else args.solver_warmup
    draws = args.draws if args.solver_draws is None else args.solver_draws
    solver = []
    for i in solver_indices:
        res = {"problem": i, **run(solver_moments, y_obs[i], sigma, Xt[i], args, i, warmup,
                                   draws, nodes)}
        if problems:
            res["mean_xi_difference_max"] = float(np.max(np.abs(
                np.array(res["mean_xi"]) - np.array(problems[i]["mean_xi"]))))
        solver.append(res)
        print(json.dumps({"solver_problem": i, **{k: v for k, v in res.items()
                                                  if k != "mean_xi"}}), flush=True)
    report["solver"] = solver
    if solver and problems:
        per_it = float(np.mean([r["seconds"] / r["iterations"] for r in solver]))
        report["speedup_per_iteration"] = per_it / report["surrogate"]["seconds_per_iteration"]
    emit(report, args.out)


if __name__ == "__main__":
    main()

"""Campaign benchmark: active learning vs Latin hypercube, and Bayesian optimisation vs a GP.

Parts (``--part``), each measured side by side in one run, several seeds; prints one JSON object
and writes it to ``--out`` (default ``benchmarks/campaign_results/<part>.json``):

- ``al``: borehole (d=8). Latin hypercube designs of 20, 40, ..., ``--n-max`` points against
  active learning from the same first 20 points, batches of 20 picked by
  ``choral.acquisition.select_batch`` (``ivr`` and ``variance``) from a fresh pool of 2000
  uniform candidates per round (reference set: 500 of them), with localised fantasies (default)
  and without (``_plain``). Test error: RMSE / std on 2000
  uniform test points. Figure: simulations AL needs to reach LHS's final error.
  Target: at most half.
- ``bo``: minimise Hartmann-6 and Ackley-20 (``botorch.test_functions``) from 10 shared initial
  points plus ``--evals`` evaluations in batches of ``--q``: the choral ensemble with
  ``select_batch("ei")`` on a candidate pool (uniform + local perturbations of the best points),
  the choral ensemble through :mod:`choral.integrations.botorch` with
  ``qLogExpectedImprovement`` and ``optimize_acqf``, BoTorch's ``SingleTaskGP`` +
  ``qLogExpectedImprovement``, and random search. Figure: best value found after every batch.
  Target: regret comparable to the GP on Hartmann-6, better on Ackley-20.
- ``timing``: one fit + acquire iteration (q=4) on 500 and 2000 random Hartmann-6 observations,
  GP vs choral ensemble. Target: the ensemble >= 5x faster at 2000.
- Issue 15: ``bo`` methods ``ts_*`` (batch Thompson sampling) and ``ei_*`` on ``deep``,
  ``prior`` (randomized prior functions) and ``laplace`` (last-layer Laplace) members, ``*_warm``
  (warm-started refits); ``ridge`` (AL on a sharp curved ridge in 4-D, vs LHS); ``refit`` (one
  cold vs warm refit, seconds); ``throughput`` (batches of ``--q`` until ``--evals`` or
  ``--budget-s`` seconds, the same wall clock per method); ``ridge --function step`` (AL on a
  curved jump in 4-D). Field objective on Darcy: ``benchmarks/field_bo.py``.

    PYTHONPATH=. python benchmarks/campaign.py --part al --seeds 2
    PYTHONPATH=. python benchmarks/campaign.py --part bo --problem hartmann6 --seeds 2
    PYTHONPATH=. python benchmarks/campaign.py --part timing
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import qmc

from choral.acquisition import select_batch
from choral.config import Config
from choral.simulators import get_simulator
from choral.surrogate import Surrogate

DTYPE = torch.float64
MEMBERS = [5]  # set by --members
SAMPLES = [10]  # set by --samples
PRIOR_SCALE = [1.0]  # set by --prior-scale
SGMCMC_LR = [0.05]  # set by --sgmcmc-lr
GRAD_CLIP: list[float | None] = [None]  # set by --grad-clip


def ensemble(n: int, seed: int, val_fraction: float = 0.0, method: str = "deep",
             epochs: int | None = None) -> Surrogate:
    """The ensemble used throughout: ``--members`` (5) MLPs 2x64, a step budget flat in n;
    ``method`` is ``train.ensemble`` (``laplace``: ``--samples`` networks per member)."""
    return Surrogate(Config().updated(**{
        "train.members": MEMBERS[0], "model.hidden": [64, 64], "train.seed": seed,
        "train.batch_size": max(32, n // 8),
        "train.epochs": epochs or (300 if n < 200 else 100),
        "train.val_fraction": val_fraction, "train.patience": 50, "train.ensemble": method,
        "posterior.samples": SAMPLES[0], "posterior.prior_scale": PRIOR_SCALE[0],
        "posterior.sgmcmc_lr": SGMCMC_LR[0], "train.grad_clip": GRAD_CLIP[0]}))


def lhs(n: int, bounds: np.ndarray, seed: int) -> np.ndarray:
    """A Latin hypercube of ``n`` points (n, d) in the box ``bounds`` (d, 2)."""
    u = qmc.LatinHypercube(d=len(bounds), seed=seed).random(n)
    return bounds[:, 0] + u * (bounds[:, 1] - bounds[:, 0])


# -- active learning ---------------------------------------------------------------------------
def test_error(sur: Surrogate, X: np.ndarray, Y: np.ndarray) -> float:
    """RMSE / std of the predictive mean on the test set."""
    return float(np.sqrt(((sur.predict(X).mean.numpy() - Y) ** 2).mean()) / Y.std())


def fit_error(X, Y, seed, test) -> float:
    return test_error(ensemble(len(X), seed, val_fraction=0.1).fit(X, Y), *test)


def al_curve(kind: str, X, Y, first: Surrogate, sim, sizes, seed, test,
             localise=True, method: str = "deep") -> list[float]:
    """Errors at ``sizes`` when growing the design by ``select_batch(kind)`` batches;
    ``first`` is the ensemble fitted on the initial ``X``, ``Y`` (shared by every curve)."""
    errors = []
    for i, n in enumerate(sizes):
        sur = first if i == 0 else ensemble(len(X), seed, val_fraction=0.1,
                                            method=method).fit(X, Y)
        errors.append(test_error(sur, *test))
        if i + 1 < len(sizes):
            pool = sim.sample(2000, seed=1000 * seed + i)
            idx = select_batch(kind, sur.predict, pool, sizes[i + 1] - n, reference=pool[:500],
                               seed=seed, localise=localise)
            X, Y = np.concatenate([X, pool[idx]]), np.concatenate([Y, sim(pool[idx])])
    return errors


def needed(sizes, errors, target) -> int | None:
    """The first size whose error is at most ``target`` (None: never within the budget)."""
    return next((n for n, e in zip(sizes, errors, strict=True) if e <= target), None)


def part_al(args) -> dict:
    sim = get_simulator("borehole")
    sizes = list(range(20, args.n_max + 1, 20))
    X_test = sim.sample(2000, seed=12345)
    test = (X_test, sim(X_test))
    runs = []
    for seed in range(args.seed0, args.seed0 + args.seeds):
        X0 = lhs(sizes[0], sim.bounds, seed)  # the first LHS design, shared by AL
        Y0 = sim(X0)
        first = ensemble(len(X0), seed, val_fraction=0.1).fit(X0, Y0)
        lhs_err = [test_error(first, *test)] + [
            fit_error(X := lhs(n, sim.bounds, seed), sim(X), seed, test) for n in sizes[1:]]
        run = {"seed": seed, "lhs": lhs_err}
        for name in ("ivr", "variance", "ivr_plain", "variance_plain"):
            kind, localise = name.split("_")[0], not name.endswith("_plain")
            run[name] = al_curve(kind, X0, Y0, first, sim, sizes, seed, test, localise)
            run[f"{name}_needs"] = needed(sizes, run[name], lhs_err[-1])
        runs.append(run)
        print(json.dumps(run), flush=True)
    return {"sizes": sizes, "runs": runs, "lhs_needs": sizes[-1]}


# -- active learning on a sharp curved ridge -----------------------------------------------------
class Ridge:
    """``f(x) = exp(-(r(x) / w)^2) + 0.2 sin(2 x_3 + x_4)`` on [0, 1]^4, ``r(x) = x_1 - 0.5 -
    0.25 sin(2 pi x_2)``, ``w = --ridge-width``: a narrow curved ridge (a fraction of about
    ``2 w`` of the box within one width of it) on a gentle background. Uniform designs spend
    most runs where the function is nearly flat."""

    bounds = np.array([[0.0, 1.0]] * 4)

    def __call__(self, X: np.ndarray) -> np.ndarray:
        r = X[:, 0] - 0.5 - 0.25 * np.sin(2 * np.pi * X[:, 1])
        return (np.exp(-(r / WIDTH[0]) ** 2) + 0.2 * np.sin(2 * X[:, 2] + X[:, 3]))[:, None]

    def sample(self, n: int, seed: int) -> np.ndarray:
        return np.random.default_rng(seed).uniform(0, 1, (n, 4))


class Step:
    """``f(x) = 1[x_1 > 0.5 + 0.25 sin(2 pi x_2) + 0.15 (x_3 - 0.5)] + 0.1 x_4`` on [0, 1]^4:
    a jump of 1 across a curved hypersurface, a gentle slope elsewhere. The function is flat
    away from the surface, so uniform designs waste most runs there, and a network's error
    is concentrated where the data near the jump are too sparse to place it."""

    bounds = np.array([[0.0, 1.0]] * 4)

    def __call__(self, X: np.ndarray) -> np.ndarray:
        edge = 0.5 + 0.25 * np.sin(2 * np.pi * X[:, 1]) + 0.15 * (X[:, 2] - 0.5)
        return ((X[:, 0] > edge).astype(np.float64) + 0.1 * X[:, 3])[:, None]

    def sample(self, n: int, seed: int) -> np.ndarray:
        return np.random.default_rng(seed).uniform(0, 1, (n, 4))


def part_ridge(args) -> dict:
    """LHS designs of 20, 20 + ``--step``, ..., ``--n-max`` against AL (``--kinds``, default
    ``variance``, batches of ``--step``) from the first 20, with the ``--al-methods`` members
    (default deep and last-layer Laplace); test error on 4000 uniform points. ``--function``:
    the ridge (:class:`Ridge`) or the step (:class:`Step`)."""
    sim = Step() if args.function == "step" else Ridge()
    sizes = list(range(20, args.n_max + 1, args.step))
    X_test = sim.sample(4000, seed=12345)
    test = (X_test, sim(X_test))
    runs = []
    for seed in range(args.seed0, args.seed0 + args.seeds):
        X0 = lhs(sizes[0], sim.bounds, seed)
        Y0 = sim(X0)
        first = ensemble(len(X0), seed, val_fraction=0.1).fit(X0, Y0)
        lhs_err = [test_error(first, *test)] + [
            fit_error(X := lhs(n, sim.bounds, seed), sim(X), seed, test) for n in sizes[1:]]
        run = {"seed": seed, "lhs": lhs_err}
        for kind in args.kinds:
            for method in args.al_methods:
                name = kind if method == "deep" else f"{kind}_{method}"
                run[name] = al_curve(kind, X0, Y0, first, sim, sizes, seed, test,
                                     method=method)
                run[f"{name}_needs"] = needed(sizes, run[name], lhs_err[-1])
        runs.append(run)
        print(json.dumps(run), flush=True)
    return {"sizes": sizes, "runs": runs, "lhs_needs": sizes[-1]}


# -- Bayesian optimisation ---------------------------------------------------------------------
def problem(name: str):
    from botorch.test_functions import Ackley, Hartmann

    fn = Hartmann(dim=6) if name == "hartmann6" else Ackley(dim=20)
    bounds = fn.bounds.T.numpy().astype(np.float64)
    return (lambda X: fn(torch.as_tensor(X, dtype=DTYPE)).numpy()[:, None]), bounds, \
        float(fn.optimal_value)


def candidate_pool(X, Y, bounds, seed, it, n=2000) -> np.ndarray:
    """``n`` LHS points plus ``n`` Gaussian steps (5% of the box) around the 5 best points."""
    rng = np.random.default_rng([seed, it])
    width = bounds[:, 1] - bounds[:, 0]
    top = X[np.argsort(Y[:, 0])[:5]]
    local = top[rng.integers(0, len(top), n)] + rng.normal(0, 0.05, (n, len(bounds))) * width
    return np.concatenate([lhs(n, bounds, seed + 7 * it), local.clip(bounds[:, 0],
                                                                     bounds[:, 1])])


def choral_next(X, Y, bounds, q, seed, it) -> np.ndarray:
    """Refit the ensemble; EI batch from uniform + local candidates (minimisation)."""
    sur = ensemble(len(X), seed + it).fit(X, Y)
    pool = candidate_pool(X, Y, bounds, seed, it)
    idx = select_batch("ei", sur.predict, pool, q, best=float(Y.min()), seed=seed)
    return pool[idx]


WARM: dict = {}
"""The previous iteration's surrogate per (method, seed), for warm-started refits."""


def choral_acq(kind: str, method: str, warm: bool = False):
    """Refit a ``method`` ensemble (warm: from the last iteration's members, for a third of
    the epochs); a ``kind`` batch from the candidate pool (minimisation)."""

    def next_batch(X, Y, bounds, q, seed, it) -> np.ndarray:
        key = (kind, method, warm, seed)
        prev = WARM.get(key) if warm and it > 0 else None
        epochs = None if prev is None else (100 if len(X) < 200 else 33)
        sur = ensemble(len(X), seed + it, method=method, epochs=epochs).fit(
            X, Y, warm_start=prev)
        WARM[key] = sur
        pool = candidate_pool(X, Y, bounds, seed, it, n=POOL[0])
        idx = select_batch(kind, sur.predict, pool, q, best=float(Y.min()),
                           seed=1000 * seed + it)
        return pool[idx]

    return next_batch


def qlogei_next(model, Y, bounds, q) -> np.ndarray:
    """BoTorch's qLogEI on ``model`` (maximising -y), optimised by ``optimize_acqf``."""
    from botorch.acquisition.logei import qLogExpectedImprovement
    from botorch.acquisition.objective import LinearMCObjective
    from botorch.optim import optimize_acqf

    neg = LinearMCObjective(torch.tensor([-1.0], dtype=DTYPE))
    acq = qLogExpectedImprovement(model, best_f=float(-Y.min()), objective=neg)
    b = torch.as_tensor(bounds.T, dtype=DTYPE)
    cand, _ = optimize_acqf(acq, bounds=b, q=q, num_restarts=4, raw_samples=256)
    return cand.detach().numpy()


def gp_next(X, Y, bounds, q, seed, it) -> np.ndarray:
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import SingleTaskGP
    from botorch.models.transforms import Normalize, Standardize
    from gpytorch.mlls import ExactMarginalLogLikelihood

    torch.manual_seed(seed * 1000 + it)
    gp = SingleTaskGP(torch.as_tensor(X, dtype=DTYPE), torch.as_tensor(Y, dtype=DTYPE),
                      input_transform=Normalize(X.shape[1]), outcome_transform=Standardize(1))
    fit_gpytorch_mll(ExactMarginalLogLikelihood(gp.likelihood, gp))
    return qlogei_next(gp, Y, bounds, q)


def choral_qlogei_next(X, Y, bounds, q, seed, it) -> np.ndarray:
    from choral.integrations.botorch import as_botorch_model

    torch.manual_seed(seed * 1000 + it)
    return qlogei_next(as_botorch_model(ensemble(len(X), seed + it).fit(X, Y)), Y, bounds, q)


def random_next(X, Y, bounds, q, seed, it) -> np.ndarray:
    rng = np.random.default_rng([seed, it, 99])
    return bounds[:, 0] + rng.random((q, len(bounds))) * (bounds[:, 1] - bounds[:, 0])


POOL = [2000]  # set by --pool
WIDTH = [0.1]  # set by --ridge-width
METHODS = {"choral_ei": choral_next, "choral_qlogei": choral_qlogei_next, "gp_qlogei": gp_next,
           "random": random_next,
           "ts_deep": choral_acq("thompson", "deep"),
           "ts_prior": choral_acq("thompson", "prior"),
           "ts_laplace": choral_acq("thompson", "laplace"),
           "ei_laplace": choral_acq("ei", "laplace"),
           "ei_prior": choral_acq("ei", "prior"),
           "ts_prior_warm": choral_acq("thompson", "prior", warm=True),
           "ts_laplace_warm": choral_acq("thompson", "laplace", warm=True),
           "ts_sgmcmc": choral_acq("thompson", "sgmcmc")}


def bo_run(method: str, f, bounds, seed: int, args) -> dict:
    X = lhs(10, bounds, seed)
    Y = f(X)
    best, seconds = [float(Y.min())], 0.0
    for it in range(args.evals // args.q):
        start = time.perf_counter()
        Xn = METHODS[method](X, Y, bounds, args.q, seed, it)
        seconds += time.perf_counter() - start
        X, Y = np.concatenate([X, Xn]), np.concatenate([Y, f(Xn)])
        best.append(float(Y.min()))
    return {"method": method, "seed": seed, "best": best, "seconds": round(seconds, 2)}


def part_bo(args) -> dict:
    f, bounds, opt = problem(args.problem)
    runs = []
    for seed in range(args.seed0, args.seed0 + args.seeds):
        for method in args.methods:
            run = bo_run(method, f, bounds, seed, args)
            run["regret"] = run["best"][-1] - opt
            runs.append(run)
            print(json.dumps(run), flush=True)
    summary = {m: {"final_regret_mean": float(np.mean([r["regret"] for r in runs
                                                        if r["method"] == m])),
                   "seconds_mean": float(np.mean([r["seconds"] for r in runs
                                                  if r["method"] == m]))}
               for m in args.methods}
    return {"problem": args.problem, "optimum": opt, "evals": [10 + args.q * i for i in
            range(args.evals // args.q + 1)], "runs": runs, "summary": summary}


# -- high throughput: many evaluations in large batches, equal wall clock ----------------------
def part_throughput(args) -> dict:
    """Minimise ``--problem`` from ``--initial`` LHS points in batches of ``--q`` until
    ``--evals`` evaluations or ``--budget-s`` seconds of method time, whichever comes first;
    each method gets the same wall-clock budget. Records (evaluations, seconds, best)."""
    f, bounds, opt = problem(args.problem)
    runs = []
    for seed in range(args.seed0, args.seed0 + args.seeds):
        for method in args.methods:
            X = lhs(args.initial, bounds, seed)
            Y = f(X)
            trace, seconds, it = [(len(X), 0.0, float(Y.min()))], 0.0, 0
            while len(X) < args.initial + args.evals and seconds < args.budget_s:
                start = time.perf_counter()
                Xn = METHODS[method](X, Y, bounds, args.q, seed, it)
                seconds += time.perf_counter() - start
                X, Y = np.concatenate([X, Xn]), np.concatenate([Y, f(Xn)])
                trace.append((len(X), round(seconds, 2), float(Y.min())))
                it += 1
                print(json.dumps({"method": method, "seed": seed, "at": trace[-1]}), flush=True)
            runs.append({"method": method, "seed": seed, "trace": trace,
                         "regret": trace[-1][2] - opt})
            print(json.dumps(runs[-1]), flush=True)
    return {"problem": args.problem, "optimum": opt, "runs": runs}


# -- cold vs warm refit time ------------------------------------------------------------------
def part_refit(args) -> dict:
    """Seconds of one refit on 50 Hartmann-6 points after a fit on the first 46: cold (300
    epochs from scratch) against warm (100 epochs from the previous members), as in the
    ``*_warm`` BO methods; ``--seeds`` repeats."""
    f, bounds, _ = problem("hartmann6")
    out = {}
    for method in ("prior", "laplace"):
        rows = []
        for seed in range(args.seed0, args.seed0 + args.seeds):
            X = lhs(50, bounds, seed)
            Y = f(X)
            prev = ensemble(46, seed, method=method).fit(X[:46], Y[:46])
            start = time.perf_counter()
            ensemble(50, seed + 1, method=method).fit(X, Y)
            cold = time.perf_counter() - start
            start = time.perf_counter()
            ensemble(50, seed + 1, method=method, epochs=100).fit(X, Y, warm_start=prev)
            rows.append({"seed": seed, "cold": round(cold, 2),
                         "warm": round(time.perf_counter() - start, 2)})
            print(json.dumps({method: rows[-1]}), flush=True)
        out[method] = rows
    return out


# -- timing ------------------------------------------------------------------------------------
def part_timing(args) -> dict:
    f, bounds, _ = problem("hartmann6")
    out = {}
    for n in args.sizes:
        X = lhs(n, bounds, 0)
        Y = f(X)
        row = {}
        for method in ("choral_ei", "gp_qlogei"):
            start = time.perf_counter()
            METHODS[method](X, Y, bounds, 4, 0, 0)
            row[method] = round(time.perf_counter() - start, 2)
            print(json.dumps({"n": n, method: row[method]}), flush=True)
        row["speedup"] = round(row["gp_qlogei"] / row["choral_ei"], 2)
        out[str(n)] = row
        print(json.dumps({str(n): row}), flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--part", choices=["al", "bo", "timing", "ridge", "refit", "throughput"],
                   required=True)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--seed0", type=int, default=0, help="first seed, to split runs")
    p.add_argument("--n-max", type=int, default=160)
    p.add_argument("--problem", choices=["hartmann6", "ackley20"], default="hartmann6")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--evals", type=int, default=40)
    p.add_argument("--q", type=int, default=4)
    p.add_argument("--sizes", type=int, nargs="+", default=[500, 2000])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--members", type=int, default=5, help="ensemble members (default 5)")
    p.add_argument("--samples", type=int, default=10, help="laplace networks per member")
    p.add_argument("--prior-scale", type=float, default=1.0, help="posterior.prior_scale")
    p.add_argument("--sgmcmc-lr", type=float, default=0.05, help="posterior.sgmcmc_lr")
    p.add_argument("--grad-clip", type=float, default=None, help="train.grad_clip")
    p.add_argument("--kinds", nargs="+", default=["variance"], help="ridge: AL acquisitions")
    p.add_argument("--initial", type=int, default=100, help="throughput: initial LHS points")
    p.add_argument("--budget-s", type=float, default=600.0, help="throughput: seconds/method")
    p.add_argument("--step", type=int, default=20, help="ridge: design size step (AL batch)")
    p.add_argument("--ridge-width", type=float, default=0.1, help="width of the ridge")
    p.add_argument("--function", choices=["ridge", "step"], default="ridge",
                   help="ridge part: the function (issue 15: step, a curved jump in 4-D)")
    p.add_argument("--al-methods", nargs="+", default=["deep", "laplace"],
                   help="ridge part: train.ensemble of the AL surrogates")
    p.add_argument("--pool", type=int, default=2000, help="candidates: this many LHS + local")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    MEMBERS[0], SAMPLES[0], PRIOR_SCALE[0], POOL[0], WIDTH[0], SGMCMC_LR[0] = (
        args.members, args.samples, args.prior_scale, args.pool, args.ridge_width,
        args.sgmcmc_lr)
    GRAD_CLIP[0] = args.grad_clip
    start = time.perf_counter()
    parts = {"al": part_al, "bo": part_bo, "timing": part_timing, "ridge": part_ridge,
             "refit": part_refit, "throughput": part_throughput}
    result = {"part": parts[args.part](args)}
    result.update(seconds=round(time.perf_counter() - start, 1), threads=args.threads,
                  machine=platform.machine(), torch=torch.__version__,
                  argv={k: str(v) for k, v in vars(args).items()})
    name = f"{args.part}_seed{args.seed0}" if args.part == "al" else args.part
    name = f"bo_{args.problem}_seed{args.seed0}" if args.part == "bo" else name
    out = args.out or Path(__file__).parent / "campaign_results" / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result))


if __name__ == "__main__":
    main()

"""Field objective on Darcy: field-aware BO with a choral surrogate against a GP on the scalar.

The simulator solves ``-div(a grad u) = 1`` on the unit square (``u = 0`` on the boundary,
:func:`choral.simulators.darcy.solve_darcy`, ``--grid`` nodes a side) with a smooth coefficient
controlled by ``d = 5`` design parameters ``theta`` in ``[0, 1]^5``:

    ``log a(x, y) = A sum_k (2 theta_k - 1) phi_k(x, y)``, ``A = 0.8``, ``phi_k`` the cosine
    modes ``cos(pi i x) cos(pi j y)``, ``(i, j)`` in (1,0), (0,1), (1,1), (2,0), (0,2);

it returns the solution field ``u`` at the interior nodes (m = (grid - 2)^2 values). The
objective is the relative squared misfit to a target field ``u* = u(theta*)``, ``theta*``
drawn per seed in ``[0.15, 0.85]^5`` and unknown to the methods:
``J(theta) = mean((u(theta) - u*)^2) / mean(u*^2)``, minimised; ``min J = 0``, so the regret is
the best ``J`` found. Every method starts from the same 10 LHS points per seed and spends
``--evals`` evaluations in batches of ``--q`` (the same budget), side by side:

- ``gp``: BoTorch ``SingleTaskGP`` on the scalar ``J`` + ``qLogExpectedImprovement``
  (``optimize_acqf``), as in ``campaign.py --part bo``;
- ``field_ts_<method>``: a choral ensemble (``train.ensemble = <method>``) fitted to the
  *fields* (theta -> u, m outputs), batch Thompson sampling on the misfit of member-coherent
  fields (``select_batch("thompson", objective=misfit(u*))``) over a candidate pool;
- ``field_ei_prior``: the same surrogate with mixture EI on each member's moment-matched misfit;
- ``scalar_ts_prior``: the same ensemble and acquisition fitted to the scalar ``J`` only (is it
  the field that helps?);
- ``random``: uniform.

    PYTHONPATH=. python benchmarks/field_bo.py --seeds 5
    python benchmarks/field_bo.py --combine results/field_bo_seed*.log --out field_bo.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from campaign import candidate_pool, gp_next, lhs, random_next  # benchmarks/ is on sys.path

from choral.acquisition import select_batch
from choral.acquisition.objectives import misfit
from choral.config import Config
from choral.simulators.darcy import solve_darcy
from choral.surrogate import Surrogate

MODES = [(1, 0), (0, 1), (1, 1), (2, 0), (0, 2)]
AMPLITUDE = 0.8
BOUNDS = np.array([[0.0, 1.0]] * len(MODES))


class DarcyField:
    """``theta`` (n, 5) -> interior solution fields (n, (grid - 2)^2), float64."""

    def __init__(self, grid: int) -> None:
        x = np.linspace(0.0, 1.0, grid)
        gx, gy = np.meshgrid(x, x, indexing="ij")
        self.phi = np.stack([np.cos(np.pi * i * gx) * np.cos(np.pi * j * gy) for i, j in MODES])

    def __call__(self, theta: np.ndarray) -> np.ndarray:
        log_a = AMPLITUDE * np.einsum("nk,kxy->nxy", 2.0 * theta - 1.0, self.phi)
        return np.stack([solve_darcy(np.exp(la))[1:-1, 1:-1].ravel() for la in log_a])


def surrogate(n: int, seed: int, method: str, hidden: list[int]) -> Surrogate:
    """``--members`` MLPs (``--hidden``), 300 epochs (a step budget flat in n), no validation
    split (every run counts at these sizes)."""
    return Surrogate(Config().updated(**{
        "train.members": MEMBERS[0], "model.hidden": hidden, "train.seed": seed,
        "train.batch_size": max(32, n // 8), "train.epochs": 300, "train.val_fraction": 0.0,
        "train.ensemble": method}))


def field_next(kind: str, method: str, field: bool):
    """Refit on fields (``field``) or on the scalar misfit; a ``kind`` batch from the pool."""

    def next_batch(X, U, J, target, q, seed, it, args) -> np.ndarray:
        sur = surrogate(len(X), seed + it, method, args.hidden).fit(X, U if field else J)
        pool = candidate_pool(X, J, BOUNDS, seed, it, n=args.pool)
        objective = misfit(target) if field else None
        idx = select_batch(kind, sur.predict, pool, q, best=float(J.min()), seed=1000 * seed + it,
                           objective=objective)
        return pool[idx]

    return next_batch


def scalar_only(fn):
    def next_batch(X, U, J, target, q, seed, it, args) -> np.ndarray:
        return fn(X, J, BOUNDS, q, seed, it)

    return next_batch


METHODS = {"gp": scalar_only(gp_next), "random": scalar_only(random_next),
           "field_ts_prior": field_next("thompson", "prior", True),
           "field_ts_deep": field_next("thompson", "deep", True),
           "field_ei_prior": field_next("ei", "prior", True),
           "scalar_ts_prior": field_next("thompson", "prior", False)}
MEMBERS = [5]


def run(method: str, sim: DarcyField, seed: int, args) -> dict:
    rng = np.random.default_rng([seed, 31])
    target = sim(rng.uniform(0.15, 0.85, (1, len(MODES))))[0]
    objective = misfit(target)

    def J_of(U: np.ndarray) -> np.ndarray:
        return objective(torch.from_numpy(U)[None]).numpy()[0][:, None]

    X = lhs(10, BOUNDS, seed)
    U = sim(X)
    J = J_of(U)
    best, seconds = [float(J.min())], 0.0
    for it in range(args.evals // args.q):
        start = time.perf_counter()
        Xn = METHODS[method](X, U, J, target, args.q, seed, it, args)
        seconds += time.perf_counter() - start
        Un = sim(Xn)
        X, U, J = np.concatenate([X, Xn]), np.concatenate([U, Un]), np.concatenate([J, J_of(Un)])
        best.append(float(J.min()))
    return {"method": method, "seed": seed, "best": best, "regret": best[-1],
            "seconds": round(seconds, 2)}


def summary(runs: list[dict], methods: list[str]) -> dict:
    out = {}
    for m in methods:
        r = np.array([x["regret"] for x in runs if x["method"] == m])
        logs = np.log10(r)
        out[m] = {"seeds": len(r), "regret_mean": float(r.mean()),
                  "regret_se": float(r.std(ddof=1) / np.sqrt(len(r))) if len(r) > 1 else None,
                  "log10_regret_mean": float(logs.mean()),
                  "log10_regret_se": float(logs.std(ddof=1) / np.sqrt(len(r)))
                  if len(r) > 1 else None,
                  "seconds_mean": float(np.mean([x["seconds"] for x in runs
                                                 if x["method"] == m]))}
        gp = {x["seed"]: x["regret"] for x in runs if x["method"] == "gp"}
        pairs = [(x["regret"], gp[x["seed"]]) for x in runs
                 if x["method"] == m and x["seed"] in gp]
        if m != "gp" and pairs:  # paired with the GP on the same seeds (same initial design)
            out[m]["below_gp_seeds"] = f"{sum(a < b for a, b in pairs)}/{len(pairs)}"
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--seed0", type=int, default=0)
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--evals", type=int, default=40)
    p.add_argument("--q", type=int, default=4)
    p.add_argument("--grid", type=int, default=16, help="nodes a side (interior: grid - 2)")
    p.add_argument("--pool", type=int, default=1000, help="candidates: this many LHS + local")
    p.add_argument("--members", type=int, default=5)
    p.add_argument("--hidden", type=int, nargs="+", default=[128, 128])
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--combine", type=Path, nargs="+", default=None,
                   help="summarise the per-run JSON lines of these logs into --out instead "
                   "(one run per method and seed: the first logged)")
    args = p.parse_args()
    if args.combine:
        lines = [json.loads(line) for path in args.combine
                 for line in path.read_text().splitlines() if line.startswith('{"method"')]
        runs = list({(r["method"], r["seed"]): r for r in reversed(lines)}.values())[::-1]
        methods = list(dict.fromkeys(r["method"] for r in runs))
        result = {"runs": runs, "summary": summary(runs, methods),
                  "logs": [str(p) for p in args.combine]}
        (args.out or Path("field_bo.json")).write_text(json.dumps(result, indent=1))
        print(json.dumps(result["summary"], indent=1))
        return
    torch.set_num_threads(1)
    MEMBERS[0] = args.members
    sim = DarcyField(args.grid)
    start = time.perf_counter()
    runs = []
    for seed in range(args.seed0, args.seed0 + args.seeds):
        for method in args.methods:
            runs.append(run(method, sim, seed, args))
            print(json.dumps(runs[-1]), flush=True)
    result = {"evals": [10 + args.q * i for i in range(args.evals // args.q + 1)],
              "runs": runs, "summary": summary(runs, args.methods),
              "seconds": round(time.perf_counter() - start, 1), "machine": platform.machine(),
              "torch": torch.__version__, "argv": {k: str(v) for k, v in vars(args).items()}}
    out = args.out or Path(__file__).parent / "results" / f"field_bo_seed{args.seed0}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result["summary"], indent=1))


if __name__ == "__main__":
    main()

"""Sequential inference against a space-filling design: the surrogate posterior's error at equal
simulation counts, ``acquisition = "posterior"`` campaign vs a Latin hypercube.

    PYTHONPATH=. python benchmarks/sequential_inference.py [--seeds 3] [--out FILE]

Simulator ``f(x) = (x0 + x1, x0 x1)`` on [0, 1]^2 (a two-mode posterior: x0 and x1 swap), observed
at x = (0.3, 0.6) with noise 0.03, box-uniform prior. Sequential: a campaign (8 Sobol runs, then
batches of 4 by ``acquisition = "posterior"``, 1024 candidates, budget 32). LHS: ``n`` Latin
hypercube runs. For each ``n`` in 16, 24, 32 a fresh surrogate (3 members, 200 epochs, the same
config and seed for both designs) is fitted on the first ``n`` runs of each design, and its
posterior (the member-mixture likelihood times the prior) is compared with the true simulator's
by quadrature on a 200 x 200 grid: total variation distance (0 = equal, 1 = disjoint) and the
mass each puts on the true posterior's 95% highest-density region. Prints JSON.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch
from _report import emit  # run as a script: benchmarks/ is on sys.path

from choral.campaign.config import CampaignConfig
from choral.campaign.design import initial_design
from choral.campaign.ledger import Ledger
from choral.campaign.runner import run_campaign
from choral.config import Config
from choral.inference import SurrogateLikelihood
from choral.surrogate import Surrogate

X_TRUE, SIGMA, SIZES = np.array([0.3, 0.6]), 0.03, (16, 24, 32)
TRAIN = {"model": {"hidden": [32]}, "train": {"members": 3, "epochs": 200}}


def simulator(X: np.ndarray) -> np.ndarray:
    return np.stack([X[:, 0] + X[:, 1], X[:, 0] * X[:, 1]], axis=1)


Y_OBS = simulator(X_TRUE[None])[0]
_g = (np.arange(200) + 0.5) / 200
GRID = np.stack(np.meshgrid(_g, _g, indexing="ij"), -1).reshape(-1, 2)


def normalise(logp: np.ndarray) -> np.ndarray:
    p = np.exp(logp - logp.max())
    return p / p.sum()


def true_posterior() -> np.ndarray:
    return normalise(-0.5 * (((simulator(GRID) - Y_OBS) / SIGMA) ** 2).sum(1))


def surrogate_posterior(X: np.ndarray, Y: np.ndarray, seed: int) -> np.ndarray:
    cfg = Config.from_dict(TRAIN).updated(**{"train.seed": seed})
    model = Surrogate(cfg).fit(X, Y)
    with torch.no_grad():
        logp = SurrogateLikelihood(model, Y_OBS, SIGMA)(torch.as_tensor(GRID)).numpy()
    return normalise(logp)


def errors(p: np.ndarray, q: np.ndarray) -> dict[str, float]:
    order = np.argsort(-p)
    hpd = order[:np.searchsorted(np.cumsum(p[order]), 0.95) + 1]
    return {"tv": float(0.5 * np.abs(p - q).sum()), "mass_in_true_hpd95": float(q[hpd].sum())}


def run(seed: int) -> dict[str, dict]:
    p = true_posterior()
    cfg = CampaignConfig.from_dict({
        "bounds": [[0.0, 1.0], [0.0, 1.0]], "initial": 8, "batch_size": 4,
        "budget": max(SIZES), "candidates": 1024, "seed": seed, "acquisition": "posterior",
        "inference": {"observed": Y_OBS.tolist(), "noise": SIGMA}, "surrogate": TRAIN})
    with tempfile.TemporaryDirectory() as d:
        run_campaign(cfg, d, simulator=simulator)
        with Ledger(f"{d}/ledger.db") as led:
            Xs = np.array([r[3] for r in led.table()])
    out: dict[str, dict] = {"sequential": {}, "lhs": {}}
    for n in SIZES:
        Xl = initial_design("lhs", n, cfg.box(), seed)
        out["sequential"][n] = errors(p, surrogate_posterior(Xs[:n], simulator(Xs[:n]), seed))
        out["lhs"][n] = errors(p, surrogate_posterior(Xl, simulator(Xl), seed))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    start = time.perf_counter()
    runs = [run(s) for s in range(args.seeds)]
    summary = {kind: {n: {k: float(np.mean([r[kind][n][k] for r in runs]))
                          for k in ("tv", "mass_in_true_hpd95")} for n in SIZES}
               for kind in ("sequential", "lhs")}
    result = {"seeds": args.seeds, "sizes": list(SIZES), "mean": summary, "runs": runs,
              "seconds": time.perf_counter() - start}
    emit(result, args.out)


if __name__ == "__main__":
    main()

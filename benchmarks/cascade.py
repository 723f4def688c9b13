"""Early-exit cascades: coverage and OOD AUROC against the share of member forward passes.

    python benchmarks/cascade.py [--data ../shared/data] [--members 8] [--out FILE]
                                 [--sets borehole,darcy,concrete]

Three problems, one 8-member deep ensemble each (fitted as choral fits by default: calibrated
on held-out rows):

- ``borehole``: 800 training runs, 300 validation, 500 test; OOD inputs drawn uniformly from the
  input box widened by 50% on every side, keeping those outside the training box;
- ``darcy``: neuraloperator's 16x16 Darcy set (``neuralop/darcy_*_16.pt``, coefficients 12/3),
  the first 600 training fields to fit, the next 100 for validation, the 50 test fields; OOD
  inputs: coefficient fields of the same GRF law with contrast 2 (values 6/3) instead of 4;
- ``concrete`` (UCI, split 0): 80% of the training rows to fit, 20% for validation, the test
  rows; OOD inputs: test rows with every feature column shuffled independently (in-range
  marginals, broken correlations).

Each first stage's own calibration and epistemic scale (``fit_first_stage``) is fitted on the
validation split; two settings without it show what it changes. Cascade settings (first
members ``k`` of 1 or 2, the top fraction 0 .. 0.3 by predictive
variance, the OOD rule, an OOD score above the 50/70/80/90% quantile of the first stage's
scores on the validation inputs, a decision threshold at the training median) are swept; the
cheapest setting whose validation coverage and AUROC are within 0.01 of the full ensemble's
is chosen on the validation split (never on test), and the whole cost-quality curve is also
reported on test. Prints one JSON
object.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

FIRST = (1, 2)
TOPS = (0.0, 0.1, 0.2, 0.3)
OOD_QUANTILES = (0.5, 0.7, 0.8, 0.9)
SETTINGS = [*({"first": k, "top_fraction": q, "ood": ood}
              for k, q, ood in itertools.product(FIRST, TOPS, (False, True))),
            {"first": 2, "threshold": "median"}, {"first": 2, "threshold": "median", "ood": True}]


def borehole(rng: np.random.Generator) -> dict:
    from choral.simulators import simulate
    from choral.simulators.analytic import BOREHOLE

    X, Y = simulate("borehole", 1600, 0)
    lo, hi = BOREHOLE.bounds[:, 0], BOREHOLE.bounds[:, 1]

    def ood(n: int) -> np.ndarray:
        Z = lo - 0.5 * (hi - lo) + 2 * (hi - lo) * rng.uniform(size=(4 * n, len(lo)))
        return Z[((Z < lo) | (Z > hi)).any(1)][:n]

    return {"fit": (X[:800], Y[:800]), "val": (X[800:1100], Y[800:1100]),
            "test": (X[1100:], Y[1100:]), "ood_val": ood(300), "ood_test": ood(500)}


def darcy(root: Path, rng: np.random.Generator) -> dict:
    import torch

    from choral.simulators.darcy import darcy_coefficients

    def load(name: str) -> tuple[np.ndarray, np.ndarray]:
        d = torch.load(root / "neuralop" / f"darcy_{name}_16.pt", weights_only=True)
        return (np.where(d["x"].numpy(), 12.0, 3.0)[:, None],
                d["y"].double().numpy()[:, None])

    X, Y = load("train")
    Xt, Yt = load("test")
    ood = np.where(darcy_coefficients(rng, 150, 16) > 5, 6.0, 3.0)[:, None]   # contrast 2
    return {"fit": (X[:600], Y[:600]), "val": (X[600:700], Y[600:700]), "test": (Xt, Yt),
            "ood_val": ood[:100], "ood_test": ood[100:]}


def concrete(root: Path, rng: np.random.Generator) -> dict:
    folder = root / "uci" / "concrete"
    data = np.loadtxt(folder / "data.txt")
    feats = np.loadtxt(folder / "index_features.txt", dtype=int).reshape(-1)
    target = int(np.loadtxt(folder / "index_target.txt"))
    train = np.loadtxt(folder / "index_train_0.txt", dtype=int)
    test = np.loadtxt(folder / "index_test_0.txt", dtype=int)
    X, Y = data[:, feats], data[:, target:target + 1]
    perm = rng.permutation(train)
    cut = int(0.8 * len(perm))

    def shuffled(A: np.ndarray) -> np.ndarray:
        return np.stack([rng.permutation(col) for col in A.T], axis=1)

    return {"fit": (X[perm[:cut]], Y[perm[:cut]]), "val": (X[perm[cut:]], Y[perm[cut:]]),
            "test": (X[test], Y[test]), "ood_val": shuffled(X[perm[cut:]]),
            "ood_test": shuffled(X[test])}


def scores(model, X: np.ndarray, Y: np.ndarray, X_ood: np.ndarray, rules) -> dict:
    """Coverage (in-distribution rows), OOD AUROC and the share of forward passes."""
    from sklearn.metrics import roc_auc_score

    from choral.surrogate.cascade import cascade

    result = cascade(model, np.concatenate([X, X_ood]), rules)
    out = result.summaries(0.9)
    n = len(X)
    inside = ((Y >= out["lower"][:n]) & (Y <= out["upper"][:n])).mean()
    auroc = roc_auc_score(np.r_[np.zeros(n), np.ones(len(X_ood))], out["ood_score"])
    return {"coverage_90": float(inside), "ood_auroc": float(auroc),
            "fraction": result.fraction,
            "fraction_in_distribution": float(out["members_used"][:n].sum() /
                                              (n * result.members[1]))}


def run(name: str, sets: dict, members: int, epochs: int) -> dict:
    from choral.config import Config
    from choral.surrogate import Surrogate
    from choral.surrogate.cascade import Rules, cascade, fit_first_stage

    start = time.perf_counter()
    cfg = Config().updated(**{"train.members": members, "train.epochs": epochs,
                              "train.patience": 30})
    if sets["fit"][0].ndim > 2:
        cfg = cfg.updated(**{"model.backbone": "unet", "model.unet.width": 16,
                             "model.unet.depth": 2, "train.lr": 3e-3})
    model = Surrogate(cfg).fit(*sets["fit"])
    fit_s = time.perf_counter() - start
    threshold = float(np.median(sets["fit"][1]))
    settings = [{**s, "threshold": threshold} if "threshold" in s else s for s in SETTINGS]
    full = Rules(first=members)
    ref = {part: scores(model, *sets[part], sets[f"ood_{part}"], full)
           for part in ("val", "test")}
    stages = {k: fit_first_stage(model, *sets["val"], k) for k in FIRST}
    settings = [*({**s, "first_stage": True} for s in settings),
                {"first": 2}, {"first": 2, "top_fraction": 0.3, "ood": True}]
    for k, quantile in itertools.product(FIRST, OOD_QUANTILES):   # score above a quantile of
        first = cascade(model, sets["val"][0], Rules(first=k, first_stage=stages[k]))  # val
        settings.append({"first": k, "first_stage": True, "ood_quantile": quantile,
                         "ood_above": float(np.quantile(first.ood_score, quantile))})
    curve = []
    for s in settings:
        given = {k: v for k, v in s.items() if k != "ood_quantile"}
        rules = Rules(**{**given,
                         "first_stage": stages[s["first"]] if "first_stage" in s else None})
        row = {**s, "val": scores(model, *sets["val"], sets["ood_val"], rules),
               "test": scores(model, *sets["test"], sets["ood_test"], rules)}
        curve.append(row)
    ok = [r for r in curve
          if abs(r["val"]["coverage_90"] - ref["val"]["coverage_90"]) <= 0.01
          and abs(r["val"]["ood_auroc"] - ref["val"]["ood_auroc"]) <= 0.01]
    chosen = min(ok, key=lambda r: r["val"]["fraction"]) if ok else None
    verdict = None
    if chosen is not None:
        t = chosen["test"]
        verdict = {"coverage_gap": t["coverage_90"] - ref["test"]["coverage_90"],
                   "auroc_gap": t["ood_auroc"] - ref["test"]["ood_auroc"],
                   "fraction": t["fraction"],
                   "met": bool(abs(t["coverage_90"] - ref["test"]["coverage_90"]) <= 0.01
                               and abs(t["ood_auroc"] - ref["test"]["ood_auroc"]) <= 0.01
                               and t["fraction"] <= 0.5)}
    return {"problem": name, "n_fit": len(sets["fit"][0]), "n_test": len(sets["test"][0]),
            "n_ood_test": len(sets["ood_test"]), "members": members, "epochs": epochs,
            "fit_seconds": round(fit_s, 1), "full": ref, "chosen": chosen, "target": verdict,
            "curve": curve, "seconds": round(time.perf_counter() - start, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--members", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--epochs-fields", type=int, default=60)
    parser.add_argument("--sets", default="borehole,darcy,concrete")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    makers = {"borehole": lambda: borehole(rng), "darcy": lambda: darcy(args.data, rng),
              "concrete": lambda: concrete(args.data, rng)}
    results = [run(name, makers[name](), args.members,
                   args.epochs_fields if name == "darcy" else args.epochs)
               for name in args.sets.split(",")]
    out = {"benchmark": "cascade", "machine": f"{platform.machine()}, {os.cpu_count()} cpus, "
                                              f"torch {torch.__version__}",
           "results": results}
    text = json.dumps(out, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()

"""Merging fine-tuned surrogates: Burgers at four viscosities, one pretrained U-Net ensemble.

    python benchmarks/merge.py [--n-pre 100] [--n-ft 200] [--n-val 50] [--n-test 100]
                               [--epochs 60] [--ft-epochs 40] [--out FILE]

A 2-member U-Net ensemble (1D, width 16, depth 2, float32) is pretrained on a pool of Burgers runs
(resolution 64, t = 1) at the four viscosities nu = 0.02, 0.01, 0.005, 0.002 (``--n-pre``
each), then
fine-tuned on ``--n-ft`` runs of each viscosity (:func:`choral.surrogate.finetune.tune`, early
stopping on that regime's ``--n-val`` validation runs). The four fine-tunes are merged with every
method of :mod:`choral.surrogate.merge`; the scale and the TALL lambdas are chosen on the
validation runs by relative L2 (never on the test runs). Reported: the test relative L2 (FNO's
per-sample ``||mean - y|| / ||y||``, averaged) per regime of the base, each fine-tune, every
merge, and each TALL regime; the targets (TALL within 1% of each fine-tune; consensus at least as
good as task arithmetic on every regime). Prints one JSON object (and writes it to ``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

NUS = (0.02, 0.01, 0.005, 0.002)
METHODS = ("task_arithmetic", "ties", "breadcrumbs", "balanced", "consensus", "tall")
WIDE = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.5, 2.0)


def data(nu: float, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from choral.simulators.burgers import simulate_burgers

    X, Y = simulate_burgers(n, seed=seed, resolution=64, nu=nu)
    return X.astype(np.float32), Y.astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-pre", type=int, default=100)
    parser.add_argument("--n-ft", type=int, default=200)
    parser.add_argument("--n-val", type=int, default=50)
    parser.add_argument("--n-test", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--ft-epochs", type=int, default=40)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--cache", type=Path, default=None,
                        help="An .npz of the simulated runs: read when it exists, else written.")
    parser.add_argument("--wide", action="store_true",
                        help="Also choose TALL lambdas from a wider grid (0.05 .. 2).")
    args = parser.parse_args()
    import torch

    from choral.config import Config
    from choral.ensembles.merging.tall import select_regime
    from choral.evaluation.metrics import relative_l2
    from choral.surrogate import Surrogate
    from choral.surrogate.finetune import tune
    from choral.surrogate.merge import LAMBDAS, merge

    torch.set_num_threads(1)
    start = time.perf_counter()
    names = [f"nu={nu}" for nu in NUS]
    sets = {}
    total = args.n_pre + args.n_ft + args.n_val + args.n_test
    cached = dict(np.load(args.cache)) if args.cache and args.cache.exists() else {}
    for i, nu in enumerate(NUS):
        if f"X{i}" not in cached:
            cached[f"X{i}"], cached[f"Y{i}"] = data(nu, total, seed=100 + i)
        X, Y = cached[f"X{i}"][:total], cached[f"Y{i}"][:total]
        cut = np.cumsum([args.n_pre, args.n_ft, args.n_val])
        sets[names[i]] = {part: (X[a:b], Y[a:b]) for part, a, b in
                          zip(("pre", "ft", "val", "test"), (0, *cut), (*cut, len(X)),
                              strict=True)}
    if args.cache and not args.cache.exists():
        np.savez(args.cache, **cached)
    simulated = time.perf_counter() - start
    cfg = Config().updated(**{"train.members": 2, "train.epochs": args.epochs,
                              "finetune.epochs": args.ft_epochs, "model.backbone": "unet",
                              "model.unet.width": 16, "model.unet.depth": 2,
                              "train.batch_size": 32, "train.lr": 3e-3})
    X_pre = np.concatenate([sets[n]["pre"][0] for n in names])
    Y_pre = np.concatenate([sets[n]["pre"][1] for n in names])
    base = Surrogate(cfg).fit(X_pre, Y_pre)
    tuned = [base.with_params(tune(base, *sets[n]["ft"], *sets[n]["val"])[0]) for n in names]
    trained = time.perf_counter() - start - simulated

    def rel(model: Surrogate, name: str) -> float:
        return relative_l2(model.predict(sets[name]["test"][0], calibrated=False),
                           sets[name]["test"][1])

    table = {"base": {n: rel(base, n) for n in names},
             "fine_tune": {n: rel(m, n) for n, m in zip(names, tuned, strict=True)}}
    infos = {}
    val = [sets[n]["val"] for n in names]
    grids = {"tall": LAMBDAS, **({"tall_wide": WIDE} if args.wide else {})}
    for method in (*METHODS, *(["tall_wide"] if args.wide else [])):
        merged, info = merge(base, tuned, names, method.split("_w")[0], val=val,
                             criterion="rel_l2", lambda_grid=grids.get(method, LAMBDAS))
        table[method] = {n: rel(merged, n) for n in names}
        infos[method] = {k: v for k, v in info.items() if k != "scale_curve"}
        if method.startswith("tall"):
            table[f"{method}_regime"] = {
                n: rel(base.with_params(select_regime(merged.records, n, merged.params)), n)
                for n in names}
    own, tall = table["fine_tune"], table["tall_regime"]
    if args.wide:
        wide = table["tall_wide_regime"]
        targets_wide = {n: wide[n] / own[n] for n in names}
    targets = {
        "tall_within_1pct_of_fine_tune": {n: tall[n] <= 1.01 * own[n] for n in names},
        "tall_ratio_to_fine_tune": {n: tall[n] / own[n] for n in names},
        "consensus_at_least_task_arithmetic": {
            n: table["consensus"][n] <= table["task_arithmetic"][n] for n in names}}
    if args.wide:
        targets["tall_wide_ratio_to_fine_tune"] = targets_wide
    result = {"benchmark": "merge", "problem": "burgers, resolution 64, t=1",
              "viscosities": list(NUS),
              "sizes": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
              "machine": f"{platform.machine()}, {os.cpu_count()} cpus, torch "
                         f"{torch.__version__}",
              "seconds": {"simulate": round(simulated, 1), "train": round(trained, 1),
                          "total": round(time.perf_counter() - start, 1)},
              "test_rel_l2": table, "merge_info": infos, "targets": targets}
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()

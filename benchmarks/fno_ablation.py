"""Why choral's FNO members trailed neuraloperator's FNO: one network each, the same epochs.

    python benchmarks/fno_ablation.py --data ../shared/data/neuralop [--set burgers]
        [--epochs 20] [--seeds 0 1 2] [--variants peer peer_mse nll beta0.5 ...]

Controlled comparison on validation rows carved from the training file (a quarter of it, seeded
permutation 123; the test file is never read): every variant trains ONE network, the same FNO
(modes 8, width 32, 4 layers), batch 32, for ``--epochs`` epochs under a cosine schedule on the
same rows, and is scored by relative L2 of its mean on the validation rows.

- ``peer``: neuraloperator's training as in ``_fno_peer.train_fno`` (Adam lr 5e-3, weight decay
  1e-4, pointwise unit Gaussian normalisers, relative-L2 loss), by epochs instead of seconds;
  ``peer_mse``: the same with the mean squared error of the normalised targets;
  ``peer_channel``: the relative-L2 peer with per-channel normalisers (choral's standardisation,
  which holds on any grid) instead of pointwise ones.
- choral (``Surrogate``, one member, ``val_fraction`` 0 and calibration off so that it trains
  on the same rows for all epochs; Gaussian head, AdamW lr 3e-3, weight decay 1e-4):
  ``nll`` (plain NLL), ``beta0.5``, ``beta1`` (``train.nll_beta``), ``nll_clip1``
  (``grad_clip`` 1), ``nll_wd0`` (no weight decay), ``beta0.5_lr5e-3``.

Prints one JSON line per run, then a summary (mean over seeds) as one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _fno_peer import UnitGaussian, _lr_factor, build_fno, relative_l2  # noqa: E402
from neuralop_small import load  # noqa: E402

CHORAL = {"nll": {}, "beta0.5": {"nll_beta": 0.5}, "beta1": {"nll_beta": 1.0},
          "nll_clip1": {"grad_clip": 1.0}, "nll_wd0": {"weight_decay": 0.0},
          "beta0.5_lr5e-3": {"nll_beta": 0.5, "lr": 5e-3}}
"""choral variants: ``[train]`` settings on top of lr 3e-3, cosine, the plain NLL."""


def peer(Xf, Yf, Xv, Yv, epochs: int, seed: int, loss: str, pointwise: bool = True) -> float:
    """neuraloperator's FNO trained ``epochs`` epochs (Adam 5e-3, wd 1e-4, cosine); val rel L2."""
    torch.manual_seed(seed)
    X, Y = (torch.as_tensor(a, dtype=torch.float32) for a in (Xf, Yf))
    x_norm, y_norm = UnitGaussian(X, pointwise=pointwise), UnitGaussian(Y, pointwise=pointwise)
    model = build_fno((8,) * (X.ndim - 2), 32, 4)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3, weight_decay=1e-4)
    gen, n, bs = torch.Generator().manual_seed(seed), len(X), 32
    batches, Xn = math.ceil(n / bs), x_norm.encode(X)
    for epoch in range(epochs):
        order = torch.randperm(n, generator=gen)
        for b in range(batches):
            for group in opt.param_groups:
                group["lr"] = 5e-3 * _lr_factor("cosine", (epoch + b / batches) / epochs)
            idx = order[b * bs:(b + 1) * bs]
            out = model(Xn[idx])
            if loss == "rel":
                diff = (y_norm.decode(out) - Y[idx]).flatten(1).norm(dim=1)
                value = (diff / Y[idx].flatten(1).norm(dim=1)).sum()
            else:
                value = ((out - y_norm.encode(Y[idx])) ** 2).mean()
            opt.zero_grad()
            value.backward()
            opt.step()
    with torch.no_grad():
        pred = y_norm.decode(model(x_norm.encode(torch.as_tensor(Xv, dtype=torch.float32))))
    return relative_l2(pred, Yv)


def choral(Xf, Yf, Xv, Yv, epochs: int, seed: int, train: dict) -> float:
    from choral.config import Config
    from choral.evaluation.metrics import evaluate
    from choral.surrogate import Surrogate

    cfg = Config.from_dict({
        "model": {"backbone": "fno", "fno": {"modes": 8, "width": 32, "layers": 4}},
        "train": {"members": 1, "seed": seed, "epochs": epochs, "val_fraction": 0.0,
                  "lr": 3e-3, "lr_schedule": "cosine", "nll_beta": 0.0, **train},
        "calibration": {"method": "none"}})
    model = Surrogate(cfg).fit(Xf, Yf)
    return evaluate(model.predict(Xv), Yv)["rel_l2"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/neuralop"))
    parser.add_argument("--set", choices=["burgers", "darcy"], default="burgers")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--rows", type=int, default=None, help="first N rows of the file")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+",
                        default=["peer", "peer_mse", "peer_channel", *CHORAL])
    args = parser.parse_args()
    torch.set_num_threads(1)
    X, Y = load(args.data, args.set, "train")
    X, Y = X[:args.rows], Y[:args.rows]
    perm = np.random.default_rng(123).permutation(len(X))
    val, fit = perm[:len(X) // 4], perm[len(X) // 4:]
    data = (X[fit], Y[fit], X[val], Y[val], args.epochs)
    runs: dict[str, list[float]] = {}
    for seed in args.seeds:
        for name in args.variants:
            if name.startswith("peer"):
                err = peer(*data, seed, "mse" if name == "peer_mse" else "rel",
                           pointwise=name != "peer_channel")
            else:
                err = choral(*data, seed, CHORAL[name])
            runs.setdefault(name, []).append(err)
            print(json.dumps({"variant": name, "seed": seed, "val_rel_l2": err}), flush=True)
    print(json.dumps({"benchmark": "fno_ablation", "set": args.set, "epochs": args.epochs,
                      "n_fit": len(fit), "n_val": len(val), "seeds": args.seeds,
                      "val_rel_l2": runs,
                      "mean": {k: float(np.mean(v)) for k, v in runs.items()}}, indent=2))


if __name__ == "__main__":
    main()

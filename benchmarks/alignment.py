"""Loss barrier between two independently seeded MLP members, before and after weight matching.

    python benchmarks/alignment.py --data ../shared/data/uci [--splits 1] [--hidden 50]

Per data set and split: a deep ensemble of two members (different initialisations and
mini-batch orders, ``--hidden`` widths) is trained; member b is aligned to member a by weight
matching (:mod:`choral.ensembles.align`). Along ``(1 - t) a + t b`` (11 points) the barrier is
the largest rise of the loss above the straight line between the endpoint losses, on the training
rows (standardised units), for the Gaussian NLL and for the squared error of the mean.
Target: alignment cuts the NLL barrier by at least half. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

from uci import DATASETS, load_split


def run_one(root: Path, name: str, k: int, hidden: list[int], epochs: int) -> dict:
    import torch

    from choral.config import Config
    from choral.ensembles.align import align, barrier, path_losses
    from choral.ensembles.params import member
    from choral.ensembles.permutations import perm_spec
    from choral.surrogate import Surrogate

    torch.set_num_threads(1)
    X, y, _, _ = load_split(root, name, k)
    cfg = Config().updated(**{"train.members": 2, "model.hidden": hidden, "train.seed": k,
                              "train.epochs": epochs, "train.dtype": "float64"})
    model = Surrogate(cfg).fit(X, y)
    a, b = member(model.params, 0), member(model.params, 1)
    spec = perm_spec(model.template)
    start = time.perf_counter()
    b_aligned = align(a, b, spec)
    match_seconds = time.perf_counter() - start
    Xs = torch.as_tensor(model.x_norm.transform(X))
    Ys = torch.as_tensor(model.y_norm.transform(y))
    t = torch.linspace(0, 1, 11, dtype=torch.float64)

    def sq_error(out, target):
        return ((out[..., :1] - target) ** 2).mean(dim=(1, 2))

    row = {"dataset": name, "split": k, "epochs_run": model.metrics["epochs_run"],
           "match_seconds": round(match_seconds, 3)}
    for label, loss in (("nll", model.head.loss), ("sq_error", sq_error)):
        before = barrier(path_losses(model._forward, a, b, Xs, Ys, loss, t), t)
        after = barrier(path_losses(model._forward, a, b_aligned, Xs, Ys, loss, t), t)
        row[label] = {"before": before, "after": after, "ratio": after / before}
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="UCI root folder")
    parser.add_argument("--datasets", nargs="*", default=DATASETS)
    parser.add_argument("--splits", type=int, default=1)
    parser.add_argument("--hidden", type=int, nargs="+", default=[50])
    parser.add_argument("--epochs", type=int, default=300)
    args = parser.parse_args()
    start = time.perf_counter()
    rows = [run_one(args.data, name, k, args.hidden, args.epochs)
            for name in args.datasets for k in range(args.splits)]
    print(json.dumps({"benchmark": "alignment", "hidden": args.hidden, "epochs": args.epochs,
                      "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
                      "seconds": round(time.perf_counter() - start, 1),
                      "target_met": all(r["nll"]["ratio"] <= 0.5 for r in rows),
                      "rows": rows}, indent=1))


if __name__ == "__main__":
    main()

"""FNO members: one training step of the stacked ensemble through vmap vs a loop over members.

    python benchmarks/fno_backend.py [--members 5] [--batch 32] [--repeats 7]

For a 2-D (16x16) and a 1-D (16 points) FNO (modes 8, width 32, 4 layers, one input channel,
two output channels as under the Gaussian head), the median seconds of forward + backward of
all members on ``--batch`` rows each, with ``torch.func.vmap`` over ``functional_call``
(``backend = "vmap"``) and with one ``functional_call`` per member (``"loop"``), alternating.
Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from choral.networks import FNOBackbone
from choral.networks.members import init_members, member_forward


def step_seconds(template, params, x, repeats: int) -> dict[str, float]:
    """Median seconds per backend; the backends alternate, so load from other jobs on the
    machine falls on both alike (the first, warm-up round is dropped)."""
    forwards = {b: member_forward(template, b) for b in ("vmap", "loop")}
    times: dict[str, list[float]] = {b: [] for b in forwards}
    for _ in range(repeats + 1):
        for backend, forward in forwards.items():
            p = {k: v.clone().requires_grad_() for k, v in params.items()}
            start = time.perf_counter()
            forward(p, x).square().mean().backward()
            times[backend].append(time.perf_counter() - start)
    return {b: sorted(t[1:])[repeats // 2] for b, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for dim, grid in ((2, (16, 16)), (1, (16,))):
        template, params = init_members(
            lambda dim=dim: FNOBackbone(1, 2, dim, modes=8, width=32, layers=4),
            list(range(args.members)))
        x = torch.randn(args.members, args.batch, 1, *grid)
        row = {"grid": list(grid), **step_seconds(template, params, x, args.repeats)}
        row["loop_over_vmap"] = row["loop"] / row["vmap"]
        rows.append(row)
    print(json.dumps({"benchmark": "fno_backend", "members": args.members,
                      "batch": args.batch, "torch_threads": 1, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()

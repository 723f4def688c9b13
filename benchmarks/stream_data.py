"""Write a Darcy data set of a given size to HDF5 block by block, in bounded memory.

    python benchmarks/stream_data.py --out darcy.h5 --gib 4.0 --grid 32 --seed 0 --workers 2
    python benchmarks/stream_data.py --out /tmp/small.h5 --gib 0.001 --grid 9 --fine 17  # smoke

X holds the coefficient fields ``a``, Y the solutions ``u``, float64 (n, 1, grid, grid), n the
fewest samples making at least ``--gib`` GiB of X and Y together. Sample i is sample i of
``simulate_darcy(n, seed, resolution=grid, fine=fine)``: the same draws from one generator, one
sample after the other, and the same solver, run over ``--workers`` processes with
``run_batches``. ``--block-mib`` MiB of samples are generated and written at a time through
``choral.data.save_blocks`` (one sample a chunk; the file appears only once complete), so memory
stays bounded however large the file. Prints one JSON line: n, bytes (file size), seconds, and
seconds per GiB of data for extrapolation.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Iterator

import numpy as np

from choral.data import save_blocks
from choral.rows import block_rows
from choral.simulators import run_batches
from choral.simulators.darcy import darcy_coefficients, fine_grid, solve_darcy

BATCH = 4  # samples a task in the worker pool


def solve(a: np.ndarray, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Solve each coefficient field of ``a`` (b, fine, fine); subsampled (a, u), (b, g, g)."""
    u = np.stack([solve_darcy(field) for field in a])
    return a[:, ::stride, ::stride], u[:, ::stride, ::stride]


def draws(rng: np.random.Generator, count: int, fine: int) -> Iterator[np.ndarray]:
    """``count`` coefficient fields in batches (b, fine, fine), drawn one after the other."""
    for start in range(0, count, BATCH):
        yield np.concatenate([darcy_coefficients(rng, 1, fine)
                              for _ in range(min(BATCH, count - start))])


def blocks(n: int, args: argparse.Namespace, fine: int, stride: int) -> Iterator[dict]:
    """{"X": a, "Y": u} blocks (b, 1, g, g) of at most ``--block-mib`` MiB, in sample order."""
    rng = np.random.default_rng(args.seed)
    rows = block_rows((2, args.grid, args.grid), int(args.block_mib * 2**20))
    for start in range(0, n, rows):
        b = min(rows, n - start)
        a, u = run_batches(solve, draws(rng, b, fine), (stride,), b, args.workers)
        print(f"{start + b}/{n} samples", file=sys.stderr, flush=True)
        yield {"X": a[:, None], "Y": u[:, None]}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="the .h5/.hdf5 file to write")
    p.add_argument("--gib", type=float, default=4.0, help="at least this many GiB of X and Y")
    p.add_argument("--grid", type=int, default=32, help="resolution g of the saved fields")
    p.add_argument("--fine", type=int, default=None,
                   help="solver grid (default: simulate_darcy's, FNO protocol)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--block-mib", type=float, default=64.0, help="MiB generated at a time")
    args = p.parse_args(argv)
    fine, stride = fine_grid(args.grid, args.fine)
    sample_bytes = 2 * 8 * args.grid**2
    n = max(1, math.ceil(args.gib * 2**30 / sample_bytes))
    shape = (n, 1, args.grid, args.grid)
    t0 = time.perf_counter()
    save_blocks(args.out, {"X": shape, "Y": shape}, blocks(n, args, fine, stride), chunk_rows=1)
    seconds = time.perf_counter() - t0
    result = {"n": n, "grid": args.grid, "fine": fine, "workers": args.workers,
              "bytes": os.path.getsize(args.out), "data_bytes": n * sample_bytes,
              "seconds": round(seconds, 2),
              "seconds_per_gib": round(seconds / (n * sample_bytes / 2**30), 1)}
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main()

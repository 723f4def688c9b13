"""Run a solver over batches of samples, in this process or in a pool of processes.

Results come back in batch order, so they never depend on the number of workers.
"""

from __future__ import annotations

import multiprocessing
import sys
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any

import numpy as np

from choral.checks import check_int
from choral.errors import DataError

__all__ = ["run_batches"]


def _pool(workers: int) -> ProcessPoolExecutor:
    # Linux: fork, which needs no `if __name__ == "__main__"` guard and works from notebooks and
    # stdin; the workers run numpy/scipy only, never the parent's torch threads. Elsewhere: spawn.
    linux = sys.platform.startswith("linux")
    ctx = multiprocessing.get_context("fork" if linux else None)
    return ProcessPoolExecutor(max_workers=workers, mp_context=ctx)


def run_batches(
    fn: Callable[..., tuple[np.ndarray, ...]],
    batches: Iterable[np.ndarray],
    args: tuple,
    total: int,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, ...]:
    """Apply ``fn(batch, *args)`` to each batch and concatenate the returned arrays along axis 0.

    ``batches`` (each ``(b, ...)``, ``total`` samples in all) is consumed lazily in order; with
    ``workers > 1`` at most ``2 * workers`` batches are in flight in a process pool (``fn`` must be
    a module-level function). Results are put back in batch order, so they do not depend on
    ``workers``. ``progress(done, total)`` is called after each batch.

    >>> run_batches(lambda b: (2 * b,), [np.ones(2), np.zeros(1)], (), 3)[0].tolist()
    [2.0, 2.0, 0.0]
    """
    workers = check_int(workers, "workers", minimum=1)
    if progress is not None and not callable(progress):
        raise DataError(f"progress must be callable(done, total) or None, got {progress!r}")
    results: dict[int, tuple[np.ndarray, ...]] = {}
    done = 0

    def finish(i: int, out: tuple[np.ndarray, ...]) -> None:
        nonlocal done
        results[i] = out
        done += len(out[0])
        if progress is not None:
            progress(done, total)

    if workers == 1:
        for i, batch in enumerate(batches):
            finish(i, fn(batch, *args))
    else:
        _run_pool(fn, batches, args, workers, finish)
    ordered = [results[i] for i in sorted(results)]
    return tuple(np.concatenate(parts) for parts in zip(*ordered, strict=True))


def _run_pool(
    fn: Callable[..., tuple[np.ndarray, ...]],
    batches: Iterable[np.ndarray],
    args: tuple,
    workers: int,
    finish: Callable[[int, Any], None],
) -> None:
    todo = enumerate(batches)
    pending: dict[Future, int] = {}
    with _pool(workers) as pool:
        try:
            for i, batch in todo:
                pending[pool.submit(fn, batch, *args)] = i
                while len(pending) >= 2 * workers:
                    _collect(pending, finish)
            while pending:
                _collect(pending, finish)
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def _collect(pending: dict[Future, int], finish: Callable[[int, Any], None]) -> None:
    finished, _ = wait(pending, return_when=FIRST_COMPLETED)
    for future in finished:
        finish(pending.pop(future), future.result())

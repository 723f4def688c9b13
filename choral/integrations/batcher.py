"""Micro-batching: concurrent requests gathered into one prediction.

:class:`MicroBatcher` keeps an asyncio queue of (rows, levels, future). Its worker takes the
first waiting request, then gathers more for up to ``max_wait`` seconds or until ``max_rows``
rows are gathered, concatenates their rows (n_1 + n_2 + ..., ...) and runs one ``predict`` on
them in a worker thread (the event loop keeps accepting requests meanwhile); each request gets
its own rows back. With ``max_wait = 0`` and ``max_rows = 1`` every request is predicted alone,
one at a time: serving without micro-batching.

Examples:
    >>> import asyncio, numpy as np
    >>> def predict(X, levels):
    ...     return {"mean": X.sum(1, keepdims=True), "n": np.full(len(X), len(X))}
    >>> async def main():
    ...     batcher = MicroBatcher(predict, max_wait=0.01, max_rows=64)
    ...     batcher.start()
    ...     rows = [np.full((1, 2), float(i)) for i in range(5)]
    ...     out = await asyncio.gather(*(batcher.submit(x, [0.9]) for x in rows))
    ...     await batcher.stop()
    ...     return [o["mean"].item() for o in out], out[0]["n"].item()
    >>> asyncio.run(main())
    ([0.0, 2.0, 4.0, 6.0, 8.0], 5)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

__all__ = ["MicroBatcher"]

Predict = Callable[[np.ndarray, list[float]], dict[str, np.ndarray]]


@dataclass
class _Job:
    X: np.ndarray
    levels: list[float]
    future: asyncio.Future = field(repr=False)


class MicroBatcher:
    """Gathers concurrent ``submit(X (n_i, ...), levels)`` calls into one ``predict(X (n, ...),
    levels)`` returning arrays (n, ...) by name; see the module docstring.

    ``stats`` counts requests, rows and predictions (batches) so far.
    """

    def __init__(self, predict: Predict, max_wait: float = 0.002, max_rows: int = 256) -> None:
        self.predict, self.max_wait, self.max_rows = predict, max_wait, max_rows
        self.stats = {"requests": 0, "rows": 0, "batches": 0}
        self._queue: asyncio.Queue[_Job] | None = None
        self._task: asyncio.Task | None = None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="choral-predict")

    def start(self) -> None:
        """Start the worker on the running event loop."""
        self._queue = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._work())

    async def stop(self) -> None:
        """Finish every request already submitted, then stop the worker."""
        if self._queue is not None:
            await self._queue.join()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._pool.shutdown(wait=True)

    @property
    def waiting(self) -> int:
        """Requests queued and not yet taken by the worker."""
        return 0 if self._queue is None else self._queue.qsize()

    async def submit(self, X: np.ndarray, levels: list[float]) -> dict[str, np.ndarray]:
        """The predictions for the rows ``X`` (n, ...): arrays (n, ...) by name."""
        if self._queue is None:
            raise RuntimeError("MicroBatcher.start() was not called")
        future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Job(X, list(levels), future))
        return await future

    async def _gather(self) -> list[_Job]:
        """The first waiting job and those that come within ``max_wait``, up to ``max_rows``."""
        queue = self._queue
        jobs = [await queue.get()]
        rows = len(jobs[0].X)
        deadline = asyncio.get_running_loop().time() + self.max_wait
        while rows < self.max_rows:
            if queue.empty():
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    break
                try:
                    job = await asyncio.wait_for(queue.get(), left)
                except TimeoutError:
                    break
            else:
                job = queue.get_nowait()
            jobs.append(job)
            rows += len(job.X)
        return jobs

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = await self._gather()
            try:
                levels = sorted({lv for job in jobs for lv in job.levels})
                X = jobs[0].X if len(jobs) == 1 else np.concatenate([job.X for job in jobs])
                out = await loop.run_in_executor(self._pool, self.predict, X, levels)
                start = 0
                for job in jobs:
                    stop = start + len(job.X)
                    if not job.future.done():  # a client that went away cancelled its own
                        job.future.set_result({k: v[start:stop] for k, v in out.items()})
                    start = stop
                self.stats["batches"] += 1
                self.stats["requests"] += len(jobs)
                self.stats["rows"] += len(X)
            except Exception as exc:  # noqa: BLE001 - each waiting request gets the error
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(exc)
            finally:
                for _ in jobs:
                    self._queue.task_done()

"""Where simulator runs and round fits execute: in this process, or as Ray tasks.

Both backends offer ``run(simulation, items, start, finish)``: ``start(id)`` is called just before
a run is handed out and ``finish(id, outcome)`` as soon as it comes back, so the ledger records
each run the moment it ends; and ``fit(fit_fn, *args)``, which trains a round's surrogate. Ray is
imported only when :class:`RayBackend` is made.

>>> from choral.campaign.simulator import Simulation
>>> seen = []
>>> LocalBackend().run(Simulation(lambda X: 2 * X), [(7, np.ones(1))], seen.append,
...                    lambda i, o: seen.append((i, o.y.tolist())), Path("."))
>>> seen
[7, (7, [2.0])]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from choral.campaign.simulator import Outcome, Simulation
from choral.errors import CampaignError

Items = Sequence[tuple[int, np.ndarray]]


def _evaluate(simulation: Simulation, x: np.ndarray, workdir: Path) -> Outcome:
    return simulation.evaluate(x, workdir)


def _fit(threads: int, fit_fn: Callable[..., Any], *args: Any) -> Any:
    torch.set_num_threads(threads)  # the same thread count as the caller: the same numbers
    return fit_fn(*args)


class LocalBackend:
    """Runs one after another in this process."""

    name = "local"

    def run(self, simulation: Simulation, items: Items, start: Callable[[int], None],
            finish: Callable[[int, Outcome], None], rundir: Path) -> None:
        for run_id, x in items:
            start(run_id)
            finish(run_id, _evaluate(simulation, x, rundir / f"run_{run_id}"))

    def fit(self, fit_fn: Callable[..., Any], *args: Any) -> Any:
        return fit_fn(*args)

    def close(self) -> None:
        pass


class RayBackend:
    """Simulator runs as Ray tasks, at most ``max_concurrency`` at a time; fits as a Ray task.

    Connects to ``address`` (a running cluster) or starts a local runtime.
    """

    name = "ray"

    def __init__(self, address: str | None = None, max_concurrency: int = 2) -> None:
        try:
            import ray
        except ImportError:
            raise CampaignError("--backend ray needs Ray: pip install 'choral[ray]'") from None
        if max_concurrency < 1:
            raise CampaignError(f"max_concurrency must be >= 1, got {max_concurrency}")
        self.ray, self.max_concurrency = ray, max_concurrency
        self._owns = not ray.is_initialized()
        if self._owns:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        self._evaluate = ray.remote(num_cpus=1, max_retries=0)(_evaluate)
        self._fit = ray.remote(num_cpus=1, max_retries=0)(_fit)

    def run(self, simulation: Simulation, items: Items, start: Callable[[int], None],
            finish: Callable[[int, Outcome], None], rundir: Path) -> None:
        todo, flying = list(items), {}
        sim_ref = self.ray.put(simulation)
        while todo or flying:
            while todo and len(flying) < self.max_concurrency:
                run_id, x = todo.pop(0)
                start(run_id)
                flying[self._evaluate.remote(sim_ref, x, rundir / f"run_{run_id}")] = run_id
            ready, _ = self.ray.wait(list(flying), num_returns=1)
            for ref in ready:
                run_id = flying.pop(ref)
                try:
                    outcome = self.ray.get(ref)
                except self.ray.exceptions.RayError as exc:  # the worker itself died
                    outcome = Outcome(None, f"ray task failed: {exc}", 0.0)
                finish(run_id, outcome)

    def fit(self, fit_fn: Callable[..., Any], *args: Any) -> Any:
        return self.ray.get(self._fit.remote(torch.get_num_threads(), fit_fn, *args))

    def close(self) -> None:
        if self._owns:
            self.ray.shutdown()


def make_backend(name: str, address: str | None = None,
                 max_concurrency: int = 2) -> LocalBackend | RayBackend:
    """``"local"`` or ``"ray"``; anything else is a CampaignError naming the choices."""
    if name == "local":
        return LocalBackend()
    if name == "ray":
        return RayBackend(address, max_concurrency)
    raise CampaignError(f"--backend must be 'local' or 'ray', got {name!r}")

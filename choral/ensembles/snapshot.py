"""Snapshot ensembles (Huang et al., 2017): one training run with a cosine learning rate
restarted ``weightspace.cycles`` times; the network at the end of each cycle (lowest learning
rate) is one member. ``train.ensemble = "snapshot"`` trains the first member only.
"""

from __future__ import annotations

import torch

from choral.ensembles.context import Result, TrainContext
from choral.ensembles.flat import unflatten
from choral.ensembles.registry import register
from choral.ensembles.schedule import restarts
from choral.ensembles.swa import Collected, collecting_run, run_epochs
from choral.errors import ConfigError


def cycle_ends(epochs: int, cycles: int) -> list[int]:
    """The last epoch (0-based) ending within each of ``cycles`` equal cycles of :func:`restarts`.

    >>> cycle_ends(10, 5), cycle_ends(10, 3)
    ([1, 3, 5, 7, 9], [2, 5, 9])
    """
    return [(c + 1) * epochs // cycles - 1 for c in range(cycles)]


@register("snapshot")
def snapshot(ctx: TrainContext) -> Result:
    """One member per cosine cycle, stacked (cycles, ...)."""
    epochs, cycles = run_epochs(ctx), ctx.weightspace.cycles
    if cycles > epochs:
        raise ConfigError(f"weightspace.cycles must be at most the epochs ({epochs}); "
                          f"got {cycles}")
    kept = Collected()
    last, history = collecting_run(ctx, 1, restarts(epochs, cycles), cycle_ends(epochs, cycles),
                                   kept)
    return Result(unflatten(torch.cat(kept), last), history,
                  {"snapshot": {"cycles": cycles, "epochs": epochs}})

"""Learning-rate schedules and collection epochs of weight-space methods (one training run).

Factors multiply ``train.lr`` and are functions of the fractional epoch ``t``.

Examples:
    >>> from choral.ensembles.config import WeightSpaceConfig
    >>> ws = WeightSpaceConfig(swa_start=0.5, swa_lr=0.1, schedule="cyclic", cycle_epochs=2)
    >>> f = swa_factor(ws, epochs=8)
    >>> [round(f(t), 2) for t in (0, 3.9, 4, 5, 5.99, 6)]
    [1.0, 1.0, 1.0, 0.55, 0.1, 1.0]
    >>> collect_epochs(ws, 8)
    [5, 7]
    >>> collect_epochs(ws.model_copy(update={"schedule": "constant"}), 8)
    [4, 5, 6, 7]
    >>> [round(restarts(8, 2)(t), 2) for t in (0, 2, 4, 6)]
    [1.0, 0.5, 1.0, 0.5]
"""

from __future__ import annotations

import math

from choral.ensembles.config import WeightSpaceConfig
from choral.ensembles.training import LrFactor


def start_epoch(ws: WeightSpaceConfig, epochs: int) -> int:
    """The first epoch whose weights are collected: ``ceil(swa_start * epochs)``, < epochs."""
    return min(math.ceil(ws.swa_start * epochs), epochs - 1)


def swa_factor(ws: WeightSpaceConfig, epochs: int) -> LrFactor:
    """1 before the collection starts; then ``swa_lr`` (constant) or, cyclic, a linear fall
    from 1 to ``swa_lr`` within each cycle of ``cycle_epochs`` (Izmailov et al., 2018)."""
    start, c = start_epoch(ws, epochs), ws.cycle_epochs

    def factor(t: float) -> float:
        if t < start:
            return 1.0
        if ws.schedule == "constant":
            return ws.swa_lr
        u = ((t - start) % c) / c
        return (1 - u) + u * ws.swa_lr

    return factor


def collect_epochs(ws: WeightSpaceConfig, epochs: int) -> list[int]:
    """Epochs (0-based) after which the weights are collected: every epoch from the start when
    constant, the end of each cycle when cyclic (at least the last epoch)."""
    start = start_epoch(ws, epochs)
    every = 1 if ws.schedule == "constant" else ws.cycle_epochs
    chosen = [e for e in range(start, epochs) if (e - start + 1) % every == 0]
    return chosen or [epochs - 1]


def restarts(epochs: int, cycles: int) -> LrFactor:
    """Cosine annealing from 1 to 0 restarted ``cycles`` times (snapshot ensembles, Huang et
    al., 2017): ``(1 + cos(pi * (t mod L) / L)) / 2`` with ``L = epochs / cycles``."""
    length = epochs / cycles
    return lambda t: 0.5 * (1.0 + math.cos(math.pi * (t % length) / length))

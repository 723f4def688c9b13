"""Weight-space ensembles: methods that buy an ensemble's uncertainty for about one training run.

A method turns one :class:`TrainContext` (the stacked initial members, the data, the head's loss
and the config) into the stacked networks (S, ...) that the surrogate evaluates as a mixture, the
training history, and optional extra model files (moments, curves) saved beside the weights.
Saved models need no method code to load: the surrogate evaluates whatever networks are stored.

Methods register themselves under the names accepted by ``train.ensemble``
(``choral fit --ensemble ...``); ``deep`` is the plain deep ensemble of :mod:`choral.training`.
Here: ``swa`` (:mod:`.swa`), ``swag`` and ``multiswag`` (:mod:`.swag`), ``snapshot``
(:mod:`.snapshot`); their learning-rate schedules in :mod:`.schedule`, weights flattened to
(s, P) by :mod:`.flat`, BatchNorm statistics recomputed by :mod:`.norm`; settings in
:class:`choral.config.WeightSpaceConfig` (``[weightspace]``).

Examples:
    >>> "deep" in METHODS
    True
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from choral.config import Config
from choral.errors import ConfigError
from choral.members import Forward
from choral.training import EpochCallback, History, Loss, train_members


@dataclass
class TrainContext:
    """Everything a method needs; tensors are standardised, members stacked on axis 0."""

    forward: Forward
    init_params: dict[str, Tensor]
    X: Tensor
    Y: Tensor
    X_val: Tensor | None
    Y_val: Tensor | None
    config: Config
    batch_seeds: Any
    loss: Loss
    on_epoch: EpochCallback | None = None
    template: Any = None
    """The member network on the meta device (for permutations and normalisation buffers)."""


@dataclass
class Result:
    """The networks to evaluate (S, ...), the history and extra model files by name."""

    params: dict[str, Tensor]
    history: History
    extras: dict[str, dict[str, Any]] = field(default_factory=dict)


Method = Callable[[TrainContext], Result]
METHODS: dict[str, Method] = {}


def register(name: str) -> Callable[[Method], Method]:
    """Decorator: make a method available as ``train.ensemble = name``."""

    def add(fn: Method) -> Method:
        METHODS[name] = fn
        return fn

    return add


@register("deep")
def deep(ctx: TrainContext) -> Result:
    """The deep ensemble: members trained independently, each keeping its best epoch."""
    params, history = train_members(ctx.forward, ctx.init_params, ctx.X, ctx.Y, ctx.X_val,
                                    ctx.Y_val, ctx.config.train, ctx.batch_seeds, ctx.loss,
                                    ctx.on_epoch)
    return Result(params, history)


def train_weightspace(name: str, ctx: TrainContext) -> Result:
    """Run the method ``name`` (``train.ensemble``)."""
    if name not in METHODS:
        raise ConfigError(f"train.ensemble must be one of {sorted(METHODS)}; got {name!r}")
    return METHODS[name](ctx)


# Methods in their own modules register themselves on import.
from choral.weightspace import snapshot, soup, swa, swag  # noqa: E402, F401

"""The deep ensemble (``train.ensemble = "deep"``): members trained independently at once.

Each member has its own initialisation and mini-batch order and keeps its best validation
epoch (:func:`choral.ensembles.training.train_members`).
"""

from __future__ import annotations

from choral.ensembles.context import Result, TrainContext
from choral.ensembles.registry import register
from choral.ensembles.training import train_members

__all__ = ["deep"]


@register("deep")
def deep(ctx: TrainContext) -> Result:
    """The deep ensemble: members trained independently, each keeping its best epoch."""
    params, history = train_members(ctx.forward, ctx.init_params, ctx.X, ctx.Y, ctx.X_val,
                                    ctx.Y_val, ctx.train, ctx.batch_seeds, ctx.loss, ctx.on_epoch,
                                    checkpoint=ctx.checkpoint,
                                    inputs=ctx.inputs)
    return Result(params, history)

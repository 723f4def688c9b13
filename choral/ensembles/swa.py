"""Stochastic weight averaging (Izmailov et al., 2018): the running mean of the weights collected
over the tail of one training run at a constant or cyclic learning rate.

The run is :func:`collecting_run`, shared with SWAG: it trains the given stacked members without
early stopping and hands the flattened weights (s, P) of each collection epoch to a callback.
``train.ensemble = "swa"`` trains the first member and evaluates its average alone.

Examples:
    >>> import torch
    >>> mean = RunningMean()
    >>> for w in ([[1., 2.]], [[3., 6.]], [[5., 1.]]):
    ...     mean.update(torch.tensor(w))
    >>> mean.count, mean.value.tolist()
    (3, [[3.0, 3.0]])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import Tensor

from choral.ensembles.context import Result, TrainContext
from choral.ensembles.flat import flatten, unflatten
from choral.ensembles.registry import register
from choral.ensembles.schedule import collect_epochs, swa_factor
from choral.ensembles.training import History, LrFactor, train_members


class RunningMean:
    """The mean of the tensors seen so far (each (s, P)), updated in place."""

    def __init__(self) -> None:
        self.count = 0
        self.value: Tensor | None = None

    def update(self, x: Tensor) -> None:
        self.count += 1
        if self.value is None:
            self.value = x.clone()
        else:
            self.value += (x - self.value) / self.count


def run_epochs(ctx: TrainContext) -> int:
    """Epochs of a weight-space run: ``weightspace.epochs`` or else ``train.epochs``."""
    return ctx.weightspace.epochs or ctx.train.epochs


def collecting_run(ctx: TrainContext, members: int, lr_factor: LrFactor,
                   collect: Sequence[int], on_collect: Callable[[Tensor], None]
                   ) -> tuple[dict[str, Tensor], History]:
    """Train the first ``members`` initial members for :func:`run_epochs` epochs with
    ``lr_factor``; after each epoch in ``collect`` call ``on_collect(weights (members, P))``.
    With ``weightspace.pretrain`` the run starts from the best weights of an early-stopped
    run (its epochs count in ``epochs_run``). Returns the last weights and the history."""
    epochs, wanted = run_epochs(ctx), set(collect)
    cfg = ctx.train.model_copy(update={"epochs": epochs})
    data = (ctx.X, ctx.Y, ctx.X_val, ctx.Y_val)
    seeds = ctx.batch_seeds[:members]
    init = {k: v[:members] for k, v in ctx.init_params.items()}
    before = 0
    if ctx.weightspace.pretrain:
        init, pre = train_members(ctx.forward, init, *data, ctx.train, seeds, ctx.loss,
                                  ctx.on_epoch)
        before = pre.epochs_run

    def after_epoch(epoch: int, params: dict[str, Tensor]) -> None:
        if epoch in wanted:
            on_collect(flatten(params))  # a new tensor (torch.cat), not a view

    last, history = train_members(ctx.forward, init, *data, cfg, seeds, ctx.loss, ctx.on_epoch,
                                  lr_factor=lr_factor, after_epoch=after_epoch,
                                  early_stopping=False)
    history.epochs_run += before
    return last, history


@register("swa")
def swa(ctx: TrainContext) -> Result:
    """One network: the average of the weights collected over the run's tail."""
    ws, epochs = ctx.weightspace, run_epochs(ctx)
    mean = RunningMean()
    last, history = collecting_run(ctx, 1, swa_factor(ws, epochs), collect_epochs(ws, epochs),
                                   mean.update)
    return Result(unflatten(mean.value, last), history,
                  {"swa": {"averaged": mean.count, "epochs": epochs}})

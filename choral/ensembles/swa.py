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

from collections.abc import Sequence
from typing import Any, Protocol

from torch import Tensor

from choral.ensembles.context import Result, TrainContext
from choral.ensembles.flat import flatten, unflatten
from choral.ensembles.registry import register
from choral.ensembles.schedule import collect_epochs, swa_factor
from choral.ensembles.training import History, LrFactor, Optimizer, train_members


class Accumulator(Protocol):
    """Where a collecting run hands its weights: ``update(w (s, P))``, and its state for
    checkpoints (:func:`~choral.ensembles.training.train_members` saves and restores it)."""

    def update(self, w: Tensor) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


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

    def state_dict(self) -> dict[str, Any]:
        return {"count": self.count, "value": self.value}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.count, self.value = state["count"], state["value"]


class Collected(list):
    """The collected tensors themselves, in order (snapshot ensembles)."""

    update = list.append

    def state_dict(self) -> dict[str, Any]:
        return {"kept": list(self)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self[:] = state["kept"]


class _Collect:
    """``after_epoch`` of a collecting run: the flattened weights (s, P) of each epoch in
    ``epochs`` go to ``into``, whose state is the checkpointed state."""

    def __init__(self, epochs: Sequence[int], into: Accumulator) -> None:
        self.epochs, self.into = set(epochs), into

    def __call__(self, epoch: int, params: dict[str, Tensor]) -> None:
        if epoch in self.epochs:
            self.into.update(flatten(params))  # a new tensor (torch.cat), not a view

    def state_dict(self) -> dict[str, Any]:
        return self.into.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.into.load_state_dict(state)


def run_epochs(ctx: TrainContext) -> int:
    """Epochs of a weight-space run: ``weightspace.epochs`` or else ``train.epochs``."""
    return ctx.weightspace.epochs or ctx.train.epochs


def collecting_run(ctx: TrainContext, members: int, lr_factor: LrFactor,
                   collect: Sequence[int], into: Accumulator, optimizer: Optimizer | None = None
                   ) -> tuple[dict[str, Tensor], History]:
    """Train the first ``members`` initial members for :func:`run_epochs` epochs with
    ``lr_factor``; after each epoch in ``collect`` call ``into.update(weights (members, P))``.
    With ``weightspace.pretrain`` the run starts from the best weights of an early-stopped
    run (its epochs count in ``epochs_run``); ``optimizer`` builds the collecting run's
    optimiser (default AdamW). Returns the last weights and the history."""
    epochs = run_epochs(ctx)
    cfg = ctx.train.model_copy(update={"epochs": epochs})
    data = (ctx.X, ctx.Y, ctx.X_val, ctx.Y_val)
    seeds = ctx.batch_seeds[:members]
    init = {k: v[:members] for k, v in ctx.init_params.items()}
    before = 0
    if ctx.weightspace.pretrain:
        init, pre = train_members(ctx.forward, init, *data, ctx.train, seeds, ctx.loss,
                                  ctx.on_epoch, checkpoint=ctx.checkpoint,
                                  inputs=ctx.inputs)
        before = pre.epochs_run
    last, history = train_members(ctx.forward, init, *data, cfg, seeds, ctx.loss, ctx.on_epoch,
                                  lr_factor=lr_factor, after_epoch=_Collect(collect, into),
                                  early_stopping=False, checkpoint=ctx.checkpoint,
                                  optimizer=optimizer, inputs=ctx.inputs)
    history.epochs_run += before
    return last, history


@register("swa")
def swa(ctx: TrainContext) -> Result:
    """One network: the average of the weights collected over the run's tail."""
    ws, epochs = ctx.weightspace, run_epochs(ctx)
    mean = RunningMean()
    last, history = collecting_run(ctx, 1, swa_factor(ws, epochs), collect_epochs(ws, epochs),
                                   mean)
    return Result(unflatten(mean.value, last), history,
                  {"swa": {"averaged": mean.count, "epochs": epochs}})

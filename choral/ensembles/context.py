"""What an ensemble method receives (:class:`TrainContext`) and returns (:class:`Result`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from choral.ensembles.checkpoint import Checkpoint
from choral.ensembles.config import PosteriorConfig, SoupConfig, TrainConfig, WeightSpaceConfig
from choral.ensembles.training import EpochCallback, History, InputHook, Loss
from choral.networks.members import Forward

__all__ = ["Result", "TrainContext"]


@dataclass
class TrainContext:
    """Everything a method needs; tensors are standardised, members stacked on axis 0."""

    forward: Forward
    init_params: dict[str, Tensor]
    X: Tensor
    Y: Tensor
    X_val: Tensor | None
    Y_val: Tensor | None
    train: TrainConfig
    batch_seeds: Any
    loss: Loss
    on_epoch: EpochCallback | None = None
    template: nn.Module | None = None
    """The member network on the meta device (for permutations)."""
    weightspace: WeightSpaceConfig = field(default_factory=WeightSpaceConfig)
    soup: SoupConfig = field(default_factory=SoupConfig)
    checkpoint: Checkpoint | None = None
    """Where every :func:`~choral.ensembles.training.train_members` call of the method saves
    and resumes its state (pass it on to each call)."""
    posterior: PosteriorConfig = field(default_factory=PosteriorConfig)
    nll: Loss | None = None
    """The head's NLL in value and gradient alike (a curvature's loss; ``loss`` may train on
    another gradient, e.g. the beta-NLL's); ``None``: ``loss`` is it."""
    inputs: InputHook | None = None
    """Changes the training mini-batches' inputs (pass it on to each ``train_members`` call)."""


@dataclass
class Result:
    """The networks to evaluate (S, ...), the history and the method's records by name
    (JSON objects, or dicts of tensors), saved with the model."""

    params: dict[str, Tensor]
    history: History
    records: dict[str, dict[str, Any]] = field(default_factory=dict)

"""Settings of how an ensemble is trained: ``[train]``, ``[weightspace]``, ``[soup]`` and
``[finetune]``.

The allowed values come from their owners: ensemble methods from the registry
(:data:`choral.ensembles.registry.METHODS`), backends from :mod:`choral.networks.members`;
the learning-rate schedules are interpreted in :mod:`choral.ensembles.training` and
:mod:`choral.ensembles.schedule`.

Examples:
    >>> TrainConfig().members, TrainConfig(ensemble="swag").ensemble
    (5, 'swag')
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveFloat, PositiveInt, field_validator

from choral.devices import DEVICE_PATTERN
from choral.ensembles.registry import METHODS
from choral.networks.members import BACKENDS
from choral.schema import Strict

__all__ = ["FIELD_DEFAULTS", "LR_SCHEDULES", "SWA_SCHEDULES", "FinetuneConfig",
           "PosteriorConfig", "SoupConfig",
           "TrainConfig", "WeightSpaceConfig"]

LR_SCHEDULES = ("constant", "cosine")
"""``train.lr_schedule``: a constant rate, or cosine annealing to zero over ``train.epochs``."""
SWA_SCHEDULES = ("constant", "cyclic")
"""``weightspace.schedule``: collect every epoch at one rate, or at the end of linear cycles."""


FIELD_DEFAULTS = {"epochs": 20, "lr": 3e-3, "lr_schedule": "cosine", "patience": 10,
                  "nll_beta": 0.5}
"""``[train]`` defaults for fields (n, c, *grid), in place of the vector ones where a setting
was not given: a few dozen epochs under a cosine schedule, stopped early after ``patience``
epochs without a better validation NLL, on the beta-NLL's gradient with beta 0.5 (Gaussian head
only). Chosen on validation data carved out of the Darcy 16 and Burgers 16 training files
(``benchmarks/field_defaults.py``; figures in ``benchmarks/RESULTS.md``) so that a default fit
ends in a time comparable to neuraloperator's FNO trained side by side; beta 0.5 made the
Burgers validation error 4x smaller than the plain NLL's at the same settings."""


class TrainConfig(Strict):
    """How the ensemble is trained (Gaussian NLL, AdamW, early stopping per member).

    The defaults were chosen on validation data carved out of UCI training splits, never on test
    data (``benchmarks/uci_select.py``; figures in ``benchmarks/RESULTS.md``).
    """

    members: PositiveInt = 5
    ensemble: str = "deep"
    """How the ensemble is made, one of :data:`choral.ensembles.registry.METHODS`: ``deep``
    trains ``members`` networks independently; the others are weight-space ensembles."""
    epochs: PositiveInt = 1000
    batch_size: PositiveInt = 32
    lr: PositiveFloat = 1e-2
    weight_decay: float = Field(default=1e-4, ge=0)
    lr_schedule: Literal[LR_SCHEDULES] = "constant"
    """``cosine`` anneals the learning rate to zero over ``epochs`` (the same for every member)."""
    val_fraction: float = Field(default=0.1, ge=0, lt=1)
    patience: PositiveInt = 100
    nll_beta: float = Field(default=0.0, ge=0, le=1)
    """The Gaussian head trains on the beta-NLL's gradient (Seitzer et al., 2022): the NLL's
    gradient times each value's predicted variance to this power (held constant), so a
    member's mean keeps learning where its variance is large; 0 is the plain NLL, 1 gives the
    means the squared error's gradient. Validation, early stopping and the history stay in NLL
    units (:func:`choral.networks.heads.beta_nll`). Other heads need 0."""
    grad_clip: PositiveFloat | None = None
    """Largest gradient norm of one member per step (over all its weights); ``None``: no
    clipping. Guards against a member diverging on a batch far outside its predicted variance."""
    seed: int = 0
    backend: Literal[("auto", *BACKENDS)] = "auto"
    dtype: Literal["float32", "float64"] = "float32"
    device: str = Field(default="auto", pattern=f"^({DEVICE_PATTERN})$")
    """Where training and prediction run: ``auto`` (the first GPU when there is one, else the
    CPU), ``cpu``, ``cuda`` or ``cuda:k``. A saved model loads on any device."""
    precision: Literal["32", "bf16-mixed"] = "32"
    """``bf16-mixed`` runs the members' forward under bfloat16 autocast (meant for U-Nets on
    GPUs); the loss, the optimiser and the weights stay in ``dtype``."""
    cluster: Literal["local", "ray"] = "local"
    """``ray``: the members of a deep ensemble train in ``shards`` Ray tasks (one GPU each when
    the cluster has GPUs; :mod:`choral.surrogate.shards`), gathered into one ensemble."""
    shards: PositiveInt | None = None
    """Shards of members with ``cluster = "ray"``; default: one per GPU, else one per CPU."""
    address: str | None = None
    """The Ray cluster to join with ``cluster = "ray"``; default: start a local runtime."""
    checkpoint_epochs: PositiveInt | None = None
    """With a checkpoint file (``choral fit`` always has one), save the training state every
    this many epochs ..."""
    checkpoint_seconds: PositiveFloat | None = 60.0
    """... and at the first step after this many seconds since the last save."""

    def for_fields(self) -> TrainConfig:
        """A copy with :data:`FIELD_DEFAULTS` for the settings that were not given.

        >>> TrainConfig().for_fields().epochs, TrainConfig(epochs=7).for_fields().epochs
        (20, 7)
        """
        unset = {k: v for k, v in FIELD_DEFAULTS.items() if k not in self.model_fields_set}
        return self.model_copy(update=unset)

    @field_validator("ensemble")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in METHODS:
            raise ValueError(f"expected one of {', '.join(METHODS)}")
        return value


class WeightSpaceConfig(Strict):
    """Weight-space ensembles (:mod:`choral.ensembles`): SWA, SWAG, MultiSWAG, snapshots.

    ``swa``, ``swag`` and ``snapshot`` train one network; ``multiswag`` runs SWAG on each of the
    ``train.members`` members at once. By default a method first trains as the deep ensemble
    does (early stopping), then runs ``epochs`` more epochs from the best weights at
    ``swa_lr * train.lr``, collecting every epoch. These defaults were chosen among three
    settings on validation data carved out of UCI training splits (boston, yacht; see
    ``benchmarks/results/weightspace.md``), never on test data.
    """

    pretrain: bool = True
    """First train as the deep ensemble does (early stopping on validation NLL, at most
    ``train.epochs``), then run the ``epochs`` of the method from the best weights. Without it
    the method's run starts from the initial weights and never stops early."""
    epochs: PositiveInt | None = 50
    """Epochs of the method's run; ``None`` means ``train.epochs``."""
    swa_start: float = Field(default=0.0, ge=0, lt=1)
    """Fraction of the epochs after which weights are collected (SWA average, SWAG moments)."""
    swa_lr: PositiveFloat = 1.0
    """Learning rate while collecting, as a factor of ``train.lr`` (lowest point when cyclic)."""
    schedule: Literal[SWA_SCHEDULES] = "constant"
    """``constant``: collect every epoch at ``swa_lr``; ``cyclic``: within each cycle of
    ``cycle_epochs`` the factor falls linearly from 1 to ``swa_lr``, collected at the cycle end."""
    cycle_epochs: PositiveInt = 1
    rank: int = Field(default=10, ge=2)
    """SWAG: columns K of the low-rank deviation matrix (the last K collected weights)."""
    samples: PositiveInt = 20
    """SWAG: networks sampled per SWAG posterior (per member for ``multiswag``)."""
    cycles: PositiveInt = 5
    """Snapshot ensembles: cosine cycles, one network kept at the end of each."""


class PosteriorConfig(Strict):
    """Posterior members for small data (``[posterior]``): randomized prior functions
    (``train.ensemble = "prior"``, :mod:`choral.ensembles.prior`) and last-layer Laplace
    (``"laplace"``, :mod:`choral.ensembles.laplace`), both needing the Gaussian head, and
    cyclical SG-MCMC (``"sgmcmc"``, :mod:`choral.ensembles.sgmcmc`, any head; its run has
    ``weightspace.epochs`` epochs in ``weightspace.cycles`` cycles)."""

    prior_scale: PositiveFloat = 1.0
    """``beta``: the random prior network's output (in standardised target units) is
    multiplied by this before it is added to each member's mean."""
    samples: PositiveInt = 10
    """Laplace: networks sampled per member from its last-layer posterior (members x samples
    networks are stored)."""
    precision_grid: tuple[PositiveFloat, PositiveFloat] = (1e-4, 1e4)
    """Laplace: the range [low, high] searched (on a log grid of 401 points) for the prior
    precision that maximises the Laplace marginal likelihood, per member."""
    sgmcmc_lr: PositiveFloat = 0.05
    """cSGLD: the largest learning rate of a cycle (on the mean loss per target value)."""
    exploration: float = Field(default=0.5, ge=0, lt=1)
    """cSGLD: the fraction of each cycle run without noise (the optimisation stage)."""
    cycle_samples: PositiveInt = 1
    """cSGLD: networks kept per cycle and member (the weights after its last epochs)."""
    temperature: PositiveFloat = 1.0
    """cSGLD: the posterior temperature T (1: the Bayes posterior; < 1: a cold posterior)."""
    prior_precision: PositiveFloat = 1.0
    """cSGLD: lambda of the Gaussian prior N(0, I / lambda) on every weight."""
    sgmcmc_clip: PositiveFloat | None = 1.0
    """cSGLD: each member's gradient norm is clipped to this (when ``train.grad_clip`` is not
    set), pretraining included: plain Langevin steps on a heteroscedastic NLL diverge where a
    variance collapses. Clipping biases the sampler; ``None`` for exact SGLD steps."""

    @field_validator("precision_grid")
    @classmethod
    def _ordered(cls, value: tuple[float, float]) -> tuple[float, float]:
        if value[0] > value[1]:
            raise ValueError(f"expected [low, high] with low <= high; got {list(value)}")
        return value


class SoupConfig(Strict):
    """Model soups (``train.ensemble = "soup"``, :mod:`choral.ensembles.soup`).

    One network is trained for ``start_fraction`` of ``train.epochs``; ``train.members``
    ingredients are then fine-tuned from it for the remaining epochs, ingredient ``i`` with its
    own mini-batch seed and learning rate ``train.lr * lr_factors[i % len(lr_factors)]``; their
    weights are averaged into one network.
    """

    start_fraction: float = Field(default=0.5, gt=0, lt=1)
    lr_factors: list[PositiveFloat] = Field(default_factory=lambda: [0.1, 0.3, 1.0])
    greedy: bool = True
    """Greedy soup (add an ingredient only if the validation NLL improves); else uniform."""
    save_ingredients: bool = False
    """Also keep the ingredients' weights as the extra file ``soup_ingredients.safetensors``."""


class FinetuneConfig(Strict):
    """``choral finetune``: fine-tune on a new regime, then WiSE-FT interpolation."""

    epochs: PositiveInt = 200
    lr_factor: PositiveFloat = 0.1
    """Fine-tuning learning rate as a multiple of ``train.lr``."""
    alphas: int = Field(default=11, ge=2)
    """Points of the curve: alpha in ``linspace(0, 1, alphas)``."""
    val_fraction: float = Field(default=0.2, gt=0, lt=1)
    """Share of the new-regime data held out to choose alpha."""

"""Validated configuration of a surrogate: network, training and data keys.

Configuration lives in TOML files with three tables, ``[model]``, ``[train]`` and ``[data]``.
An unknown key or a bad value is a :class:`~choral.errors.ConfigError` that names the key, the
value and what was expected.

Examples:
    >>> cfg = Config()
    >>> cfg.train.members, cfg.model.hidden
    (5, [64, 64])
    >>> Config.from_dict({"train": {"members": 0}})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    choral.errors.ConfigError: invalid configuration: train.members = 0: Input should be ...
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    field_validator,
)

from choral.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class UNetConfig(_Strict):
    """The U-Net backbone for fields (see :class:`choral.backbones.unet.UNet`)."""

    depth: PositiveInt = 3
    width: PositiveInt = 32
    multipliers: list[PositiveInt] | None = None
    norm: Literal["group", "instance", "none"] = "none"
    """Per-sample normalisation discards field amplitude: "none" was far better on Burgers."""
    padding_mode: Literal["zeros", "circular", "reflect"] = "zeros"
    kernel_size: Literal[1, 3, 5, 7] = 3
    downsample: Literal["conv", "avgpool"] = "conv"
    upsample: Literal["nearest", "transpose"] = "nearest"


class ModelConfig(_Strict):
    """The member network (an MLP for vectors, a U-Net for fields) and its distribution head."""

    backbone: Literal["mlp", "unet"] = "mlp"
    hidden: list[PositiveInt] = Field(default_factory=lambda: [64, 64])
    """Hidden widths of the MLP."""
    activation: Literal["relu", "gelu", "silu", "tanh"] = "relu"
    unet: UNetConfig = Field(default_factory=UNetConfig)
    variance_floor: PositiveFloat = 1e-6
    """Smallest predicted variance, in standardised units."""
    head: Literal["gaussian", "mdn", "quantile"] = "gaussian"
    """The members' distribution (:mod:`choral.heads`): one Gaussian, a mixture of
    ``components`` Gaussians (mixture-density network), or quantiles at ``quantile_levels``."""
    components: PositiveInt = 5
    """Gaussians per output value of the ``mdn`` head (K)."""
    quantile_levels: int | list[float] = 19
    """Levels of the ``quantile`` head: a count L (levels ``j / (L + 1)``) or a list."""
    quantile_combine: Literal["vincentise", "mixture"] = "vincentise"
    """How the quantile head's members are combined: quantile averaging or their mixture."""

    @field_validator("quantile_levels")
    @classmethod
    def _levels(cls, value: int | list[float]) -> int | list[float]:
        if isinstance(value, int):
            if value < 2:
                raise ValueError("expected a count >= 2")
        elif len(value) < 2 or any(not 0 < t < 1 for t in value) \
                or any(a >= b for a, b in zip(value, value[1:], strict=False)):
            raise ValueError("expected >= 2 strictly increasing levels in (0, 1)")
        return value


class TrainConfig(_Strict):
    """How the ensemble is trained (Gaussian NLL, AdamW, early stopping per member).

    The defaults were chosen on validation data carved out of UCI training splits, never on test
    data (``benchmarks/uci_select.py``; figures in ``benchmarks/RESULTS.md``).
    """

    members: PositiveInt = 5
    ensemble: Literal["deep", "swa", "swag", "multiswag", "snapshot", "soup"] = "deep"
    """How the ensemble is made: ``deep`` trains ``members`` networks independently; the others
    are weight-space ensembles (:mod:`choral.weightspace`)."""
    epochs: PositiveInt = 1000
    batch_size: PositiveInt = 32
    lr: PositiveFloat = 1e-2
    weight_decay: float = Field(default=1e-4, ge=0)
    lr_schedule: Literal["constant", "cosine"] = "constant"
    """``cosine`` anneals the learning rate to zero over ``epochs`` (the same for every member)."""
    val_fraction: float = Field(default=0.1, ge=0, lt=1)
    patience: PositiveInt = 100
    seed: int = 0
    backend: Literal["auto", "stacked", "vmap", "loop"] = "auto"
    dtype: Literal["float32", "float64"] = "float32"


class DataConfig(_Strict):
    """Names of the input and target arrays (or CSV columns) in data files, and their layout."""

    x: str = "X"
    y: str = "Y"
    channel_axis: bool = True
    """False for fields stored without a channel axis, (n, *grid): one is inserted at axis 1
    (e.g. the neuraloperator files, x (n, 16, 16))."""


class WeightSpaceConfig(_Strict):
    """Weight-space ensembles (:mod:`choral.weightspace`): SWA, SWAG, MultiSWAG, snapshots.

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
    schedule: Literal["constant", "cyclic"] = "constant"
    """``constant``: collect every epoch at ``swa_lr``; ``cyclic``: within each cycle of
    ``cycle_epochs`` the factor falls linearly from 1 to ``swa_lr``, collected at the cycle end."""
    cycle_epochs: PositiveInt = 1
    rank: int = Field(default=10, ge=2)
    """SWAG: columns K of the low-rank deviation matrix (the last K collected weights)."""
    samples: PositiveInt = 20
    """SWAG: networks sampled per SWAG posterior (per member for ``multiswag``)."""
    cycles: PositiveInt = 5
    """Snapshot ensembles: cosine cycles, one network kept at the end of each."""


class SoupConfig(_Strict):
    """Model soups (``train.ensemble = "soup"``, :mod:`choral.weightspace.soup`).

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


class FinetuneConfig(_Strict):
    """``choral finetune``: fine-tune on a new regime, then WiSE-FT interpolation."""

    epochs: PositiveInt = 200
    lr_factor: PositiveFloat = 0.1
    """Fine-tuning learning rate as a multiple of ``train.lr``."""
    alphas: int = Field(default=11, ge=2)
    """Points of the curve: alpha in ``linspace(0, 1, alphas)``."""
    val_fraction: float = Field(default=0.2, gt=0, lt=1)
    """Share of the new-regime data held out to choose alpha."""


class Config(_Strict):
    """Everything needed to rebuild and retrain a surrogate."""

    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    weightspace: WeightSpaceConfig = Field(default_factory=WeightSpaceConfig)
    soup: SoupConfig = Field(default_factory=SoupConfig)
    finetune: FinetuneConfig = Field(default_factory=FinetuneConfig)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Config:
        """Validate a nested dict; errors name the dotted key, the value and the expectation."""
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise ConfigError(f"invalid configuration: {_describe(exc)}") from None

    @classmethod
    def from_toml(cls, path: str | Path) -> Config:
        """Read and validate a TOML file."""
        return cls.from_dict(read_toml(path, "--config file"))

    def updated(self, **overrides: Any) -> Config:
        """A copy with dotted-key overrides applied, e.g. ``updated(**{"train.members": 8})``.

        ``None`` values are skipped, so unset command-line flags keep the file's values.
        """
        values = self.model_dump()
        for key, value in overrides.items():
            if value is None:
                continue
            *path, name = key.split(".")
            target = values
            for part in path:
                target = target[part]
            target[name] = value
        return Config.from_dict(values)


def read_toml(path: str | Path, what: str) -> dict[str, Any]:
    """The tables of a TOML file; a missing or malformed file is a ConfigError naming ``what``."""
    path = Path(path)
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{what} not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{what} {path} is not valid TOML: {exc}") from None


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            parts.append(f"unknown key {key!r}")
        else:
            parts.append(f"{key} = {err.get('input')!r}: {err['msg']}")
    return "; ".join(parts)

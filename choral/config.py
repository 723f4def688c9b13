"""The whole configuration of a surrogate, assembled from the settings each stage owns.

Configuration lives in TOML files with the tables ``[model]`` (:mod:`choral.networks.config`),
``[train]``, ``[weightspace]``, ``[soup]``, ``[posterior]``, ``[finetune]``
(:mod:`choral.ensembles.config`),
``[calibration]``, ``[data]`` and ``[rollout]`` (below). An unknown key or a bad value is a
:class:`~choral.errors.ConfigError` that names the key, the value and what was expected.

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

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PositiveInt, field_validator

from choral.ensembles.config import (
    FinetuneConfig,
    PosteriorConfig,
    SoupConfig,
    TrainConfig,
    WeightSpaceConfig,
)
from choral.evaluation.calibration import METHODS as CALIBRATORS
from choral.networks.config import FNOConfig, ModelConfig, UNetConfig
from choral.schema import Strict, read_toml, validate

__all__ = ["CALIBRATIONS", "CalibrationConfig", "Config", "DataConfig", "FNOConfig",
           "FinetuneConfig", "ModelConfig", "PosteriorConfig", "RolloutConfig", "SoupConfig",
           "TrainConfig",
           "UNetConfig", "WeightSpaceConfig"]


class DataConfig(Strict):
    """Names of the input and target arrays (or CSV columns) in data files, and their layout."""

    x: str = "X"
    """Input array, CSV columns or netCDF/zarr variables; a list (``x = ["permeability"]``) is
    kept as its comma-separated names."""
    y: str = "Y"
    sample_dim: str | None = None
    """netCDF/zarr: the dimension along which samples lie (default: the first of the first
    variable)."""
    channel_axis: bool = True
    """False for fields stored without a channel axis, (n, *grid): one is inserted at axis 1
    (e.g. the neuraloperator files, x (n, 16, 16))."""
    history: PositiveInt | None = None
    """Trajectories: ``Y`` holds trajectories (n, t, c, *grid) and the model maps the last
    ``history`` states to the next (:mod:`choral.surrogate.rollout`); ``None``: ordinary
    X -> Y data. A model saved with this key does not load in choral versions before it."""

    @field_validator("x", "y", mode="before")
    @classmethod
    def _joined(cls, value: object) -> object:
        """A list of names as one comma-separated string (how the readers take them)."""
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            return ",".join(value)
        return value


AUTO_DENSITY = "pit_scale"
"""What ``calibration.method = "auto"`` means for Gaussian and mixture-density members."""
CALIBRATIONS = ("auto", "none", *CALIBRATORS)
"""``calibration.method``: ``auto``, ``none`` or a calibrator of
:data:`choral.evaluation.calibration.METHODS`."""


class CalibrationConfig(Strict):
    """How ``fit`` calibrates the ensemble by itself, on data the networks never saw.

    ``fraction`` of the training rows is held out before the early-stopping split: the networks
    neither train on it nor choose their epoch on it (rows that early stopping chose on give
    errors smaller than new data's, so a calibration fitted there under-covers). The
    calibrator is fitted on the ensemble's predictions there and saved with the model.
    ``auto`` is ``cqr`` for the quantile head and ``AUTO_DENSITY`` for the others (chosen on
    validation data carved out of UCI training splits, see ``benchmarks/RESULTS.md``);
    ``none`` turns it off and trains on every row. ``choral calibrate`` replaces it.

    >>> CalibrationConfig().resolved("quantile"), CalibrationConfig(method="none").resolved("mdn")
    ('cqr', 'none')
    """

    method: Literal[CALIBRATIONS] = "auto"
    fraction: float = Field(default=0.1, gt=0, lt=1)
    max_rows: PositiveInt = 2000
    """At most this many rows are held out (the rest of ``fraction`` trains): enough for any
    calibrator, and the held-out predictions must fit in memory for data that does not."""
    """Share of the training rows held out for calibration; with fewer than 10 rows there,
    ``fit`` neither holds out nor calibrates."""

    def resolved(self, head: str) -> str:
        """The calibrator ``fit`` uses for members with the ``head`` (or ``none``)."""
        if self.method != "auto":
            return self.method
        return "cqr" if head == "quantile" else AUTO_DENSITY


class RolloutConfig(Strict):
    """How a one-step model is trained on trajectories and how its rollouts are spread
    (:func:`choral.surrogate.rollout.fit_rollout`).

    ``pushforward`` and ``input_noise`` change the training inputs
    (:mod:`choral.surrogate.pushforward`). ``validation`` is the share of trajectories held
    out whole (at least one when there are two or more): the ensemble is rolled out there and
    the member spread is scaled by one factor so that the spread-skill ratio is 1 over the first
    half of their correlation time (:func:`choral.evaluation.rollout.spread_scale`); 0 turns
    that off and trains on every trajectory.
    """

    pushforward: float = Field(default=0.5, ge=0, le=1)
    """Probability that a training row's newest state is the member's own prediction. 0.5
    was chosen on KS validation trajectories carved from the training set
    (``benchmarks/rollout_training.py``: correlation time >= 99 steps against 66 without)."""
    input_noise: float = Field(default=0.0, ge=0)
    """Standard deviation of Gaussian noise added to the training inputs (standardised units)."""
    validation: float = Field(default=0.2, ge=0, lt=1)


class Config(Strict):
    """Everything needed to rebuild and retrain a surrogate."""

    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    weightspace: WeightSpaceConfig = Field(default_factory=WeightSpaceConfig)
    soup: SoupConfig = Field(default_factory=SoupConfig)
    posterior: PosteriorConfig = Field(default_factory=PosteriorConfig)
    finetune: FinetuneConfig = Field(default_factory=FinetuneConfig)
    calibration: CalibrationConfig = Field(default_factory=CalibrationConfig)
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Config:
        """Validate a nested dict; errors name the dotted key, the value and the expectation."""
        return validate(cls, values)

    @classmethod
    def from_toml(cls, path: str | Path) -> Config:
        """Read and validate a TOML file."""
        return cls.from_dict(read_toml(path, "--config file"))

    def updated(self, **overrides: Any) -> Config:
        """A copy with dotted-key overrides applied, e.g. ``updated(**{"train.members": 8})``.

        ``None`` values are skipped, so unset command-line flags keep the file's values.
        Settings never given stay unset (and so open to :meth:`for_data`'s field defaults).
        """
        values = self.model_dump(exclude_unset=True)
        for key, value in overrides.items():
            if value is None:
                continue
            *path, name = key.split(".")
            target = values
            for part in path:
                target = target.setdefault(part, {})
            target[name] = value
        return Config.from_dict(values)

    def for_data(self, fields: bool) -> Config:
        """This configuration for vectors (itself) or for fields (``fields``): then the
        ``[train]`` settings not given take their field defaults
        (:data:`~choral.ensembles.config.FIELD_DEFAULTS`).

        >>> Config().for_data(fields=True).train.lr_schedule
        'cosine'
        >>> Config().updated(**{"train.lr": 0.1}).for_data(fields=True).train.lr
        0.1

        The beta-NLL default applies to the Gaussian head only (others keep 0):

        >>> Config.from_dict({"model": {"head": "mdn"}}).for_data(fields=True).train.nll_beta
        0.0
        """
        if not fields:
            return self
        train = self.train.for_fields()
        if self.model.head != "gaussian" and "nll_beta" not in self.train.model_fields_set:
            train = train.model_copy(update={"nll_beta": 0.0})
        return self.model_copy(update={"train": train})

"""The campaign file: simulator, input box, design, batch, acquisition, surrogate, budget, stop.

A ``campaign.toml`` looks like this (every key but ``[simulator]`` and ``bounds`` has a default)::

    seed = 0
    bounds = [[0.0, 1.0], [0.0, 1.0]]   # the input box, (d, 2); optional for built-ins
    design = "sobol"                    # initial design: "lhs" or "sobol" (scipy.stats.qmc)
    initial = 8                         # initial design size
    batch_size = 4                      # points proposed per round
    acquisition = "variance"
    objective = "misfit"                # reduce each run's outputs to the optimised number:
    target = [0.1, 0.2, 0.1]            # "misfit" to target, "maximum", "minimum", "average"
    candidates = 512                    # random candidates scored per round
    budget = 24                         # simulator runs in all (failed ones count)
    refit = "cold"                      # or "warm": continue from the last round's members
    warm_fraction = 0.3                 # a warm refit runs this share of train.epochs
    cascade_first = 2                   # screen candidates with 2 members (default: off)
    cascade_top_fraction = 0.25         # re-score this top share with all members

    [simulator]
    builtin = "branin"    # or function = "pkg.mod:f", or command = "sh run {input} {output}"
    timeout = 60.0                      # seconds per run

    [stop]
    max_rounds = 10
    target_std = 0.0                    # stop once the largest predictive std is below this

    [inference]                         # only with acquisition = "posterior"
    observed = [0.9, -0.3]              # the observed outputs
    noise = 0.05                        # their noise standard deviation (or one per output)
    mass = 0.95                         # propose inside this share of the posterior weight

    [surrogate]                         # a choral config: [surrogate.model], [surrogate.train]
    train = { members = 2, epochs = 20 }

>>> cfg = CampaignConfig.from_dict({"simulator": {"builtin": "branin"}})
>>> cfg.box().shape, cfg.design
((2, 2), 'sobol')
>>> CampaignConfig.from_dict({"simulator": {"builtin": "branin"}, "budgte": 3})
Traceback (most recent call last):
...
choral.errors.ConfigError: invalid campaign: unknown key 'budgte'
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import (
    ConfigDict,
    Field,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    model_validator,
)

from choral.acquisition import KINDS
from choral.acquisition.objectives import NAMES as OBJECTIVES
from choral.acquisition.objectives import Objective, objective
from choral.campaign.design import DESIGNS
from choral.config import Config
from choral.errors import ConfigError
from choral.schema import Strict, describe, read_toml
from choral.simulators import SIMULATORS, Simulator

REFITS = ("cold", "warm")
"""``refit``: train each round's surrogate from scratch, or continue from the last round's."""


def _explain(exc: ValidationError) -> str:
    """Like the surrogate config's messages; a whole-file check gives its message alone."""
    whole = [e["msg"].removeprefix("Value error, ") for e in exc.errors() if not e["loc"]]
    rest = [e for e in exc.errors() if e["loc"]]
    if rest:
        whole.append(describe(ValidationError.from_exception_data(exc.title, rest)))
    return "; ".join(whole)


class _Strict(Strict):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SimulatorConfig(_Strict):
    """Exactly one of ``builtin`` (a choral simulator name), ``function`` (``module:function``,
    called as ``f(X (1, d)) -> Y (1, ...)``) or ``command`` (a shell command with ``{input}`` and
    ``{output}`` placeholders: it reads one text row of ``d`` numbers, writes numbers)."""

    builtin: str | None = None
    function: str | None = None
    command: str | None = None
    timeout: PositiveFloat | None = None
    """Seconds a run may take; a run past it is killed and recorded as failed."""

    @model_validator(mode="after")
    def _one_source(self) -> SimulatorConfig:
        given = [k for k in ("builtin", "function", "command") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"give one of builtin, function, command; got {', '.join(given)}")
        return self

    def builtin_simulator(self) -> Simulator:
        """The choral vector simulator ``builtin`` names; an unknown name is a ConfigError."""
        if self.builtin not in SIMULATORS:
            raise ConfigError(f"simulator.builtin = {self.builtin!r}: expected one of "
                              f"{', '.join(sorted(SIMULATORS))} (vector simulators)")
        return SIMULATORS[self.builtin]


class StopConfig(_Strict):
    """The stopping rule, checked before each round is proposed (the budget always applies)."""

    max_rounds: PositiveInt | None = None
    """Rounds after the initial design."""
    target_std: NonNegativeFloat = 0.0
    """Stop when the largest predictive standard deviation over the candidates is below this."""


class InferenceConfig(_Strict):
    """``[inference]``: the inverse problem ``acquisition = "posterior"`` serves: outputs
    ``observed`` (m values, the simulator's outputs flattened) with Gaussian noise ``noise``
    (one standard deviation, or one per output), a box-uniform prior on ``bounds``."""

    observed: list[float] = Field(min_length=1)
    noise: PositiveFloat | list[PositiveFloat]
    mass: float = Field(default=0.95, gt=0, le=1)
    """Propose among the candidates holding this share of the surrogate posterior's weight."""


ACQUISITIONS = (*KINDS, "posterior")
"""Campaign acquisitions: the scores of :mod:`choral.acquisition` and ``posterior``
(:mod:`choral.campaign.posterior`, needs ``[inference]``)."""


class CampaignConfig(_Strict):
    """A validated campaign; see the module docstring for the file layout."""

    seed: int = Field(default=0, ge=0)
    simulator: SimulatorConfig = Field(default_factory=SimulatorConfig)
    bounds: list[tuple[float, float]] | None = None
    design: Literal[DESIGNS] = "sobol"
    initial: PositiveInt = 8
    batch_size: PositiveInt = 4
    acquisition: Literal[ACQUISITIONS] = "variance"
    maximize: bool = False
    objective: Literal[OBJECTIVES] | None = None
    """The number a run's outputs are reduced to for ``best`` and the acquisitions
    (:mod:`choral.acquisition.objectives`: each member's outputs are reduced, so ``ei`` and
    ``thompson`` act on the objective of member-coherent outputs); ``None``: the first output."""
    target: list[float] | None = None
    """``objective = "misfit"``: the target outputs (one run's outputs, flattened)."""
    candidates: PositiveInt = 512
    budget: PositiveInt = 32
    refit: Literal[REFITS] = "cold"
    """``cold``: every round trains fresh members; ``warm``: a round's members start from the
    previous round's (in its standardised units) and train ``warm_fraction`` of
    ``train.epochs`` (the default was chosen by ``benchmarks/campaign.py --part warm``)."""
    warm_fraction: float = Field(default=0.3, gt=0, le=1)
    cascade_first: PositiveInt | None = None
    """Score every candidate with the first ``cascade_first`` members, and only the top
    ``cascade_top_fraction`` of them (by that cheap score) with all members; the batch is chosen
    among the re-scored candidates (:mod:`choral.campaign.screen`). ``None``: all members."""
    cascade_top_fraction: float = Field(default=0.25, gt=0, le=1)
    stop: StopConfig = Field(default_factory=StopConfig)
    inference: InferenceConfig | None = None
    surrogate: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> CampaignConfig:
        for i, (lo, hi) in enumerate(self.bounds or []):
            if not lo < hi:
                raise ValueError(f"bounds[{i}] = [{lo}, {hi}]: lower must be below upper")
        if (self.acquisition == "posterior") != (self.inference is not None):
            raise ValueError('acquisition = "posterior" and an [inference] table (observed, '
                             f'noise) go together; got acquisition = {self.acquisition!r} '
                             f'{"with" if self.inference else "without"} [inference]')
        if self.acquisition == "posterior" and self.cascade_first is not None:
            raise ValueError('cascade_first screens acquisition scores; acquisition = '
                             f'"posterior" has none; got cascade_first = {self.cascade_first}')
        if (self.objective == "misfit") != (self.target is not None):
            raise ValueError('objective = "misfit" and target go together; got objective = '
                             f'{self.objective!r} {"with" if self.target else "without"} target')
        if self.bounds is None and self.simulator.builtin is None:
            raise ValueError("bounds are required unless simulator.builtin names a choral "
                             "simulator (whose box is known)")
        return self

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> CampaignConfig:
        """Validate a nested dict; errors name the dotted key, the value and the expectation."""
        try:
            cfg = cls.model_validate(values)
        except ValidationError as exc:
            raise ConfigError(f"invalid campaign: {_explain(exc)}") from None
        members = cfg.surrogate_config().train.members  # checked now, not at the first fit
        if cfg.cascade_first is not None and cfg.cascade_first > members:
            raise ConfigError(f"invalid campaign: cascade_first must be at most the surrogate's "
                              f"train.members = {members}; got {cfg.cascade_first}")
        return cfg

    @classmethod
    def from_toml(cls, path: str | Path) -> CampaignConfig:
        """Read and validate a campaign TOML file."""
        return cls.from_dict(read_toml(path, "campaign file"))

    def objective_fn(self) -> Objective | None:
        """The objective as a callable (b, n, ...) -> (b, n), or ``None`` (the first output)."""
        return None if self.objective is None else objective(self.objective, self.target)

    def values(self, Y: np.ndarray) -> np.ndarray:
        """The objective (n,) of observed outputs ``Y`` (n, ...): the first output without one.

        >>> cfg = CampaignConfig.from_dict({"simulator": {"builtin": "branin"},
        ...                                 "objective": "maximum"})
        >>> cfg.values(np.array([[1.0, 3.0], [2.0, 0.0]])).tolist()
        [3.0, 2.0]
        """
        fn = self.objective_fn()
        if fn is None:
            return Y.reshape(len(Y), -1)[:, 0]
        return fn(torch.as_tensor(Y, dtype=torch.float64)[None])[0].cpu().numpy()

    def surrogate_config(self) -> Config:
        """The ``[surrogate]`` table as a choral :class:`~choral.config.Config`."""
        try:
            return Config.from_dict(self.surrogate)
        except ConfigError as exc:
            raise ConfigError(f"[surrogate] of the campaign: {exc}") from None

    def box(self) -> np.ndarray:
        """The input box, (d, 2): ``bounds`` or the built-in simulator's."""
        if self.bounds is not None:
            return np.asarray(self.bounds, dtype=np.float64)
        return np.asarray(self.simulator.builtin_simulator().bounds, dtype=np.float64)

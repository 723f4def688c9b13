"""Settings of the member network: the backbone (``[model]``, ``[model.unet]``) and its head.

Every list of allowed values comes from the code that interprets it: activations from
:mod:`choral.networks.mlp`, U-Net options from :mod:`choral.networks.unet`, heads from
:mod:`choral.networks.heads`, quantile levels and combinations from
:mod:`choral.distributions.quantile`.

Examples:
    >>> ModelConfig().head, ModelConfig(head="mdn").components
    ('gaussian', 5)
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveFloat, PositiveInt, field_validator

from choral.distributions.quantile import COMBINES, level_grid
from choral.networks.heads import HEADS
from choral.networks.mlp import ACTIVATIONS
from choral.networks.unet import DOWNSAMPLES, KERNEL_SIZES, NORMS, PADDING_MODES, UPSAMPLES
from choral.schema import Strict

__all__ = ["BACKBONES", "FNOConfig", "ModelConfig", "UNetConfig"]

BACKBONES = ("mlp", "unet", "fno")
"""``mlp`` for vectors (n, d) -> (n, m); ``unet`` and ``fno`` for fields (n, c, *grid)."""


class UNetConfig(Strict):
    """The U-Net backbone for fields (see :class:`choral.networks.unet.UNet`)."""

    depth: PositiveInt = 3
    width: PositiveInt = 32
    multipliers: list[PositiveInt] | None = None
    norm: Literal[NORMS] = "none"
    """Per-sample normalisation discards field amplitude: "none" was far better on Burgers."""
    padding_mode: Literal[PADDING_MODES] = "zeros"
    kernel_size: Literal[KERNEL_SIZES] = 3
    downsample: Literal[DOWNSAMPLES] = "conv"
    upsample: Literal[UPSAMPLES] = "nearest"


class FNOConfig(Strict):
    """The Fourier neural operator backbone (neuraloperator's ``FNO``, the ``fno`` extra; see
    :class:`choral.networks.fno.FNOBackbone`). Defaults: the FNO paper's Darcy network."""

    modes: PositiveInt = 12
    """Fourier modes kept per grid axis."""
    width: PositiveInt = 32
    """Hidden channels of the Fourier layers."""
    layers: PositiveInt = 4
    """Fourier layers."""
    domain_padding: float = Field(default=0.0, ge=0, lt=1)
    """Share of the grid zero-padded on each side (non-periodic problems); 0: none."""


class ModelConfig(Strict):
    """The member network (an MLP for vectors, a U-Net or FNO for fields) and its head."""

    backbone: Literal[BACKBONES] = "mlp"
    hidden: list[PositiveInt] = Field(default_factory=lambda: [64, 64])
    """Hidden widths of the MLP."""
    activation: Literal[tuple(ACTIVATIONS)] = "relu"
    unet: UNetConfig = Field(default_factory=UNetConfig)
    fno: FNOConfig = Field(default_factory=FNOConfig)
    conditions: int = Field(default=0, ge=0)
    """FiLM conditioning (``unet`` only): the last ``conditions`` input channels hold a vector
    of parameters (e.g. a PDE's viscosity) broadcast over the grid, which scales and shifts
    every U-Net level (:class:`~choral.networks.unet.UNet`); 0: none."""
    variance_floor: PositiveFloat = 1e-6
    """Smallest predicted variance, in standardised units."""
    head: Literal[tuple(HEADS)] = "gaussian"
    """The members' distribution (:mod:`choral.networks.heads`): one Gaussian, a mixture of
    ``components`` Gaussians (mixture-density network), or quantiles at ``quantile_levels``."""
    components: PositiveInt = 5
    """Gaussians per output value of the ``mdn`` head (K)."""
    quantile_levels: int | list[float] = 19
    """Levels of the ``quantile`` head: a count L (levels ``j / (L + 1)``) or a list."""
    quantile_combine: Literal[COMBINES] = "vincentise"
    """How the quantile head's members are combined: quantile averaging or their mixture."""

    @field_validator("quantile_levels")
    @classmethod
    def _levels(cls, value: int | list[float]) -> int | list[float]:
        level_grid(value)  # its DataError is a ValueError: pydantic reports it with the key
        return value

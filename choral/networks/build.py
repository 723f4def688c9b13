"""Build the member network and its head from the ``[model]`` settings.

A backbone is a plain ``nn.Module`` whose output carries the head's channels per target.
"""

from __future__ import annotations

import math

from torch import nn

from choral.errors import ConfigError, DataError
from choral.networks.config import ModelConfig
from choral.networks.fno import FNOBackbone
from choral.networks.heads import GaussianHead, Head, MDNHead, QuantileHead
from choral.networks.mlp import MLP
from choral.networks.prior import PriorNet
from choral.networks.unet import UNet

__all__ = ["build_backbone", "build_member", "make_head"]


def build_backbone(cfg: ModelConfig, x_shape: tuple[int, ...], y_shape: tuple[int, ...],
                   channels: int = 2) -> nn.Module:
    """The member network for one sample of shape ``x_shape`` and targets ``y_shape``.

    Its output has ``channels`` (the head's) channels per target: (n, channels * m) for the MLP
    on vectors (n, d), (n, channels * c_out, *grid) for the U-Net or FNO on fields
    (n, c_in, *grid).
    """
    if cfg.conditions and cfg.backbone != "unet":
        raise ConfigError(f"model.conditions (FiLM conditioning) needs backbone = 'unet'; got "
                          f"{cfg.backbone!r} (an MLP takes parameters as ordinary inputs; FiLM "
                          f"inside neuraloperator's FNO is not supported)")
    if cfg.backbone == "mlp":
        if len(x_shape) != 1 or len(y_shape) != 1:
            raise DataError(f"the mlp backbone maps vectors X (n, d) to Y (n, m); got one sample "
                            f"of X shaped {x_shape} and of Y {y_shape} (use backbone = 'unet' for "
                            "fields)")
        return MLP(x_shape[0], channels * y_shape[0], cfg.hidden, cfg.activation)
    if len(x_shape) not in (2, 3) or x_shape[1:] != y_shape[1:]:
        raise DataError(f"the {cfg.backbone} backbone maps fields X (n, c_in, *grid) to Y "
                        f"(n, c_out, *grid) on the same 1-D or 2-D grid; got X samples {x_shape} "
                        f"and Y {y_shape}")
    if cfg.backbone == "fno":
        f = cfg.fno
        return FNOBackbone(x_shape[0], channels * y_shape[0], dim=len(x_shape) - 1,
                           modes=f.modes, width=f.width, layers=f.layers,
                           domain_padding=f.domain_padding)
    u = cfg.unet
    return UNet(x_shape[0], channels * y_shape[0], dim=len(x_shape) - 1, depth=u.depth,
                width=u.width, multipliers=u.multipliers, norm=u.norm, activation=cfg.activation,
                padding_mode=u.padding_mode, kernel_size=u.kernel_size,
                downsample=u.downsample, upsample=u.upsample, conditions=cfg.conditions)


def build_member(cfg: ModelConfig, x_shape: tuple[int, ...], y_shape: tuple[int, ...],
                 channels: int = 2, prior_scale: float | None = None) -> nn.Module:
    """The backbone (:func:`build_backbone`), or with ``prior_scale`` a
    :class:`~choral.networks.prior.PriorNet`: the backbone plus a random prior network of the
    same architecture (one output channel per target) times ``prior_scale``, added to the
    means. Only the Gaussian head puts its means in the first channels."""
    net = build_backbone(cfg, x_shape, y_shape, channels)
    if prior_scale is None:
        return net
    if cfg.head != "gaussian":
        raise ConfigError(f"a random prior network adds to the means of the gaussian head; "
                          f"model.head must be 'gaussian' with it, got {cfg.head!r}")
    return PriorNet(net, build_backbone(cfg, x_shape, y_shape, 1), prior_scale)


def make_head(cfg: ModelConfig, beta: float = 0.0) -> Head:
    """The head named by ``cfg.head``, with its settings; ``beta`` (``train.nll_beta``): the
    Gaussian head's beta-NLL exponent (:func:`~choral.networks.heads.beta_nll`)."""
    if beta and cfg.head != "gaussian":
        raise ConfigError(f"train.nll_beta weights the gaussian head's NLL; model.head "
                          f"{cfg.head!r} needs train.nll_beta = 0, got {beta}")
    if cfg.head == "mdn":
        return MDNHead(cfg.components, cfg.variance_floor)
    if cfg.head == "quantile":
        return QuantileHead(cfg.quantile_levels, math.sqrt(cfg.variance_floor),
                            cfg.quantile_combine)
    return GaussianHead(cfg.variance_floor, beta)

"""Randomized prior functions (``train.ensemble = "prior"``; Osband et al. 2018).

Each member is a :class:`~choral.networks.prior.PriorNet`: a trainable network plus a fixed
random prior network (``prior.*``) times ``posterior.prior_scale``, added to its means. Only the
trainable branch is optimised, from the member's own initialisation and mini-batch order as in
the deep ensemble; the prior branch keeps its initial weights, which are stored with the rest,
so the saved model is an ordinary set of stacked networks that loads from ``config.json``.
"""

from __future__ import annotations

from torch import Tensor

from choral.ensembles.context import Result, TrainContext
from choral.ensembles.registry import register
from choral.ensembles.training import train_members
from choral.errors import ConfigError
from choral.networks.prior import PRIOR_PREFIX

__all__ = ["prior", "split_prior"]


def split_prior(params: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """(trainable, frozen prior) parts of stacked ``params`` (s, ...), by name.

    >>> import torch
    >>> split_prior({"net.w": torch.zeros(1), "prior.w": torch.ones(1)})[1]
    {'prior.w': tensor([1.])}
    """
    frozen = {k: v for k, v in params.items() if k.startswith(PRIOR_PREFIX)}
    if not frozen:
        raise ConfigError("train.ensemble = 'prior' needs members built with a prior branch "
                          "(parameters named 'prior.*'); got none: build them through "
                          "choral.surrogate.Surrogate, which adds it")
    return {k: v for k, v in params.items() if k not in frozen}, frozen


@register("prior")
def prior(ctx: TrainContext) -> Result:
    """Members ``f_i + beta p_i`` with ``p_i`` frozen: train the ``f_i`` as the deep ensemble."""
    trainable, frozen = split_prior(ctx.init_params)

    def forward(params: dict[str, Tensor], x: Tensor) -> Tensor:
        return ctx.forward({**params, **frozen}, x)

    params, history = train_members(forward, trainable, ctx.X, ctx.Y, ctx.X_val, ctx.Y_val,
                                    ctx.train, ctx.batch_seeds, ctx.loss, ctx.on_epoch,
                                    checkpoint=ctx.checkpoint,
                                    inputs=ctx.inputs)
    return Result({**params, **{k: v.detach().clone() for k, v in frozen.items()}}, history)

"""Recompute normalisation statistics (BatchNorm running mean and variance) of a network.

Averaged or sampled weights (SWA, SWAG) no longer match the running statistics collected while
training, so a network with normalisation buffers needs them recomputed with one pass over the
training data (``torch.optim.swa_utils.update_bn``: the cumulative average over batches of each
batch's mean and unbiased variance). choral's own backbones have no buffers and the stacked
members refuse them (:func:`choral.members.init_members`), so the weight-space methods never call
this yet: it is the step a backbone with BatchNorm would add after averaging or sampling.

Examples:
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.BatchNorm1d(3))
    >>> has_norm_buffers(net), has_norm_buffers(torch.nn.Linear(2, 3))
    (True, False)
    >>> x = torch.randn(64, 2)
    >>> _ = recompute_norm_stats(net, [x])
    >>> torch.allclose(net[1].running_mean, net[0](x).mean(0).detach(), atol=1e-6)
    True
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm


def has_norm_buffers(module: nn.Module) -> bool:
    """Whether ``module`` holds running normalisation statistics (any BatchNorm layer)."""
    return any(isinstance(m, _BatchNorm) and m.track_running_stats for m in module.modules())


def recompute_norm_stats(module: nn.Module, loader: Iterable[Tensor]) -> nn.Module:
    """Reset and recompute the running statistics of every BatchNorm layer of ``module`` from
    the input batches in ``loader`` (each (b, ...)); the module's train/eval mode is kept."""
    if has_norm_buffers(module):
        with torch.no_grad():
            torch.optim.swa_utils.update_bn(loader, module)
    return module

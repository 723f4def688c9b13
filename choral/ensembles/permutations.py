"""Permutation symmetries of the member networks: which weight axes each hidden-unit set moves.

Reordering the hidden units of an MLP layer (or the channels of a U-Net convolution) together
with the matching input axis of every layer that reads them leaves the network's function
unchanged. A :class:`PermSpec` lists, for every permutable unit set (a *group*), the axes it
moves: ``(parameter name, axis, start)`` with the group's units at ``start:start + size`` of that
axis (``start > 0`` where a U-Net decoder reads a concatenation of two channel sets).

Specs are built from the template network (:func:`perm_spec`) and act on single networks
(parameters without the member axis).

Examples:
    >>> import torch
    >>> from choral.networks import MLP
    >>> net = MLP(2, 1, [4, 3])
    >>> spec = perm_spec(net)
    >>> spec.sizes
    {'layers.0': 4, 'layers.1': 3}
    >>> p = dict(net.named_parameters())
    >>> q = permute(p, spec, {"layers.0": torch.tensor([3, 2, 1, 0])})
    >>> torch.equal(q["layers.0.weight"], p["layers.0.weight"].flip(0))
    True
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from choral.errors import ConfigError
from choral.networks.mlp import MLP
from choral.networks.unet import CONVS, TRANSPOSED, UNet

Entry = tuple[str, int, int]
"""(parameter name, axis, start): the group's units lie at ``start:start + size`` of ``axis``."""


@dataclass
class PermSpec:
    """Permutable unit groups: their sizes and the parameter axes each one moves."""

    sizes: dict[str, int] = field(default_factory=dict)
    axes: dict[str, list[Entry]] = field(default_factory=lambda: defaultdict(list))


def perm_spec(net: nn.Module) -> PermSpec:
    """The permutation symmetries of an :class:`MLP` or a :class:`UNet` (without GroupNorm)."""
    if isinstance(net, MLP):
        return _mlp_spec(net)
    if isinstance(net, UNet):
        return _unet_spec(net)
    raise ConfigError(f"permutation alignment supports the mlp and unet backbones; got "
                      f"{type(net).__name__}")


def permute(params: dict[str, Tensor], spec: PermSpec, perms: dict[str, Tensor],
            skip: str | None = None) -> dict[str, Tensor]:
    """Apply ``perms`` {group: index (size,)} to one network's ``params`` (not the member axis).

    Unit ``i`` of a group becomes the old unit ``perm[i]``; groups not in ``perms`` and the group
    ``skip`` stay as they are.
    """
    out = dict(params)
    for group, perm in perms.items():
        if group == skip:
            continue
        size = spec.sizes[group]
        for name, axis, start in spec.axes[group]:
            index = torch.arange(out[name].shape[axis], device=perm.device)
            index[start:start + size] = perm + start
            out[name] = out[name].index_select(axis, index)
    return out


def identity(spec: PermSpec) -> dict[str, Tensor]:
    """The identity permutation of every group."""
    return {g: torch.arange(n) for g, n in spec.sizes.items()}


def _mlp_spec(net: MLP) -> PermSpec:
    spec = PermSpec()
    for i in range(len(net.layers) - 1):
        g = f"layers.{i}"
        spec.sizes[g] = net.layers[i].out_features
        spec.axes[g] += [(f"{g}.weight", 0, 0), (f"{g}.bias", 0, 0),
                         (f"layers.{i + 1}.weight", 1, 0)]
    return spec


class _Walk:
    """Follows the U-Net's channel sets from input to head, recording every group's axes.

    ``cur`` lists the channel segments of the current activation: (group or None, size).
    """

    def __init__(self, net: UNet) -> None:
        if net.norm == "group":
            raise ConfigError("permutation alignment needs model.unet.norm = 'none' or "
                              "'instance' (a GroupNorm with several channels per group is only "
                              "invariant to permutations within its groups); got 'group'")
        self.names = dict(net.named_parameters())
        self.spec = PermSpec()
        self.cur: list[tuple[str | None, int]] = [(None, net.c_in)]

    def reads(self, weight: str, axis: int) -> None:
        start = 0
        for group, size in self.cur:
            if group is not None:
                self.spec.axes[group].append((weight, axis, start))
            start += size

    def writes(self, group: str, prefix: str, axis: int = 0, norm: str | None = None) -> None:
        size = self.names[f"{prefix}.weight"].shape[axis]
        self.spec.sizes[group] = size
        self.spec.axes[group].append((f"{prefix}.weight", axis, 0))
        for name in (f"{prefix}.bias", f"{norm}.weight", f"{norm}.bias"):
            if name in self.names:
                self.spec.axes[group].append((name, 0, 0))
        self.cur = [(group, size)]

    def level(self, prefix: str) -> None:
        for block in (0, 1):
            self.reads(f"{prefix}.{block}.0.weight", 1)
            self.writes(f"{prefix}.{block}", f"{prefix}.{block}.0", norm=f"{prefix}.{block}.1")


def _unet_spec(net: UNet) -> PermSpec:
    walk, skips = _Walk(net), []
    for i in range(net.depth):
        walk.level(f"encoder.{i}")
        skips.append(walk.cur)
        if isinstance(net.down[i], CONVS):
            walk.reads(f"down.{i}.weight", 1)
            walk.writes(f"down.{i}", f"down.{i}")
    walk.level("bottom")
    for j, skip in enumerate(reversed(skips)):
        if isinstance(net.up[j], TRANSPOSED):  # ConvTranspose weights are (in, out, *kernel)
            walk.reads(f"up.{j}.weight", 0)
            walk.writes(f"up.{j}", f"up.{j}", axis=1)
        walk.cur = walk.cur + skip
        walk.level(f"decoder.{j}")
    walk.reads("head.weight", 1)
    return walk.spec


def random_perms(spec: PermSpec, generator: torch.Generator) -> dict[str, Tensor]:
    """A uniformly random permutation of every group."""
    return {g: torch.randperm(n, generator=generator) for g, n in spec.sizes.items()}

"""U-Net for 1-D and 2-D fields, with a grouped-convolution forward for whole ensembles.

Maps fields ``x`` (n, c_in, *grid) to (n, c_out, *grid) with ``len(grid) == dim``. Any grid size
of at least ``2**depth`` points per axis works: the input is padded (with ``padding_mode``) up to a
multiple of ``2**depth`` and the output cropped back, so the output always has the input's grid.

Examples:
    >>> import torch
    >>> net = UNet(c_in=1, c_out=2, dim=2, depth=2, width=8)
    >>> net(torch.zeros(3, 1, 37, 29)).shape
    torch.Size([3, 2, 37, 29])
    >>> from choral.networks.members import init_members
    >>> template, params = init_members(lambda: UNet(2, 4, dim=1, depth=2, width=8), seeds=[1, 2])
    >>> template.forward_stacked(params, torch.zeros(2, 5, 2, 33)).shape
    torch.Size([2, 5, 4, 33])

FiLM conditioning (Perez et al. 2018, "FiLM: visual reasoning with a general conditioning
layer"): with ``conditions = k`` the last k input channels hold a conditioning vector (e.g. PDE
parameters such as a viscosity) broadcast over the grid; the network takes their grid mean,
maps it through a small MLP to one scale and shift per channel of every level and applies
``h * (1 + gamma) + beta`` after each level. The MLP's last layer starts at zero, so an
untrained FiLM is the identity and the network equals the unconditioned one on the field
channels.

    >>> net = UNet(c_in=1 + 2, c_out=1, dim=1, depth=2, width=8, conditions=2)
    >>> net(torch.zeros(4, 3, 32)).shape
    torch.Size([4, 1, 32])
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional

from choral.checks import check_choice
from choral.errors import ConfigError, DataError

NORMS = ("group", "instance", "none")
ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU, "tanh": nn.Tanh}
PADDING_MODES = ("zeros", "circular", "reflect")
DOWNSAMPLES = ("conv", "avgpool")
UPSAMPLES = ("nearest", "transpose")
KERNEL_SIZES = (1, 3, 5, 7)
CONVS = (nn.Conv1d, nn.Conv2d)
TRANSPOSED = (nn.ConvTranspose1d, nn.ConvTranspose2d)


def _choice(name: str, value: object, allowed: Sequence[object]) -> None:
    check_choice(value, f"UNet {name}", allowed)


def _groups(channels: int) -> int:
    """``min(8, channels)`` groups, lowered to the largest divisor of ``channels`` below it."""
    return max(g for g in range(1, min(8, channels) + 1) if channels % g == 0)


class UNet(nn.Module):
    """U-Net mapping (n, c_in, *grid) to (n, c_out, *grid), ``grid`` of ``dim`` (1 or 2) axes.

    Level ``i`` (0 = full resolution, ``depth`` = bottleneck) has ``width * multipliers[i]``
    channels; ``multipliers`` has ``depth + 1`` entries, by default 1, 2, 4, ... . Each level
    holds two conv-norm-activation blocks; the encoder halves the grid after each level (a
    stride-2 convolution of kernel 2 with ``downsample="conv"``, or average pooling), the decoder
    doubles it (nearest interpolation, or a transposed convolution), concatenates the skip
    connection and applies two blocks; a 1x1 convolution gives ``c_out`` channels.

    ``norm``: ``"group"`` (GroupNorm with ``min(8, channels)`` groups, or the largest divisor of
    the channel count below that), ``"instance"`` (GroupNorm with one channel per group, affine)
    or ``"none"``. No normalisation keeps buffers, so stacked ensembles work. Convolutions that
    feed a normalisation have no bias (it would be cancelled). ``padding_mode`` is used by every
    convolution and by the padding of grids to a multiple of ``2**depth``: ``"circular"`` for
    periodic domains makes the network equivariant to periodic shifts by multiples of
    ``2**depth``. ``kernel_size`` is one of :data:`KERNEL_SIZES` (odd).
    """

    def __init__(self, c_in: int, c_out: int, dim: int = 2, depth: int = 3, width: int = 32,
                 multipliers: Sequence[int] | None = None, norm: str = "group",
                 activation: str = "gelu", padding_mode: str = "zeros", kernel_size: int = 3,
                 downsample: str = "conv", upsample: str = "nearest", conditions: int = 0,
                 film_hidden: int = 32) -> None:
        super().__init__()
        _choice("dim", dim, (1, 2))
        _choice("norm", norm, NORMS)
        _choice("activation", activation, tuple(ACTIVATIONS))
        _choice("padding_mode", padding_mode, PADDING_MODES)
        _choice("downsample", downsample, DOWNSAMPLES)
        _choice("upsample", upsample, UPSAMPLES)
        for name, value in (("c_in", c_in), ("c_out", c_out), ("width", width)):
            if value < 1:
                raise ConfigError(f"UNet {name} must be a positive integer; got {value!r}")
        if depth < 0:
            raise ConfigError(f"UNet depth must be >= 0; got {depth!r}")
        if not 0 <= conditions < c_in or film_hidden < 1:
            raise ConfigError(f"UNet conditions must be in [0, c_in - 1] (the last channels of "
                              f"c_in = {c_in}, at least one field channel before them) and "
                              f"film_hidden >= 1; got {conditions!r} and {film_hidden!r}")
        _choice("kernel_size", kernel_size, KERNEL_SIZES)
        multipliers = [2**i for i in range(depth + 1)] if multipliers is None else list(multipliers)
        if len(multipliers) != depth + 1 or min(multipliers) < 1:
            raise ConfigError(f"UNet multipliers must be {depth + 1} positive integers (one per "
                              f"level, depth={depth}); got {multipliers!r}")
        self.c_in, self.c_out, self.dim, self.depth = c_in, c_out, dim, depth
        self.norm, self.activation, self.padding_mode = norm, activation, padding_mode
        self.kernel_size, self.multipliers = kernel_size, multipliers
        self.conditions = conditions
        c_in = c_in - conditions  # the field channels
        ch = [width * m for m in multipliers]
        self.film_channels = [*ch[:depth], ch[depth], *reversed(ch[:depth])]
        """Channels of the levels FiLM modulates, in order: encoder, bottleneck, decoder."""
        if conditions:
            self.film = nn.Sequential(nn.Linear(conditions, film_hidden), nn.SiLU(),
                                      nn.Linear(film_hidden, 2 * sum(self.film_channels)))
            nn.init.zeros_(self.film[2].weight)
            nn.init.zeros_(self.film[2].bias)
        conv = CONVS[dim - 1]
        self.encoder = nn.ModuleList(self._level(c_in if i == 0 else ch[i - 1], ch[i])
                                     for i in range(depth))
        self.down = nn.ModuleList(conv(ch[i], ch[i], 2, stride=2) if downsample == "conv"
                                  else (nn.AvgPool1d, nn.AvgPool2d)[dim - 1](2)
                                  for i in range(depth))
        self.bottom = self._level(ch[depth - 1] if depth else c_in, ch[depth])
        # decoder lists run from the deepest level (depth - 1) up to level 0
        self.up = nn.ModuleList(TRANSPOSED[dim - 1](ch[i + 1], ch[i], 2, stride=2)
                                if upsample == "transpose" else nn.Upsample(scale_factor=2.0)
                                for i in reversed(range(depth)))
        self.decoder = nn.ModuleList(
            self._level((ch[i] if upsample == "transpose" else ch[i + 1]) + ch[i], ch[i])
            for i in reversed(range(depth)))
        self.head = conv(ch[0], c_out, 1)

    def _block(self, c_in: int, c_out: int) -> nn.Sequential:
        conv = CONVS[self.dim - 1](c_in, c_out, self.kernel_size, padding=self.kernel_size // 2,
                                    padding_mode=self.padding_mode, bias=self.norm == "none")
        norm = {"group": lambda: nn.GroupNorm(_groups(c_out), c_out),
                "instance": lambda: nn.GroupNorm(c_out, c_out),
                "none": nn.Identity}[self.norm]()
        return nn.Sequential(conv, norm, ACTIVATIONS[self.activation]())

    def _level(self, c_in: int, c_out: int) -> nn.Sequential:
        return nn.Sequential(self._block(c_in, c_out), self._block(c_out, c_out))

    # -- shapes ---------------------------------------------------------------------------------
    def min_size(self) -> int:
        """Smallest grid size per axis: ``2**depth`` (times ``kernel_size // 2 + 1`` if reflect)."""
        half = self.kernel_size // 2
        return 2**self.depth * max(1, half + (self.padding_mode == "reflect"))

    def _check(self, shape: Sequence[int], what: str) -> None:
        expected = f"(n, {self.c_in}, " + ", ".join(f"g{i}" for i in range(self.dim)) + ")"
        if len(shape) != 2 + self.dim or shape[1] != self.c_in:
            raise DataError(f"UNet(c_in={self.c_in}, dim={self.dim}) expects {what} of shape "
                            f"{expected}; got {tuple(shape)}")
        grid, least = tuple(shape[2:]), self.min_size()
        if min(grid) < least:
            raise DataError(f"UNet(depth={self.depth}, padding_mode={self.padding_mode!r}, "
                            f"kernel_size={self.kernel_size}) needs every grid size >= {least}; "
                            f"got grid {grid}")

    def _pad(self, x: Tensor) -> tuple[Tensor, list[slice]]:
        """Pad the grid axes of ``x`` (n, c, *grid) up to multiples of ``2**depth``."""
        grid, step = x.shape[2:], 2**self.depth
        extra = [math.ceil(g / step) * step - g for g in grid]
        crop = [slice(None), slice(None)] + [slice(e // 2, e // 2 + g)
                                             for e, g in zip(extra, grid, strict=True)]
        if not any(extra):
            return x, crop
        pads = [p for e in reversed(extra) for p in (e // 2, e - e // 2)]
        mode = "constant" if self.padding_mode == "zeros" else self.padding_mode
        return functional.pad(x, pads, mode=mode), crop

    # -- one network ----------------------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        """``x`` (n, c_in, *grid) -> (n, c_out, *grid)."""
        self._check(x.shape, "x")
        x, cond = self._split(x)
        film = iter(self._modulations(self.film(cond)[None]) if self.conditions else ())
        h, crop = self._pad(x)
        skips = []
        for level, down in zip(self.encoder, self.down, strict=True):
            h = _modulated(level(h), film)
            skips.append(h)
            h = down(h)
        h = _modulated(self.bottom(h), film)
        for up, level, skip in zip(self.up, self.decoder, reversed(skips), strict=True):
            h = _modulated(level(torch.cat([up(h), skip], dim=1)), film)
        return self.head(h)[tuple(crop)]

    # -- FiLM -----------------------------------------------------------------------------------
    def _split(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """The field channels of ``x`` (..., c_in, *grid) and the grid mean of its last
        ``conditions`` channels (..., k) (``None`` without FiLM)."""
        if not self.conditions:
            return x, None
        axis = -1 - self.dim
        field, cond = x.split([x.shape[axis] - self.conditions, self.conditions], dim=axis)
        return field, cond.mean(tuple(range(-self.dim, 0)))

    def _modulations(self, film: Tensor) -> list[tuple[Tensor, Tensor]]:
        """Per level (scale, shift), each (n, s c, 1, ...) in the folded member layout, from
        the FiLM outputs ``film`` (s, n, 2 sum(film_channels))."""
        s, n = film.shape[:2]
        out, start = [], 0
        for c in self.film_channels:
            gamma, beta = (film[:, :, start + i * c:start + (i + 1) * c] for i in (0, 1))
            start += 2 * c
            out.append(tuple(t.transpose(0, 1).reshape(n, s * c, *[1] * self.dim)
                             for t in (gamma, beta)))
        return out

    def _film_stacked(self, params: dict[str, Tensor], cond: Tensor) -> Tensor:
        """The FiLM MLP of every member: ``cond`` (s, n, k) -> (s, n, 2 sum(film_channels))."""
        z = torch.einsum("snk,shk->snh", cond, params["film.0.weight"])
        z = functional.silu(z + params["film.0.bias"][:, None])
        return torch.einsum("snh,soh->sno", z, params["film.2.weight"]) \
            + params["film.2.bias"][:, None]

    # -- all members at once --------------------------------------------------------------------
    def forward_stacked(self, params: dict[str, Tensor], x: Tensor) -> Tensor:
        """All members at once: ``x`` (s, n, c_in, *grid) -> (s, n, c_out, *grid).

        ``params`` holds this module's parameters stacked on a leading member axis s, as made by
        ``torch.func.stack_module_state``. The member axis is folded into the channels,
        (s, n, c, *grid) -> (n, s * c, *grid) with each member's channels contiguous, and every
        convolution becomes a grouped convolution with ``groups=s``; GroupNorm with ``s * g``
        groups normalises each member's groups separately; skip connections are concatenated
        per member. Equals ``vmap`` over ``functional_call`` to rounding.
        """
        members = next(iter(params.values())).shape[0]
        if x.ndim == 0 or x.shape[0] != members:
            raise DataError(f"forward_stacked expects x of shape (s, n, {self.c_in}, *grid) with "
                            f"s = {members} members; got {tuple(x.shape)}")
        self._check(x.shape[1:], "each member's x")
        s, n = x.shape[:2]
        x, cond = self._split(x)
        film = iter(self._modulations(self._film_stacked(params, cond)) if self.conditions
                    else ())
        h, crop = self._pad(x.transpose(0, 1).reshape(n, s * x.shape[2], *x.shape[3:]))
        skips = []
        for i in range(self.depth):
            h = _modulated(self._stacked(self.encoder[i], f"encoder.{i}", params, h, s), film)
            skips.append(h)
            h = self._stacked(self.down[i], f"down.{i}", params, h, s)
        h = _modulated(self._stacked(self.bottom, "bottom", params, h, s), film)
        for i, skip in enumerate(reversed(skips)):
            up = self._stacked(self.up[i], f"up.{i}", params, h, s)
            both = torch.cat([up.unflatten(1, (s, -1)), skip.unflatten(1, (s, -1))], dim=2)
            h = _modulated(self._stacked(self.decoder[i], f"decoder.{i}", params,
                                         both.flatten(1, 2), s), film)
        out = self._stacked(self.head, "head", params, h, s)[tuple(crop)]
        return out.unflatten(1, (s, self.c_out)).transpose(0, 1)

    def _stacked(self, module: nn.Module, name: str, params: dict[str, Tensor], h: Tensor,
                 s: int) -> Tensor:
        """Apply ``module`` (named ``name``) of every member to folded ``h`` (n, s * c, *grid)."""
        if isinstance(module, nn.Sequential):
            for key, child in module.named_children():
                h = self._stacked(child, f"{name}.{key}", params, h, s)
            return h
        w, b = params.get(f"{name}.weight"), params.get(f"{name}.bias")
        b = None if b is None else b.flatten()
        if isinstance(module, TRANSPOSED):
            conv_t = (functional.conv_transpose1d, functional.conv_transpose2d)[self.dim - 1]
            return conv_t(h, w.flatten(0, 1), b, module.stride, module.padding,
                          module.output_padding, s, module.dilation)
        if isinstance(module, CONVS):
            padding = module.padding
            if module.padding_mode != "zeros":
                pads = [p for q in reversed(module.padding) for p in (q, q)]
                h, padding = functional.pad(h, pads, mode=module.padding_mode), 0
            conv = (functional.conv1d, functional.conv2d)[self.dim - 1]
            return conv(h, w.flatten(0, 1), b, module.stride, padding, module.dilation, s)
        if isinstance(module, nn.GroupNorm):
            return functional.group_norm(h, s * module.num_groups, w.flatten(), b, module.eps)
        if w is not None or b is not None:
            raise TypeError(f"forward_stacked cannot apply {type(module).__name__} ({name})")
        return module(h)  # parameter-free and per channel: activation, pooling, upsampling


def _modulated(h: Tensor, film: Iterator[tuple[Tensor, Tensor]]) -> Tensor:
    """``h * (1 + gamma) + beta`` with the next level's FiLM (``h`` itself without FiLM)."""
    gamma_beta = next(film, None)
    return h if gamma_beta is None else h * (1 + gamma_beta[0]) + gamma_beta[1]

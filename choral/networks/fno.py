"""Fourier neural operator members: neuraloperator's ``FNO`` with real-valued parameters.

The network is ``neuralop.models.FNO`` (the optional ``fno`` extra), used as it is but for two
adaptations that let choral stack, vectorise, save and average its members like any other:

- its complex spectral weights (in, out, *modes) are stored as real parameters
  (in, out, *modes, 2) (``torch.view_as_real``) and viewed as complex inside ``forward``, so the
  optimiser, gradient clipping, SWAG moments, soups and safetensors files all see real tensors;
- its spectral convolution writes the retained modes into a zero tensor in place, which
  ``torch.func.vmap`` refuses (the zeros are not batched over members); :class:`_SpectralConv`
  does the same with an out-of-place zero padding, everything else is neuraloperator's.

Grid coordinates on [0, 1] are appended to the input and the spectral weights act on Fourier
modes, so a member trained on one grid evaluates on another (resolution transfer).

Examples:
    >>> net = FNOBackbone(1, 2, dim=1, modes=4, width=8, layers=2)
    >>> all(not p.is_complex() for p in net.parameters())
    True
    >>> net(torch.zeros(3, 1, 16)).shape, net(torch.zeros(3, 1, 32)).shape
    (torch.Size([3, 2, 16]), torch.Size([3, 2, 32]))
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional

from choral.errors import ConfigError

__all__ = ["FNOBackbone"]


def _neuralop() -> tuple[type, type]:
    """neuraloperator's ``FNO`` and ``SpectralConv``, or a ConfigError naming the extra."""
    try:
        from neuralop.layers.spectral_convolution import SpectralConv
        from neuralop.models import FNO
    except ImportError as exc:
        raise ConfigError("model.backbone = 'fno' needs neuraloperator: pip install "
                          f"'choral[fno]' (import failed: {exc})") from None
    return FNO, SpectralConv


def _spectral_conv() -> type:
    _, SpectralConv = _neuralop()

    class _SpectralConv(SpectralConv):
        """neuraloperator's dense spectral convolution of real fields, with the retained modes
        zero-padded out of place (vmap-safe) instead of written into zeros in place."""

        def forward(self, x: Tensor, output_shape: tuple[int, ...] | None = None) -> Tensor:
            sizes = list(x.shape[2:])
            dims = list(range(-self.order, 0))
            xf = torch.fft.rfftn(x, norm=self.fft_norm, dim=dims)
            if self.order > 1:
                xf = torch.fft.fftshift(xf, dim=dims[:-1])
            fft_size = [*sizes[:-1], sizes[-1] // 2 + 1]
            keep = [min(f, m) for f, m in zip(fft_size, self.n_modes, strict=True)]
            w_slices, x_slices, pads = [slice(None), slice(None)], [slice(None)] * 2, []
            for i, (f, k, m) in enumerate(zip(fft_size, keep, self.max_n_modes, strict=True)):
                start = m - k
                last = i == self.order - 1
                if last:
                    w_slices.append(slice(None, m - start))
                    lo, hi = 0, k
                else:
                    w_slices.append(slice(start // 2, m - start // 2) if start else slice(None))
                    lo, hi = f // 2 - k // 2, f // 2 + k // 2 + k % 2
                x_slices.append(slice(lo, hi))
                pads = [lo, f - hi, *pads]  # F.pad lists the last axis first
            weight = self.weight[tuple(w_slices)]
            out = self._contract(xf[tuple(x_slices)], weight, separable=False)
            out = functional.pad(out, pads)
            if self.order > 1:
                out = torch.fft.fftshift(out, dim=dims[:-1])
            y = torch.fft.irfftn(out, s=output_shape or sizes, dim=dims, norm=self.fft_norm)
            return y if self.bias is None else y + self.bias

    return _SpectralConv


class FNOBackbone(nn.Module):
    """``neuralop.models.FNO`` mapping (n, c_in, *grid) to (n, c_out, *grid), 1-D or 2-D.

    Args:
        c_in, c_out: input and output channels.
        dim: 1 or 2 grid axes.
        modes: Fourier modes kept per axis (at most ``grid // 2 + 1`` are used on a grid).
        width: hidden channels of the Fourier layers.
        layers: Fourier layers.
        domain_padding: share of the grid zero-padded on each side before the Fourier layers
            (for non-periodic problems such as Darcy; 0 for periodic ones).
    """

    def __init__(self, c_in: int, c_out: int, dim: int, modes: int = 12, width: int = 32,
                 layers: int = 4, domain_padding: float = 0.0) -> None:
        super().__init__()
        FNO, _ = _neuralop()
        self.dim = dim
        self.net = FNO(n_modes=(modes,) * dim, in_channels=c_in, out_channels=c_out,
                       hidden_channels=width, n_layers=layers,
                       domain_padding=domain_padding or None, conv_module=_spectral_conv())
        self._complex: list[tuple[nn.Module, str, str]] = []
        for owner_name, owner in list(self.net.named_modules()):
            for name, p in list(owner.named_parameters(recurse=False)):
                if p.is_complex():
                    key = f"{owner_name}.{name}".replace(".", "_")
                    self.register_parameter(key, nn.Parameter(torch.view_as_real(p.detach())
                                                              .clone()))
                    del owner._parameters[name]
                    setattr(owner, name, None)
                    self._complex.append((owner, name, key))

    def auto_backend(self, device: torch.device | None) -> str:
        """``loop`` for 2-D grids on the CPU, else ``vmap``: under vmap the 1x1 convolutions
        of the lifting, skips and projection become grouped convolutions whose backward is
        slower on the CPU (``benchmarks/fno_backend.py``: 2-D loop 0.8x vmap's time, 1-D vmap
        0.4x the loop's, 5 members)."""
        cpu = device is None or device.type == "cpu"
        return "loop" if self.dim == 2 and cpu else "vmap"

    def forward(self, x: Tensor) -> Tensor:
        """(n, c_in, *grid) -> (n, c_out, *grid) on any grid of the same dimension."""
        try:
            for owner, name, key in self._complex:
                setattr(owner, name, torch.view_as_complex(getattr(self, key)))
            return self.net(x)
        finally:  # the complex views must not outlive the call (vmap's batched tensors)
            for owner, name, _ in self._complex:
                setattr(owner, name, None)

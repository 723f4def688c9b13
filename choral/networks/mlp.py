"""Multilayer perceptron backbone, with a stacked-weights forward for whole ensembles.

Examples:
    >>> import torch
    >>> net = MLP(3, 4, hidden=[16, 16])
    >>> net(torch.zeros(5, 3)).shape
    torch.Size([5, 4])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

ACTIVATIONS = {"relu": nn.functional.relu, "gelu": nn.functional.gelu,
               "silu": nn.functional.silu, "tanh": torch.tanh}


class MLP(nn.Module):
    """Fully connected network mapping (n, d_in) to (n, d_out)."""

    def __init__(self, d_in: int, d_out: int, hidden: Sequence[int] = (64, 64),
                 activation: str = "relu") -> None:
        super().__init__()
        widths = [d_in, *hidden, d_out]
        pairs = zip(widths[:-1], widths[1:], strict=True)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in pairs)
        self.activation = activation

    def forward(self, x: Tensor) -> Tensor:
        act = ACTIVATIONS[self.activation]
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = act(x)
        return x

    def forward_stacked(self, params: dict[str, Tensor], x: Tensor) -> Tensor:
        """All members at once: ``x`` (s, n, d_in) -> (s, n, d_out) by batched matmul.

        ``params`` holds this module's parameters stacked on a leading member axis, as made by
        ``torch.func.stack_module_state``. On a CPU, ``baddbmm`` over stacked weights avoids the
        fixed per-call cost of ``vmap`` (measured in ``benchmarks/ensemble_speed.py``).
        """
        act = ACTIVATIONS[self.activation]
        last = len(self.layers) - 1
        for i in range(last + 1):
            w, b = params[f"layers.{i}.weight"], params[f"layers.{i}.bias"]
            x = torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2))
            if i < last:
                x = act(x)
        return x

"""A member network with a fixed random prior branch (randomized prior functions).

Osband, Aslanides and Cassirer (2018): each member predicts ``f_theta(x) + beta * p(x)`` where
``p`` is a random network of the same architecture, drawn at initialisation and never trained.
Where data pin ``f_theta + beta p`` down the members agree; where there are none their
disagreement is at least that of the random priors, so epistemic variance does not collapse
away from the data as it can in a plain deep ensemble.

:class:`PriorNet` holds both branches as ordinary submodules (``net.*`` and ``prior.*``), so
the prior's weights are saved in ``weights.safetensors`` with the rest and a saved model is
rebuilt from ``config.json`` alone (the method ``prior`` keeps ``prior.*`` frozen while
training). The prior branch outputs one value per target, added to the first ``m`` channels of
the backbone's output: the means of the Gaussian head.

Examples:
    >>> import torch
    >>> from choral.networks.mlp import MLP
    >>> net = PriorNet(MLP(3, 4, [8]), MLP(3, 2, [8]), scale=2.0)
    >>> x = torch.randn(5, 3)
    >>> out = net(x)
    >>> bool(torch.allclose(out[:, :2], net.net(x)[:, :2] + 2.0 * net.prior(x)))
    True
    >>> bool(torch.equal(out[:, 2:], net.net(x)[:, 2:]))
    True
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.func import functional_call

__all__ = ["PRIOR_PREFIX", "PriorNet"]

PRIOR_PREFIX = "prior."
"""Parameter names of the frozen prior branch start with this."""


def _branch(params: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {k[len(prefix):]: v for k, v in params.items() if k.startswith(prefix)}


class PriorNet(nn.Module):
    """``net(x)`` with ``scale * prior(x)`` added to its first ``m`` output channels.

    ``net`` maps (n, ...) to (n, channels * m, ...); ``prior`` maps the same inputs to
    (n, m, ...), ``m`` its output channels.
    """

    def __init__(self, net: nn.Module, prior: nn.Module, scale: float) -> None:
        super().__init__()
        self.net, self.prior, self.scale = net, prior, float(scale)

    @staticmethod
    def _add(out: Tensor, prior: Tensor, dim: int, scale: float) -> Tensor:
        m = prior.shape[dim]
        return torch.cat([out.narrow(dim, 0, m) + scale * prior,
                          out.narrow(dim, m, out.shape[dim] - m)], dim)

    def forward(self, x: Tensor) -> Tensor:
        return self._add(self.net(x), self.prior(x), 1, self.scale)

    def forward_stacked(self, params: dict[str, Tensor], x: Tensor) -> Tensor:
        """All members at once: ``x`` (s, n, ...) -> (s, n, channels * m, ...), through the
        branches' own ``forward_stacked`` when they have one, else ``vmap``."""
        outs = [self._stacked(getattr(self, name), _branch(params, f"{name}."), x)
                for name in ("net", "prior")]
        return self._add(outs[0], outs[1], 2, self.scale)

    @staticmethod
    def _stacked(module: nn.Module, params: dict[str, Tensor], x: Tensor) -> Tensor:
        if hasattr(module, "forward_stacked"):
            return module.forward_stacked(params, x)
        return torch.func.vmap(lambda p, xi: functional_call(module, p, (xi,)))(params, x)

"""SWAG (Maddox et al., 2019) and MultiSWAG (Wilson and Izmailov, 2020).

SWAG fits a Gaussian over *all* weights of a network from the weights collected over the tail
of one run (the SWA schedule): mean ``m`` = the SWA average, diagonal ``d = E[w^2] - m^2``, and a
low-rank part from the deviation matrix ``D`` (K, P) of the last K collected weights from the
running mean. A sample is one random vector over every weight at once::

    w = m + sqrt(d / 2) * z1 + D^T z2 / sqrt(2 (K - 1)),   z1 ~ N(0, I_P), z2 ~ N(0, I_K)

so its covariance is ``diag(d) / 2 + D^T D / (2 (K - 1))`` (the low-rank term is left out while
fewer than two weights were collected). The predictive is the mixture over ``weightspace.samples``
sampled networks. MultiSWAG is SWAG on every member of a deep ensemble, all members at once:
moments (s, P), deviations (s, K, P), samples (s * S, ...), member-major.

Examples:
    >>> import torch
    >>> swag = SwagMoments(rank=2)
    >>> for w in ([[0., 0.]], [[2., 0.]], [[1., 3.]]):
    ...     swag.update(torch.tensor(w))
    >>> swag.mean.tolist(), swag.variance().tolist()
    ([[1.0, 1.0]], [[0.6666666666666667, 2.0]])
    >>> swag.deviations().shape  # members, the last K, weights
    torch.Size([1, 2, 2])
    >>> swag.sample(5, torch.Generator().manual_seed(0)).shape
    torch.Size([1, 5, 2])
"""

from __future__ import annotations

import math
from collections import deque

import torch
from torch import Tensor

from choral.ensembles.context import Result, TrainContext
from choral.ensembles.flat import unflatten
from choral.ensembles.registry import register
from choral.ensembles.schedule import collect_epochs, swa_factor
from choral.ensembles.swa import collecting_run, run_epochs


class SwagMoments:
    """Running first and second moments (s, P) and the last ``rank`` deviations, in float64."""

    def __init__(self, rank: int) -> None:
        self.rank, self.count = rank, 0
        self.mean: Tensor | None = None
        self.sq_mean: Tensor | None = None
        self._devs: deque[Tensor] = deque(maxlen=rank)

    def update(self, w: Tensor) -> None:
        """Add collected weights ``w`` (s, P)."""
        w = w.double()
        self.count += 1
        if self.mean is None:
            self.mean, self.sq_mean = w.clone(), w.square()
        else:
            self.mean += (w - self.mean) / self.count
            self.sq_mean += (w.square() - self.sq_mean) / self.count
        self._devs.append(w - self.mean)

    def variance(self) -> Tensor:
        """The diagonal ``E[w^2] - E[w]^2`` (s, P), clamped at zero."""
        return (self.sq_mean - self.mean.square()).clamp_min(0.0)

    def deviations(self) -> Tensor:
        """The deviation matrix (s, K, P) of the last K <= rank collected weights."""
        return torch.stack(list(self._devs), dim=1)

    def covariance(self) -> Tensor:
        """The full covariance (s, P, P) the samples follow (for checks on small networks)."""
        cov = torch.diag_embed(self.variance() / 2)
        D = self.deviations()
        if D.shape[1] > 1:
            cov = cov + D.transpose(1, 2) @ D / (2 * (D.shape[1] - 1))
        return cov

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        """``n`` weight vectors per member (s, n, P), one Gaussian draw over all weights each."""
        s, p = self.mean.shape
        # drawn on the generator's device (the CPU), then moved: the same draws on every device
        z1 = torch.randn(s, n, p, generator=generator, dtype=torch.float64).to(self.mean.device)
        out = self.mean[:, None] + (self.variance()[:, None] / 2).sqrt() * z1
        D = self.deviations()
        if D.shape[1] > 1:
            z2 = torch.randn(s, n, D.shape[1], generator=generator, dtype=torch.float64
                             ).to(D.device)
            out = out + torch.einsum("snk,skp->snp", z2, D) / math.sqrt(2 * (D.shape[1] - 1))
        return out

    def to_tensors(self) -> dict[str, Tensor]:
        """What ``swag.safetensors`` stores: mean, sq_mean (s, P), deviations (s, K, P), count."""
        return {"mean": self.mean, "sq_mean": self.sq_mean, "deviations": self.deviations(),
                "count": torch.tensor([self.count])}

    def state_dict(self) -> dict[str, Tensor]:
        """The moments to checkpoint (nothing before the first collection)."""
        return {} if self.mean is None else self.to_tensors()

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        if state:
            saved = SwagMoments.from_tensors(state)
            self.mean, self.sq_mean, self.count = saved.mean, saved.sq_mean, saved.count
            self._devs = deque(saved._devs, maxlen=self.rank)

    @classmethod
    def from_tensors(cls, tensors: dict[str, Tensor]) -> SwagMoments:
        """Rebuild from :meth:`to_tensors` (e.g. to draw more samples from a saved model)."""
        devs = tensors["deviations"].double()
        self = cls(rank=max(devs.shape[1], 2))
        self.mean, self.sq_mean = tensors["mean"].double(), tensors["sq_mean"].double()
        self.count = int(tensors["count"][0])
        self._devs.extend(devs.unbind(1))
        return self


def fit_swag(ctx: TrainContext, members: int) -> Result:
    """Run SWAG on the first ``members`` members; return ``samples`` networks per member."""
    ws, epochs = ctx.weightspace, run_epochs(ctx)
    moments = SwagMoments(ws.rank)
    last, history = collecting_run(ctx, members, swa_factor(ws, epochs),
                                   collect_epochs(ws, epochs), moments)
    gen = torch.Generator().manual_seed(ctx.train.seed)
    flat = moments.sample(ws.samples, gen).flatten(0, 1)
    params = unflatten(flat.to(next(iter(last.values())).dtype), last)
    return Result(params, history, {"swag": moments.to_tensors()})


@register("swag")
def swag(ctx: TrainContext) -> Result:
    """SWAG on one network: ``weightspace.samples`` sampled networks."""
    return fit_swag(ctx, 1)


@register("multiswag")
def multiswag(ctx: TrainContext) -> Result:
    """SWAG on each of the ``train.members`` members: members x samples networks."""
    return fit_swag(ctx, ctx.train.members)

"""Last-layer Laplace on every member (``train.ensemble = "laplace"``), written by hand.

laplace-torch does not fit choral's heads: its regression likelihood is homoscedastic (one
``sigma_noise`` for every input, ``loss = MSELoss``; a tensor of several noises is refused),
while the Gaussian head predicts its variance per input, and it wraps one ``nn.Module`` at a
time rather than stacked members. So the posterior is computed here, all members at once.

After the members train as the deep ensemble, the weights ``theta`` (P = m (h + 1) per member)
of the last layer's *mean* rows (weights and biases of the first ``m`` output channels) get a
Gaussian posterior; the variance rows stay at their trained values. With the variance
``sigma^2(x)`` fixed, each mean is linear in ``theta`` and the Gaussian NLL quadratic, so the
generalised Gauss-Newton matrix is the exact Hessian,
``H = sum_n psi_n psi_n^T / sigma^2(x_n)`` per target (``psi``: last hidden features and a
1; the curvature ``1 / sigma^2`` comes by autograd through the head's own loss). With the
prior ``N(0, lambda^-1 I)`` the posterior is ``N(theta*, (H + lambda I)^-1)`` and the
Laplace marginal likelihood

    ``log Z(lambda) = log p(D | theta*) - lambda |theta*|^2 / 2 + P log(lambda) / 2
                     - log det(H + lambda I) / 2``

(exact for a linear-Gaussian model at its MAP) is maximised over ``lambda`` on a log grid per
member. ``posterior.samples`` networks per member are stored (members x samples, member-major),
so the saved model is plain stacked networks; the moments go to ``laplace.safetensors``.

Examples:
    >>> import torch
    >>> lam = torch.logspace(-2, 2, 5, dtype=torch.float64)
    >>> ev = log_evidence(torch.zeros(1), torch.ones(1, 2), torch.ones(1, 2), lam)
    >>> ev.shape, lam[ev.argmax()].item()  # -lam + log(lam) - log(1 + lam): best near 0.6
    (torch.Size([1, 5]), 1.0)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import Tensor

from choral.ensembles.context import Result, TrainContext
from choral.ensembles.registry import register
from choral.ensembles.training import Loss, train_members
from choral.errors import ConfigError
from choral.networks.members import Forward

__all__ = ["LastLayerPosterior", "curvature", "features", "last_layer", "laplace",
           "log_evidence", "mean_rows", "with_mean_rows"]

_F64 = torch.float64
_GRID = 401


def last_layer(params: dict[str, Tensor]) -> str:
    """The name prefix of the MLP's last layer (``layers.L``); a ConfigError for others."""
    found = [int(g.group(1)) for k in params if (g := re.fullmatch(r"layers\.(\d+)\.weight", k))]
    if not found:
        raise ConfigError("train.ensemble = 'laplace' needs the mlp backbone (a last linear "
                          f"layer 'layers.<i>.weight'); got parameters {sorted(params)[:4]}")
    return f"layers.{max(found)}"


def mean_rows(params: dict[str, Tensor], layer: str, m: int) -> Tensor:
    """The last layer's mean rows as a vector per member (s, P): for each of the ``m`` means
    its ``h`` weights and its bias, P = m (h + 1)."""
    w, b = params[f"{layer}.weight"][:, :m], params[f"{layer}.bias"][:, :m]
    return torch.cat([w, b[..., None]], -1).flatten(1)


def with_mean_rows(params: dict[str, Tensor], theta: Tensor, layer: str,
                   m: int) -> dict[str, Tensor]:
    """``params`` (s, ...) with the mean rows of ``layer`` replaced by ``theta`` (s, P)."""
    w, b = params[f"{layer}.weight"], params[f"{layer}.bias"]
    rows = theta.reshape(theta.shape[0], m, w.shape[-1] + 1).to(w.dtype)
    return {**params, f"{layer}.weight": torch.cat([rows[..., :-1], w[:, m:]], 1),
            f"{layer}.bias": torch.cat([rows[..., -1], b[:, m:]], 1)}


def log_evidence(loglik: Tensor, theta: Tensor, eig: Tensor, lam: Tensor) -> Tensor:
    """Laplace log marginal likelihood (s, G) of members with log-likelihood ``loglik`` (s,) at
    ``theta`` (s, P), Hessian eigenvalues ``eig`` (s, P) and prior precisions ``lam`` (G,)."""
    p = theta.shape[1]
    sq = theta.square().sum(1, keepdim=True)
    logdet = torch.log(eig.clamp_min(0)[:, :, None] + lam).sum(1)
    return loglik[:, None] - 0.5 * lam * sq + 0.5 * p * torch.log(lam) - 0.5 * logdet


def features(forward: Forward, params: dict[str, Tensor], layer: str, X: Tensor) -> Tensor:
    """The last hidden features (s, n, h) at ``X`` (n, d): the members' output with the last
    layer replaced by the identity."""
    w = params[f"{layer}.weight"]
    s, h = w.shape[0], w.shape[-1]
    eye = torch.eye(h, dtype=w.dtype, device=w.device).expand(s, h, h)
    ident = {**params, f"{layer}.weight": eye, f"{layer}.bias": w.new_zeros(s, h)}
    with torch.no_grad():
        return forward(ident, X.expand(s, *X.shape))


def curvature(forward: Forward, params: dict[str, Tensor], X: Tensor, Y: Tensor,
              loss: Loss) -> tuple[Tensor, Tensor]:
    """(log-likelihood (s,), second derivative of the total NLL with respect to each mean
    (s, n, m)), by autograd through the head's ``loss`` (a mean over rows and values whose
    terms are separate per value, as the Gaussian NLL's are): ``1 / sigma^2`` for it."""
    s, m = next(iter(params.values())).shape[0], Y.shape[1]
    count = Y[0].numel() * len(Y)
    with torch.no_grad():
        out = forward(params, X.expand(s, *X.shape))
    out.requires_grad_(True)
    total = loss(out, Y.expand(s, *Y.shape)) * count
    (grad,) = torch.autograd.grad(total.sum(), out, create_graph=True)
    (second,) = torch.autograd.grad(grad[..., :m].sum(), out)
    return -total.detach(), second[..., :m]


@dataclass
class LastLayerPosterior:
    """Per member and target: the mean rows ``theta`` (s, m, h + 1), the posterior precision
    (s, m, h + 1, h + 1) (the targets' rows are independent a posteriori), the prior precision
    ``lam`` (s,) and the log marginal likelihood at it (s,), all float64."""

    theta: Tensor
    precision: Tensor
    lam: Tensor
    evidence: Tensor

    @classmethod
    def fit(cls, forward: Forward, params: dict[str, Tensor], X: Tensor, Y: Tensor,
            loss: Loss, grid: tuple[float, float] = (1e-4, 1e4)) -> LastLayerPosterior:
        """The posterior of the mean rows of stacked members ``params`` (s, ...) on ``X``
        (n, d), ``Y`` (n, m), the head's ``loss`` being a mean over rows and values."""
        layer, m = last_layer(params), Y.shape[1]
        w = params[f"{layer}.weight"]
        s, h = w.shape[0], w.shape[-1]
        if w.shape[1] != 2 * m:
            raise ConfigError(f"train.ensemble = 'laplace' needs the gaussian head (2 output "
                              f"channels per target, {2 * m}); the last layer has {w.shape[1]}")
        p64 = {k: v.detach().to(_F64) for k, v in params.items()}
        x, y = X.to(_F64), Y.to(_F64)
        phi = features(forward, p64, layer, x)
        psi = torch.cat([phi, torch.ones_like(phi[..., :1])], -1)  # (s, n, h + 1)
        loglik, c = curvature(forward, p64, x, y, loss)
        H = torch.einsum("snj,snp,snq->sjpq", c, psi, psi)
        H = (H + H.transpose(-1, -2)) / 2
        theta = mean_rows(p64, layer, m).reshape(s, m, h + 1)
        lo, hi = torch.log10(torch.tensor(grid, dtype=_F64)).tolist()
        lam_grid = torch.logspace(lo, hi, _GRID, dtype=_F64, device=w.device)
        ev = log_evidence(loglik, theta.flatten(1), torch.linalg.eigvalsh(H).flatten(1),
                          lam_grid)
        best = ev.argmax(1)
        lam = lam_grid[best]
        eye = torch.eye(h + 1, dtype=_F64, device=w.device)
        return cls(theta, H + lam[:, None, None, None] * eye, lam,
                   ev.gather(1, best[:, None])[:, 0])

    def covariance(self) -> Tensor:
        """The posterior covariance (s, m, h + 1, h + 1)."""
        return torch.linalg.inv(self.precision)

    def sample(self, k: int, generator: torch.Generator) -> Tensor:
        """``k`` draws of the mean rows per member (s, k, P), P = m (h + 1), drawn on the
        generator's device (the CPU: the same draws on every device): ``theta + L^-T z`` with
        ``L L^T`` the precision."""
        s, m, q = self.theta.shape
        z = torch.randn(s, m, q, k, generator=generator, dtype=_F64).to(self.theta.device)
        chol = torch.linalg.cholesky(self.precision)
        eps = torch.linalg.solve_triangular(chol.transpose(-1, -2), z, upper=True)
        draws = self.theta[..., None] + eps  # (s, m, h + 1, k)
        return draws.permute(0, 3, 1, 2).reshape(s, k, m * q)

    def networks(self, params: dict[str, Tensor], k: int,
                 generator: torch.Generator) -> dict[str, Tensor]:
        """``k`` sampled networks per member (s * k, ...), member-major."""
        layer, m = last_layer(params), self.theta.shape[1]
        repeated = {name: v.repeat_interleave(k, 0) for name, v in params.items()}
        return with_mean_rows(repeated, self.sample(k, generator).flatten(0, 1), layer, m)

    def to_tensors(self) -> dict[str, Tensor]:
        """What ``laplace.safetensors`` stores."""
        return {"theta": self.theta, "precision": self.precision,
                "prior_precision": self.lam, "log_evidence": self.evidence}


@register("laplace")
def laplace(ctx: TrainContext) -> Result:
    """Deep-ensemble members, each with a last-layer Laplace posterior; ``posterior.samples``
    sampled networks per member."""
    if not isinstance(ctx.X, Tensor):
        raise ConfigError("train.ensemble = 'laplace' needs the data in memory (arrays), not "
                          "rows read from a file")
    params, history = train_members(ctx.forward, ctx.init_params, ctx.X, ctx.Y, ctx.X_val,
                                    ctx.Y_val, ctx.train, ctx.batch_seeds, ctx.loss, ctx.on_epoch,
                                    checkpoint=ctx.checkpoint,
                                    inputs=ctx.inputs)
    post = LastLayerPosterior.fit(ctx.forward, params, ctx.X, ctx.Y, ctx.nll or ctx.loss,
                                  ctx.posterior.precision_grid)
    gen = torch.Generator().manual_seed(ctx.train.seed)
    nets = post.networks(params, ctx.posterior.samples, gen)
    return Result(nets, history, {"laplace": post.to_tensors()})

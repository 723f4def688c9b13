"""Amortised neural posterior estimation: an ensemble of conditional normalising flows.

Each of ``s`` members is a zuko conditional flow ``q_k(x | y)`` (neural spline flow by default,
or a masked autoregressive flow) trained by maximum likelihood on pairs ``(x_i, y_i)`` drawn
from the prior and a simulator (or a surrogate, :func:`surrogate_pairs`), all members on the
same pairs from their own initialisation and mini-batch order, as deep ensembles are. The
posterior is their equal mixture, ``q(x | y) = (1/s) sum_k q_k(x | y)``, like the members of a
surrogate: a draw comes from one member. Inputs and outputs are standardised with the training
pairs' statistics (the densities are in original units). Training stops early on held-out
pairs (sbi's rule: 20 epochs without improvement) and keeps the best epoch.

The members are trained one after another: zuko's flows are modules whose transforms are
built in the forward pass (autoregressive masks, spline bins), which ``torch.func`` stacking
does not vectorise; a flow trains on a few thousand pairs in seconds.

Examples:
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.randn(256, 1, generator=g, dtype=torch.float64)
    >>> y = x + 0.1 * torch.randn(256, 1, generator=g, dtype=torch.float64)
    >>> post = fit_npe(x, y, members=2, epochs=2, seed=0, hidden=(16,), transforms=1)
    >>> post.sample(10, torch.tensor([0.5]), seed=0).shape, post.log_prob(x[:3], y[:3]).shape
    (torch.Size([10, 1]), torch.Size([3]))
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from choral.checks import as_float64, check_int
from choral.errors import ConfigError, DataError

__all__ = ["FLOWS", "NeuralPosterior", "fit_npe", "surrogate_pairs"]

FLOWS = ("nsf", "maf")
"""Conditional flows by name: zuko's ``NSF`` and ``MAF``."""


def _flow_class(name: str) -> Any:
    try:
        import zuko
    except ImportError:  # pragma: no cover - the extra is installed in the test environment
        raise ConfigError("neural posterior estimation uses zuko, which is not installed: "
                          "pip install 'choral[inference]'") from None
    return getattr(zuko.flows, name.upper())


class NeuralPosterior:
    """The equal mixture of ``s`` conditional flows over inputs (d,) given outputs (m,).

    ``loc``/``scale`` standardise inputs and outputs: ``x_loc``, ``x_scale`` (d,), ``y_loc``,
    ``y_scale`` (m,). ``support``, when given (a torch constraint, e.g. the prior's), rejects
    draws outside it, as sbi does for bounded priors.
    """

    def __init__(self, flows: list[nn.Module], x_stats: tuple[Tensor, Tensor],
                 y_stats: tuple[Tensor, Tensor], support: Any = None) -> None:
        self.flows = flows
        self.x_loc, self.x_scale = x_stats
        self.y_loc, self.y_scale = y_stats
        self.support = support

    @property
    def num_members(self) -> int:
        """The number of members ``s``."""
        return len(self.flows)

    def _context(self, y: Any) -> Tensor:
        y = as_float64(y, "y").to(self.y_loc.device)
        if y.shape[-1:] != self.y_loc.shape:
            raise DataError(f"y must end with the {self.y_loc.shape[0]} outputs the flows were "
                            f"trained on; got shape {tuple(y.shape)}")
        return ((y - self.y_loc) / self.y_scale).float()

    def member_log_prob(self, x: Any, y: Any) -> Tensor:
        """``log q_k(x | y)`` (s, n) of inputs ``x`` (n, d) given outputs ``y`` (n, m) or (m,)."""
        x = as_float64(x, "x").to(self.x_loc.device)
        c = self._context(y)
        z = ((x - self.x_loc) / self.x_scale).float()
        c = c.expand(len(z), -1) if c.ndim == 1 else c
        with torch.no_grad():
            logq = torch.stack([flow(c).log_prob(z) for flow in self.flows]).double()
        return logq - torch.log(self.x_scale).sum()

    def log_prob(self, x: Any, y: Any) -> Tensor:
        """The mixture's ``log q(x | y)`` (n,): ``logsumexp_k log q_k - log s``."""
        return torch.logsumexp(self.member_log_prob(x, y), 0) - math.log(self.num_members)

    def sample(self, k: int, y: Any, seed: int = 0, max_rounds: int = 100) -> Tensor:
        """``k`` draws (k, d) from ``q(x | y)`` for one observation ``y`` (m,): a member per
        draw (counts multinomial with equal odds), inside ``support`` when there is one."""
        k = check_int(k, "k", minimum=1)
        c = self._context(y)
        if c.ndim != 1:
            raise DataError(f"sample takes one observation y (m,); got shape {tuple(c.shape)}")
        g = torch.Generator().manual_seed(seed)
        kept: list[Tensor] = []
        have = 0
        for _ in range(max_rounds):
            counts = torch.bincount(torch.randint(0, self.num_members, (k,), generator=g),
                                    minlength=self.num_members)
            torch.manual_seed(int(torch.randint(0, 2**31 - 1, (), generator=g)))
            with torch.no_grad():
                draws = torch.cat([flow(c).sample((int(n),)) for flow, n in
                                   zip(self.flows, counts, strict=True) if n > 0])
            x = draws.double()[torch.randperm(k, generator=g)] * self.x_scale + self.x_loc
            if self.support is not None:
                x = x[self.support.check(x)]
            kept.append(x)
            have += len(x)
            if have >= k:
                return torch.cat(kept)[:k]
        raise DataError(f"fewer than {k} of {max_rounds} x {k} draws fell inside the prior's "
                        f"support: the flows put their mass outside it")


def _standardise(a: Tensor) -> tuple[Tensor, Tensor]:
    scale = a.std(0)
    return a.mean(0), torch.where(scale > 1e-12, scale, torch.ones_like(scale))


def fit_npe(x: Any, y: Any, members: int = 5, flow: str = "nsf", transforms: int = 5,
            hidden: tuple[int, ...] = (50, 50), epochs: int = 500, batch_size: int = 200,
            lr: float = 5e-4, val_fraction: float = 0.1, patience: int = 20, seed: int = 0,
            support: Any = None,
            on_epoch: Callable[[int, int, float], None] | None = None) -> NeuralPosterior:
    """Train an ensemble of ``members`` conditional flows on pairs ``x`` (n, d), ``y`` (n, m).

    ``flow`` is a key of :data:`FLOWS`; ``transforms`` and ``hidden`` its size (sbi's
    defaults: 5 transforms of 50 x 50); Adam at ``lr`` on mini-batches of ``batch_size``,
    early stopping on ``val_fraction`` of the pairs after ``patience`` epochs without
    improvement. ``on_epoch(member, epoch, val_loss)`` reports progress. ``support``: see
    :class:`NeuralPosterior`.
    """
    x, y = as_float64(x, "x"), as_float64(y, "y")
    if x.ndim != 2 or y.ndim != 2 or len(x) != len(y):
        raise DataError(f"x and y must be (n, d) and (n, m) with the same n; got "
                        f"{tuple(x.shape)} and {tuple(y.shape)}")
    if flow not in FLOWS:
        raise DataError(f"flow must be one of {', '.join(FLOWS)}; got {flow!r}")
    members = check_int(members, "members", minimum=1)
    x_stats, y_stats = _standardise(x), _standardise(y)
    xs = ((x - x_stats[0]) / x_stats[1]).float()
    ys = ((y - y_stats[0]) / y_stats[1]).float()
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(x), generator=g)
    n_val = max(1, int(round(val_fraction * len(x))))
    val, train = perm[:n_val], perm[n_val:]
    flows = []
    for k in range(members):
        torch.manual_seed(seed * 1000 + k)
        net = _flow_class(flow)(x.shape[1], y.shape[1], transforms=transforms,
                          hidden_features=tuple(hidden))
        flows.append(_train(net, xs, ys, train, val, epochs, batch_size, lr, patience,
                            torch.Generator().manual_seed(seed * 1000 + k),
                            None if on_epoch is None else
                            (lambda e, v, k=k: on_epoch(k, e, v))))
    return NeuralPosterior(flows, x_stats, y_stats, support)


def _train(net: nn.Module, xs: Tensor, ys: Tensor, train: Tensor, val: Tensor, epochs: int,
           batch_size: int, lr: float, patience: int, g: torch.Generator,
           on_epoch: Callable[[int, float], None] | None) -> nn.Module:
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    best, best_state, waited = math.inf, copy.deepcopy(net.state_dict()), 0
    for epoch in range(epochs):
        order = train[torch.randperm(len(train), generator=g)]
        for i in range(0, len(order), batch_size):
            rows = order[i:i + batch_size]
            loss = -net(ys[rows]).log_prob(xs[rows]).mean()
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), 5.0)  # sbi clips at 5 too
            opt.step()
        with torch.no_grad():
            val_loss = -net(ys[val]).log_prob(xs[val]).mean().item()
        if on_epoch is not None:
            on_epoch(epoch, val_loss)
        if val_loss < best:
            best, best_state, waited = val_loss, copy.deepcopy(net.state_dict()), 0
        else:
            waited += 1
            if waited >= patience:
                break
    net.load_state_dict(best_state)
    return net.eval()


def surrogate_pairs(model: Any, prior: Any, n: int, noise: Any = 0.0,
                    seed: int = 0) -> tuple[Tensor, Tensor]:
    """``n`` training pairs from a surrogate: ``x ~ prior``, ``y`` a member-coherent draw of
    the predictive at ``x`` (one member for all outputs) plus Gaussian observation noise of
    standard deviation ``noise``. Returns ``x`` (n, d), ``y`` (n, m)."""
    n = check_int(n, "n", minimum=1)
    torch.manual_seed(seed)
    x = prior.sample((n,)).double()
    g = torch.Generator().manual_seed(seed)
    pred = model.predict(x.numpy())
    y = pred.sample(1, generator=g)[0].cpu()
    sigma = as_float64(noise, "noise")
    return x, y + sigma * torch.randn(y.shape, generator=g, dtype=torch.float64)

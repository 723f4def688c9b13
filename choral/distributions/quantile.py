"""Quantile predictives: distributions given by quantiles on a grid of levels.

A quantile head predicts, for every output value, quantiles ``q_1 < ... < q_L`` at fixed levels
``tau_1 < ... < tau_L`` (``L >= 2``). The distribution between and beyond them is:

* **inside** ``[q_1, q_L]``: the quantile function is linear between neighbouring knots, so the
  CDF is piecewise linear and the density piecewise constant, ``(tau_{j+1} - tau_j) /
  (q_{j+1} - q_j)`` on segment ``j``;
* **tails**: exponential, ``F(y) = tau_1 exp((y - q_1) / b_lo)`` below ``q_1`` and
  ``1 - F(y) = (1 - tau_L) exp(-(y - q_L) / b_hi)`` above ``q_L``, with the scales
  ``b_lo = tau_1 (q_2 - q_1) / (tau_2 - tau_1)`` and ``b_hi = (1 - tau_L) (q_L - q_{L-1}) /
  (tau_L - tau_{L-1})`` chosen so the density is continuous at ``q_1`` and ``q_L``.

Everything (CDF, quantile, log density, mean, variance) is then in closed form. The ensemble of
``s`` members is combined by **Vincentisation** (quantile averaging, the default): the
predictive's quantile at each level is the mean of the members' quantiles there. Its mean is the
mean of the member means, ``epistemic`` is the spread of the member means and ``aleatoric`` the
mean member variance; unlike a mixture, ``variance`` (the Vincentised distribution's own) is *not*
their sum: averaging quantile functions averages locations away instead of adding their spread.
``combine="mixture"`` mixes the members instead (``F = mean_i F_i``), keeping that spread.

Member tensors carry the member axis first and the level axis last: (s, n, ..., L).

Examples:
    >>> import torch
    >>> taus = torch.tensor([0.25, 0.5, 0.75])
    >>> q = torch.tensor([[[[-1.0, 0.0, 1.0]]], [[[1.0, 2.0, 3.0]]]])  # (s=2, n=1, m=1, L=3)
    >>> pred = QuantilePredictive(taus, q)
    >>> pred
    QuantilePredictive(members=2, levels=3, combine='vincentise', shape=(1, 1))
    >>> pred.quantile(0.5).item(), pred.cdf([[1.5]]).item(), pred.mean.item()
    (1.0, 0.625, 1.0)
    >>> pred.member_means.ravel().tolist(), pred.epistemic.item()
    ([0.0, 2.0], 1.0)
"""

from __future__ import annotations

import math
from typing import Any

import torch

from choral.checks import as_float64, check_choice
from choral.distributions.base import F64, Members, Predictive, bisect, pinball
from choral.errors import DataError

__all__ = ["COMBINES", "QuantilePredictive", "level_grid"]

COMBINES = ("vincentise", "mixture")
"""How members are combined: quantile averaging (Vincentisation) or their mixture."""


def level_grid(spec: int | list[float],
               device: torch.device | str | None = None) -> torch.Tensor:
    """Quantile levels (L,) from a count ``L`` (``j / (L + 1)``, ``j = 1..L``) or a list, on
    ``device`` (default: the CPU).

    >>> level_grid(4).tolist()
    [0.2, 0.4, 0.6, 0.8]
    """
    if isinstance(spec, int) and not isinstance(spec, bool):
        if spec < 2:
            raise DataError(f"quantile_levels must be a count >= 2; got {spec}")
        return torch.arange(1, spec + 1, dtype=F64, device=device) / (spec + 1)
    taus = as_float64(spec, "quantile_levels", device=device)
    if taus.ndim != 1 or len(taus) < 2 or not bool((taus > 0).all() & (taus < 1).all()) \
            or not bool((taus.diff() > 0).all()):
        raise DataError(f"quantile_levels must be >= 2 strictly increasing levels in (0, 1); "
                        f"got {spec!r}")
    return taus


def _scales(taus: torch.Tensor, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Tail scales ``b_lo``, ``b_hi`` (...) of quantiles ``q`` (..., L)."""
    b_lo = taus[0] * (q[..., 1] - q[..., 0]) / (taus[1] - taus[0])
    b_hi = (1 - taus[-1]) * (q[..., -1] - q[..., -2]) / (taus[-1] - taus[-2])
    return b_lo, b_hi


def _knots(taus, q, j):
    """Segment ends (tau_lo, tau_hi, q_lo, q_hi) for segment indices ``j`` (...) in 0..L."""
    lo = (j - 1).clamp(0, len(taus) - 2)
    q_lo = q.gather(-1, lo[..., None])[..., 0]
    q_hi = q.gather(-1, lo[..., None] + 1)[..., 0]
    return taus[lo], taus[lo + 1], q_lo, q_hi


def _expand(q: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    shape = torch.broadcast_shapes(q.shape[:-1], x.shape)
    return q.expand(*shape, q.shape[-1]).contiguous(), x.expand(shape).contiguous()


def quantile_function(taus: torch.Tensor, q: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """The quantile at ``p`` (broadcastable with ``q[..., 0]``) of knots ``q`` (..., L)."""
    q, p = _expand(q, p)
    j = torch.searchsorted(taus, p)
    t_lo, t_hi, q_lo, q_hi = _knots(taus, q, j)
    inner = q_lo + (p - t_lo) / (t_hi - t_lo) * (q_hi - q_lo)
    b_lo, b_hi = _scales(taus, q)
    low = q[..., 0] + b_lo * torch.log(torch.clamp(p / taus[0], max=1.0))
    high = q[..., -1] - b_hi * torch.log(torch.clamp((1 - p) / (1 - taus[-1]), max=1.0))
    return torch.where(j == 0, low, torch.where(j == len(taus), high, inner))


def cdf_function(taus: torch.Tensor, q: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The CDF at ``y`` (broadcastable with ``q[..., 0]``) of knots ``q`` (..., L)."""
    q, y = _expand(q, y)
    j = torch.searchsorted(q, y[..., None])[..., 0]
    t_lo, t_hi, q_lo, q_hi = _knots(taus, q, j)
    inner = t_lo + (y - q_lo) / (q_hi - q_lo) * (t_hi - t_lo)
    b_lo, b_hi = _scales(taus, q)
    low = taus[0] * torch.exp(torch.clamp((y - q[..., 0]) / b_lo, max=0.0))
    high = 1 - (1 - taus[-1]) * torch.exp(torch.clamp(-(y - q[..., -1]) / b_hi, max=0.0))
    return torch.where(j == 0, low, torch.where(j == len(taus), high, inner)).clamp(0.0, 1.0)


def log_density(taus: torch.Tensor, q: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The log density at ``y`` (broadcastable with ``q[..., 0]``) of knots ``q`` (..., L)."""
    q, y = _expand(q, y)
    j = torch.searchsorted(q, y[..., None])[..., 0]
    t_lo, t_hi, q_lo, q_hi = _knots(taus, q, j)
    inner = torch.log((t_hi - t_lo) / (q_hi - q_lo))
    b_lo, b_hi = _scales(taus, q)
    low = torch.log(taus[0] / b_lo) + (y - q[..., 0]) / b_lo
    high = torch.log((1 - taus[-1]) / b_hi) - (y - q[..., -1]) / b_hi
    return torch.where(j == 0, low, torch.where(j == len(taus), high, inner))


def moments(taus: torch.Tensor, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance (...) of knots ``q`` (..., L): uniform segments plus exponential tails.

    Computed about the middle knot ``c`` to avoid cancellation: a segment of mass ``w`` on
    ``[a, b]`` adds ``w (a^2 + ab + b^2) / 3`` to ``E (Y - c)^2``, the lower tail
    ``tau_1 ((q_1 - b_lo)^2 + b_lo^2)`` (``q_1 - b_lo Exp(1)``), the upper tail alike.
    """
    c = q[..., len(taus) // 2 : len(taus) // 2 + 1]
    x = q - c
    b_lo, b_hi = _scales(taus, q)
    dt = taus.diff()
    a, b = x[..., :-1], x[..., 1:]
    lo_t, hi_t = x[..., 0] - b_lo, x[..., -1] + b_hi
    m1 = taus[0] * lo_t + (dt * (a + b) / 2).sum(-1) + (1 - taus[-1]) * hi_t
    m2 = (taus[0] * (lo_t**2 + b_lo**2) + (dt * (a * a + a * b + b * b) / 3).sum(-1)
          + (1 - taus[-1]) * (hi_t**2 + b_hi**2))
    return m1 + c[..., 0], (m2 - m1**2).clamp_min(0.0)


class QuantilePredictive(Predictive):
    """The ensemble of ``s`` members' quantile grids, combined one of two ways.

    ``combine="vincentise"`` (default) averages the member quantiles level by level: one grid
    (``quantiles``), everything in closed form, but the members' disagreement about location is
    averaged away (``variance`` is the averaged distribution's own, not aleatoric + epistemic).
    ``combine="mixture"`` mixes the members with equal weights, ``F = mean_i F_i``, like
    :class:`~choral.distributions.GaussianMixture`: ``variance`` = aleatoric + epistemic, and
    quantiles are found by bisection in the exact bracket ``[min_i q_i(p), max_i q_i(p)]``.

    Args:
        levels: quantile levels (L,), strictly increasing in (0, 1), ``L >= 2``.
        member_quantiles: member quantiles (s, n, ..., L), strictly increasing on the last axis.
        combine: ``"vincentise"`` or ``"mixture"``.

    Examples:
        >>> q = torch.tensor([[[-1.0, 0.0, 1.0]], [[1.0, 2.0, 3.0]]])  # (s=2, n=1, L=3)
        >>> mix = QuantilePredictive([0.25, 0.5, 0.75], q, combine="mixture")
        >>> round(mix.quantile(0.5).item(), 9), mix.cdf([1.0]).item(), mix.mean.item()
        (1.0, 0.5, 1.0)
        >>> round(mix.variance.item() - mix.aleatoric.item(), 12), mix.epistemic.item()
        (1.0, 1.0)
    """

    def __init__(self, levels: Any, member_quantiles: Any, combine: str = "vincentise") -> None:
        mq = as_float64(member_quantiles, "member_quantiles")  # its device is the predictive's
        taus = level_grid(levels.tolist() if isinstance(levels, torch.Tensor) else levels,
                          device=mq.device)
        if mq.ndim < 3 or mq.shape[-1] != len(taus):
            raise DataError(f"member_quantiles must have shape (s, n, ..., L) with L = "
                            f"{len(taus)} levels last; got {tuple(mq.shape)}")
        if not bool((mq.diff(dim=-1) > 0).all()):
            raise DataError("member_quantiles must be strictly increasing along the levels "
                            "(last) axis; got crossing or tied quantiles")
        check_choice(combine, "combine", COMBINES)
        self.levels, self._mq, self.combine = taus, mq.clone(), combine
        self._q = self._mq.mean(0)

    @property
    def shape(self) -> torch.Size:
        """The per-sample shape (n, ...) of every summary and score."""
        return self._q.shape[:-1]

    @property
    def device(self) -> torch.device:
        """The device of the member quantiles (given), where every tensor lives."""
        return self._mq.device

    @property
    def num_members(self) -> int:
        """The number of members ``s``."""
        return self._mq.shape[0]

    @property
    def member_quantiles(self) -> torch.Tensor:
        """Member quantiles (s, n, ..., L)."""
        return self._mq

    @property
    def quantiles(self) -> torch.Tensor:
        """The member-averaged quantiles (n, ..., L) at ``levels`` (the Vincentised grid)."""
        return self._q

    @property
    def _mixed(self) -> bool:
        return self.combine == "mixture"

    @property
    def mean(self) -> torch.Tensor:
        """Mean (n, ...), the mean of the member means either way (the mean is linear in q)."""
        return self.member_means.mean(0) if self._mixed else moments(self.levels, self._q)[0]

    @property
    def variance(self) -> torch.Tensor:
        """Variance (n, ...): aleatoric + epistemic (mixture), or the Vincentised grid's own."""
        if self._mixed:
            return self.aleatoric + self.epistemic
        return moments(self.levels, self._q)[1]

    def members(self) -> Members:
        """Member means and variances (s, n, ...) (each member's own quantile distribution)
        and equal weights (s,)."""
        mu, var = moments(self.levels, self._mq)
        return Members(mu, var, torch.full((self.num_members,), 1.0 / self.num_members,
                                           dtype=F64, device=self.device))

    @property
    def aleatoric(self) -> torch.Tensor:
        """Mean member variance (n, ...)."""
        return moments(self.levels, self._mq)[1].mean(0)

    @property
    def epistemic(self) -> torch.Tensor:
        """Spread of the member means (n, ...): ``mean_i (mu_i - mean)^2``."""
        mu = self.member_means
        return ((mu - mu.mean(0)) ** 2).mean(0)

    def log_prob(self, y: Any, joint: bool = False) -> torch.Tensor:
        """Log density (n, ...) at ``y`` (n, ...); with ``joint``, of all output values of
        each sample (n,): member-coherent for the mixture (``logsumexp_i [log(1/s) + sum_j log
        p_i(y_j)]``), the sum over values for the Vincentised grid (one distribution, no
        members to keep)."""
        y = self._y(y)
        if not self._mixed:
            logs = log_density(self.levels, self._q, y)
            return self._sum_outputs(logs) if joint else logs
        logs = log_density(self.levels, self._mq, y)  # (s, n, ...)
        if joint:
            logs = self._sum_outputs(logs)
        return torch.logsumexp(logs, 0) - math.log(self.num_members)

    def cdf(self, y: Any) -> torch.Tensor:
        """CDF (n, ...) at ``y`` (n, ...)."""
        return self._cdf(self._y(y))

    def _cdf(self, y: torch.Tensor) -> torch.Tensor:
        """CDF at ``y`` (..., n, ...) with any leading axes."""
        if not self._mixed:
            return cdf_function(self.levels, self._q, y)
        lead = y.ndim - len(self.shape)
        y = y.reshape(*y.shape[:lead], 1, *y.shape[lead:])
        return cdf_function(self.levels, self._mq, y).mean(lead).clamp(0.0, 1.0)

    def _quantile(self, p: torch.Tensor) -> torch.Tensor:
        """Quantile at ``p`` (..., n, ...) with any leading axes."""
        if not self._mixed:
            return quantile_function(self.levels, self._q, p)
        lead = p.ndim - len(self.shape)
        comp = quantile_function(self.levels, self._mq,
                                 p.reshape(*p.shape[:lead], 1, *p.shape[lead:]))
        lo, hi = comp.min(lead).values, comp.max(lead).values
        return bisect(self._cdf, p, lo, hi, self.stddev)

    def quantile(self, p: Any) -> torch.Tensor:
        """Quantile (n, ...) at ``p`` (a float or broadcastable to (n, ...))."""
        return self._quantile(self._p(p))

    def crps(self, y: Any, levels: int = 199) -> torch.Tensor:
        """CRPS (n, ...): the midpoint rule of :meth:`Predictive.crps`, all levels at once."""
        y = self._y(y)
        taus = (torch.arange(levels, dtype=F64, device=self.device) + 0.5) / levels
        taus = taus.reshape(-1, *(1,) * y.ndim)
        step = max(1, 2**22 // (self._mq.numel() if self._mixed else self._q.numel()))
        total = torch.zeros(self.shape, dtype=F64, device=self.device)
        for i in range(0, levels, step):
            tau = taus[i:i + step]
            diff = y - self._quantile(tau.expand(-1, *self.shape))
            total += pinball(diff, tau).sum(0)
        return 2.0 * total / levels

    def sample(self, k: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``k`` draws (k, n, ...) by inversion, ``quantile(U)`` with ``U`` uniform per value.

        The mixture picks one member per draw and sample, uniformly, and inverts that member's
        quantiles for all its output values (member-coherent); the Vincentised grid is one
        distribution per value and draws every value independently.
        """
        k = self._draws(k)
        rng, here = self._draw_device(generator), self.device  # draw there, compute here
        u = torch.rand((k, *self.shape), generator=generator, dtype=F64, device=rng).to(here)
        u = u.clamp(1e-300, 1 - 1e-16)
        if not self._mixed:
            return quantile_function(self.levels, self._q, u)
        n = self.shape[0]
        picked = torch.randint(self.num_members, (k, n), generator=generator, device=rng)
        q = self._mq[picked.to(here), torch.arange(n, device=here)]  # (k, n, ..., L)
        return quantile_function(self.levels, q, u)

    def affine(self, loc: Any, scale: Any) -> QuantilePredictive:
        """The distribution of ``scale * Y + loc`` (``scale > 0``, broadcastable to (n, ...))."""
        loc, scale = self._loc_scale(loc, scale)
        return QuantilePredictive(self.levels, self._mq * scale[..., None] + loc[..., None],
                                  self.combine)

    def select(self, idx: Any, flat: bool = False) -> QuantilePredictive:
        """The predictive of samples ``idx`` along n, or (``flat``) of flat target values (k,)."""
        s, levels = self.num_members, len(self.levels)
        mq = self._mq.reshape(s, -1, levels) if flat else self._mq
        return QuantilePredictive(self.levels, mq[:, idx], self.combine)

    def __repr__(self) -> str:
        return (f"QuantilePredictive(members={self.num_members}, levels={len(self.levels)}, "
                f"combine={self.combine!r}, shape={tuple(self.shape)})")

"""The contract of every predictive distribution (:class:`Predictive`) and its per-member view.

A predictive describes ``n`` samples, each with output values of shape ``...`` (``m`` for
vectors, ``(c, *grid)`` for fields), as the ensemble's combination of ``s`` members. Everything
per sample is (n, ...); member tensors carry the member axis first, (s, n, ...).

The contract, and all that acquisitions, metrics, calibration and inference may use:

- summaries: ``shape``, ``mean``, ``variance``, ``aleatoric``, ``epistemic``, ``stddev``;
- per value: ``log_prob(y)``, ``cdf(y)``, ``quantile(p)``, ``interval(level)``, ``crps(y)``;
- per sample: ``log_prob(y, joint=True)``, the member-coherent log-likelihood of all output
  values of each sample, ``logsumexp_i [log w_i + sum_j log p_i(y_j)]`` (n,);
- ``sample(k)``: ``k`` draws (k, n, ...), each one member's draw for all output values of a
  sample (a sampled field is a function some member believes, never a patchwork);
- ``members()``: the per-member view (:class:`Members`): member means and variances (s, n, ...)
  and weights (s,), whose mixture moments are the predictive's ``mean``, ``aleatoric`` and
  ``epistemic``;
- ``affine(loc, scale)`` and ``select(idx)``: the predictive of ``scale * Y + loc`` and of a
  subset of samples;
- ``device``: where its tensors live. Everything it returns is there; arguments (arrays,
  lists or tensors on another device) are moved there.

Examples:
    >>> import torch
    >>> view = Members(torch.tensor([[[0.0]], [[2.0]]]), torch.ones(2, 1, 1),
    ...                torch.tensor([0.5, 0.5]))
    >>> view.mean.item(), view.aleatoric.item(), view.epistemic.item()
    (1.0, 1.0, 1.0)
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import Tensor

from choral.checks import as_float64, check_int
from choral.errors import DataError

__all__ = ["Members", "Predictive", "bisect", "pinball"]

F64 = torch.float64


class Members(NamedTuple):
    """The per-member view of a predictive: member means and variances (s, n, ...) and member
    weights (s,), positive and summing to 1.

    Its mixture moments (:attr:`mean`, :attr:`aleatoric`, :attr:`epistemic`) are the
    predictive's own, so an acquisition that conditions or reweights the members stays
    consistent with the predictive it came from.
    """

    means: Tensor
    variances: Tensor
    weights: Tensor

    @property
    def w(self) -> Tensor:
        """The weights shaped (s, 1, ...) to broadcast over the means."""
        return self.weights.reshape((-1,) + (1,) * (self.means.ndim - 1))

    @property
    def mean(self) -> Tensor:
        """Mixture mean (n, ...): ``sum_i w_i mu_i``."""
        return (self.w * self.means).sum(0)

    @property
    def aleatoric(self) -> Tensor:
        """Mean member variance (n, ...): ``sum_i w_i var_i``."""
        return (self.w * self.variances).sum(0)

    @property
    def epistemic(self) -> Tensor:
        """Spread of the member means (n, ...): ``sum_i w_i (mu_i - mean)^2``."""
        return (self.w * (self.means - self.mean) ** 2).sum(0)

    def flat(self) -> Members:
        """The same members with the output values flattened: (s, n, p)."""
        s, n = self.means.shape[:2]
        return Members(self.means.reshape(s, n, -1), self.variances.reshape(s, n, -1),
                       self.weights)


class Predictive(abc.ABC):
    """The predictive distribution of an ensemble at ``n`` samples (see the module).

    Subclasses: :class:`~choral.distributions.GaussianMixture` (Gaussian and MDN heads),
    :class:`~choral.distributions.QuantilePredictive` (quantile head), and the recalibrated
    predictives of :mod:`choral.evaluation.calibration`. Quantiles, intervals and the CRPS have
    generic (numerical) defaults that subclasses with closed forms override.
    """

    # -- summaries ------------------------------------------------------------------------------
    @property
    @abc.abstractmethod
    def shape(self) -> torch.Size:
        """The per-sample shape (n, ...) of every summary and score."""

    @property
    @abc.abstractmethod
    def mean(self) -> Tensor:
        """Mean (n, ...)."""

    @property
    @abc.abstractmethod
    def variance(self) -> Tensor:
        """Variance (n, ...)."""

    @property
    @abc.abstractmethod
    def aleatoric(self) -> Tensor:
        """Mean member variance (n, ...)."""

    @property
    @abc.abstractmethod
    def epistemic(self) -> Tensor:
        """Spread of the member means (n, ...)."""

    @property
    def device(self) -> torch.device:
        """The device of every tensor the predictive holds and returns (subclasses answer
        without computing the mean)."""
        return self.mean.device

    @property
    def stddev(self) -> Tensor:
        """Standard deviation (n, ...)."""
        return torch.sqrt(self.variance)

    @abc.abstractmethod
    def members(self) -> Members:
        """The per-member view: means, variances (s, n, ...) and weights (s,)."""

    @property
    def member_means(self) -> Tensor:
        """Member means (s, n, ...)."""
        return self.members().means

    @property
    def num_members(self) -> int:
        """The number of members ``s``."""
        return self.members().means.shape[0]

    # -- distribution functions -----------------------------------------------------------------
    @abc.abstractmethod
    def log_prob(self, y: Any, joint: bool = False) -> Tensor:
        """Log density (n, ...) at ``y`` (n, ...), or with ``joint`` the member-coherent log
        density of all output values of each sample (n,)."""

    @abc.abstractmethod
    def cdf(self, y: Any) -> Tensor:
        """CDF (n, ...) at ``y`` (n, ...)."""

    @abc.abstractmethod
    def sample(self, k: int, generator: torch.Generator | None = None) -> Tensor:
        """``k`` member-coherent draws (k, n, ...) on the predictive's device.

        With a ``generator``, the draws are made on its device and then moved: a CPU generator
        gives the same draws whatever the predictive's device."""

    @abc.abstractmethod
    def affine(self, loc: Any, scale: Any) -> Predictive:
        """The distribution of ``scale * Y + loc`` (``scale > 0``, broadcastable to (n, ...))."""

    @abc.abstractmethod
    def select(self, idx: Any, flat: bool = False) -> Predictive:
        """The predictive of samples ``idx`` along n, or (``flat``) of flat output values (k,)
        treated as samples with no outputs."""

    def quantile(self, p: Any) -> Tensor:
        """Quantile (n, ...) at probability ``p`` (a float or broadcastable to (n, ...)).

        Generic: vectorised bisection of ``cdf`` on every output value at once (scipy's
        root finders are scalar), starting from a bracket that provably contains the root.
        """
        p = self._p(p)
        lo, hi = self._bracket(p)
        return bisect(self.cdf, p, lo, hi, self.stddev)

    def interval(self, level: float = 0.9) -> tuple[Tensor, Tensor]:
        """Central interval (lower, upper), each (n, ...): quantiles (1 -+ level) / 2."""
        if not isinstance(level, int | float) or not 0.0 < level < 1.0:
            raise DataError(f"level must be a float in (0, 1); got {level!r}")
        return self.quantile((1.0 - level) / 2.0), self.quantile((1.0 + level) / 2.0)

    def crps(self, y: Any, levels: int = 199) -> Tensor:
        """CRPS (n, ...) at ``y``: ``2 * integral_0^1 pinball_tau(y - q(tau)) dtau``.

        Generic: the midpoint rule on ``levels`` quantile levels (error O(1/levels^2) inside,
        plus the neglected tails); closed forms override this.
        """
        y = self._y(y)
        total = torch.zeros(self.shape, dtype=F64, device=self.device)
        for tau in ((j + 0.5) / levels for j in range(levels)):
            total += pinball(y - self.quantile(tau), tau)
        return 2.0 * total / levels

    # -- argument checks shared by subclasses ---------------------------------------------------
    def _y(self, y: Any, name: str = "y") -> Tensor:
        """``y`` as float64 on the predictive's device, broadcastable to exactly (n, ...), or a
        DataError naming ``name``."""
        y = as_float64(y, name, device=self.device)
        try:
            ok = torch.broadcast_shapes(y.shape, self.shape) == self.shape
        except RuntimeError:
            ok = False
        if not ok:
            raise DataError(f"{name} must have the predictive's shape {tuple(self.shape)} "
                            f"(n, ...); got {tuple(y.shape)}")
        return y

    def _loc_scale(self, loc: Any, scale: Any) -> tuple[Tensor, Tensor]:
        """Validated ``loc`` and ``scale > 0`` of :meth:`affine`, broadcastable to (n, ...)."""
        loc, scale = self._y(loc, "loc"), self._y(scale, "scale")
        if not bool((scale > 0).all()):
            raise DataError(f"scale must be > 0; got minimum {scale.min().item():.6g}")
        return loc, scale

    @staticmethod
    def _draws(k: Any) -> int:
        return check_int(k, "k", minimum=1)  # the number of draws

    def _draw_device(self, generator: torch.Generator | None) -> torch.device:
        """Where :meth:`sample` draws: on the generator's device, else on the predictive's."""
        return self.device if generator is None else generator.device

    def _p(self, p: Any) -> Tensor:
        p = self._y(p, "p")
        if not bool(((p > 0) & (p < 1)).all()):
            raise DataError("p must lie strictly inside (0, 1); got values outside")
        return p.expand(self.shape)

    def _bracket(self, p: Tensor) -> tuple[Tensor, Tensor]:
        """``lo``, ``hi`` (n, ...) with ``cdf(lo) <= p <= cdf(hi)``: mean -+ k std, k doubling."""
        sd = self.stddev.clamp_min(1e-300)
        k = torch.ones_like(sd)
        for _ in range(60):
            lo, hi = self.mean - k * sd, self.mean + k * sd
            wider = (self.cdf(lo) > p) | (self.cdf(hi) < p)
            if not bool(wider.any()):
                break
            k = torch.where(wider, 2 * k, k)
        return lo, hi

    def _sum_outputs(self, values: Tensor) -> Tensor:
        """Sum (..., n, *outputs) over the output axes of a sample: -> (..., n)."""
        outputs = len(self.shape) - 1
        return values.sum(tuple(range(-outputs, 0))) if outputs else values


def pinball(diff: Tensor, tau: Tensor | float) -> Tensor:
    """The pinball (quantile) loss at level ``tau`` of residuals ``diff = y - q``.

    >>> [round(v, 6) for v in pinball(torch.tensor([1.0, -1.0]), 0.9).tolist()]
    [0.9, 0.1]
    """
    return torch.maximum(tau * diff, (tau - 1) * diff)


def bisect(cdf: Callable[[Tensor], Tensor], p: Tensor, lo: Tensor, hi: Tensor,
           scale: Tensor, pdf: Callable[[Tensor], Tensor] | None = None) -> Tensor:
    """Solve ``cdf(x) = p`` elementwise in the bracket [lo, hi] (every output value at once).

    Written by hand because it must run on every output value at once (scipy's root finders
    are scalar). Each step evaluates ``cdf`` at the current point and shrinks the bracket to
    the side that holds the root. The next point is the Newton step ``x - (F(x) - p) / pdf(x)``
    when ``pdf`` is given, that step lands inside the bracket and it is at most half the step
    before it; else it is the bracket's midpoint (Numerical Recipes' ``rtsafe``): Newton's
    quadratic convergence where the CDF is smooth, bisection's guarantee where it is flat or
    the step overshoots. A value stops, and stays, when its bracket or its last step is below
    1e-12 of its scale; 200 steps bound the work (80 bisections reach float64 resolution).

    >>> x = bisect(torch.special.ndtr, torch.tensor([0.5]), torch.tensor([-5.0]),
    ...            torch.tensor([5.0]), torch.tensor([1.0]))
    >>> abs(x.item()) < 1e-6
    True
    >>> import math
    >>> pdf = lambda x: torch.exp(-0.5 * x**2) / math.sqrt(2 * math.pi)
    >>> p = torch.tensor([0.975], dtype=torch.float64)
    >>> x = bisect(torch.special.ndtr, p, torch.zeros(1, dtype=torch.float64),
    ...            torch.full((1,), 5.0, dtype=torch.float64), torch.ones(1), pdf)
    >>> abs(x.item() - 1.959963984540054) < 1e-10
    True
    """
    tol = 1e-12 * torch.maximum(torch.maximum(lo.abs(), hi.abs()), scale)
    x, before = 0.5 * (lo + hi), hi - lo  # ``before``: the step before the last one
    done = torch.zeros_like(x, dtype=torch.bool)
    for _ in range(200):
        gap = cdf(x) - p
        lo, hi = torch.where(gap < 0, x, lo), torch.where(gap < 0, hi, x)
        nxt = 0.5 * (lo + hi)
        if pdf is not None:
            newton = x - gap / pdf(x)
            ok = (newton >= lo) & (newton <= hi) & ((newton - x).abs() <= 0.5 * before)
            nxt = torch.where(ok, newton, nxt)
        step = (nxt - x).abs()
        done = done | ((hi - lo) <= tol) | (step <= tol)  # a finished value stays where it is
        x, before = torch.where(done, x, nxt), step
        if bool(done.all()):
            break
    return x

"""Post-hoc recalibration of any :class:`~choral.distributions.Predictive` on a held-out set.

Five calibrators (:data:`METHODS`), each fitted on a predictive (n, ...) and the observed targets
y (n, ...) of a calibration set, each applied to new predictives of the same per-sample shape,
each saved as one JSON object (``calibration.json`` in a model directory):

- :class:`Scale`: one factor ``c`` per output (per channel for fields) that stretches the
  predictive about its mean, ``Y' = m + c (Y - m)``, by moment matching. For a mixture the
  component means become ``m + c (mu_i - m)`` and the variances ``c^2 var_i``; written with the
  contract's ``affine``.
- :class:`PitScale`: the same stretch per output value, with the factor that makes the
  calibration PIT most uniform (``Surrogate.fit``'s default for Gaussian and mixture-density
  members).
- :class:`Isotonic`: quantile recalibration (Kuleshov et al. 2018): ``F'(y) = R(F(y))`` with
  ``R`` the (isotonic) empirical CDF of the calibration PIT values, per output (per channel).
- :class:`Conformal`: split-conformal intervals ``mean -+ q std`` with the score
  ``|y - mean| / std`` and the finite-sample quantile ``ceil((n + 1) level)``-th smallest score,
  per output value (per output for vectors, per cell for fields).
- :class:`CQR`: conformalised quantile regression, the predictive's own intervals widened by
  the same kind of quantile (the default for the quantile head).

Per-sample shapes: vectors (n, m) (parameters (m,)); fields (n, c, *grid) (``Scale`` and
``Isotonic`` per channel (c,), ``PitScale``, ``Conformal`` and ``CQR`` per cell (c, *grid)).
:func:`cross_fit` scores a method on held-out folds of a calibration set, before and after.

Devices: a calibrator's parameters are tensors on the device of the predictive it was fitted on
(the CPU when read by :func:`calibrator_from_dict`); applied to a predictive on another device,
they are moved to the predictive's. ``to_dict`` gives plain lists whatever the device.

Examples:
    >>> import torch
    >>> from choral.distributions import GaussianMixture
    >>> g = torch.Generator().manual_seed(0)
    >>> y = 2.0 * torch.randn(4000, 1, generator=g, dtype=torch.float64)  # true sd 2, predicted 1
    >>> pred = GaussianMixture(torch.zeros(1, 4000, 1), torch.ones(1, 4000, 1))
    >>> cal = fit_calibrator("scale", pred, y)
    >>> round(cal.factor.item(), 1)
    2.0
    >>> calibrator_from_dict(cal.to_dict()).apply(pred).stddev[0].tolist()  # doctest: +ELLIPSIS
    [1.99...]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cached_property
from typing import Any

import torch

from choral.checks import check_choice, check_int
from choral.distributions import Members, Predictive
from choral.errors import DataError, ModelFileError
from choral.evaluation.metrics import check_targets, coverage, nll, pit_calibration_errors

__all__ = ["CQR", "METHODS", "Calibrator", "Conformal", "ConformalPredictive", "Isotonic",
           "PitScale", "Recalibrated", "Scale", "calibrator_from_dict", "cross_fit",
           "fit_calibrator", "scale_factor"]

_F64 = torch.float64
_EPS = 1e-12


def _targets(pred: Predictive, y: Any) -> torch.Tensor:
    """``y`` as float64 of exactly the predictive's shape (n, ...) with n >= 2, or a DataError."""
    y = check_targets(pred, y)
    if y.shape[0] < 2:
        raise DataError(f"calibration needs at least 2 samples; got {y.shape[0]}")
    return y


def _columns(t: torch.Tensor) -> torch.Tensor:
    """(n, c, *grid) or (n, m) -> (c, N): one row per output/channel, samples and cells pooled."""
    return t.movedim(1, 0).reshape(t.shape[1], -1)


def _uncolumns(t: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Inverse of :func:`_columns` for a tensor of ``shape`` (n, c, *grid)."""
    moved = (shape[1], shape[0], *shape[2:])
    return t.reshape(moved).movedim(0, 1)


def _per_channel(values: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Channel parameters (c,) shaped (c, 1, ..., 1) to broadcast against (n, c, *grid)."""
    return values.reshape((-1,) + (1,) * (len(shape) - 2))


def _check_shape(name: str, got: Sequence[int], sample_shape: Sequence[int],
                 per_cell: bool) -> None:
    """``got`` must be the per-sample shape (per cell) or its first axis (per channel)."""
    want = tuple(sample_shape) if per_cell else (sample_shape[0],)
    if tuple(got) != want:
        raise DataError(f"the {name} calibration was fitted for outputs of shape {tuple(got)}; "
                        f"this predictive has {want}")


class Scale:
    """Variance scaling: ``Y' = m + c (Y - m)`` with one factor ``c`` per output (channel).

    Fitted by moment matching, ``c^2 = mean((y - m)^2 / var)`` over the calibration set (the
    maximum-likelihood factor when the predictive is Gaussian), so the scaled predictive's
    standardised residuals have unit mean square.

    Args:
        factor: the factors ``c`` (c,), all > 0.
    """

    method = "scale"
    per_cell = False
    """One factor per output or channel (c,); per output value (c, *grid) when True."""

    def __init__(self, factor: Any) -> None:
        self.factor = torch.as_tensor(factor, dtype=_F64)
        self.factor = self.factor if self.per_cell else self.factor.reshape(-1)
        if not bool((self.factor > 0).all()) or not bool(torch.isfinite(self.factor).all()):
            raise DataError(f"scale factors must be finite and > 0; got {self.factor.tolist()}")

    @classmethod
    def fit(cls, pred: Predictive, y: Any) -> Scale:
        y = _targets(pred, y)
        z2 = (y - pred.mean) ** 2 / pred.variance
        return cls(torch.sqrt(_columns(z2).mean(1)).clamp_min(_EPS))

    def spread(self, sample_shape: Sequence[int]) -> torch.Tensor:
        """The factors shaped to broadcast against (n, *sample_shape)."""
        _check_shape(self.method, self.factor.shape, sample_shape, self.per_cell)
        return self.factor if self.per_cell else _per_channel(self.factor, (0, *sample_shape))

    def apply(self, pred: Predictive) -> Predictive:
        c = self.spread(pred.shape[1:]).to(pred.device)
        return pred.affine(pred.mean * (1.0 - c), c)

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "factor": self.factor.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Scale:
        return cls(d["factor"])


COARSE = 10
""":class:`PitScale` first tries every ``COARSE``-th factor of its grid."""


class PitScale(Scale):
    """Variance scaling per output value with the factor that makes its PIT most uniform.

    The factor ``c`` of each output value (each output of a vector, each cell of a field: the
    error of a field varies from cell to cell, e.g. it vanishes on a fixed boundary) minimises
    the calibration error ``mean_j |#{F_c(y_i) <= p_j} / n - p_j|`` (``p_j = j / 100``) over
    the ``n`` calibration samples of the scaled predictive ``F_c(y) = F(m + (y - m) / c)``,
    searched on a grid of 401 factors from 1/50 to 50 (evenly in ``log c``): every tenth factor
    first, then the 19 around the best of them (the error is piecewise constant in ``c`` and
    close to unimodal: on the synthetic cases of ``tests/evaluation/test_calibration.py`` it
    reaches the full search's smallest error for every value). Unlike moment
    matching (:class:`Scale`), a few far-out calibration targets (heavy tails) move it little:
    it matches the predictive's quantiles to the targets', not its second moment.

    Args:
        factor: the factors ``c`` (the per-sample shape: (m,) or (c, *grid)), all > 0.
    """

    method = "pit_scale"
    per_cell = True
    grid = torch.logspace(math.log10(1 / 50), math.log10(50), 401, dtype=_F64)
    """The factors searched: 401 from 1/50 to 50, evenly in ``log c``, coarse to fine."""

    @classmethod
    def fit(cls, pred: Predictive, y: Any) -> PitScale:
        y, grid = _targets(pred, y), cls.grid.to(pred.device)
        m = pred.mean
        r = y - m

        def errors(factors: list[torch.Tensor]) -> torch.Tensor:  # (len(factors), values)
            return torch.stack([  # the PIT of the scaled predictive, F(m + (y - m) / c)
                pit_calibration_errors(pred.cdf(m + r / c).flatten(1).T) for c in factors])

        # coarse to fine: every COARSE-th factor, then each value's own window of the
        # 2 * COARSE - 1 factors around its best one (60 CDFs instead of 401)
        coarse = torch.arange(0, len(grid), COARSE, device=grid.device)
        best = coarse[errors([grid[i] for i in coarse]).argmin(0)]
        window = (best + torch.arange(1 - COARSE, COARSE, device=grid.device)[:, None]
                  ).clamp(0, len(grid) - 1)  # (2 COARSE - 1, values)
        shape = pred.shape[1:]
        chosen = window.gather(0, errors([grid[w].reshape(shape) for w in window]
                                         ).argmin(0, keepdim=True))[0]
        return cls(grid[chosen].reshape(shape))


def _interp(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Piecewise-linear ``f(x)`` and its slope, row by row: x (c, N), knots xp, fp (c, K)
    (moved to the device of ``x``)."""
    xp, fp, k = xp.to(x.device), fp.to(x.device), xp.shape[1]
    hi = torch.searchsorted(xp.contiguous(), x.contiguous(), right=True).clamp(1, k - 1)
    x0, x1 = xp.gather(1, hi - 1), xp.gather(1, hi)
    f0, f1 = fp.gather(1, hi - 1), fp.gather(1, hi)
    dx = (x1 - x0).clamp_min(_EPS)
    t = ((x - x0) / dx).clamp(0.0, 1.0)
    return f0 + t * (f1 - f0), (f1 - f0) / dx


class Isotonic:
    """Quantile recalibration: ``F'(y) = R(F(y))``, ``R`` the calibration PIT's CDF per output.

    The isotonic regression of the empirical CDF of the PIT values ``u = F(y)`` on ``u``
    (Kuleshov et al. 2018) is that empirical CDF itself (it is already monotone), so no solver is
    needed. ``R`` is stored as ``K + 2`` knots per output: ``R(0) = 0``, ``R(1) = 1`` and
    ``R(x_k) = k / (K + 1)`` at the PIT's empirical quantiles ``x_k``; between knots ``R`` is
    linear, hence continuous and strictly increasing, so ``R^{-1}`` exists and the density
    ``f'(y) = R'(F(y)) f(y)`` (chain rule) is piecewise a constant multiple of the base density.
    A PIT that rounds to exactly 0 or 1 (a badly overconfident base) carries no information
    about how far out ``y`` fell: ``R`` cannot widen tails the base has cut off. Few knots
    (``K = ceil(sqrt(N))`` by default) keep ``R'`` and hence the density smooth: with one knot
    per calibration value the NLL on UCI test splits was 0.1-0.4 nats worse than with ~10-20.

    Args:
        knots: ``x_k`` (c, K + 2), each row nondecreasing from 0 to 1.
    """

    method = "isotonic"

    def __init__(self, knots: Any) -> None:
        self.knots = torch.as_tensor(knots, dtype=_F64)
        if self.knots.ndim != 2 or self.knots.shape[1] < 2:
            raise DataError(f"isotonic knots must be (c, K) with K >= 2; got "
                            f"{tuple(self.knots.shape)}")
        k = self.knots.shape[1]
        levels = torch.arange(k, dtype=_F64, device=self.knots.device) / (k - 1)
        self.levels = levels.expand_as(self.knots)

    @classmethod
    def fit(cls, pred: Predictive, y: Any, n_knots: int | None = None) -> Isotonic:
        """Fit on pred (n, ...) and y (n, ...); ``n_knots`` inner knots per output, by default
        ``ceil(sqrt(N))`` for N calibration values per output (at most 1000)."""
        u = torch.sort(_columns(pred.cdf(_targets(pred, y))), dim=1).values  # (c, N)
        if n_knots is not None:
            check_int(n_knots, "n_knots", minimum=1)
        k = min(u.shape[1], n_knots or min(1000, math.ceil(math.sqrt(u.shape[1]))))
        p = torch.arange(1, k + 1, dtype=_F64, device=u.device) / (k + 1)
        ranks = torch.linspace(0, 1, u.shape[1], dtype=_F64, device=u.device).expand_as(u)
        inner = _interp(p.expand(len(u), k), ranks, u)[0]  # empirical quantiles (c, k)
        zero = torch.zeros(len(u), 1, dtype=_F64, device=u.device)
        return cls(torch.cat([zero, inner, zero + 1.0], dim=1))

    def recalibrate(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``R(u)`` and ``R'(u)`` for PIT values ``u`` (n, c, *grid)."""
        r, slope = _interp(_columns(u), self.knots, self.levels)
        return _uncolumns(r, u.shape), _uncolumns(slope, u.shape)

    def inverse(self, p: torch.Tensor) -> torch.Tensor:
        """``R^{-1}(p)`` for probabilities ``p`` (n, c, *grid)."""
        r, _ = _interp(_columns(p), self.levels.contiguous(), self.knots)
        return _uncolumns(r, p.shape)

    def apply(self, pred: Predictive) -> Recalibrated:
        _check_shape("isotonic", self.knots.shape[:1], pred.shape[1:], per_cell=False)
        return Recalibrated(pred, self)

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "knots": self.knots.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Isotonic:
        return cls(d["knots"])


class _Wrapped(Predictive):
    """A predictive that delegates everything to ``base``; subclasses override what changes."""

    def __init__(self, base: Predictive, calibrator: Any) -> None:
        self.base, self.calibrator = base, calibrator

    def rebase(self, base: Predictive) -> _Wrapped:
        """The same calibration on another base predictive (e.g. a subset of its samples)."""
        return type(self)(base, self.calibrator)

    def select(self, idx: Any, flat: bool = False) -> _Wrapped:
        return self.rebase(self.base.select(idx, flat))

    def affine(self, loc: Any, scale: Any) -> _Wrapped:
        """The same calibration on ``scale * Y + loc`` (``scale > 0``): PIT values and conformal
        scores ``|y - mean| / std`` are unchanged by it."""
        return self.rebase(self.base.affine(loc, scale))

    shape = property(lambda self: self.base.shape)
    device = property(lambda self: self.base.device)
    mean = property(lambda self: self.base.mean)
    variance = property(lambda self: self.base.variance)
    aleatoric = property(lambda self: self.base.aleatoric)
    epistemic = property(lambda self: self.base.epistemic)

    def members(self) -> Members:
        return self.base.members()

    def log_prob(self, y: Any, joint: bool = False) -> torch.Tensor:
        return self.base.log_prob(y, joint)

    def cdf(self, y: Any) -> torch.Tensor:
        return self.base.cdf(y)

    def quantile(self, p: Any) -> torch.Tensor:
        return self.base.quantile(p)

    def sample(self, k: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.base.sample(k, generator)

    def crps(self, y: Any, levels: int = 199) -> torch.Tensor:
        return self.base.crps(y, levels)


class Recalibrated(_Wrapped):
    """The base predictive with its CDF passed through ``R``: ``F'(y) = R(F(y))``.

    Per value: ``quantile(p) = F^{-1}(R^{-1}(p))``; ``log_prob(y) = log f(y) + log R'(F(y))``;
    the mean and variance are the midpoint rule on ``levels`` quantiles (tails beyond
    ``1/(2 levels)`` are neglected), computed once; ``aleatoric`` and ``epistemic`` are the
    base's, scaled by the ratio ``r`` of the variances; the per-member view spreads the base's
    members about the new mean by ``sqrt(r)`` and scales their variances by ``r``, so its mixture
    moments are these. The CRPS uses the generic quantile rule.

    Jointly, every output value is moved by the monotone map ``T(y) = F^{-1}(R^{-1}(F(y)))``,
    which carries the base's marginals to the recalibrated ones and keeps the base's dependence
    between values: ``sample`` maps member-coherent base draws through ``T``, and the joint log
    density is the base's at ``z = T^{-1}(y) = F^{-1}(R(F(y)))`` plus the log Jacobian
    ``sum_j [log R'(F(y_j)) + log f(y_j) - log f(z_j)]`` (the per-value densities ``f``).

    Examples:
        >>> import torch
        >>> from choral.distributions import GaussianMixture
        >>> base = GaussianMixture(torch.zeros(1, 2, 1), torch.ones(1, 2, 1))
        >>> r = Recalibrated(base, Isotonic([[0.0, 0.5, 1.0]]))  # the identity map
        >>> round(r.cdf(torch.tensor([[1.0], [0.0]]))[0].item(), 6), round(base.cdf(
        ...     torch.tensor([[1.0], [0.0]]))[0].item(), 6)
        (0.841345, 0.841345)
    """

    levels = 64

    def cdf(self, y: Any) -> torch.Tensor:
        return self.calibrator.recalibrate(self.base.cdf(y))[0]

    def log_prob(self, y: Any, joint: bool = False) -> torch.Tensor:
        r, slope = self.calibrator.recalibrate(self.base.cdf(y))
        per_value = self.base.log_prob(y) + torch.log(slope)
        if not joint:
            return per_value
        z = self.base.quantile(r.clamp(_EPS, 1.0 - _EPS))  # T^{-1}(y)
        jacobian = per_value - self.base.log_prob(z)
        return self.base.log_prob(z, joint=True) + self._sum_outputs(jacobian)

    def quantile(self, p: Any) -> torch.Tensor:
        p = self._p(p)
        return self.base.quantile(self.calibrator.inverse(p).clamp(_EPS, 1.0 - _EPS))

    crps = Predictive.crps

    @cached_property
    def _moments(self) -> tuple[torch.Tensor, torch.Tensor]:
        q = torch.stack([self.quantile((j + 0.5) / self.levels) for j in range(self.levels)])
        return q.mean(0), q.var(0, correction=0)

    mean = property(lambda self: self._moments[0])
    variance = property(lambda self: self._moments[1])
    aleatoric = property(lambda self: self.base.aleatoric * self._ratio)
    epistemic = property(lambda self: self.base.epistemic * self._ratio)
    _ratio = property(lambda self: self.variance / self.base.variance)

    def members(self) -> Members:
        base = self.base.members()
        r = self._ratio
        return Members(self.mean + r.sqrt() * (base.means - self.base.mean), base.variances * r,
                       base.weights)

    def sample(self, k: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``k`` member-coherent draws (k, n, ...): base draws mapped through ``T``."""
        draws = self.base.sample(k, generator)  # (k, n, ...)
        rows = torch.arange(self.shape[0], device=self.device)
        step = max(1, 2**20 // self.shape.numel())  # draws per batch: bounded memory
        out = []
        for part in draws.split(step):  # each batch as (b n, ...): one bisection for all
            many = self.rebase(self.base.select(rows.repeat(len(part))))
            u = many.base.cdf(part.flatten(0, 1)).clamp(_EPS, 1.0 - _EPS)
            out.append(many.quantile(u).reshape(part.shape))
        return torch.cat(out)


def _level_key(level: float) -> str:
    return f"{float(level):.6g}"


def _check_levels(levels: Sequence[float]) -> None:
    for level in levels:
        if not isinstance(level, int | float) or not 0.0 < level < 1.0:
            raise DataError(f"conformal levels must lie in (0, 1); got {level!r}")


def _conformal_quantile(scores: torch.Tensor, level: float) -> torch.Tensor:
    """The ``ceil((n + 1) level)``-th smallest of ``scores`` (n, ...) along n, per value;
    infinite when that rank exceeds n."""
    n = scores.shape[0]
    k = math.ceil((n + 1) * level - 1e-9)
    if k > n:
        return torch.full_like(scores[0], math.inf)
    return torch.kthvalue(scores, k, dim=0).values


class Conformal:
    """Split-conformal intervals ``mean -+ q_level std`` per output value.

    With scores ``r_j = |y_j - mean_j| / std_j`` on ``n`` calibration samples, ``q_level`` is the
    ``ceil((n + 1) level)``-th smallest score (infinite when that exceeds ``n``), so a new
    exchangeable sample falls inside with probability at least ``level`` (and below
    ``level + 1/(n + 1)`` without ties). Quantiles are taken over samples for every output value
    separately (per cell for fields) and stored for the given ``levels``.

    Args:
        q: {level: quantiles (...)} (the per-sample shape without n).
    """

    method = "conformal"
    default_levels = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)

    def __init__(self, q: dict[float, Any]) -> None:
        self.q = {float(k): torch.as_tensor(v, dtype=_F64) for k, v in q.items()}

    @classmethod
    def fit(cls, pred: Predictive, y: Any, levels: Sequence[float] = default_levels) -> Conformal:
        y = _targets(pred, y)
        _check_levels(levels)
        return cls({float(level): _conformal_quantile(cls.scores(pred, y, level), level)
                    for level in levels})

    @staticmethod
    def scores(pred: Predictive, y: torch.Tensor, level: float) -> torch.Tensor:
        """Nonconformity scores (n, ...) of targets ``y``: larger is worse."""
        return (y - pred.mean).abs() / pred.stddev.clamp_min(1e-300)

    @staticmethod
    def bounds(pred: Predictive, q: torch.Tensor, level: float) -> tuple[torch.Tensor, ...]:
        """The calibrated central ``level`` interval (lower, upper) given its quantile ``q``."""
        half = q * pred.stddev
        return pred.mean - half, pred.mean + half

    def apply(self, pred: Predictive) -> ConformalPredictive:
        _check_shape(self.method, next(iter(self.q.values())).shape, pred.shape[1:],
                     per_cell=True)
        return ConformalPredictive(pred, self)

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "q": {_level_key(k): v.tolist() for k, v in self.q.items()}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Conformal:
        return cls({float(k): v for k, v in d["q"].items()})


class CQR(Conformal):
    """Conformalised quantile regression (Romano, Patterson & Candes 2019) per output value.

    The base predictive's own central interval ``[lo, hi]`` at each level is widened (or
    narrowed) by ``q_level``: the ``ceil((n + 1) level)``-th smallest of the scores
    ``max(lo_j - y_j, y_j - hi_j)`` on ``n`` calibration samples, which gives the same
    finite-sample coverage guarantee as :class:`Conformal` without assuming the interval is
    symmetric about the mean. Made for the quantile head, whose intervals are its quantiles;
    it applies to any predictive. An interval narrowed past its midpoint collapses to it.

    Examples:
        >>> import torch
        >>> from choral.distributions import GaussianMixture
        >>> pred = GaussianMixture(torch.zeros(1, 99, 1), torch.ones(1, 99, 1))
        >>> y = 3.0 * torch.linspace(-2.5, 2.5, 99, dtype=torch.float64).reshape(99, 1)
        >>> cqr = CQR.fit(pred, y, levels=(0.9,))
        >>> lo, hi = cqr.apply(pred).interval(0.9)
        >>> ((y >= lo) & (y <= hi)).double().mean().item() >= 0.9
        True
    """

    method = "cqr"

    @staticmethod
    def scores(pred: Predictive, y: torch.Tensor, level: float) -> torch.Tensor:
        lo, hi = pred.interval(level)
        return torch.maximum(lo - y, y - hi)

    @staticmethod
    def bounds(pred: Predictive, q: torch.Tensor, level: float) -> tuple[torch.Tensor, ...]:
        lo, hi = pred.interval(level)
        mid = 0.5 * (lo + hi)
        return torch.minimum(lo - q, mid), torch.maximum(hi + q, mid)


class ConformalPredictive(_Wrapped):
    """The base predictive with conformal central intervals; everything else is the base's.

    Only ``interval(level)`` changes, and only at the stored levels (another level is a
    DataError naming them): conformal prediction calibrates intervals, not densities.
    """

    def interval(self, level: float = 0.9) -> tuple[torch.Tensor, torch.Tensor]:
        q = self.calibrator.q
        found = [v for k, v in q.items() if abs(k - level) < 1e-9]
        if not found:
            raise DataError(f"level {level!r} has no conformal quantile; calibrated levels: "
                            f"{sorted(q)} (refit with levels=...)")
        return self.calibrator.bounds(self.base, found[0].to(self.device), level)


METHODS = {c.method: c for c in (Scale, PitScale, Isotonic, Conformal, CQR)}
"""The calibrators by name: the one source of ``--method``'s allowed values."""
Calibrator = Scale | PitScale | Isotonic | Conformal | CQR


def scale_factor(calibrator: Calibrator | None,
                 sample_shape: Sequence[int]) -> torch.Tensor | None:
    """The factors, broadcastable to (n, *sample_shape), by which ``calibrator`` spreads member
    means about their mean (:class:`Scale`, :class:`PitScale`), on the calibrator's device;
    ``None`` for the others, which leave them as they are."""
    return calibrator.spread(sample_shape) if isinstance(calibrator, Scale) else None


def fit_calibrator(method: str, pred: Predictive, y: Any, **options: Any) -> Calibrator:
    """Fit the calibrator ``method`` (a key of :data:`METHODS`) on ``pred`` (n, ...) and
    ``y`` (n, ...); ``options`` go to its ``fit`` (e.g. ``levels`` for conformal)."""
    return METHODS[check_choice(method, "method", METHODS)].fit(pred, y, **options)


def calibrator_from_dict(d: dict[str, Any]) -> Calibrator:
    """Rebuild a calibrator from its ``to_dict`` (the content of ``calibration.json``)."""
    method = d.get("method") if isinstance(d, dict) else None
    if method not in METHODS:
        raise ModelFileError(f"calibration.json must name a method among "
                             f"{', '.join(METHODS)}; got {method!r}")
    try:
        return METHODS[method].from_dict(d)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise ModelFileError(f"calibration.json is not a valid {method} calibration "
                             f"({type(exc).__name__}: {exc})") from None


def cross_fit(method: str, pred: Predictive, y: Any, folds: int = 5,
              seed: int = 0) -> dict[str, dict[str, float]]:
    """Held-out scores of calibrating ``pred`` (n, ...) with ``method``, before and after.

    The samples are split into ``folds`` random folds (at most ``n // 2``); each fold is scored
    with the calibrator fitted on the others, so no score sees its own calibration. Returns
    ``{"before": scores, "after": scores}`` with the 90% and 50% coverage and the NLL per
    target value pooled over folds; ``{}`` with fewer than 4 samples.

    Examples:
        >>> import torch
        >>> from choral.distributions import GaussianMixture
        >>> g = torch.Generator().manual_seed(0)
        >>> y = 0.5 * torch.randn(400, 1, generator=g, dtype=torch.float64)  # sd 0.5, said 1
        >>> pred = GaussianMixture(torch.zeros(1, 400, 1), torch.ones(1, 400, 1))
        >>> res = cross_fit("scale", pred, y)
        >>> res["before"]["coverage_90"], round(res["after"]["coverage_90"], 2)
        (1.0, 0.92)
    """
    y = _targets(pred, y)
    n = y.shape[0]
    check_int(folds, "folds", minimum=2)
    folds = min(folds, n // 2)
    if folds < 2:
        return {}
    rng = torch.Generator().manual_seed(seed)  # on the CPU: the same folds on every device
    perm = torch.randperm(n, generator=rng, device=rng.device).to(pred.device)
    totals = {"before": {}, "after": {}}
    for held in perm.tensor_split(folds):
        kept = perm[~torch.isin(perm, held)]
        calibrator = fit_calibrator(method, pred.select(kept), y[kept])
        base = pred.select(held)
        for when, p in (("before", base), ("after", calibrator.apply(base))):
            scores = {"coverage_90": coverage(p, y[held], 0.9),
                      "coverage_50": coverage(p, y[held], 0.5), "nll": nll(p, y[held])}
            for key, value in scores.items():
                totals[when][key] = totals[when].get(key, 0.0) + value * len(held) / n
    return totals

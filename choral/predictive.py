"""Predictive distributions: the contract (:class:`Predictive`) and the Gaussian mixture.

Member ``i`` of ``s`` predicts ``N(mu_i, var_i)`` for every one of ``n`` samples and every output
value (shape ``...``: ``m`` for vectors, ``(c, *grid)`` for fields); the ensemble predicts the
mixture ``sum_i w_i N(mu_i, var_i)`` independently per output value. Members are never collapsed
into one Gaussian: densities, CDFs, quantiles and the CRPS are those of the mixture itself.
Member tensors carry the member axis first: (s, n, ...); everything per sample is (n, ...).

Examples:
    >>> import torch
    >>> mix = GaussianMixture(torch.tensor([[[0.0]], [[2.0]]]), torch.ones(2, 1, 1))
    >>> mix
    GaussianMixture(members=2, shape=(1, 1))
    >>> mix.mean.tolist(), mix.aleatoric.tolist(), mix.epistemic.tolist(), mix.variance.tolist()
    ([[1.0]], [[1.0]], [[1.0]], [[2.0]])
    >>> round(mix.cdf([[1.0]]).item(), 12)  # symmetric about the mixture mean
    0.5
    >>> round(mix.quantile(0.5).item(), 9)
    1.0
"""

from __future__ import annotations

import math
from typing import Any

import torch

from choral.errors import DataError

__all__ = ["GaussianMixture", "Predictive"]

_F64 = torch.float64
_LOG_2PI = math.log(2.0 * math.pi)


def _tensor(x: Any, name: str) -> torch.Tensor:
    """``x`` as a detached float64 tensor of finite values, or a DataError naming ``name``."""
    try:
        t = torch.as_tensor(x.detach() if isinstance(x, torch.Tensor) else x, dtype=_F64)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise DataError(f"{name} must be a numeric array or tensor; got "
                        f"{type(x).__name__}") from exc
    if not bool(torch.isfinite(t).all()):
        raise DataError(f"{name} must be finite; got NaN or inf values")
    return t


def _a(mu: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
    """``A(mu, s2) = E|X|`` for ``X ~ N(mu, s2)``, the building block of the mixture CRPS."""
    sigma = torch.sqrt(s2)
    z = mu / sigma
    phi = torch.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    return 2.0 * sigma * phi + mu * (2.0 * torch.special.ndtr(z) - 1.0)


class Predictive:
    """The contract of every predictive distribution: summaries and scores per output value.

    Subclasses provide ``shape``, ``mean``, ``variance``, ``aleatoric``, ``epistemic``,
    ``member_means``, ``log_prob``, ``cdf``, ``sample`` and ``affine`` (and ``select``, used by
    the report); quantiles, intervals and the CRPS have generic (numerical) defaults that
    subclasses with closed forms override. Subclasses: :class:`GaussianMixture` (Gaussian and
    MDN heads), :class:`choral.quantiles.QuantilePredictive` (quantile head).
    Everything per sample is (n, ...); member tensors are (s, n, ...).
    """

    shape: torch.Size
    mean: torch.Tensor
    variance: torch.Tensor
    aleatoric: torch.Tensor
    epistemic: torch.Tensor
    member_means: torch.Tensor

    @property
    def stddev(self) -> torch.Tensor:
        """Standard deviation (n, ...)."""
        return torch.sqrt(self.variance)

    def log_prob(self, y: Any) -> torch.Tensor:
        """Log density (n, ...) at ``y`` (n, ...)."""
        raise NotImplementedError

    def cdf(self, y: Any) -> torch.Tensor:
        """CDF (n, ...) at ``y`` (n, ...)."""
        raise NotImplementedError

    def sample(self, k: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``k`` independent draws (k, n, ...)."""
        raise NotImplementedError

    def affine(self, loc: Any, scale: Any) -> Predictive:
        """The distribution of ``scale * Y + loc`` (``scale > 0``, broadcastable to (n, ...))."""
        raise NotImplementedError

    def select(self, idx: Any, flat: bool = False) -> Predictive:
        """The predictive of samples ``idx`` along n, or (``flat``) of flat target values (k,)."""
        raise NotImplementedError

    def _y(self, y: Any, name: str = "y") -> torch.Tensor:
        y = _tensor(y, name)
        try:
            ok = torch.broadcast_shapes(y.shape, self.shape) == self.shape
        except RuntimeError:
            ok = False
        if not ok:
            raise DataError(f"{name} must have the predictive's shape {tuple(self.shape)} "
                            f"(n, ...); got {tuple(y.shape)}")
        return y

    def _loc_scale(self, loc: Any, scale: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Validated ``loc`` and ``scale > 0`` of :meth:`affine`, broadcastable to (n, ...)."""
        loc, scale = self._y(loc, "loc"), self._y(scale, "scale")
        if not bool((scale > 0).all()):
            raise DataError(f"scale must be > 0; got minimum {scale.min().item():.6g}")
        return loc, scale

    @staticmethod
    def _check_draws(k: Any) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise DataError(f"k must be a positive integer number of draws; got {k!r}")

    def _p(self, p: Any) -> torch.Tensor:
        p = self._y(p, "p")
        if not bool(((p > 0) & (p < 1)).all()):
            raise DataError("p must lie strictly inside (0, 1); got values outside")
        return p.expand(self.shape)

    def _bracket(self, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
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

    def quantile(self, p: Any) -> torch.Tensor:
        """Quantile (n, ...) at probability ``p`` (a float or broadcastable to (n, ...)).

        Generic: vectorised bisection of ``cdf`` on every output value at once (scipy's
        root finders are scalar), starting from a bracket that provably contains the root.
        """
        p = self._p(p)
        lo, hi = self._bracket(p)
        return _bisect(self.cdf, p, lo, hi, self.stddev)

    def interval(self, level: float = 0.9) -> tuple[torch.Tensor, torch.Tensor]:
        """Central interval (lower, upper), each (n, ...): quantiles (1 -+ level) / 2."""
        if not isinstance(level, int | float) or not 0.0 < level < 1.0:
            raise DataError(f"level must be a float in (0, 1); got {level!r}")
        return self.quantile((1.0 - level) / 2.0), self.quantile((1.0 + level) / 2.0)

    def crps(self, y: Any, levels: int = 199) -> torch.Tensor:
        """CRPS (n, ...) at ``y``: ``2 * integral_0^1 pinball_tau(y - q(tau)) dtau``.

        Generic: the midpoint rule on ``levels`` quantile levels (error O(1/levels^2) inside,
        plus the neglected tails); closed forms override this.
        """
        y = self._y(y)
        total = torch.zeros(self.shape, dtype=_F64)
        for tau in (torch.arange(levels, dtype=_F64) + 0.5) / levels:
            diff = y - self.quantile(float(tau))
            total += _pinball(diff, tau)
        return 2.0 * total / levels


def _pinball(diff: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
    """The pinball (quantile) loss at level ``tau`` of residuals ``diff = y - q``."""
    return torch.maximum(tau * diff, (tau - 1) * diff)


def _bisect(cdf, p: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor,
            scale: torch.Tensor) -> torch.Tensor:
    """Solve ``cdf(x) = p`` elementwise in the bracket [lo, hi] by bisection."""
    tol = 1e-12 * torch.maximum(torch.maximum(lo.abs(), hi.abs()), scale)
    for _ in range(80):  # each step halves the bracket: 80 steps reach float64 resolution
        if bool(((hi - lo) <= tol).all()):
            break
        mid = 0.5 * (lo + hi)
        below = cdf(mid) < p
        lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
    return 0.5 * (lo + hi)


def _component_weights(weights: Any, means: torch.Tensor) -> torch.Tensor:
    """Validated weights broadcastable to ``means`` (s, n, ...): (s, 1, ...) or (s, n, ...)."""
    s = means.shape[0]
    if weights is None:
        weights = torch.full((s,), 1.0 / s, dtype=_F64)
    weights = _tensor(weights, "weights")
    if weights.shape == means.shape:
        total = weights.sum(0)
        if not bool((weights >= 0).all()) or not bool(((total - 1).abs() <= 1e-6).all()):
            raise DataError("per-sample weights (s, n, ...) must be >= 0 and sum to 1 over "
                            f"axis 0; got minimum {weights.min().item():.6g} and sums in "
                            f"[{total.min().item():.6g}, {total.max().item():.6g}]")
        return weights / total
    if weights.shape != (s,):
        raise DataError(f"weights must have shape ({s},), one per component, or the "
                        f"means' shape {tuple(means.shape)}; got {tuple(weights.shape)}")
    if not bool((weights > 0).all()) or abs(weights.sum().item() - 1.0) > 1e-6:
        raise DataError(f"weights must be positive and sum to 1; got {weights.tolist()}")
    return (weights / weights.sum()).reshape((s,) + (1,) * (means.ndim - 1))


class GaussianMixture(Predictive):
    """Weighted mixture of ``s`` Gaussians per output value.

    Args:
        means: member means (s, n, ...), numpy array or torch tensor.
        variances: member variances (s, n, ...), all > 0.
        weights: component weights (s,), positive and summing to 1, uniform ``1/s`` by default;
            or per-sample weights (s, n, ...), >= 0 and summing to 1 over axis 0.
        members: how many members the ``s`` components belong to (default ``s``); components
            are grouped member by member (``K = s / members`` each), so that ``member_means``
            and ``epistemic`` stay per member (a mixture of mixture-density members).

    Examples:
        >>> import numpy as np
        >>> mix = GaussianMixture(np.zeros((3, 4, 2)), np.ones((3, 4, 2)))
        >>> mix.num_members, tuple(mix.shape), mix.weights.tolist()
        (3, (4, 2), [0.3333333333333333, 0.3333333333333333, 0.3333333333333333])
        >>> round(mix.log_prob(np.zeros((4, 2)))[0, 0].item(), 6)  # = log N(0; 0, 1)
        -0.918939

        Two members of two components each, with per-sample weights:

        >>> w = np.full((4, 1, 1), 0.25)
        >>> mm = GaussianMixture([[[0.0]], [[2.0]], [[4.0]], [[6.0]]], np.ones((4, 1, 1)), w,
        ...                      members=2)
        >>> mm
        GaussianMixture(members=2, components_per_member=2, shape=(1, 1))
        >>> mm.member_means.ravel().tolist(), mm.epistemic.item(), mm.aleatoric.item()
        ([1.0, 5.0], 4.0, 2.0)
    """

    def __init__(self, means: Any, variances: Any, weights: Any = None,
                 members: int | None = None) -> None:
        means, variances = _tensor(means, "means"), _tensor(variances, "variances")
        if means.shape != variances.shape:
            raise DataError(f"means and variances must have the same shape (s, n, ...); got "
                            f"{tuple(means.shape)} and {tuple(variances.shape)}")
        if means.ndim < 2:
            raise DataError(f"means must have shape (s, n, ...) with at least 2 axes; got shape "
                            f"{tuple(means.shape)}")
        if not bool((variances > 0).all()):
            raise DataError(f"variances must be > 0 everywhere; got minimum "
                            f"{variances.min().item():.6g}")
        s = means.shape[0]
        members = s if members is None else members
        if isinstance(members, bool) or not isinstance(members, int) or members < 1 \
                or s % members:
            raise DataError(f"members must be a positive integer dividing the {s} components "
                            f"(members-major, K = s / members per member); got {members!r}")
        self._w = _component_weights(weights, means)
        self._means = means.clone()
        self._vars = variances.clone()
        self._members = members
        per_sample = weights is not None and tuple(torch.as_tensor(weights).shape) == means.shape
        self._weights = self._w.clone() if per_sample else self._w.reshape(s)
        self._logw = torch.log(self._w)

    # -- shapes and moments ----------------------------------------------------------------------
    @property
    def num_members(self) -> int:
        """The number of members (``members``; ``s`` components unless given)."""
        return self._members

    @property
    def num_components(self) -> int:
        """The number of Gaussian components ``s`` (members times components per member)."""
        return self._means.shape[0]

    @property
    def shape(self) -> torch.Size:
        """The per-sample shape (n, ...) of every summary and score."""
        return self._means.shape[1:]

    @property
    def component_means(self) -> torch.Tensor:
        """Component means (s, n, ...)."""
        return self._means

    @property
    def component_variances(self) -> torch.Tensor:
        """Component variances (s, n, ...)."""
        return self._vars

    @property
    def component_weights(self) -> torch.Tensor:
        """Component weights (s, n, ...), summing to 1 over axis 0."""
        return self._w.expand_as(self._means)

    def _per_member(self, x: torch.Tensor) -> torch.Tensor:
        """(s, n, ...) -> (members, K, n, ...), components grouped member by member."""
        return x.reshape(self._members, -1, *x.shape[1:])

    def _member_weights(self) -> torch.Tensor:
        """Member weights (members, n, ...) or (members, 1, ...): sums of their components'."""
        return self._per_member(self._w).sum(1)

    @property
    def member_means(self) -> torch.Tensor:
        """Member means (members, n, ...): each member's own mixture mean."""
        if self._members == self.num_components:
            return self._means
        w = self._per_member(self._w)
        return (w * self._per_member(self._means)).sum(1) / w.sum(1)

    @property
    def member_variances(self) -> torch.Tensor:
        """Member variances (members, n, ...): each member's own mixture variance."""
        if self._members == self.num_components:
            return self._vars
        w, mu = self._per_member(self._w), self._per_member(self._means)
        spread = (mu - self.member_means.unsqueeze(1)) ** 2
        return (w * (self._per_member(self._vars) + spread)).sum(1) / w.sum(1)

    @property
    def weights(self) -> torch.Tensor:
        """Component weights as given: (s,), or (s, n, ...) when they vary per sample."""
        return self._weights

    @property
    def mean(self) -> torch.Tensor:
        """Mixture mean (n, ...): ``sum_i w_i mu_i``."""
        return (self._w * self._means).sum(0)

    @property
    def aleatoric(self) -> torch.Tensor:
        """Mean member variance (n, ...): ``sum_i W_i var_i`` over members ``i``."""
        if self._members == self.num_components:
            return (self._w * self._vars).sum(0)
        return (self._member_weights() * self.member_variances).sum(0)

    @property
    def epistemic(self) -> torch.Tensor:
        """Spread of the member means (n, ...): ``sum_i W_i (mu_i - mean)^2`` over members."""
        w = self._w if self._members == self.num_components else self._member_weights()
        return (w * (self.member_means - self.mean) ** 2).sum(0)

    @property
    def variance(self) -> torch.Tensor:
        """Mixture variance (n, ...) = aleatoric + epistemic (law of total variance)."""
        return self.aleatoric + self.epistemic

    # -- distribution functions ------------------------------------------------------------------
    def log_prob(self, y: Any) -> torch.Tensor:
        """Mixture log density (n, ...) at ``y`` (n, ...): logsumexp_i of log w_i + log N_i(y)."""
        y = self._y(y)
        comp = -0.5 * ((y - self._means) ** 2 / self._vars + torch.log(self._vars) + _LOG_2PI)
        return torch.logsumexp(self._logw + comp, dim=0)

    def cdf(self, y: Any) -> torch.Tensor:
        """Mixture CDF (n, ...) at ``y`` (n, ...): ``sum_i w_i Phi((y - mu_i) / sigma_i)``."""
        y = self._y(y)
        z = (y - self._means) / torch.sqrt(self._vars)
        return (self._w * torch.special.ndtr(z)).sum(0).clamp(0.0, 1.0)

    def quantile(self, p: Any) -> torch.Tensor:
        """Mixture quantile (n, ...) at probability ``p`` (a float or broadcastable to (n, ...)).

        The mixture CDF has no closed-form inverse. ``F(x) = sum_i w_i F_i(x)`` is a weighted
        mean of the component CDFs, so at ``min_i q_i(p)`` every ``F_i <= p`` (hence ``F <= p``)
        and at ``max_i q_i(p)`` every ``F_i >= p``: that bracket is exact, and bisection on it
        cannot fail however far apart (multimodal) the members are. The bisection is written
        by hand because it must run on every output value at once (scipy's brentq is scalar).
        """
        p = self._p(p)
        comp = self._means + torch.sqrt(self._vars) * torch.special.ndtri(p)
        return _bisect(self.cdf, p, comp.min(0).values, comp.max(0).values, self.stddev)

    def sample(self, k: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``k`` independent draws (k, n, ...): a member picked by weight, then its Gaussian."""
        self._check_draws(k)
        s, size = self.num_components, self.shape.numel()
        if self._weights.ndim == 1:
            idx = torch.multinomial(self._weights, k * size, replacement=True,
                                    generator=generator).reshape(k, size)
        else:  # one categorical draw per output value and draw: rows (size, s)
            idx = torch.multinomial(self._weights.reshape(s, size).T, k, replacement=True,
                                    generator=generator).T
        mu = self._means.reshape(s, size).gather(0, idx)
        sd = torch.sqrt(self._vars.reshape(s, size).gather(0, idx))
        eps = torch.randn((k, size), generator=generator, dtype=_F64)
        return (mu + sd * eps).reshape((k, *self.shape))

    def crps(self, y: Any, levels: int = 199) -> torch.Tensor:
        """Closed-form CRPS (n, ...) of the mixture at ``y`` (Grimit et al. 2006).

        ``CRPS = sum_i w_i A(y - mu_i, var_i) - 1/2 sum_ij w_i w_j A(mu_i - mu_j, var_i + var_j)``
        with ``A(mu, s2) = 2 sigma phi(mu / sigma) + mu (2 Phi(mu / sigma) - 1)``, i.e.
        ``E|Y - y| - E|Y - Y'| / 2``; the pairwise term is evaluated on blocks of (s, s, n, ...).
        """
        y, mu, var, w = self._y(y), self._means, self._vars, self._w
        first = (w * _a(y - mu, var)).sum(0)
        return first - 0.5 * _pair_term(mu, var, w)

    def affine(self, loc: Any, scale: Any) -> GaussianMixture:
        """The mixture of ``scale * Y + loc`` (``scale > 0``; both broadcastable to (n, ...)).

        Used to map predictions of standardised targets back to the original units.

        Examples:
            >>> mix = GaussianMixture([[[0.0]], [[2.0]]], [[[1.0]], [[1.0]]]).affine(1.0, 3.0)
            >>> mix.mean.tolist(), mix.variance.tolist()
            ([[4.0]], [[18.0]])
        """
        loc, scale = self._loc_scale(loc, scale)
        return GaussianMixture(self._means * scale + loc, self._vars * scale**2, self._weights,
                               members=self._members)

    def select(self, idx: Any, flat: bool = False) -> GaussianMixture:
        """The mixture over samples ``idx`` along n, or (``flat``) over flat target values (k,).

        >>> GaussianMixture(torch.zeros(2, 5, 3), torch.ones(2, 5, 3)).select([0, 4]).shape
        torch.Size([2, 3])
        """
        shape = (self.num_components, -1) if flat else self._means.shape
        weights = self._weights
        if weights.ndim > 1:
            weights = weights.reshape(shape)[:, idx]
        return GaussianMixture(self._means.reshape(shape)[:, idx],
                               self._vars.reshape(shape)[:, idx], weights, members=self._members)

    def __repr__(self) -> str:
        k = self.num_components // self._members
        per = f", components_per_member={k}" if k > 1 else ""
        return f"GaussianMixture(members={self.num_members}{per}, shape={tuple(self.shape)})"


def _pair_term(mu: torch.Tensor, var: torch.Tensor, w: torch.Tensor,
               budget: int = 2**24) -> torch.Tensor:
    """``sum_ij w_i w_j A(mu_i - mu_j, var_i + var_j)`` (n, ...) in row blocks of the (s, s, n,
    ...) array, so that about ``budget`` values are live at once (mixtures of mixtures are big)."""
    s = mu.shape[0]
    step = max(1, budget // max(1, s * mu[0].numel()))
    total = torch.zeros(mu.shape[1:], dtype=mu.dtype)
    for i in range(0, s, step):
        blk = slice(i, i + step)
        pair = _a(mu[blk, None] - mu[None], var[blk, None] + var[None])
        total += (w[blk, None] * w[None] * pair).sum((0, 1))
    return total


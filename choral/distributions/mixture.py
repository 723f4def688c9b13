"""The Gaussian mixture predictive of Gaussian (and mixture-density) members.

Member ``i`` of ``s`` predicts ``N(mu_i, var_i)`` for every one of ``n`` samples and every output
value (shape ``...``: ``m`` for vectors, ``(c, *grid)`` for fields), independently across output
values given the member; the ensemble predicts the mixture over members. Members are never
collapsed into one Gaussian: densities, CDFs, quantiles and the CRPS are those of the mixture
itself, and draws and the joint likelihood keep one member for all outputs of a sample.
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

from choral.checks import as_float64, check_int
from choral.distributions.base import F64, Members, Predictive, bisect
from choral.errors import DataError

__all__ = ["GaussianMixture"]

_LOG_2PI = math.log(2.0 * math.pi)


def _a(mu: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
    """``A(mu, s2) = E|X|`` for ``X ~ N(mu, s2)``, the building block of the mixture CRPS."""
    sigma = torch.sqrt(s2)
    z = mu / sigma
    phi = torch.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    return 2.0 * sigma * phi + mu * (2.0 * torch.special.ndtr(z) - 1.0)


def _component_weights(weights: Any, means: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """Validated weights on the device of ``means`` (s, n, ...), broadcastable to them:
    (s, 1, ...) or (s, n, ...); and whether they were given per sample, (s, n, ...)."""
    s = means.shape[0]
    if weights is None:
        weights = torch.full((s,), 1.0 / s, dtype=F64, device=means.device)
    weights = as_float64(weights, "weights", device=means.device)
    if weights.shape == means.shape:
        total = weights.sum(0)
        if not bool((weights >= 0).all()) or not bool(((total - 1).abs() <= 1e-6).all()):
            raise DataError("per-sample weights (s, n, ...) must be >= 0 and sum to 1 over "
                            f"axis 0; got minimum {weights.min().item():.6g} and sums in "
                            f"[{total.min().item():.6g}, {total.max().item():.6g}]")
        return weights / total, True
    if weights.shape != (s,):
        raise DataError(f"weights must have shape ({s},), one per component, or the "
                        f"means' shape {tuple(means.shape)}; got {tuple(weights.shape)}")
    if not bool((weights > 0).all()) or abs(weights.sum().item() - 1.0) > 1e-6:
        raise DataError(f"weights must be positive and sum to 1; got {weights.tolist()}")
    return (weights / weights.sum()).reshape((s,) + (1,) * (means.ndim - 1)), False


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
        means = as_float64(means, "means")
        variances = as_float64(variances, "variances", device=means.device)
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
        check_int(members, "members", minimum=1)
        if s % members:
            raise DataError(f"members must be a positive integer dividing the {s} components "
                            f"(members-major, K = s / members per member); got {members!r}")
        self._w, per_sample = _component_weights(weights, means)
        self._means = means.clone()
        self._vars = variances.clone()
        self._members = members
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
    def device(self) -> torch.device:
        """The device of the means (given), where every tensor of the mixture lives."""
        return self._means.device

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

    def members(self) -> Members:
        """Member means and variances (members, n, ...) and member weights (members,).

        A member's weight is the sum of its components' weights; it must be the same for
        every sample and output value (it is ``1 / s`` for choral's heads), or there is no
        member to pick per sample.
        """
        return Members(self.member_means, self.member_variances, self._member_weight_vector())

    def _member_weight_vector(self) -> torch.Tensor:
        """Member weights (members,), or a DataError when they vary by sample or output."""
        w = self._member_weights().reshape(self._members, -1)
        if not bool(((w - w[:, :1]).abs() <= 1e-9).all()):
            raise DataError("the per-member view needs member weights that are the same for "
                            "every sample and output value; these weights vary")
        return w[:, 0] / w[:, 0].sum()

    # -- distribution functions ------------------------------------------------------------------
    def _log_components(self, y: torch.Tensor) -> torch.Tensor:
        """``log w_c + log N_c(y)`` per component (s, n, ...)."""
        comp = -0.5 * ((y - self._means) ** 2 / self._vars + torch.log(self._vars) + _LOG_2PI)
        return self._logw + comp

    def log_prob(self, y: Any, joint: bool = False) -> torch.Tensor:
        """Mixture log density (n, ...) at ``y`` (n, ...): ``logsumexp_c log w_c + log N_c(y)``.

        With ``joint``, the member-coherent log density of all output values of each sample
        (n,): ``logsumexp_i [log W_i + sum_j log p_i(y_j)]``, ``p_i`` member ``i``'s own density
        (its mixture of ``K`` components per value) and ``W_i`` its weight.

        >>> mix = GaussianMixture(torch.zeros(2, 1, 3), torch.ones(2, 1, 3))
        >>> round(mix.log_prob(torch.zeros(1, 3), joint=True).item(), 6)  # 3 log N(0; 0, 1)
        -2.756816
        """
        logc = self._log_components(self._y(y))
        if not joint:
            return torch.logsumexp(logc, dim=0)
        logw = torch.log(self._member_weight_vector())
        per_member = torch.logsumexp(self._per_member(logc), dim=1) - torch.log(
            self._member_weights())  # member i's own log density per value (members, n, ...)
        total = self._sum_outputs(per_member)  # (members, n)
        return torch.logsumexp(logw[:, None] + total, dim=0)

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
        cannot fail however far apart (multimodal) the members are. Newton steps on the mixture
        density, safeguarded by bisection in that bracket (:func:`.base.bisect`), solve it on
        every output value at once.
        """
        p = self._p(p)
        sd = torch.sqrt(self._vars)
        comp = self._means + sd * torch.special.ndtri(p)

        def cdf(x: torch.Tensor) -> torch.Tensor:  # ``self.cdf`` without checking its argument
            return (self._w * torch.special.ndtr((x - self._means) / sd)).sum(0)

        def pdf(x: torch.Tensor) -> torch.Tensor:
            z = (x - self._means) / sd
            return (self._w * torch.exp(-0.5 * z * z) / (sd * math.sqrt(2 * math.pi))).sum(0)

        return bisect(cdf, p, comp.min(0).values, comp.max(0).values, self.stddev, pdf)

    def sample(self, k: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``k`` member-coherent draws (k, n, ...).

        Each draw of a sample picks one member by weight; every output value of that sample is
        then drawn from that member (its Gaussian, or for mixture-density members one of its
        components per value, by the component weights, and that component's Gaussian).
        """
        k = self._draws(k)
        m, kk, n = self._members, self.num_components // self._members, self.shape[0]
        mu, var = (self._per_member(t).reshape(m, kk, n, -1) for t in (self._means, self._vars))
        w = self._per_member(self._w.expand_as(self._means)).reshape(m, kk, n, -1)
        rng, here = self._draw_device(generator), self.device  # draw there, compute here
        picked = torch.multinomial(self._member_weight_vector().to(rng).expand(n, m), k,
                                   replacement=True, generator=generator).T.to(here)  # (k, n)
        rows = torch.arange(n, device=here)
        mu, var, w = (t[picked, :, rows].movedim(2, -1) for t in (mu, var, w))  # (k, n, p, K)
        if kk > 1:
            comp = torch.multinomial(w.reshape(-1, kk).to(rng), 1, replacement=True,
                                     generator=generator).to(here)
            comp = comp.reshape(*w.shape[:-1], 1)
            mu, var = mu.gather(-1, comp), var.gather(-1, comp)
        eps = torch.randn(mu.shape[:-1], generator=generator, dtype=F64, device=rng).to(here)
        return (mu[..., 0] + var[..., 0].sqrt() * eps).reshape(k, *self.shape)

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
    total = torch.zeros(mu.shape[1:], dtype=mu.dtype, device=mu.device)
    for i in range(0, s, step):
        blk = slice(i, i + step)
        pair = _a(mu[blk, None] - mu[None], var[blk, None] + var[None])
        total += (w[blk, None] * w[None] * pair).sum((0, 1))
    return total


"""Acquisition scores of a predictive over ``n`` candidates, one number per candidate (n,).

Every predictive is first reduced to its members: means and variances (s, n, p) and weights
(s,), ``p`` the flattened output values per sample (or ``p = 1`` after an ``objective``). The
kinds:

- ``variance``: total predictive variance, summed over the ``p`` outputs;
- ``epistemic``: the spread of the member means, summed over outputs;
- ``ivr``: integrated variance reduction: the mean over ``r`` reference points of the drop in
  epistemic variance there if the candidate were observed (a linear-Gaussian update on the
  ensemble: ``cov(c, r)^2 / (epistemic(c) + aleatoric(c))``), summed over outputs;
- ``ei`` / ``logei``: expected improvement over ``best`` of the mixture (exact: a weighted sum of
  Gaussian EIs) and its logarithm (finite where EI underflows); need ``p = 1``;
- ``ucb`` / ``lcb``: ``mean + beta * std`` and ``mean - beta * std`` (total std); need ``p = 1``;
- ``thompson``: one member's mean function, the member drawn with probability its weight from
  ``seed`` (negated when minimising, so larger is better); need ``p = 1``. Batches draw a member
  per slot (:mod:`choral.acquisition.thompson`).

Larger is better for every kind except ``lcb``, which is minimised (:data:`MAXIMISED`); ``ucb``
suits maximisation and ``lcb`` minimisation whatever ``maximize`` says.

An ``objective`` maps a field (or multi-output) predictive to a scalar: a callable taking
draws (b, n, ...) to (b, n). Each member's objective distribution is moment-matched to a
Gaussian from ``draws`` draws of that member (seeded, drawn on the CPU so that every device gets
the same draws), so scores stay closed-form afterwards; the candidates are reduced in chunks of
about ``2^22`` drawn values, so large fields over many candidates fit in memory. Named
objectives (misfit to a target field, maximum, ...) are in :mod:`choral.acquisition.objectives`.
Scores are on the predictive's device.

Examples:
    >>> import torch
    >>> from choral.distributions import GaussianMixture
    >>> pred = GaussianMixture(torch.tensor([[[0.0], [1.0]], [[2.0], [1.0]]]), torch.ones(2, 2, 1))
    >>> score("epistemic", pred).tolist(), score("variance", pred).tolist()
    ([1.0, 0.0], [2.0, 1.0])
    >>> score("ucb", pred, beta=1.0).tolist()  # mean + beta * std
    [2.414213562373095, 2.0]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from choral.acquisition.closed_forms import mixture_ei, mixture_log_ei
from choral.acquisition.thompson import draw_members
from choral.distributions import Members, Predictive
from choral.errors import ConfigError, DataError

__all__ = ["KINDS", "MAXIMISED", "members_of", "score", "score_members"]

KINDS = ("variance", "epistemic", "ivr", "ei", "logei", "ucb", "lcb", "thompson")
MAXIMISED = {kind: kind != "lcb" for kind in KINDS}
_F64 = torch.float64
_CHUNK = 2**22  # draws * members * candidates * outputs reduced by an objective at a time


def check_kind(kind: Any) -> str:
    """``kind`` if it is one of :data:`KINDS`, else a ConfigError naming ``kind``."""
    if not isinstance(kind, str) or kind not in KINDS:
        raise ConfigError(f"kind must be one of {', '.join(KINDS)}; got {kind!r}")
    return kind


def members_of(pred: Any, objective: Callable[[Tensor], Tensor] | None = None,
               draws: int = 64, seed: int = 0) -> Members:
    """The per-member view of ``pred`` (shape (n, ...)) flattened to (s, n, p), or reduced to
    (s, n, 1) through ``objective``."""
    if not isinstance(pred, Predictive):
        raise DataError(f"predictive must be a choral Predictive; got {type(pred).__name__}")
    means, var, weights = (t.to(_F64) for t in pred.members())
    if objective is None:
        return Members(means, var, weights).flat()
    s, n = means.shape[:2]
    gen = torch.Generator().manual_seed(int(seed))
    per_sample = draws * s * max(1, means[0, 0].numel())
    chunk = max(1, _CHUNK // per_sample)  # bounds the (draws, s, chunk, ...) draws' memory
    vals = torch.cat([_reduce(objective, means[:, lo:lo + chunk], var[:, lo:lo + chunk], draws,
                              gen) for lo in range(0, n, chunk)], dim=2)  # (draws, s, n)
    spread = vals.var(0, unbiased=False).clamp_min(1e-12 * vals.abs().max().item() + 1e-300)
    return Members(vals.mean(0)[..., None], spread[..., None], weights)


def _reduce(objective: Callable, means: Tensor, var: Tensor, draws: int,
            gen: torch.Generator) -> Tensor:
    """Objective values (draws, s, c) of ``draws`` draws of each member's Gaussian (s, c, ...)."""
    s, c = means.shape[:2]
    eps = torch.randn((draws, *means.shape), generator=gen, dtype=_F64, device=gen.device)
    y = (means + var.sqrt() * eps.to(means.device)).reshape(draws * s, *means.shape[1:])
    return _objective(objective, y, draws * s, c).reshape(draws, s, c)


def _objective(objective: Callable, y: Tensor, b: int, n: int) -> Tensor:
    if not callable(objective):
        raise ConfigError(f"objective must be a callable (b, n, ...) -> (b, n); got "
                          f"{type(objective).__name__}")
    out = torch.as_tensor(objective(y), dtype=_F64, device=y.device)
    if tuple(out.shape) != (b, n):
        raise DataError(f"objective must map draws of shape {tuple(y.shape)} to ({b}, {n}); "
                        f"got shape {tuple(out.shape)}")
    return out


def _scalar(m: Members, kind: str) -> None:
    if m.means.shape[-1] != 1:
        raise DataError(f"kind {kind!r} needs one output value per sample; got "
                        f"{m.means.shape[-1]}: pass objective= to reduce the outputs to a scalar")


def default_best(m: Members, maximize: bool) -> float:
    """The plug-in incumbent when ``best`` is not given: the best mixture mean (p = 1)."""
    mean = m.mean[:, 0]
    return float(mean.max() if maximize else mean.min())


def score_members(kind: str, m: Members, *, best: float | None = None, maximize: bool = False,
                  beta: float = 2.0, reference: Members | None = None, seed: int = 0) -> Tensor:
    """The ``kind`` score (n,) of members ``m`` (see the module); ``reference`` for ``ivr``,
    ``seed`` for ``thompson``'s member draw."""
    if kind == "variance":
        return (m.aleatoric + m.epistemic).sum(-1)
    if kind == "epistemic":
        return m.epistemic.sum(-1)
    if kind == "ivr":
        return _ivr(m, m if reference is None else reference)
    _scalar(m, kind)
    if kind == "thompson":
        drawn = m.means[draw_members(m.weights, 1, seed).item(), :, 0]
        return drawn if maximize else -drawn
    if kind in ("ucb", "lcb"):
        std = (m.aleatoric + m.epistemic).sqrt()
        return (m.mean + (beta if kind == "ucb" else -beta) * std)[:, 0]
    best = default_best(m, maximize) if best is None else float(best)
    fn = mixture_ei if kind == "ei" else mixture_log_ei
    return fn(m.means[..., 0], m.variances[..., 0].sqrt(), m.weights, best, maximize)


def _ivr(m: Members, ref: Members) -> Tensor:
    """Mean over reference points of ``cov(c, r)^2 / (epi(c) + alea(c))``, summed over p."""
    if ref.means.shape[0] != m.means.shape[0] or ref.means.shape[2] != m.means.shape[2]:
        raise DataError(f"reference members must match the candidates' (s, ., p) = "
                        f"{tuple(m.means.shape[::2])}; got {tuple(ref.means.shape[::2])}")
    dc = m.means - m.mean
    dr = ref.means - ref.mean
    denom = (m.epistemic + m.aleatoric).clamp_min(1e-300)  # (n, p)
    rows = max(1, 2**24 // max(1, dr.shape[1] * dr.shape[2]))
    out = []
    for lo in range(0, dc.shape[1], rows):  # chunks of candidates bound the (n, r, p) memory
        cov = torch.einsum("s,snp,srp->nrp", m.weights, dc[:, lo:lo + rows], dr)
        out.append(((cov**2).mean(1) / denom[lo:lo + rows]).sum(-1))
    return torch.cat(out)


def score(kind: str, predictive: Predictive, *, best: float | None = None,
          maximize: bool = False, beta: float = 2.0, reference: Predictive | None = None,
          objective: Callable[[Tensor], Tensor] | None = None, seed: int = 0) -> Tensor:
    """Acquisition ``kind`` of ``predictive`` (n, ...) at each of its ``n`` samples: (n,).

    ``best`` is the incumbent for ``ei``/``logei`` (default: the best predicted mean);
    ``reference`` the predictive at the reference points for ``ivr`` (default: the candidates).
    """
    kind = check_kind(kind)
    m = members_of(predictive, objective, seed=seed)
    ref = None if reference is None else members_of(reference, objective, seed=seed + 1)
    return score_members(kind, m, best=best, maximize=maximize, beta=beta, reference=ref,
                         seed=seed)

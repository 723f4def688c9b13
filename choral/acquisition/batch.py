"""Greedy batch selection with refit-free fantasies on the ensemble members.

After each pick ``x*`` the ensemble is conditioned on a fantasised observation there without
refitting: the kriging believer (the observation equals the predicted mean, so the ensemble mean
is unchanged) applied to the member means by an ensemble square-root Kalman update (Whitaker and
Hamill 2002). With deviations ``D = mu_i - mean`` (s, N, p), ``h = D[:, x*]``,
``P_xx = sum_i w_i h_i^2``, noise ``R = aleatoric(x*)`` and gain
``K = sum_i w_i D_i h_i / (P_xx + R)``:

    ``D <- D - alpha K h``, ``alpha = 1 / (1 + sqrt(R / (P_xx + R)))``,

which makes the members' epistemic covariance exactly the Kalman posterior
``P - P_{.x} P_{x.} / (P_xx + R)``. Epistemic variance near ``x*`` shrinks, so the next pick moves
elsewhere: the batch spreads. For ``ei``/``logei`` the incumbent also moves to the believed value.
Outputs are updated independently per output value (p). By default the gain is localised by a
Gaussian taper ``exp(-|z - z*|^2 / (2 l^2))`` in standardised inputs ``z``, ``l`` half the median
distance between inputs (``localise=False``: the plain update).

Examples:
    >>> import numpy as np
    >>> from choral.distributions import GaussianMixture
    >>> rng = np.random.default_rng(0)
    >>> X = np.linspace(0, 1, 50)[:, None]
    >>> def predictive_fn(x):  # 8 members: random smooth functions of x
    ...     a = np.random.default_rng(1).normal(size=(8, 1, 1))
    ...     return GaussianMixture(a * np.sin(3 * x)[None], np.full((8, len(x), 1), 1e-4))
    >>> idx = select_batch("epistemic", predictive_fn, X, 3)
    >>> idx.shape, len(set(idx.tolist()))
    ((3,), 3)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from choral.acquisition.scores import (
    MAXIMISED,
    check_kind,
    default_best,
    members_of,
    score_members,
)
from choral.acquisition.thompson import thompson_batch
from choral.checks import check_int
from choral.distributions import Members, Predictive
from choral.errors import DataError

__all__ = ["condition", "select_batch"]


def condition(m: Members, j: int, taper: Tensor | None = None) -> Members:
    """Members (s, N, p) conditioned on a kriging-believer observation at column ``j``.

    ``taper`` (N,) in [0, 1] with ``taper[j] = 1`` localises the update (multiplies the gain),
    as covariance localisation does in ensemble Kalman filters: with ``s`` members the
    ensemble covariance has rank ``s - 1``, so without it ``s - 1`` nearly noise-free picks
    would remove every member disagreement, everywhere.

    >>> import torch
    >>> m = Members(torch.tensor([[[1.0], [2.0]], [[-1.0], [-2.0]]], dtype=torch.float64),
    ...             torch.ones(2, 2, 1, dtype=torch.float64), torch.tensor([0.5, 0.5]))
    >>> condition(m, 0).epistemic.flatten().round(decimals=12).tolist()  # P - P_cx^2 / (P_xx + R)
    [0.5, 2.0]
    """
    w, mean = m.w, m.mean
    dev = m.means - mean
    h = dev[:, j]  # (s, p)
    p_xx = (m.weights[:, None] * h**2).sum(0)
    noise = m.aleatoric[j]
    total = (p_xx + noise).clamp_min(1e-300)
    gain = (w * dev * h[:, None]).sum(0) / total  # (N, p)
    if taper is not None:
        gain = gain * taper[:, None]
    alpha = 1.0 / (1.0 + torch.sqrt(noise / total))
    return Members(mean + dev - alpha * gain * h[:, None], m.variances, m.weights)


def _predict(predictive_fn: Callable[[np.ndarray], Predictive], X: np.ndarray,
             name: str) -> Predictive:
    pred = predictive_fn(X)
    if not isinstance(pred, Predictive) or pred.shape[0] != len(X):
        raise DataError(f"predictive_fn({name}) must return a Predictive with {len(X)} samples; "
                        f"got {pred!r}")
    return pred


def _rows(X: Any, name: str) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim < 2 or len(X) == 0 or not np.isfinite(X).all():
        raise DataError(f"{name} must be a finite array (n, d) with n >= 1; got shape {X.shape}")
    return X


def select_batch(kind: str, predictive_fn: Callable[[np.ndarray], Predictive], candidates: Any,
                 k: int, *, best: float | None = None, maximize: bool = False, beta: float = 2.0,
                 reference: Any = None, objective: Callable[[Tensor], Tensor] | None = None,
                 seed: int = 0, localise: bool = True) -> np.ndarray:
    """``k`` distinct row indices (k,) into ``candidates`` (n, d), picked greedily by ``kind``.

    ``predictive_fn(X) -> Predictive`` (e.g. ``surrogate.predict``) is called once on the
    candidates and, for ``ivr``, once on ``reference`` (r, d) (default: the candidates). Each
    pick maximises the score of :func:`choral.acquisition.score` (minimises it for ``lcb``) on
    the members conditioned on the previous picks (:func:`condition`). ``thompson`` instead
    draws one member function per pick (:func:`~choral.acquisition.thompson.thompson_batch`,
    seeded by ``seed``).
    """
    kind = check_kind(kind)
    X = _rows(candidates, "candidates")
    n, k = len(X), check_int(k, "k", minimum=1, maximum=len(X))  # picks among the candidates
    m = members_of(_predict(predictive_fn, X, "candidates"), objective, seed=seed)
    if kind == "thompson":
        return thompson_batch(m, k, maximize=maximize, seed=seed).cpu().numpy()
    points = X
    if kind == "ivr" and reference is not None:  # condition candidates and reference together
        R = _rows(reference, "reference")
        r = members_of(_predict(predictive_fn, R, "reference"), objective, seed=seed + 1)
        m = Members(torch.cat([m.means, r.means], 1), torch.cat([m.variances, r.variances], 1),
                    m.weights)
        points = np.concatenate([X, R])
    tapers = _Tapers(points, m.means.device) if localise else None
    if kind in ("ei", "logei") and best is None:
        best = default_best(_columns(m, 0, n), maximize)
    sign = 1.0 if MAXIMISED[kind] else -1.0
    taken = torch.zeros(n, dtype=torch.bool, device=m.means.device)
    picks: list[int] = []
    for _ in range(k):
        cand = _columns(m, 0, n)
        ref = _columns(m, n, None) if m.means.shape[1] > n else None
        s = sign * score_members(kind, cand, best=best, maximize=maximize, beta=beta,
                                 reference=ref)
        j = int(torch.where(taken, -torch.inf, torch.nan_to_num(s, nan=-torch.inf)).argmax())
        taken[j] = True
        picks.append(j)
        if kind in ("ei", "logei"):  # the believed value may become the incumbent
            believed = float(cand.mean[j, 0])
            best = max(best, believed) if maximize else min(best, believed)
        m = condition(m, j, None if tapers is None else tapers(j))
    return np.asarray(picks, dtype=np.int64)


def _columns(m: Members, lo: int, hi: int | None) -> Members:
    """Members restricted to columns ``lo:hi`` of the sample axis."""
    return Members(m.means[:, lo:hi], m.variances[:, lo:hi], m.weights)


class _Tapers:
    """Gaussian tapers (N,) on ``device`` around each of ``points`` (N, ...), in standardised
    coordinates; the length scale is found on the CPU (the same on every device)."""

    def __init__(self, points: np.ndarray, device: torch.device) -> None:
        z = points.reshape(len(points), -1)
        sd = z.std(0)
        z = torch.from_numpy((z - z.mean(0)) / np.where(sd > 0, sd, 1.0))  # where numpy's is
        gen = torch.Generator().manual_seed(0)
        pick = torch.randperm(len(z), generator=gen, device=gen.device)
        sub = z[pick[:500]]
        self.length = max(0.5 * float(torch.cdist(sub, sub).median()), 1e-12)
        self.z = z.to(device)

    def __call__(self, j: int) -> Tensor:
        d2 = ((self.z - self.z[j]) ** 2).sum(1)
        return torch.exp(-0.5 * d2 / self.length**2)

"""Out-of-distribution scores and flags: input density, epistemic variance and input range.

A point is suspect when it lies where training inputs were sparse (low density), where the
members disagree (high epistemic variance), or when any one of its features lies outside the
range the training features spanned. :class:`OODDetector` combines the first two as a
standardised sum ``combined = (z_density + z_epistemic) / sqrt(2)``: each part is standardised by
its mean and standard deviation on validation inputs, with

- ``-log p(x)``: a Gaussian kernel density of the standardised training inputs (vectors (n, d)),
  or of channel-pooled coarse features (fields (n, c, *grid) average-pooled to 4 cells per axis),
  bandwidth by Scott's rule ``h = r^(-1/(f + 4))`` on ``r`` reference points of ``f`` features;
- ``log epistemic``: the mean over output values of the epistemic variance in standardised
  target units.

A density over all ``f`` features dilutes one feature leaving its range (the other ``f - 1`` still
look typical), so a per-feature range part is added. With ``lo_j``, ``hi_j`` the minimum and
maximum of feature ``j`` over all training rows, the exceedance is

    ``e(x) = max_j max(0, lo_j - x_j, x_j - hi_j) / (hi_j - lo_j)``

(in units of each feature's training range) and the score is ``max(combined, range)``, with
``range = threshold + (e - margin) / margin`` where ``e > 0`` (else no range part): increasing in
``e``, equal to the threshold at ``e = margin``. So a point is flagged when ``combined >
threshold`` or ``e > margin``, i.e. when ANY feature is more than ``margin`` of its range outside.

The margin is the larger of

- 1% of the range: nearer the training edge than that, a value is within the resolution of the
  box itself (``n`` uniform draws leave an expected gap of ``range / (n + 1)`` to the true edge,
  below 1% from ``n = 100``), and float noise never flags;
- the conformal ``1 - alpha / 2`` quantile of the validation exceedances (the
  ``ceil((n + 1)(1 - alpha / 2))``-th smallest), so the range flag alone takes at most half the
  false-alarm budget whatever the number of training rows or the tails of the inputs (with few
  rows the true edge can lie well beyond a training extreme).

Neither is tuned on any benchmark. The threshold is then conformal on validation inputs for the
union of both flags: the ``ceil((n + 1)(1 - alpha))``-th smallest of the validation ``combined``
scores, with ``+inf`` for rows whose ``e > margin`` (at most ``alpha / 2`` of them, so it is
finite). An exchangeable in-distribution input is thus flagged with probability about ``alpha``
(default 5%): at most ``alpha`` for the threshold given the margin, which the same validation rows
chose. Features and epistemic variances may be arrays or tensors on any device; the detector
works on float64 numpy arrays on the CPU.

Examples:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> train, val = rng.uniform(-1, 1, (500, 2)), rng.uniform(-1, 1, (200, 2))
    >>> det = OODDetector.fit(train, val, np.full(200, 0.01))
    >>> x = np.array([[0.0, 0.0], [6.0, 6.0], [0.0, 1.2]])  # the last: one input 10% outside
    >>> score, flag = det(x, np.full(3, 0.01))
    >>> flag.tolist()
    [False, True, True]
    >>> det.exceedance(x).round(1).tolist()  # in units of each input's training range
    [0.0, 2.5, 0.1]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.nn import functional

from choral.checks import as_numpy
from choral.errors import DataError

__all__ = ["OODDetector", "pooled_features"]

_POOL = 4
_MARGIN_FLOOR = 0.01  # of each feature's training range; see the module docstring


def pooled_features(Xs: np.ndarray | torch.Tensor) -> np.ndarray:
    """Features (n, f) of standardised inputs (an array, or a tensor on any device): vectors
    (n, d) as they are; fields (n, c, *grid) average-pooled to ``4`` cells per axis and
    flattened, f = c * 4^k.

    >>> pooled_features(np.ones((3, 2, 8, 8))).shape
    (3, 32)
    """
    if Xs.ndim == 2:
        return as_numpy(Xs)
    pool = {3: functional.adaptive_avg_pool1d, 4: functional.adaptive_avg_pool2d,
            5: functional.adaptive_avg_pool3d}.get(Xs.ndim)
    if pool is None:
        raise DataError(f"X must be (n, d) or a 1-3D field (n, c, *grid); got shape {Xs.shape}")
    t = torch.as_tensor(Xs, dtype=torch.float64)  # a tensor is pooled on its device
    return as_numpy(pool(t, _POOL).flatten(1))


def _threshold(scores: np.ndarray, alpha: float) -> float:
    n = len(scores)
    k = math.ceil((n + 1) * (1.0 - alpha) - 1e-9)
    return float(np.sort(scores)[min(k, n) - 1])


def _width(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return np.where(hi - lo > 1e-12, hi - lo, 1.0)  # a constant feature: unit width


def _matrix(a: Any, name: str, f: int | None = None) -> np.ndarray:
    a = as_numpy(a)
    if a.ndim != 2 or (f is not None and a.shape[1] != f):
        want = "(n, f)" if f is None else f"(n, {f})"
        raise DataError(f"OOD {name} must be {want}; got shape {a.shape}")
    return a


@dataclass
class OODDetector:
    """Kernel density of reference features plus epistemic variance, standardised on validation,
    and the training range of each feature.

    Attributes:
        points: standardised reference features (r, f).
        loc, scale: feature standardisation (f,).
        stats: validation mean and std of (-log density, log epistemic), shape (2, 2).
        threshold: scores above it are flagged; ``alpha`` is the false-alarm rate it targets.
        lo, hi: per-feature minimum and maximum of the training features (f,); ``None`` (no range
            part) for detectors saved before the range part existed.
        margin: exceedance, in units of each feature's training range, above which a point is
            flagged whatever its other score.
    """

    points: np.ndarray
    loc: np.ndarray
    scale: np.ndarray
    stats: np.ndarray
    threshold: float
    alpha: float
    lo: np.ndarray | None = None
    hi: np.ndarray | None = None
    margin: float = math.inf

    @classmethod
    def fit(cls, train: np.ndarray, val: np.ndarray, val_epistemic: np.ndarray,
            alpha: float = 0.05, max_points: int = 2000, seed: int = 0) -> OODDetector:
        """Fit on training features (n, f) and validation features (n_val, f) with their
        epistemic variances (n_val,); at most ``max_points`` training rows are kept as kernel
        centres (the range uses them all)."""
        if not 0.0 < alpha < 1.0:
            raise DataError(f"alpha (false-alarm rate) must lie in (0, 1); got {alpha!r}")
        train = _matrix(train, "train features")
        val = _matrix(val, "validation features", train.shape[1])
        if len(train) == 0 or len(val) == 0:
            raise DataError(f"OOD fitting needs training and validation rows; got {len(train)} "
                            f"and {len(val)}")
        loc, scale = train.mean(0), train.std(0)
        scale = np.where(scale > 1e-12, scale, 1.0)
        keep = np.random.default_rng(seed).permutation(len(train))[:max_points]
        det = cls((train[keep] - loc) / scale, loc, scale, np.array([[0.0, 1.0], [0.0, 1.0]]),
                  math.inf, float(alpha), train.min(0), train.max(0), _MARGIN_FLOOR)
        parts = det._parts(val, val_epistemic)
        sd = parts.std(0)
        det.stats = np.stack([parts.mean(0), np.where(sd > 1e-12, sd, 1.0)], axis=1)
        e = det.exceedance(val)
        det.margin = max(_MARGIN_FLOOR, _threshold(e, alpha / 2))
        combined = det.combined(val, val_epistemic)
        det.threshold = _threshold(np.where(e > det.margin, math.inf, combined), alpha)
        return det

    def log_density(self, features: np.ndarray) -> np.ndarray:
        """Kernel log density (n,) at features (n, f), in standardised feature space."""
        features = _matrix(features, "features", self.points.shape[1])
        r, f = self.points.shape
        h = r ** (-1.0 / (f + 4))
        z = torch.as_tensor((features - self.loc) / self.scale)
        d2 = torch.cdist(z, torch.as_tensor(self.points)) ** 2
        log_k = torch.logsumexp(-0.5 * d2 / h**2, dim=1) - math.log(r)
        return (log_k - f * math.log(h * math.sqrt(2 * math.pi))).numpy()

    def exceedance(self, features: np.ndarray) -> np.ndarray:
        """Largest distance (n,) of any feature outside its training range, in units of that
        range (0 inside the box); zeros for a detector without a range part."""
        features = _matrix(features, "features", self.points.shape[1])
        if self.lo is None or self.hi is None:
            return np.zeros(len(features))
        out = np.maximum(self.lo - features, features - self.hi) / _width(self.lo, self.hi)
        return np.maximum(out, 0.0).max(1, initial=0.0)

    def _parts(self, features: np.ndarray, epistemic: np.ndarray) -> np.ndarray:
        epistemic = as_numpy(epistemic).reshape(-1)
        if epistemic.shape != (len(features),):
            raise DataError(f"epistemic must be (n,) with n = {len(features)}; got shape "
                            f"{epistemic.shape}")
        return np.stack([-self.log_density(features), np.log(epistemic + 1e-12)], axis=1)

    def combined(self, features: np.ndarray, epistemic: np.ndarray) -> np.ndarray:
        """Density and epistemic part of the score (n,): ``(z_density + z_epistemic) / sqrt(2)``."""
        z = (self._parts(features, epistemic) - self.stats[:, 0]) / self.stats[:, 1]
        return z.sum(1) / math.sqrt(2.0)

    def score(self, features: np.ndarray, epistemic: np.ndarray) -> np.ndarray:
        """OOD scores (n,): larger is further from the training data;
        ``max(combined, threshold + (e - margin) / margin)``, the second only where ``e > 0``."""
        combined = self.combined(features, epistemic)
        if self.lo is None:
            return combined
        e = self.exceedance(features)
        ranged = self.threshold + (e - self.margin) / self.margin
        return np.where(e > 0, np.maximum(combined, ranged), combined)

    def __call__(self, features: np.ndarray, epistemic: np.ndarray) -> tuple[np.ndarray, ...]:
        """(scores (n,), flags (n,) bool): flagged when ``combined > threshold`` or
        ``exceedance > margin``, which is ``score > threshold``."""
        s = self.score(features, epistemic)
        return s, s > self.threshold

    def to_dict(self) -> dict[str, Any]:
        d = {"points": self.points.tolist(), "loc": self.loc.tolist(),
             "scale": self.scale.tolist(), "stats": self.stats.tolist(),
             "threshold": self.threshold, "alpha": self.alpha}
        if self.lo is not None and self.hi is not None:
            d |= {"lo": self.lo.tolist(), "hi": self.hi.tolist(), "margin": self.margin}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> OODDetector:
        """Inverse of :meth:`to_dict`; a dict without ``lo``, ``hi``, ``margin`` (saved before
        the range part existed) gives a detector without it."""
        arrays = {k: np.asarray(d[k], dtype=np.float64) for k in ("loc", "scale", "stats")}
        f = len(arrays["loc"])
        points = np.asarray(d["points"], dtype=np.float64).reshape(-1, f)
        det = cls(points, **arrays, threshold=float(d["threshold"]), alpha=float(d["alpha"]))
        if d.get("lo") is not None:
            lo, hi = (np.asarray(d[k], dtype=np.float64) for k in ("lo", "hi"))
            margin = float(d["margin"])
            if lo.shape != (f,) or hi.shape != (f,) or not margin > 0:
                raise DataError(f"OOD lo, hi must be ({f},) and margin > 0; got shapes "
                                f"{lo.shape}, {hi.shape} and margin {margin!r}")
            det.lo, det.hi, det.margin = lo, hi, margin
        return det

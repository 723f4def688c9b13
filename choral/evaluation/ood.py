"""Out-of-distribution scores and flags: input density plus epistemic variance.

A point is suspect when it lies where training inputs were sparse (low density) or where the
members disagree (high epistemic variance). :class:`OODDetector` combines the two as a
standardised sum ``score = (z_density + z_epistemic) / sqrt(2)``: each part is standardised by its
mean and standard deviation on validation inputs, with

- ``-log p(x)``: a Gaussian kernel density of the standardised training inputs (vectors (n, d)),
  or of channel-pooled coarse features (fields (n, c, *grid) average-pooled to 4 cells per axis),
  bandwidth by Scott's rule ``h = r^(-1/(f + 4))`` on ``r`` reference points of ``f`` features;
- ``log epistemic``: the mean over output values of the epistemic variance in standardised
  target units.

The flag threshold is the ``ceil((n + 1)(1 - alpha))``-th smallest validation score, so an
exchangeable in-distribution input is flagged with probability at most ``alpha`` (default 5%).

Examples:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> train, val = rng.uniform(-1, 1, (500, 2)), rng.uniform(-1, 1, (200, 2))
    >>> det = OODDetector.fit(train, val, np.full(200, 0.01))
    >>> score, flag = det(np.array([[0.0, 0.0], [6.0, 6.0]]), np.array([0.01, 0.01]))
    >>> flag.tolist()
    [False, True]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.nn import functional

from choral.errors import DataError

__all__ = ["OODDetector", "pooled_features"]

_POOL = 4


def pooled_features(Xs: np.ndarray) -> np.ndarray:
    """Features (n, f) of standardised inputs: vectors (n, d) as they are; fields (n, c, *grid)
    average-pooled to ``4`` cells per axis and flattened, f = c * 4^k.

    >>> pooled_features(np.ones((3, 2, 8, 8))).shape
    (3, 32)
    """
    if Xs.ndim == 2:
        return np.asarray(Xs, dtype=np.float64)
    pool = {3: functional.adaptive_avg_pool1d, 4: functional.adaptive_avg_pool2d,
            5: functional.adaptive_avg_pool3d}.get(Xs.ndim)
    if pool is None:
        raise DataError(f"X must be (n, d) or a 1-3D field (n, c, *grid); got shape {Xs.shape}")
    t = torch.as_tensor(Xs, dtype=torch.float64)
    return pool(t, _POOL).flatten(1).numpy()


def _threshold(scores: np.ndarray, alpha: float) -> float:
    n = len(scores)
    k = math.ceil((n + 1) * (1.0 - alpha) - 1e-9)
    return float(np.sort(scores)[min(k, n) - 1])


@dataclass
class OODDetector:
    """Kernel density of reference features plus epistemic variance, standardised on validation.

    Attributes:
        points: standardised reference features (r, f).
        loc, scale: feature standardisation (f,).
        stats: validation mean and std of (-log density, log epistemic), shape (2, 2).
        threshold: scores above it are flagged; ``alpha`` is the false-alarm rate it targets.
    """

    points: np.ndarray
    loc: np.ndarray
    scale: np.ndarray
    stats: np.ndarray
    threshold: float
    alpha: float

    @classmethod
    def fit(cls, train: np.ndarray, val: np.ndarray, val_epistemic: np.ndarray,
            alpha: float = 0.05, max_points: int = 2000, seed: int = 0) -> OODDetector:
        """Fit on training features (n, f) and validation features (n_val, f) with their
        epistemic variances (n_val,); at most ``max_points`` training rows are kept."""
        if not 0.0 < alpha < 1.0:
            raise DataError(f"alpha (false-alarm rate) must lie in (0, 1); got {alpha!r}")
        if len(train) == 0 or len(val) == 0:
            raise DataError(f"OOD fitting needs training and validation rows; got {len(train)} "
                            f"and {len(val)}")
        loc, scale = train.mean(0), train.std(0)
        scale = np.where(scale > 1e-12, scale, 1.0)
        keep = np.random.default_rng(seed).permutation(len(train))[:max_points]
        det = cls((train[keep] - loc) / scale, loc, scale, np.array([[0.0, 1.0], [0.0, 1.0]]),
                  math.inf, float(alpha))
        parts = det._parts(val, val_epistemic)
        sd = parts.std(0)
        det.stats = np.stack([parts.mean(0), np.where(sd > 1e-12, sd, 1.0)], axis=1)
        det.threshold = _threshold(det.score(val, val_epistemic), alpha)
        return det

    def log_density(self, features: np.ndarray) -> np.ndarray:
        """Kernel log density (n,) at features (n, f), in standardised feature space."""
        if features.ndim != 2 or features.shape[1] != self.points.shape[1]:
            raise DataError(f"OOD features must be (n, {self.points.shape[1]}); got shape "
                            f"{features.shape}")
        r, f = self.points.shape
        h = r ** (-1.0 / (f + 4))
        z = torch.as_tensor((features - self.loc) / self.scale)
        d2 = torch.cdist(z, torch.as_tensor(self.points)) ** 2
        log_k = torch.logsumexp(-0.5 * d2 / h**2, dim=1) - math.log(r)
        return (log_k - f * math.log(h * math.sqrt(2 * math.pi))).numpy()

    def _parts(self, features: np.ndarray, epistemic: np.ndarray) -> np.ndarray:
        epistemic = np.asarray(epistemic, dtype=np.float64).reshape(-1)
        if epistemic.shape != (len(features),):
            raise DataError(f"epistemic must be (n,) with n = {len(features)}; got shape "
                            f"{epistemic.shape}")
        return np.stack([-self.log_density(features), np.log(epistemic + 1e-12)], axis=1)

    def score(self, features: np.ndarray, epistemic: np.ndarray) -> np.ndarray:
        """OOD scores (n,): larger is further from the training data."""
        z = (self._parts(features, epistemic) - self.stats[:, 0]) / self.stats[:, 1]
        return z.sum(1) / math.sqrt(2.0)

    def __call__(self, features: np.ndarray, epistemic: np.ndarray) -> tuple[np.ndarray, ...]:
        """(scores (n,), flags (n,) bool)."""
        s = self.score(features, epistemic)
        return s, s > self.threshold

    def to_dict(self) -> dict[str, Any]:
        return {"points": self.points.tolist(), "loc": self.loc.tolist(),
                "scale": self.scale.tolist(), "stats": self.stats.tolist(),
                "threshold": self.threshold, "alpha": self.alpha}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> OODDetector:
        arrays = {k: np.asarray(d[k], dtype=np.float64) for k in ("loc", "scale", "stats")}
        points = np.asarray(d["points"], dtype=np.float64).reshape(-1, len(arrays["loc"]))
        return cls(points, **arrays, threshold=float(d["threshold"]), alpha=float(d["alpha"]))

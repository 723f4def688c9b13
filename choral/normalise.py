"""Per-feature standardisation of inputs and targets, saved with the model as JSON.

Statistics are taken over every axis but the feature/channel axis 1, so the same code serves
vectors (n, d) and fields (n, c, *grid).

Examples:
    >>> import numpy as np
    >>> s = Standardiser.fit(np.array([[1.0], [3.0]]))
    >>> s.mean.tolist(), s.scale.tolist()
    ([2.0], [1.0])
    >>> s.transform(np.array([[3.0]])).tolist()
    [[1.0]]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Standardiser:
    """``z = (x - mean) / scale`` per feature; ``mean`` and ``scale`` have shape (d,)."""

    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, a: np.ndarray) -> Standardiser:
        """Statistics of ``a`` (n, d) or (n, c, *grid); constant features get scale 1."""
        axes = (0, *range(2, a.ndim))
        mean = a.mean(axis=axes)
        scale = a.std(axis=axes)
        scale = np.where(scale > 1e-12 * np.maximum(np.abs(mean), 1.0), scale, 1.0)
        return cls(mean.astype(np.float64), scale.astype(np.float64))

    def _shape(self, ndim: int) -> tuple[int, ...]:
        return (-1,) + (1,) * (ndim - 2)

    def transform(self, a: np.ndarray) -> np.ndarray:
        """Standardise ``a`` (n, d, ...)."""
        shape = self._shape(a.ndim)
        return (a - self.mean.reshape(shape)) / self.scale.reshape(shape)

    def loc_scale(self, ndim: int) -> tuple[np.ndarray, np.ndarray]:
        """``mean`` and ``scale`` shaped to broadcast against one sample of ``ndim - 1`` axes."""
        shape = self._shape(ndim)
        return self.mean.reshape(shape), self.scale.reshape(shape)

    def to_dict(self) -> dict[str, list[float]]:
        return {"mean": self.mean.tolist(), "scale": self.scale.tolist()}

    @classmethod
    def from_dict(cls, values: dict[str, list[float]]) -> Standardiser:
        return cls(np.asarray(values["mean"], float), np.asarray(values["scale"], float))

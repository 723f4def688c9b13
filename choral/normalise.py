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

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from choral.errors import DataError

_Moments = tuple[int, np.ndarray, np.ndarray]  # per feature: count, mean, sum of squared deviations


def _moments(a: np.ndarray) -> _Moments:
    """_Moments of a block (b, d) or (b, c, *grid) over every axis but 1."""
    axes = (0, *range(2, a.ndim))
    mean = a.mean(axis=axes)
    m2 = np.square(a - _per_feature(mean, a.ndim)).sum(axis=axes)
    return a.size // a.shape[1], mean, m2


def _merge(one: _Moments, two: _Moments) -> _Moments:
    """Chan, Golub and LeVeque's pairwise update of (count, mean, M2)."""
    (na, ma, sa), (nb, mb, sb) = one, two
    n, delta = na + nb, mb - ma
    return n, ma + delta * (nb / n), sa + sb + np.square(delta) * (na * nb / n)


def _per_feature(v: np.ndarray, ndim: int) -> np.ndarray:
    return v.reshape((-1,) + (1,) * (ndim - 2))


class _Scan:
    """One pass over blocks: checks shapes, collects NaN/inf row numbers (``bad``) and yields
    each block's moments about ``shift`` (the first block's mean), so that a large offset
    cancels before any sum and the merged moments keep full precision."""

    def __init__(self, name: str) -> None:
        self.name, self.bad, self.start = name, [], 0
        self.shape: tuple[int, ...] | None = None
        self.shift: np.ndarray | None = None

    def _check(self, a: np.ndarray) -> None:
        first = self.shape
        if a.ndim < 2 or a.shape[1] == 0 or (first is not None and a.shape[1:] != first[1:]):
            want = "(b, d) or (b, c, *grid), d, c >= 1" if first is None else f"(b, *{first[1:]})"
            raise DataError(f"{self.name} blocks must have shape {want}; got shape {a.shape}")
        self.shape = first or a.shape
        rows = np.flatnonzero(~np.isfinite(a).all(axis=tuple(range(1, a.ndim))))
        if rows.size:
            self.bad.append(rows + self.start)
        self.start += len(a)

    def moments(self, blocks: Iterable[np.ndarray]) -> Iterator[_Moments]:
        for block in blocks:
            a = np.asarray(block, dtype=np.float64)
            self._check(a)
            if len(a) and not self.bad:
                if self.shift is None:
                    self.shift = a.mean(axis=(0, *range(2, a.ndim)))
                yield _moments(a - _per_feature(self.shift, a.ndim))


def _tree_merge(moments: Iterable[_Moments]) -> _Moments | None:
    """Merge along a balanced binary tree, as a binary counter: a stack of (level, moments)."""
    stack: list[tuple[int, _Moments]] = []
    for m in moments:
        level = 0
        while stack and stack[-1][0] == level:
            m, level = _merge(stack.pop()[1], m), level + 1
        stack.append((level, m))
    total = stack.pop()[1] if stack else None
    while stack:
        total = _merge(stack.pop()[1], total)
    return total


def _nonfinite(bad: list[np.ndarray], name: str) -> DataError:
    rows = np.concatenate(bad)
    count = f"{rows.size} rows" if rows.size > 1 else "1 row"
    more = " (first 10 shown)" if rows.size > 10 else ""
    return DataError(f"{name} has NaN/inf values in {count}: {rows[:10].tolist()}{more}")


@dataclass(frozen=True)
class Standardiser:
    """``z = (x - mean) / scale`` per feature; ``mean`` and ``scale`` have shape (d,)."""

    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, a: np.ndarray) -> Standardiser:
        """Statistics of ``a`` (n, d) or (n, c, *grid); constant features get scale 1."""
        axes = (0, *range(2, a.ndim))
        return cls._from(a.mean(axis=axes), a.std(axis=axes))

    @classmethod
    def fit_blocks(cls, blocks: Iterable[np.ndarray], name: str = "X") -> Standardiser:
        """:meth:`fit` of the row-wise concatenation of ``blocks`` (b, d) or (b, c, *grid).

        One pass holding one block at a time: each block's count, mean and sum of squared
        deviations (M2) about the first block's mean are merged pairwise (Chan et al. 1979) in
        float64, so a large offset costs no precision. NaN/inf raise a DataError naming ``name``
        and the first bad rows.

        >>> blocks = [np.array([[1.0], [2.0]]), np.array([[6.0]])]
        >>> s = Standardiser.fit_blocks(blocks)
        >>> s.to_dict() == Standardiser.fit(np.vstack(blocks)).to_dict()
        True
        >>> Standardiser.fit_blocks([np.ones((2, 1)), np.array([[np.inf]])], name="Y")
        Traceback (most recent call last):
        ...
        choral.errors.DataError: Y has NaN/inf values in 1 row: [2]
        """
        scan = _Scan(name)
        total = _tree_merge(scan.moments(blocks))
        if scan.bad:
            raise _nonfinite(scan.bad, name)
        if total is None:
            raise DataError(f"{name} is empty: the blocks hold no rows; need >= 1 row")
        n, mean, m2 = total
        return cls._from(scan.shift + mean, np.sqrt(m2 / n))

    @classmethod
    def _from(cls, mean: np.ndarray, std: np.ndarray) -> Standardiser:
        """Constant features (std <= 1e-12 max(|mean|, 1)) get scale 1."""
        scale = np.where(std > 1e-12 * np.maximum(np.abs(mean), 1.0), std, 1.0)
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

"""Sobol indices of an ensemble, with error bars that combine the members and Monte Carlo error.

Each member's mean function is one function the ensemble believes, so each member has its own
indices (s, m, d) (``s`` members, ``m`` output values, ``d`` inputs), each estimated with a Monte
Carlo standard error (bootstrap over the base samples). The ensemble's answer is their mixture,
as for a prediction: the estimate is the mean over members, and its variance is the spread of
the members (epistemic) plus the mean squared Monte Carlo error (the law of total variance).

Examples:
    >>> import numpy as np
    >>> one = np.array([[[0.2, 0.6]], [[0.4, 0.6]]])  # s=2 members, m=1 output, d=2
    >>> se = np.full_like(one, 0.0)
    >>> res = SobolIndices(one, one, se, se)
    >>> res.first.tolist(), res.epistemic_std("first").round(3).tolist()
    ([[0.30000000000000004, 0.6]], [[0.1, 0.0]])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from choral.errors import DataError

__all__ = ["KINDS", "SobolIndices"]

KINDS = ("first", "total")
"""The two kinds of index: first-order (Saltelli 2010) and total (Jansen 1999)."""


@dataclass(frozen=True)
class SobolIndices:
    """Per-member Sobol indices and their Monte Carlo standard errors, each (s, m, d).

    Attributes:
        first_members: first-order indices of each member's mean function (s, m, d).
        total_members: total indices (s, m, d).
        first_se: bootstrap standard errors of ``first_members`` (s, m, d).
        total_se: bootstrap standard errors of ``total_members`` (s, m, d).
        n: base samples per member (the functions ran on ``n (d + 2)`` inputs).
    """

    first_members: np.ndarray
    total_members: np.ndarray
    first_se: np.ndarray
    total_se: np.ndarray
    n: int = 0

    def _members(self, kind: str) -> tuple[np.ndarray, np.ndarray]:
        if kind not in KINDS:
            raise DataError(f"kind must be one of {', '.join(KINDS)}; got {kind!r}")
        if kind == "first":
            return self.first_members, self.first_se
        return self.total_members, self.total_se

    @property
    def first(self) -> np.ndarray:
        """First-order indices (m, d): the mean over members."""
        return self.first_members.mean(0)

    @property
    def total(self) -> np.ndarray:
        """Total indices (m, d): the mean over members."""
        return self.total_members.mean(0)

    def epistemic_std(self, kind: str = "first") -> np.ndarray:
        """The spread of the members' indices (m, d) (equal member weights, as the mixture)."""
        return self._members(kind)[0].std(0)

    def mc_std(self, kind: str = "first") -> np.ndarray:
        """The root mean squared Monte Carlo standard error over members (m, d)."""
        return np.sqrt((self._members(kind)[1] ** 2).mean(0))

    def std(self, kind: str = "first") -> np.ndarray:
        """The total standard deviation (m, d): ``sqrt(epistemic^2 + mc^2)``."""
        return np.hypot(self.epistemic_std(kind), self.mc_std(kind))

    def interval(self, kind: str = "first", level: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
        """Central interval (lower, upper), each (m, d): mean -+ z_level * total std."""
        if not isinstance(level, int | float) or not 0.0 < level < 1.0:
            raise DataError(f"level must be a float in (0, 1); got {level!r}")
        members = self._members(kind)[0]
        z = stats.norm.ppf(0.5 + level / 2.0)
        centre, spread = members.mean(0), self.std(kind)
        return centre - z * spread, centre + z * spread

    def to_dict(self, names: list[str] | None = None, level: float = 0.9) -> dict[str, Any]:
        """A JSON-ready summary: per kind, the estimate, the three standard deviations and the
        interval at ``level`` (lists (m, d)), plus the input ``names`` and the sizes."""
        s, m, d = self.first_members.shape
        out: dict[str, Any] = {"inputs": names or [f"x{i}" for i in range(d)], "members": s,
                               "outputs": m, "n": self.n, "level": level}
        for kind in KINDS:
            lower, upper = self.interval(kind, level)
            out[kind] = {"estimate": self._members(kind)[0].mean(0).tolist(),
                         "std": self.std(kind).tolist(),
                         "epistemic_std": self.epistemic_std(kind).tolist(),
                         "mc_std": self.mc_std(kind).tolist(),
                         "lower": lower.tolist(), "upper": upper.tolist()}
        return out

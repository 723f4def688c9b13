"""A corner plot of posterior samples: histograms on the diagonal, 2-D histograms below it.

Drawn with matplotlib's object API (a ``Figure`` on an Agg canvas; pyplot is never imported, so
no global state or display is touched), written atomically. ``d`` inputs give ``d (d + 1) / 2``
axes (the panels above the diagonal are left out). Optional marks: ``truth`` (d,) as lines and
points, and ``bounds`` (d, 2) as the axes' limits (a box prior's box).

Examples:
    >>> import numpy as np, tempfile, os
    >>> X = np.random.default_rng(0).normal(size=(500, 3))
    >>> fig = corner_figure(X, truth=[0.0, 0.0, 0.0])
    >>> len(fig.axes)
    6
    >>> f = os.path.join(tempfile.mkdtemp(), "corner.png")
    >>> write_corner(f, X); open(f, "rb").read(4) == b"\\x89PNG"
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from choral.atomic import atomic_write
from choral.checks import check_bounds
from choral.errors import DataError

__all__ = ["corner_figure", "write_corner"]


def _check(samples: Any, truth: Any, bounds: Any) -> tuple[np.ndarray, ...]:
    X = np.asarray(samples, dtype=np.float64)
    if X.ndim != 2 or len(X) < 2 or not np.isfinite(X).all():
        raise DataError(f"samples must be finite draws (n >= 2, d); got shape {X.shape}")
    d = X.shape[1]
    t = None if truth is None else np.asarray(truth, dtype=np.float64).reshape(-1)
    if t is not None and t.shape != (d,):
        raise DataError(f"truth must have the samples' {d} inputs; got {t.shape[0]} values")
    return X, t, None if bounds is None else check_bounds(bounds, d)


def corner_figure(samples: Any, *, truth: Any = None, bounds: Any = None,
                  labels: Sequence[str] | None = None, bins: int = 30) -> Figure:
    """The corner plot of ``samples`` (n, d) as a matplotlib Figure with d (d + 1) / 2 axes."""
    X, t, b = _check(samples, truth, bounds)
    d = X.shape[1]
    labels = list(labels) if labels is not None else [f"x{i}" for i in range(d)]
    lim = b if b is not None else np.stack([X.min(0), X.max(0)], 1)
    lim = np.where(lim[:, :1] == lim[:, 1:], lim + [[-0.5, 0.5]], lim)  # constant columns
    fig = Figure(figsize=(2.2 * d + 0.6, 2.2 * d + 0.6), layout="constrained")
    FigureCanvasAgg(fig)  # attaches itself as fig.canvas
    grid = fig.add_gridspec(d, d)
    for i in range(d):
        for j in range(i + 1):
            ax = fig.add_subplot(grid[i, j])
            if i == j:
                ax.hist(X[:, i], bins=bins, range=tuple(lim[i]), color="C0", histtype="stepfilled",
                        alpha=0.7)
                ax.set_yticks([])
                if t is not None:
                    ax.axvline(t[i], color="C3")
            else:
                ax.hist2d(X[:, j], X[:, i], bins=bins, range=[lim[j], lim[i]], cmap="Blues")
                ax.set_ylim(*lim[i])
                if t is not None:
                    ax.plot(t[j], t[i], "s", color="C3", ms=4)
            ax.set_xlim(*lim[j])
            if i == d - 1:
                ax.set_xlabel(labels[j])
            else:
                ax.set_xticklabels([])
            if j == 0 and i > 0:
                ax.set_ylabel(labels[i])
            elif i != j:
                ax.set_yticklabels([])
    return fig


def write_corner(path: str | Path, samples: Any, **kw: Any) -> None:
    """Write :func:`corner_figure` of ``samples`` (n, d) to ``path`` (PNG), atomically."""
    fig = corner_figure(samples, **kw)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))

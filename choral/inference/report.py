"""An HTML report of a posterior: a summary table, the corner plot and, when the inputs
parameterise a field, the posterior mean and std of that field.

``write_posterior_report(out_dir, posterior)`` writes ``out_dir/index.html`` with PNG figures
beside it (``corner.png``; ``field.png`` when ``field`` is given), every file atomic. ``field``
maps input samples (n, d) to fields (n, H, W) (e.g. :func:`darcy_modes_field`, the Darcy
coefficient ``a`` of the mode coefficients of :mod:`choral.simulators.darcy_modes`); the report
pushes every posterior draw through it and shows the pointwise mean and standard deviation of
the field (the posterior of the field, not the field of the posterior mean), and with ``truth``
the true field and the error of the mean. Drawn on Agg canvases, without pyplot.

Examples:
    >>> import numpy as np, tempfile, pathlib
    >>> from choral.inference.mcmc import Posterior
    >>> post = Posterior(np.random.default_rng(0).normal(size=(2, 50, 2)), np.ones(2),
    ...                  np.full(2, 100.0))
    >>> index = write_posterior_report(tempfile.mkdtemp(), post, truth=[0.0, 0.0])
    >>> sorted(p.name for p in index.parent.iterdir())
    ['corner.png', 'index.html']
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from choral.errors import DataError
from choral.evaluation.report import DPI, write_page
from choral.inference.corner import corner_figure
from choral.inference.mcmc import Posterior
from choral.simulators.darcy_modes import coefficient_field

__all__ = ["darcy_modes_field", "field_figure", "write_posterior_report"]

Field = Callable[[np.ndarray], np.ndarray]
"""``samples (n, d) -> fields (n, H, W)``."""
MAX_FIELD_DRAWS = 4000  # posterior draws pushed through the field map (evenly thinned)

def darcy_modes_field(resolution: int = 33) -> Field:
    """The Darcy coefficient ``a`` (n, N, N) at ``resolution`` nodes per axis of mode
    coefficients (n, k) (:func:`~choral.simulators.darcy_modes.coefficient_field`)."""
    return lambda samples: coefficient_field(samples, resolution)


def _fields(field: Field, X: np.ndarray) -> np.ndarray:
    F = np.asarray(field(X), dtype=np.float64)
    if F.ndim != 3 or len(F) != len(X) or not np.isfinite(F).all():
        raise DataError(f"field must map samples (n, d) to finite fields (n, H, W); got shape "
                        f"{F.shape} for {len(X)} samples")
    return F


def field_figure(samples: Any, field: Field, truth: Any = None) -> Figure:
    """Posterior mean and std of ``field(samples)`` (n, H, W) as images; with ``truth`` (d,)
    also the true field and |mean - truth|. The images are ``fig.axes[k].images[0]``."""
    X = np.asarray(samples, dtype=np.float64)
    F = _fields(field, X)
    panels = [("posterior mean", F.mean(0), "viridis"), ("posterior std", F.std(0), "magma")]
    if truth is not None:
        true = _fields(field, np.asarray(truth, dtype=np.float64).reshape(1, -1))[0]
        panels = [("truth", true, "viridis"), *panels,
                  ("|mean - truth|", np.abs(F.mean(0) - true), "magma")]
    lo = min(p[1].min() for p in panels if p[2] == "viridis")
    hi = max(p[1].max() for p in panels if p[2] == "viridis")
    fig = Figure(figsize=(4.2 * len(panels), 3.6), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    for ax, (name, image, cmap) in zip(np.atleast_1d(fig.subplots(1, len(panels))), panels,
                                       strict=True):
        shared = {"vmin": lo, "vmax": hi} if cmap == "viridis" else {}
        # field[i, j] at (x_i, y_j): x to the right, y up
        fig.colorbar(ax.imshow(image.T, origin="lower", cmap=cmap, extent=(0, 1, 0, 1),
                               **shared), ax=ax, shrink=0.85)
        ax.set(title=name, xticks=[], yticks=[])
    return fig


def _thin(X: np.ndarray, k: int) -> np.ndarray:
    return X if len(X) <= k else X[np.linspace(0, len(X) - 1, k).round().astype(int)]


def _summary_table(post: Posterior, labels: Sequence[str], level: float) -> str:
    s = post.summary(level)
    head = ("<tr><th>input</th><th>mean</th><th>std</th>"
            f"<th>{100 * level:g}% interval</th><th>R-hat</th><th>ESS</th></tr>")
    rows = "".join(
        f"<tr><th>{html.escape(name)}</th><td class=\"num\">{s['mean'][i]:.4g}</td>"
        f"<td class=\"num\">{s['std'][i]:.3g}</td><td class=\"num\">[{s['lower'][i]:.4g}, "
        f"{s['upper'][i]:.4g}]</td><td class=\"num\">{s['rhat'][i]:.3f}</td>"
        f"<td class=\"num\">{s['ess'][i]:.0f}</td></tr>" for i, name in enumerate(labels))
    info = {k: post.info[k] for k in ("chains", "draws", "warmup", "acceptance", "divergences",
                                      "seconds") if k in post.info}
    about = ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                      for k, v in info.items())
    return (f"<h2>Posterior</h2>\n<p>{html.escape(about)}</p>\n<table>{head}{rows}</table>\n")


def write_posterior_report(out_dir: str | Path, posterior: Posterior, *, truth: Any = None,
                           bounds: Any = None, labels: Sequence[str] | None = None,
                           field: Field | None = None, field_name: str = "field",
                           level: float = 0.9, title: str = "choral infer: posterior") -> Path:
    """Write ``out_dir/index.html``, ``corner.png`` and (with ``field``) ``field.png``; return
    the index path. ``posterior`` holds samples (c, draws, d); ``truth`` (d,) is marked;
    ``bounds`` (d, 2) sets the corner plot's limits."""
    X = posterior.flat
    d = X.shape[1]
    labels = list(labels) if labels is not None else [f"x{i}" for i in range(d)]
    out = Path(out_dir)
    figures = [(corner_figure(X, truth=truth, bounds=bounds, labels=labels), "corner.png",
                "corner plot of the posterior samples",
                "Posterior samples: histograms of each input on the diagonal, 2-D histograms "
                "of the pairs below it" + (", the true inputs in red." if truth is not None
                                          else "."))]
    if field is not None:
        figures.append((field_figure(_thin(X, MAX_FIELD_DRAWS), field, truth), "field.png",
                        f"posterior mean and std of the {field_name}",
                        f"The {field_name} of every posterior draw: its pointwise mean and "
                        "standard deviation" + (", beside the true field and the absolute error "
                                                "of the mean." if truth is not None else ".")))
    elif (out / "field.png").exists():
        (out / "field.png").unlink()  # stale, from an earlier report of a field
    return write_page(out, title, [_summary_table(posterior, labels, level)], figures)

"""A self-contained HTML report of a predictive against test targets, with PNG figures beside it.

Shapes: n samples, d input features, m outputs, c channels, grid L (1-D) or H, W (2-D).
Vector data: X (n, d), Y (n, m). Field data: X (n, c_in, *grid), Y (n, c_out, *grid).
Figures are drawn on Agg canvases without pyplot (no global state); every file is atomic.
The predictive may live on any device: scores are computed there, figures from CPU copies.

Examples:
    >>> import torch
    >>> from choral.distributions import GaussianMixture
    >>> mix = GaussianMixture(torch.zeros(1, 4, 1), torch.ones(1, 4, 1))
    >>> levels, observed = reliability(mix, torch.tensor([[0.0], [0.1], [-3.0], [3.0]]), [0.5])
    >>> levels.tolist(), observed.tolist()
    ([0.5], [0.5])
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from choral.atomic import atomic_write
from choral.checks import as_numpy, check_int
from choral.distributions import Predictive
from choral.errors import DataError
from choral.evaluation.metrics import check_targets, coverage, pit_calibration_error

__all__ = ["LEVELS", "html_table", "new_figure", "reliability", "write_page", "write_report"]

LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
DPI = 100
MAX_SCATTER = 20_000  # points drawn in the error-vs-std scatter
MAX_RELIABILITY = 20_000  # target values behind the reliability diagram (a bisection per level)
MAX_PARITY = 1_000  # samples drawn with error bars in the parity plot


def reliability(predictive: Predictive, Y: Any,
                levels: Sequence[float] = LEVELS) -> tuple[np.ndarray, np.ndarray]:
    """Observed coverage of central intervals against their nominal levels (k,) in (0, 1).

    ``predictive`` is a mixture over Y's shape, (n, m) or (n, c, *grid). Returns (levels (k,),
    observed (k,)): the fraction of all target values inside ``predictive.interval(level)``.
    """
    y = check_targets(predictive, Y)
    bounds = (predictive.interval(float(level)) for level in levels)
    observed = [((y >= lower) & (y <= upper)).double().mean().item() for lower, upper in bounds]
    return np.asarray(levels, dtype=float), np.asarray(observed)


def write_report(out_dir: str | Path, X: Any, Y: Any, predictive: Predictive,
                 scores: dict[str, float], *, title: str, n_examples: int = 4,
                 model_info: dict | None = None, uncalibrated: Predictive | None = None) -> Path:
    """Write ``out_dir/index.html`` and its PNG figures beside it; return the index path.

    X: inputs (n, d) or fields (n, c_in, *grid); Y: targets (n, m) or fields (n, c_out, *grid)
    with a 1-D (L) or 2-D (H, W) grid; ``predictive``: a mixture over Y's shape (the calibrated
    one when the model has a calibration). ``scores`` are shown with 4 significant digits,
    ``model_info`` (optional) as a second table; all text is HTML-escaped. Figures:
    ``parity.png`` (vectors) or, for fields, ``example_<i>.png`` for the first ``n_examples``
    samples (first channels), then ``pit.png`` and ``error_vs_std.png``. Stale
    ``example_<i>.png`` files of an earlier report in ``out_dir`` are removed.

    ``uncalibrated`` (optional, Y's shape): the same model's predictive before calibration
    (``model.predict(X, calibrated=False)``). When given, ``pit.png`` draws the PIT histogram and
    the reliability diagram before and after calibration on the same axes, with a legend, and a
    "Calibration" table shows calibration_error, coverage_50, coverage_90 (over all target
    values, as in :func:`~choral.evaluation.metrics.evaluate`) and the reliability gap (mean
    |observed - nominal| over the diagram's levels) for both.
    """
    x, y = _array(X, "X"), check_targets(predictive, Y)
    if y.ndim not in (2, 3, 4):
        raise DataError(f"Y must be (n, m), (n, c, L) or (n, c, H, W); got {tuple(y.shape)}")
    if x.ndim not in (2, 3, 4) or x.shape[0] != y.shape[0]:
        raise DataError(f"X must be (n, d), (n, c, L) or (n, c, H, W) with n = {y.shape[0]} "
                        f"like Y; got {tuple(x.shape)}")
    if uncalibrated is not None and (not isinstance(uncalibrated, Predictive)
                                     or tuple(uncalibrated.shape) != tuple(y.shape)):
        got = type(uncalibrated).__name__ + (f" of shape {tuple(uncalibrated.shape)}"
                                             if isinstance(uncalibrated, Predictive) else "")
        raise DataError(f"uncalibrated must be a Predictive of Y's shape {tuple(y.shape)} (the "
                        f"model's predict(X, calibrated=False)) or None; got {got}")
    check_int(n_examples, "n_examples", minimum=0)
    out, rng = Path(out_dir), np.random.default_rng(0)
    out.mkdir(parents=True, exist_ok=True)
    figures = [_parity(y, predictive, rng)] if y.ndim == 2 else [
        _example(i, x[i].numpy(), y[i], predictive.select([i]))
        for i in range(min(n_examples, y.shape[0]))]
    pit_figure, calibration = _pit(y, predictive, rng, uncalibrated)
    figures += [pit_figure, _error_vs_std(y, predictive, rng)]
    for stale in set(out.glob("example_*.png")) - {out / f[1] for f in figures}:
        stale.unlink()
    return write_page(out, title, [html_table("Scores", scores),
                                   _calibration_table(calibration) if calibration else "",
                                   html_table("Model", model_info) if model_info else ""],
                      figures)


def _array(a: Any, name: str) -> torch.Tensor:
    a = a.detach().cpu() if isinstance(a, torch.Tensor) else a
    try:
        return torch.as_tensor(a, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise DataError(f"{name} must be a numeric array; got {type(a).__name__}") from exc


def _pick(rng: np.random.Generator, size: int, k: int) -> torch.Tensor:
    """Sorted indices of at most ``k`` of ``size`` items, drawn without replacement."""
    return torch.as_tensor(np.sort(rng.choice(size, min(size, k), replace=False)))


def new_figure(width: float, height: float, **margins: float) -> Figure:
    """Fixed margins (fractions of the figure): a layout engine would double the drawing time."""
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)  # attaches itself as fig.canvas: rendering never touches pyplot
    fig.subplots_adjust(**margins)
    return fig


def _image(fig: Figure, ax: Any, a: np.ndarray, cmap: str, vmin=None, vmax=None) -> None:
    fig.colorbar(ax.imshow(a, origin="lower", cmap=cmap, vmin=vmin, vmax=vmax), ax=ax, shrink=0.85)
    ax.set(xticks=[], yticks=[])


def _example(i: int, x: np.ndarray, y: torch.Tensor, p: Predictive):
    target, mean, std = (as_numpy(t) for t in (y[0], p.mean[0, 0], p.stddev[0, 0]))
    err, first, two_d = np.abs(target - mean), x[0] if x.ndim >= 2 else x, target.ndim == 2
    fig = new_figure(17 if two_d else 14, 3.1 if two_d else 3.4, left=0.02 if two_d else 0.04,
                  right=0.98, bottom=0.08 if two_d else 0.1, top=0.9, wspace=0.3 if two_d else 0.22)
    axes = fig.subplots(1, 5 if two_d else 4)
    if first.ndim == 2:
        _image(fig, axes[0], first, "cividis")
    else:  # a 1-D field as a line, a feature vector as markers over the feature index
        axes[0].plot(first, "k" if x.ndim >= 2 else "ko")
    titles = [f"sample {i}: input " + ("ch 0" if x.ndim >= 2 else "features"), "target ch 0",
              "predicted mean", "predicted std", "|error|"]
    if two_d:
        lo, hi = min(target.min(), mean.min()), max(target.max(), mean.max())
        _image(fig, axes[1], target, "viridis", lo, hi)
        _image(fig, axes[2], mean, "viridis", lo, hi)
        _image(fig, axes[3], std, "magma")
        _image(fig, axes[4], err, "magma")
    else:
        grid = np.arange(target.size)
        axes[1].fill_between(grid, mean - 2 * std, mean + 2 * std, color="C0", alpha=0.25,
                             label="mean ± 2 std")
        axes[1].plot(grid, target, "k", lw=1.2, label="target")
        axes[1].plot(grid, mean, "C0", lw=1.2, label="mean")
        axes[1].legend(fontsize=8)
        axes[2].plot(grid, std, "C1")
        axes[3].plot(grid, err, "C3")
        titles[1:3] = ["target ch 0 and prediction"]
    for ax, name in zip(axes, titles, strict=True):
        ax.set_title(name)
    shown = "target, predicted mean" if two_d else "target with the mean ± 2 std band"
    return (fig, f"example_{i}.png", f"example {i}: target, prediction, uncertainty and error",
            f"Test sample {i} (first channels): input, {shown}, predicted standard deviation and "
            "absolute error; a useful uncertainty is large where the error is large.")


def _parity(y: torch.Tensor, p: Predictive, rng: np.random.Generator):
    sub = p.select(idx := _pick(rng, y.shape[0], MAX_PARITY))
    lower, upper = (as_numpy(t) for t in sub.interval(0.9))
    mean, target, k = as_numpy(sub.mean), as_numpy(y[idx]), min(y.shape[1], 4)
    fig = new_figure(4 * k, 4, left=0.16 / k, right=1 - 0.03 / k, bottom=0.12, wspace=0.35)
    for j, ax in enumerate(np.atleast_1d(fig.subplots(1, k))):
        yerr = np.stack([mean[:, j] - lower[:, j], upper[:, j] - mean[:, j]])
        ax.errorbar(target[:, j], mean[:, j], yerr=yerr, fmt="o", ms=3, alpha=0.5, lw=0.7)
        ax.axline((target[0, j],) * 2, slope=1, color="k", ls="--", lw=1)  # a point in the data
        ax.set(xlabel="target", ylabel="predicted mean (90% interval)", title=f"output {j}")
    return (fig, "parity.png", "predicted mean against target with 90% intervals",
            "Predicted mean against target per output (up to 4) with 90% intervals: points lie "
            "on the dashed diagonal when accurate, and about 90% of the bars should cross it.")


def _reliability_on(y: torch.Tensor, p: Predictive, idx: torch.Tensor, flat: bool):
    """The reliability diagram of ``p`` on the flat target values ``idx``, or on all of them."""
    if not flat:
        return reliability(p, y)
    return reliability(p.select(idx, flat=True), y.reshape(-1)[idx])


def _pit(y: torch.Tensor, p: Predictive, rng: np.random.Generator,
         before: Predictive | None = None):
    """The PIT/reliability figure, and with ``before`` (the uncalibrated predictive) the
    before/after calibration rows {score: (before, after)} (None without it)."""
    idx = _pick(rng, y.numel(), MAX_RELIABILITY)
    preds = [p] if before is None else [before, p]
    # calibrations are per output or per cell: no flat subset; then both use all values alike
    flat = not any(hasattr(q, "rebase") for q in preds)
    curves = [_reliability_on(y, q, idx, flat) for q in preds]
    pits = [q.cdf(y) for q in preds]
    hists = [as_numpy(u).ravel() for u in pits]
    fig = new_figure(9, 4, left=0.08, right=0.98, bottom=0.13, top=0.92, wspace=0.25)
    ax1, ax2 = fig.subplots(1, 2)
    ax2.plot([0, 1], [0, 1], "k--", lw=1, label="calibrated")
    if before is None:
        ax1.hist(hists[0], bins=20, range=(0, 1), density=True, alpha=0.7)
        ax2.plot(*curves[0], "o-", color="C3", label="observed")
    else:
        ax1.hist(hists[0], bins=20, range=(0, 1), density=True, histtype="step",
                 lw=1.8, color="C0", label="before calibration")
        ax1.hist(hists[1], bins=20, range=(0, 1), density=True, alpha=0.5,
                 color="C3", label="after calibration")
        ax1.legend(fontsize=8)
        ax2.plot(*curves[0], "s--", color="C0", label="before calibration")
        ax2.plot(*curves[1], "o-", color="C3", label="after calibration")
    ax1.axhline(1.0, color="k", ls="--", lw=1)
    ax1.set(xlabel="PIT = F(y)", ylabel="density", title="PIT histogram")
    ax2.set(xlim=(0, 1), ylim=(0, 1), xlabel="nominal level of central interval",
            ylabel="observed coverage",
            title="reliability" if before is None else "reliability before and after calibration")
    ax2.legend()
    caption = ("Left: a PIT histogram as flat as the dashed line means calibrated; U-shaped "
               "overconfident, hump-shaped underconfident, sloped biased. Right: points below the "
               "diagonal mean too narrow intervals, above it too wide.")
    if before is None:
        return (fig, "pit.png", "PIT histogram and reliability diagram", caption), None
    caption += (" Blue (outline, squares): the model before calibration; red (filled, "
                "circles): after calibration.")
    rows = {"calibration_error": [pit_calibration_error(u) for u in pits],
            "coverage_50": [coverage(q, y, 0.5) for q in preds],
            "coverage_90": [coverage(q, y, 0.9) for q in preds],
            "reliability_gap": [float(np.abs(obs - lv).mean()) for lv, obs in curves]}
    return ((fig, "pit.png", "PIT histogram and reliability diagram before and after calibration",
             caption), {k: tuple(v) for k, v in rows.items()})


def _error_vs_std(y: torch.Tensor, p: Predictive, rng: np.random.Generator):
    err, std = (as_numpy(t).ravel() for t in ((y - p.mean).abs(), p.stddev))
    bins = np.array_split(np.argsort(std), min(12, std.size))  # equal-count std quantile bins
    centres, binned = [np.median(std[b]) for b in bins], [err[b].mean() for b in bins]
    pick = _pick(rng, err.size, MAX_SCATTER).numpy()
    fig = new_figure(5.5, 4.5, left=0.15, right=0.96, bottom=0.12, top=0.92)
    ax = fig.subplots()
    ax.scatter(std[pick], err[pick], s=4, alpha=0.2, label="target values", rasterized=True)
    ax.plot(centres, binned, "o-", color="C3", label="mean |error| per std bin")
    line = np.array([std.min(), std.max()])  # E|e| = √(2/π) std for e ~ N(0, std²)
    ax.plot(line, math.sqrt(2 / math.pi) * line, "k--", label="calibrated: √(2/π) std")
    ax.set(xscale="log", yscale="log", xlim=(line[0] / 1.2, line[1] * 1.2),  # std may be constant
           xlabel="predicted std", ylabel="|error|", title="error against predicted std")
    ax.legend(fontsize=8)
    return (fig, "error_vs_std.png", "absolute error against predicted standard deviation",
            "Binned mean |error| (red) follows the dashed line if calibrated: above it "
            "overconfident, below it underconfident; flat means the std does not rank the errors.")


_CSS = ("body{font-family:sans-serif;margin:2em auto;max-width:1200px}table{border-collapse:"
        "collapse}td,th{border:1px solid #ccc;padding:4px 10px;text-align:left}th{background:#eee}"
        "td.num{text-align:right;font-family:monospace}img{max-width:100%}figcaption{color:#555}")


def _cell(value: Any) -> str:
    value = value.item() if getattr(value, "ndim", None) == 0 else value  # numpy/torch scalars
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f'<td class="num">{format(value, ".4g" if isinstance(value, float) else "d")}</td>'
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return f"<td>{html.escape(text)}</td>"


def _calibration_table(rows: dict[str, tuple[float, float]]) -> str:
    head = "<tr><th>score</th><th>before calibration</th><th>after calibration</th></tr>"
    body = "".join(f"<tr><th>{html.escape(k)}</th>{_cell(b)}{_cell(a)}</tr>"
                   for k, (b, a) in rows.items())
    return (f"<h2>Calibration</h2>\n<p>calibration_error (PIT), coverage_50 and coverage_90 on "
            f"all target values; reliability_gap: mean |observed - nominal| coverage over the "
            f"reliability diagram's levels.</p>\n<table>{head}{body}</table>\n")


def html_table(heading: str, rows: dict) -> str:
    """An HTML section: ``heading`` and a two-column table of ``rows`` (name: value; numbers
    with 4 significant digits, everything escaped)."""
    body = "".join(f"<tr><th>{html.escape(str(k))}</th>{_cell(v)}</tr>" for k, v in rows.items())
    return f"<h2>{html.escape(heading)}</h2>\n<table>{body}</table>\n"


def write_page(out_dir: str | Path, title: str, sections: list[str], figures: list) -> Path:
    """Write each figure of ``figures`` ((Figure, file name, alt text, caption)) as a PNG and
    ``out_dir/index.html``: ``title``, the HTML ``sections`` in order, then the figures; every
    file atomic. Returns the index path (the one page layout of choral's reports)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for fig, name, _, _ in figures:
        atomic_write(out / name, lambda tmp, fig=fig: fig.savefig(tmp, format="png", dpi=DPI))
    title = html.escape(title)
    parts = [f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}'
             f"</title><style>{_CSS}</style></head><body>\n<h1>{title}</h1>\n", *sections,
             "<h2>Figures</h2>\n"]
    parts += [f'<figure><img src="{html.escape(n)}" alt="{html.escape(alt)}"><figcaption>'
              f"{html.escape(caption)}</figcaption></figure>\n" for _, n, alt, caption in figures]
    page = "".join(parts) + "</body></html>\n"
    atomic_write(out / "index.html", lambda p: p.write_text(page, encoding="utf-8"))
    return out / "index.html"

"""The HTML report of autoregressive rollouts: per-step scores as curves, beside the PNGs.

Shapes: member trajectories (s, n, T, c, *grid), truth (n, T, c, *grid), one predictive
(n, c, *grid) per step. Scores are :func:`~choral.evaluation.rollout.rollout_scores`; the page
uses the same figure and HTML helpers as :mod:`choral.evaluation.report`.

Examples:
    >>> import tempfile, torch
    >>> from choral.distributions import GaussianMixture
    >>> y = torch.randn(2, 3, 1, 8, dtype=torch.float64)
    >>> members = y + 0.1 * torch.randn(4, 2, 3, 1, 8, dtype=torch.float64)
    >>> preds = [GaussianMixture(members[:, :, t], torch.full_like(members[:, :, t], 0.01))
    ...          for t in range(3)]
    >>> index = write_rollout_report(tempfile.mkdtemp(), members, preds, y, title="demo")
    >>> sorted(p.name for p in index.parent.iterdir())
    ['index.html', 'rollout_example.png', 'rollout_scores.png']
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from choral.checks import as_float64
from choral.distributions import Predictive
from choral.errors import DataError
from choral.evaluation.report import html_table, new_figure, write_page
from choral.evaluation.rollout import rollout_scores, spread_skill_per_step

__all__ = ["write_rollout_report"]


def write_rollout_report(out_dir: str | Path, members: Any, predictives: Sequence[Predictive],
                         y: Any, *, title: str, model_info: dict | None = None,
                         raw_members: Any = None, threshold: float = 0.8) -> Path:
    """Write ``out_dir/index.html`` with ``rollout_scores.png`` (per-step rel. L2 and CRPS,
    correlation with its ``threshold`` and the correlation time, spread-skill ratio with the
    ideal 1) and, for 1-D states, ``rollout_example.png`` (space-time plots of trajectory 0:
    truth, ensemble mean, |error|, member spread); return the index path.

    ``members`` (s, n, T, c, *grid) and ``predictives`` are the rollout shown (e.g. with its
    calibrated spread), ``y`` (n, T, c, *grid) the truth; ``raw_members`` (optional, same
    shape): the same rollout before the spread calibration, drawn as a second spread-skill
    curve. The scores table holds the correlation time, the first-half spread-skill ratio and
    the rel. L2 and CRPS at the first, middle and last steps.
    """
    x, truth = as_float64(members, "members").cpu(), as_float64(y, "y").cpu()
    if x.ndim < 4 or tuple(x.shape[1:]) != tuple(truth.shape):
        raise DataError(f"members must be (s, n, T, ...) and y (n, T, ...) of the same n, T, ...; "
                        f"got {tuple(x.shape)} and {tuple(truth.shape)}")
    scores = rollout_scores(x, predictives, truth, threshold)
    raw = None if raw_members is None else \
        spread_skill_per_step(as_float64(raw_members, "raw_members").cpu(), truth).numpy()
    steps, tau = len(scores["relative_l2"]), scores["correlation_time"]
    half = max(1, tau // 2)
    table = {"steps": steps, "trajectories": int(truth.shape[0]), "members": int(x.shape[0]),
             "correlation_time": tau,
             "spread_skill_first_half": float(np.mean(scores["spread_skill"][:half]))}
    if raw is not None:
        table["spread_skill_first_half_raw"] = float(raw[:half].mean())
    for t in sorted({1, (steps + 1) // 2, steps}):
        table[f"relative_l2_step_{t}"] = scores["relative_l2"][t - 1]
        table[f"crps_step_{t}"] = scores["crps"][t - 1]
    figures = [_curves(scores, raw, threshold)]
    if truth.ndim == 4:  # (n, T, c, L): space-time plots
        figures.append(_space_time(x[:, 0, :, 0].numpy(), truth[0, :, 0].numpy()))
    return write_page(out_dir, title, [html_table("Scores", table),
                                       html_table("Model", model_info) if model_info else ""],
                      figures)


def _curves(scores: dict[str, Any], raw: np.ndarray | None, threshold: float):
    t = np.arange(1, len(scores["relative_l2"]) + 1)
    fig = new_figure(15, 4, left=0.05, right=0.98, bottom=0.13, top=0.9, wspace=0.28)
    ax1, ax2, ax3 = fig.subplots(1, 3)
    ax1.plot(t, scores["relative_l2"], "C0", label="rel. L2 of the mean")
    ax1.plot(t, scores["crps"], "C1", label="CRPS")
    ax1.set(xlabel="step", title="error along the rollout", yscale="log")
    ax1.legend(fontsize=8)
    ax2.plot(t, scores["correlation"], "C0")
    ax2.axhline(threshold, color="k", ls="--", lw=1)
    ax2.axvline(scores["correlation_time"] + 0.5, color="C3", ls=":",
                label=f"correlation time {scores['correlation_time']}")
    ax2.set(xlabel="step", ylabel="Pearson correlation", title="correlation with the truth")
    ax2.legend(fontsize=8)
    ax3.plot(t, scores["spread_skill"], "C0", label="shown")
    if raw is not None:
        ax3.plot(t, raw, "C7", ls="--", label="before spread calibration")
    ax3.axhline(1.0, color="k", ls="--", lw=1)
    ax3.set(xlabel="step", ylabel="spread / RMSE of the mean", title="spread-skill ratio")
    ax3.legend(fontsize=8)
    return (fig, "rollout_scores.png", "rollout scores per step",
            "Left: rel. L2 of the ensemble mean and CRPS per step. Middle: correlation of the "
            "mean with the truth; the correlation time is the first step below the dashed "
            "line. Right: spread-skill ratio sqrt((s+1)/s) spread / RMSE of the mean; 1 is "
            "calibrated, above over-dispersed, below under-dispersed.")


def _space_time(members: np.ndarray, truth: np.ndarray):
    """members (s, T, L), truth (T, L) of one trajectory."""
    mean = members.mean(0)
    spread = members.std(0, ddof=1) if len(members) > 1 else np.zeros_like(mean)
    fig = new_figure(16, 4, left=0.04, right=0.98, bottom=0.13, top=0.9, wspace=0.25)
    lo, hi = min(truth.min(), mean.min()), max(truth.max(), mean.max())
    for ax, a, name, cmap, limits in zip(
            fig.subplots(1, 4), (truth, mean, np.abs(truth - mean), spread),
            ("truth", "ensemble mean", "|error|", "member spread (std)"),
            ("RdBu_r", "RdBu_r", "magma", "magma"), ((lo, hi), (lo, hi), (None, None),
                                                     (None, None)), strict=True):
        image = ax.imshow(a, origin="lower", aspect="auto", cmap=cmap, vmin=limits[0],
                          vmax=limits[1])
        fig.colorbar(image, ax=ax, shrink=0.85)
        ax.set(xlabel="grid point", ylabel="step", title=name)
    return (fig, "rollout_example.png", "trajectory 0: truth, mean, error and spread",
            "Trajectory 0 (first channel) over space (x) and rollout steps (y): the truth, "
            "the ensemble mean, its absolute error and the members' spread; a useful spread "
            "grows where the error grows.")

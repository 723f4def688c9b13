"""The ``infer`` verb: posterior samples of a simulator's inputs given observed outputs, through
a saved surrogate (:func:`choral.inference.infer`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.table import Table

from choral.atomic import atomic_write
from choral.cli.common import DeviceOpt, JsonOpt, ModelOpt, XOpt, load_xy, out, progress
from choral.cli.sensitivity import parse_bounds
from choral.errors import DataError
from choral.inference import box_prior, gaussian_prior
from choral.inference import infer as run_infer
from choral.surrogate import Surrogate

__all__ = ["FIELDS", "infer", "read_observed"]

FIELDS = {"darcy_modes": "Darcy coefficient a"}
"""Fields the inputs may parameterise (``--field``), with the name the report gives them."""


def read_observed(path: Path, key: str | None) -> np.ndarray:
    """One observation from ``.npy``, ``.npz`` (array ``key``, or its only array) or ``.json``."""
    if not path.is_file():
        raise DataError(f"--observed: no file {path}")
    suffix = path.suffix.lower()
    if suffix == ".json":
        return np.asarray(json.loads(path.read_text()), dtype=np.float64)
    if suffix == ".npy":
        return np.load(path, allow_pickle=False)
    if suffix != ".npz":
        raise DataError(f"--observed must be a .npy, .npz or .json file; got {path.name}")
    with np.load(path, allow_pickle=False) as z:
        names = list(z.keys())
        if key is None and len(names) != 1:
            raise DataError(f"--observed {path.name} holds arrays {', '.join(names)}: name the "
                            f"observation with --key")
        name = key or names[0]
        if name not in names:
            raise DataError(f"--key {name!r} is not in {path.name}; it holds {', '.join(names)}")
        return z[name]


def _json_list(text: str, name: str) -> list:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise DataError(f"{name} must be JSON (a number or a list); got {text!r}") from None


def infer(
        model: ModelOpt,
        observed: Annotated[Path, typer.Option(
            help="The observed outputs y_obs, of the model's output shape: .npy, .npz or .json.")],
        noise: Annotated[str, typer.Option(
            help="Observation noise standard deviation: a number, or a JSON list per output.")],
        out_path: Annotated[Path, typer.Option("--out", help="Posterior samples (.npz).")],
        prior: Annotated[str, typer.Option(help="box (uniform on --bounds or --data's box) or "
                                           "gaussian (--prior-loc, --prior-scale).")] = "box",
        bounds: Annotated[str | None, typer.Option(
            help="Box of the uniform prior, JSON [[lower, upper], ...].")] = None,
        data: Annotated[Path | None, typer.Option(
            "--data", help="Take the box from this data file's X when --bounds is not given.")
        ] = None,
        prior_loc: Annotated[str | None, typer.Option(help="Gaussian prior means, JSON.")] = None,
        prior_scale: Annotated[str | None, typer.Option(
            help="Gaussian prior standard deviations, JSON (a number or one per input).")] = None,
        key: Annotated[str | None, typer.Option(help="Array name in an .npz --observed.")] = None,
        chains: Annotated[int, typer.Option(min=2, help="MCMC chains.")] = 8,
        warmup: Annotated[int, typer.Option(min=0, help="Adaptation iterations.")] = 500,
        draws: Annotated[int, typer.Option(min=1, help="Kept draws per chain.")] = 1000,
        steps: Annotated[int, typer.Option(
            min=1, help="Most leapfrog steps per draw (uniform from 1).")] = 16,
        seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
        level: Annotated[float, typer.Option(help="Level of the reported intervals.")] = 0.9,
        plot: Annotated[Path | None, typer.Option(
            help="Also write a corner plot of the samples to this .png (limits: the box prior's "
                 "box when there is one).")] = None,
        truth: Annotated[str | None, typer.Option(
            help="True inputs to mark on the corner plot and report, JSON [x0, x1, ...].")
        ] = None,
        report: Annotated[Path | None, typer.Option(
            help="Also write an HTML report to this directory (index.html, corner.png and, "
                 "with --field, field.png).")] = None,
        field: Annotated[str | None, typer.Option(
            help="The inputs parameterise a field: darcy_modes (the Darcy coefficient of the "
                 "darcy_modes simulator's GRF mode coefficients). The report then shows its "
                 "posterior mean and std.")] = None,
        field_resolution: Annotated[int, typer.Option(
            min=3, help="Nodes per axis of the --field images.")] = 33,
        x: XOpt = None, as_json: JsonOpt = False, device: DeviceOpt = None) -> None:
    """Posterior samples of the inputs given observed outputs (vectorised HMC through the
    surrogate's member mixture likelihood, observation noise added to every member).

    Writes OUT (.npz): samples (chains, draws, d), X (chains draws, d), rhat (d,), ess (d,);
    with --plot, a corner plot (histograms, 2-D histograms below the diagonal, --truth marked);
    with --report DIR, an HTML page with the summary, the corner plot and, with --field, the
    posterior mean and std of the field the inputs parameterise.
    Prints the posterior mean, std and interval per input, with R-hat and ESS."""
    if out_path.suffix.lower() != ".npz":
        raise DataError(f"--out must be an .npz file; got {out_path.name}")
    if plot is not None and plot.suffix.lower() != ".png":
        raise DataError(f"--plot must be a .png file; got {plot.name}")
    if truth is not None and plot is None and report is None:
        raise DataError("--truth marks the corner plot: give --plot FILE.png or --report DIR")
    if field is not None and field not in FIELDS:
        raise DataError(f"--field must be one of {', '.join(FIELDS)}; got {field!r}")
    if field is not None and report is None:
        raise DataError("--field draws the field in the report: give --report DIR too")
    surrogate = Surrogate.load(model, device)
    if len(surrogate.x_shape) != 1:
        raise DataError(f"infer needs a model of vector inputs (n, d); this one takes inputs "
                        f"of shape (n, {', '.join(map(str, surrogate.x_shape))})")
    d = surrogate.x_shape[0]
    if prior == "box":
        if bounds is not None:
            box = parse_bounds(bounds, d)
        elif data is not None:
            X, _ = load_xy(surrogate, data, x, None, require_y=False)
            box = np.stack([X.min(0), X.max(0)], axis=1)
        else:
            raise DataError("the box prior needs --bounds [[lower, upper], ...] or --data FILE")
        dist = box_prior(box)
    elif prior == "gaussian":
        if prior_loc is None or prior_scale is None:
            raise DataError("--prior gaussian needs --prior-loc and --prior-scale")
        loc = np.broadcast_to(np.asarray(_json_list(prior_loc, "--prior-loc"), float), (d,))
        loc = loc.copy()
        dist = gaussian_prior(loc, _json_list(prior_scale, "--prior-scale"))
    else:
        raise DataError(f"--prior must be box or gaussian; got {prior!r}")
    marks = None if truth is None else np.asarray(_json_list(truth, "--truth"), float)
    if marks is not None and marks.shape != (d,):
        raise DataError(f"--truth must list the model's {d} inputs; got {marks.tolist()}")
    y_obs = read_observed(observed, key)
    with progress("iterations") as bar:
        task = bar.add_task("infer", total=warmup + draws, info="")
        post = run_infer(surrogate, y_obs, np.asarray(_json_list(noise, "--noise"), float),
                         dist, chains=chains, warmup=warmup, draws=draws, steps=steps,
                         seed=seed, on_draw=lambda i: bar.update(task, completed=i + 1))

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, samples=post.samples, X=post.flat, rhat=post.rhat, ess=post.ess)

    atomic_write(out_path, write)
    if plot is not None:
        from choral.inference.corner import write_corner  # matplotlib is slow to import: only here

        write_corner(plot, post.flat, truth=marks, bounds=box if prior == "box" else None)
    if report is not None:
        from choral.inference.report import darcy_modes_field, write_posterior_report

        maps = {"darcy_modes": darcy_modes_field}
        write_posterior_report(report, post, truth=marks,
                               bounds=box if prior == "box" else None, level=level,
                               field=None if field is None else maps[field](field_resolution),
                               field_name=FIELDS.get(field, "field"))
    summary = post.summary(level)
    if as_json:
        print(json.dumps(summary))
        return
    table = Table("input", "mean", "std", f"{100 * level:g}% interval", "R-hat", "ESS",
                  title=f"posterior ({chains} chains x {draws} draws, acceptance "
                        f"{summary['acceptance']:.2f}, {summary['divergences']} divergences)")
    for i in range(d):
        table.add_row(f"x{i}", f"{summary['mean'][i]:.4g}", f"{summary['std'][i]:.3g}",
                      f"[{summary['lower'][i]:.4g}, {summary['upper'][i]:.4g}]",
                      f"{summary['rhat'][i]:.3f}", f"{summary['ess'][i]:.0f}")
    out.print(table)

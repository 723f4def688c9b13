"""The ``infer`` verb: posterior samples of a simulator's inputs given observed outputs, through
a saved surrogate (:func:`choral.inference.infer`)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.table import Table

from choral.atomic import atomic_write
from choral.cli.common import DeviceOpt, JsonOpt, ModelOpt, XOpt, out, progress
from choral.cli.sensitivity import input_box
from choral.errors import DataError
from choral.inference import Posterior, box_prior, gaussian_prior
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
        prior: Annotated[str, typer.Option(help="box (uniform on --bounds, --data's box or the "
                                           "training inputs' box) or "
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
        method: Annotated[str, typer.Option(
            help="hmc (MCMC through the surrogate likelihood) or npe (amortised: an ensemble of "
                 "zuko flows trained on --simulations surrogate draws, then --draws independent "
                 "draws; --chains, --warmup, --steps unused).")] = "hmc",
        simulations: Annotated[int, typer.Option(
            min=10, help="npe: training pairs (x from the prior, y a member-coherent surrogate "
                         "draw plus the noise).")] = 10_000,
        flows: Annotated[int, typer.Option(min=1, help="npe: flows in the ensemble.")] = 5,
        npe_epochs: Annotated[int, typer.Option(
            min=1, help="npe: most training epochs per flow (early stopping on held-out "
                        "pairs).")] = 500,
        x: XOpt = None, as_json: JsonOpt = False, device: DeviceOpt = None) -> None:
    """Posterior samples of the inputs given observed outputs (vectorised HMC through the
    surrogate's member mixture likelihood, observation noise added to every member).

    Writes OUT (.npz): samples (chains, draws, d), X (chains draws, d), rhat (d,), ess (d,)
    (--method npe: samples (1, draws, d), independent draws: rhat NaN, ess = draws);
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
    if method not in ("hmc", "npe"):
        raise DataError(f"--method must be hmc or npe; got {method!r}")
    if field is not None and report is None:
        raise DataError("--field draws the field in the report: give --report DIR too")
    surrogate = Surrogate.load(model, device)
    if len(surrogate.x_shape) != 1:
        raise DataError(f"infer needs a model of vector inputs (n, d); this one takes inputs "
                        f"of shape (n, {', '.join(map(str, surrogate.x_shape))})")
    d = surrogate.x_shape[0]
    if prior == "box":
        box = input_box(surrogate, bounds, data, x)
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
    sigma = np.asarray(_json_list(noise, "--noise"), float)
    if method == "npe":
        post = _npe(surrogate, y_obs, sigma, dist, simulations, flows, npe_epochs, draws, seed)
    else:
        with progress("iterations") as bar:
            task = bar.add_task("infer", total=warmup + draws, info="")
            post = run_infer(surrogate, y_obs, sigma, dist, chains=chains, warmup=warmup,
                             draws=draws, steps=steps, seed=seed,
                             on_draw=lambda i: bar.update(task, completed=i + 1))

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
    if method == "npe":
        summary["rhat"] = [None] * d  # independent draws: no R-hat
    if as_json:
        print(json.dumps(summary))
        return
    title = (f"posterior (npe: {flows} flows on {simulations} surrogate draws, {draws} draws)"
             if method == "npe" else
             f"posterior ({chains} chains x {draws} draws, acceptance "
             f"{summary['acceptance']:.2f}, {summary['divergences']} divergences)")
    table = Table("input", "mean", "std", f"{100 * level:g}% interval", "R-hat", "ESS",
                  title=title)
    for i in range(d):
        table.add_row(f"x{i}", f"{summary['mean'][i]:.4g}", f"{summary['std'][i]:.3g}",
                      f"[{summary['lower'][i]:.4g}, {summary['upper'][i]:.4g}]",
                      "-" if summary["rhat"][i] is None else f"{summary['rhat'][i]:.3f}",
                      f"{summary['ess'][i]:.0f}")
    out.print(table)


def _npe(model: Surrogate, y_obs: np.ndarray, sigma: np.ndarray, prior, simulations: int,
         flows: int, epochs: int, draws: int, seed: int) -> Posterior:
    """``draws`` posterior draws (1, draws, d) from an ensemble of ``flows`` zuko flows trained
    on ``simulations`` surrogate draws (:func:`choral.inference.surrogate_pairs`)."""
    from choral.inference import fit_npe, surrogate_pairs  # zuko: imported when used

    if len(model.y_shape) != 1:
        raise DataError(f"--method npe needs a model of vector outputs (n, m); this one's "
                        f"outputs have shape (n, {', '.join(map(str, model.y_shape))})")
    start = time.perf_counter()
    with progress("stages") as bar:
        task = bar.add_task("npe", total=3, info="surrogate draws")
        x, y = surrogate_pairs(model, prior, simulations, sigma, seed=seed)
        bar.update(task, completed=1, info=f"training {flows} flows")
        npe = fit_npe(x, y, members=flows, epochs=epochs, seed=seed, support=prior.support)
        bar.update(task, completed=2, info="sampling")
        X = npe.sample(draws, np.asarray(y_obs, float).reshape(-1), seed=seed).numpy()
        bar.update(task, completed=3, info="")
    d = X.shape[1]
    return Posterior(X[None], np.full(d, np.nan), np.full(d, float(draws)),
                     {"method": "npe", "flows": flows, "simulations": simulations,
                      "draws": draws, "seconds": time.perf_counter() - start, "seed": seed})

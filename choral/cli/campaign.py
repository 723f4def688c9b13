"""``choral campaign run | status | export``: the campaign verbs of the command line.

The ledger and files of ``campaign.toml`` live in ``campaign_campaign/`` beside it unless
``--workdir`` says otherwise; running the same file again resumes where it stopped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from choral.campaign.backends import make_backend
from choral.campaign.config import CampaignConfig
from choral.campaign.export import export_h5
from choral.campaign.runner import run_campaign
from choral.campaign.status import campaign_status, status_table
from choral.cli.common import JsonOpt, err, out

campaign_app = typer.Typer(add_completion=False, no_args_is_help=True,
                           help="Active-learning campaigns against a simulator, resumable.")

FileArg = Annotated[Path, typer.Argument(help="The campaign .toml file.")]
WorkOpt = Annotated[Path | None, typer.Option(
    "--workdir", help="Ledger and files (default: <file stem>_campaign beside the file).")]


def workdir_of(file: Path, workdir: Path | None) -> Path:
    """``--workdir`` or ``<stem>_campaign`` beside the campaign file."""
    return workdir if workdir is not None else file.parent / f"{file.stem}_campaign"


@campaign_app.command()
def run(file: FileArg, workdir: WorkOpt = None,
        backend: Annotated[str, typer.Option(help="local (in-process) or ray.")] = "local",
        address: Annotated[str | None, typer.Option(
            help="Ray cluster address (default: start a local Ray runtime).")] = None,
        max_concurrency: Annotated[int, typer.Option(
            help="Simulator runs in flight at once (ray backend).")] = 2,
        as_json: JsonOpt = False) -> None:
    """Run the campaign, or resume it where it stopped."""
    cfg = CampaignConfig.from_toml(file)
    engine = make_backend(backend, address, max_concurrency)
    try:
        with Progress(TextColumn("[bold]runs"), BarColumn(), TextColumn("{task.fields[info]}"),
                      TimeElapsedColumn(), console=err, disable=as_json) as bar:
            task = bar.add_task("runs", total=cfg.budget, info="")

            def on_run(c: dict[str, int]) -> None:
                bar.update(task, completed=c["done"] + c["failed"],
                           info=f"{c['done']} done, {c['failed']} failed")

            summary = run_campaign(cfg, workdir_of(file, workdir), backend=engine,
                                   log=bar.console.print, on_run=on_run)
    finally:
        engine.close()
    if as_json:
        out.print_json(json.dumps(summary))
    else:
        c = summary["counts"]
        err.print(f"{summary['stop']}: {c['done']} done, {c['failed']} failed in "
                  f"{summary['rounds']} rounds")


@campaign_app.command()
def status(file: FileArg, workdir: WorkOpt = None, as_json: JsonOpt = False) -> None:
    """Rounds, runs done/pending/failed and the current scores."""
    info = campaign_status(workdir_of(file, workdir))
    if as_json:
        out.print_json(json.dumps(info))
    else:
        out.print(status_table(info))
        for f in info["failed"]:
            out.print(f"run {f['id']} failed: {f['error']}", highlight=False, markup=False)


@campaign_app.command()
def export(file: FileArg,
           out_path: Annotated[Path, typer.Option("--out", help="The .h5 file to write.")],
           workdir: WorkOpt = None) -> None:
    """Write every done and failed run to an HDF5 file."""
    n = export_h5(workdir_of(file, workdir), out_path)
    err.print(f"wrote {n['done']} done and {n['failed']} failed runs to {out_path}")

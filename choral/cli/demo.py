"""``choral demo``: Darcy flow end to end on built-in data, a few minutes on 2 cores."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from choral.cli.common import err
from choral.cli.data import simulate
from choral.cli.model import evaluate, fit, report

__all__ = ["demo"]


def demo(out_dir: Annotated[Path, typer.Option("--out", help="Working directory.")] = Path(
        "demo-output"),
         n_train: Annotated[int, typer.Option(help="Darcy training samples.")] = 400,
         resolution: Annotated[int, typer.Option(help="Darcy grid points per axis.")] = 32,
         fine: Annotated[int, typer.Option(help="Darcy solver grid per axis.")] = 125,
         epochs: Annotated[int, typer.Option(help="Maximum training epochs.")] = 60) -> None:
    """Darcy flow end to end: simulate, fit a 4-member U-Net ensemble, evaluate, report."""
    train, test, model = out_dir / "darcy_train.h5", out_dir / "darcy_test.h5", out_dir / "model"
    workers = min(4, os.cpu_count() or 1)
    for path, n, seed in ((train, n_train, 0), (test, 100, 1)):
        simulate("darcy", n=n, seed=seed, out_path=path, resolution=resolution, workers=workers,
                 fine=fine)
    config = out_dir / "demo.toml"
    config.write_text(DEMO_CONFIG.format(epochs=epochs))
    fit(data=train, out_dir=model, config=config)
    evaluate(model=model, data=test)
    report(model=model, data=test, out_dir=out_dir / "report")
    err.print(f"demo done: open {out_dir / 'report' / 'index.html'}")


DEMO_CONFIG = """\
[model]
backbone = "unet"
activation = "gelu"
[model.unet]
depth = 3
width = 8
[train]
members = 4
epochs = {epochs}
batch_size = 16
lr = 3e-3
lr_schedule = "cosine"
patience = 20
grad_clip = 1.0
"""

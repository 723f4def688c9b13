"""The ``choral calibrate`` verb: fit a post-hoc calibration and save it with the model.

``choral calibrate --model DIR --data CAL.npz --method scale|isotonic|conformal`` fits the
calibration (see :mod:`choral.evaluation.calibration`) on held-out data, writes it into the model
directory atomically, and prints the scores on that data before and after. From then on
``predict``, ``evaluate`` and ``report`` use the calibrated predictive.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from choral.checks import check_choice
from choral.cli.common import DataOpt, DeviceOpt, JsonOpt, ModelOpt, XOpt, YOpt, err, load_xy, out
from choral.evaluation.calibration import METHODS
from choral.evaluation.metrics import evaluate as score
from choral.storage import write_calibration
from choral.surrogate import Surrogate

SHOWN = ("coverage_90", "coverage_50", "calibration_error", "nll", "interval_width_90")


def _summary(pred, Y) -> dict[str, float]:
    """Scores shown before and after (conformal changes the intervals only)."""
    scores = score(pred, Y)
    return {k: scores[k] for k in SHOWN}


def calibrate(model: ModelOpt, data: DataOpt,
              method: Annotated[str, typer.Option(help=f"{', '.join(METHODS)}.")],
              x: XOpt = None, y: YOpt = None, as_json: JsonOpt = False,
              device: DeviceOpt = None) -> None:
    """Fit a post-hoc calibration on held-out data and save it with the model."""
    check_choice(method, "--method", METHODS)
    surrogate = Surrogate.load(model, device)
    X, Y = load_xy(surrogate, data, x, y, require_y=True)
    raw = surrogate.predict(X, calibrated=False)
    before = _summary(raw, Y)
    surrogate.calibrate(X, Y, method, pred=raw)
    after = _summary(surrogate.apply_calibration(raw), Y)
    write_calibration(model, surrogate.calibrator.to_dict())
    result = {"model": str(model), "method": method, "samples": len(X), "before": before,
              "after": after}
    if as_json:
        print(json.dumps(result))
        return
    table = Table("score on calibration data", "before", "after",
                  title=f"{method} calibration of {model} ({len(X)} samples)")
    for key, value in after.items():
        table.add_row(key, f"{before[key]:.4g}", f"{value:.4g}")
    out.print(table)
    err.print(f"wrote {model / 'calibration.json'}")

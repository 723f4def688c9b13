"""The ``choral calibrate`` verb: fit a post-hoc calibration and save it with the model.

``choral calibrate --model DIR --data CAL.npz --method scale|isotonic|conformal`` fits the
calibration (see :mod:`choral.calibration`) on held-out data, writes ``calibration.json`` into
the model directory atomically, and prints the scores on that data before and after. From then on
``predict``, ``evaluate`` and ``report`` use the calibrated predictive.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from choral.calibration import METHODS
from choral.cli import DataOpt, JsonOpt, ModelOpt, XOpt, YOpt, _load_xy, app, err, out
from choral.errors import ConfigError
from choral.metrics import evaluate as score
from choral.storage import update_model_file
from choral.surrogate import Surrogate

SHOWN = ("coverage_90", "coverage_50", "calibration_error", "nll", "interval_width_90")


def _summary(pred, Y) -> dict[str, float]:
    """Scores shown before and after (conformal changes the intervals only)."""
    scores = score(pred, Y)
    return {k: scores[k] for k in SHOWN}


@app.command()
def calibrate(model: ModelOpt, data: DataOpt,
              method: Annotated[str, typer.Option(help="scale, isotonic or conformal.")],
              x: XOpt = None, y: YOpt = None, as_json: JsonOpt = False) -> None:
    """Fit a post-hoc calibration on held-out data and save it with the model."""
    if method not in METHODS:
        raise ConfigError(f"--method must be one of {', '.join(METHODS)}; got {method!r}")
    surrogate = Surrogate.load(model)
    X, Y = _load_xy(surrogate, data, x, y, require_y=True)
    raw = surrogate.predict(X, calibrated=False)
    before = _summary(raw, Y)
    surrogate.calibrate(X, Y, method, pred=raw)
    after = _summary(surrogate.apply_calibration(raw), Y)
    update_model_file(model, "calibration.json", surrogate.extras["calibration.json"])
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

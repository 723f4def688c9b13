"""``choral export``: a saved model in a format other runtimes load (ONNX)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from choral.cli.common import JsonOpt, ModelOpt, err
from choral.errors import ConfigError
from choral.surrogate import Surrogate

__all__ = ["export"]

FORMATS = ("onnx",)


def export(model: ModelOpt,
           out_path: Annotated[Path, typer.Option("--out", help="Output file (.onnx).")],
           fmt: Annotated[str, typer.Option("--format", help="onnx.")] = "onnx",
           opset: Annotated[int, typer.Option(help="ONNX opset (>= 18).")] = 18,
           as_json: JsonOpt = False) -> None:
    """Export a saved model as one ONNX graph: input x (n, ...) in data units (float32, any
    n), outputs member_means and member_variances (s, n, ...) and the mixture's mean and std
    (n, ...) in target units; standardisation and a scale calibration are inside the graph."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}; got {fmt!r}")
    try:
        from choral.integrations.onnx import export_onnx  # onnx is an optional extra
    except ImportError as e:
        raise ConfigError(f"choral export needs the extra choral[onnx] ({e})") from None

    meta = export_onnx(Surrogate.load(model), out_path, opset=opset)
    if as_json:
        print(json.dumps({"out": str(out_path), **meta}))
        return
    err.print(f"wrote {out_path} (ONNX opset {opset}, {meta['members']} members, calibration: "
              f"{meta['calibration']})")

"""``choral serve``: a saved model behind an HTTP prediction service."""

from __future__ import annotations

from typing import Annotated

import typer

from choral.checks import check_int
from choral.cli.common import DeviceOpt, ModelOpt, err
from choral.errors import ConfigError
from choral.surrogate import Surrogate

__all__ = ["serve"]


def serve(model: ModelOpt,
          host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
          port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
          max_rows: Annotated[int, typer.Option(min=1, help="Most rows per request.")] = 10_000,
          max_body_mb: Annotated[float, typer.Option(
              help="Largest request body (MiB); larger ones get 413.")] = 16.0,
          batch_wait_ms: Annotated[float, typer.Option(
              min=0.0, help="Micro-batching: how long to gather concurrent requests.")] = 2.0,
          batch_rows: Annotated[int, typer.Option(
              min=1, help="Micro-batching: most rows per prediction (1: no batching).")] = 256,
          graceful_seconds: Annotated[float, typer.Option(
              help="On SIGTERM: longest wait for requests in flight.")] = 30.0,
          device: DeviceOpt = None) -> None:
    """Serve a saved model over HTTP: POST /predict (JSON inputs as nested lists or base64,
    interval levels) returns mean, std, intervals and OOD flags; GET /health, GET /metadata.
    Concurrent requests are micro-batched. SIGTERM finishes the requests in flight, then exits."""
    try:
        from choral.integrations.service import serve as run  # fastapi/uvicorn: optional extra
    except ImportError as e:
        raise ConfigError(f"choral serve needs the extra choral[serve] ({e})") from None

    check_int(port, "--port", 0, 65535)
    surrogate = Surrogate.load(model, device)
    err.print(f"serving {model} on http://{host}:{port} (POST /predict, GET /health, "
              f"GET /metadata)")
    run(surrogate, host, port, graceful_seconds=graceful_seconds, max_rows=max_rows,
        max_body_bytes=int(max_body_mb * 2**20), max_wait=batch_wait_ms / 1e3,
        batch_rows=batch_rows)
    err.print("stopped")

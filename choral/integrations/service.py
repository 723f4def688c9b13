"""The prediction service: a fitted surrogate behind HTTP (FastAPI on uvicorn).

Endpoints:

- ``POST /predict``: a :class:`~choral.integrations.wire.PredictRequest` (JSON) -> ``rows``,
  ``mean``, ``std`` (n, *y_shape), ``intervals`` {level: {lower, upper}}, ``ood_score`` and
  ``ood`` (n,), as ``Surrogate.predict`` (calibrated) and ``Surrogate.ood`` give them. Errors
  are 4xx with a ``detail`` message: 400 (not JSON), 413 (body above ``max_body_bytes``), 422
  (a field of the wrong type, wrong width or grid, too many rows, NaN/inf, bad levels).
- ``GET /health``: ``status``, requests waiting, requests/rows/batches served.
- ``GET /metadata``: shapes, members, backbone, head, calibration and the service's limits.

Concurrent requests are micro-batched (:class:`~choral.integrations.batcher.MicroBatcher`):
gathered for up to ``max_wait`` seconds or ``batch_rows`` rows into one prediction.
:func:`serve` runs uvicorn; on SIGTERM or SIGINT it stops accepting connections, finishes the
requests in flight (``graceful_seconds`` at most), then the batcher's queue, and exits.
"""

from __future__ import annotations

import json
import sys
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from choral.errors import ChoralError, DataError
from choral.integrations.batcher import MicroBatcher
from choral.integrations.wire import MAX_LEVELS, PredictRequest, decode, encode

__all__ = ["create_app", "predict_arrays", "serve"]


def predict_arrays(surrogate: Any, X: np.ndarray, levels: list[float]) -> dict[str, np.ndarray]:
    """mean, std (n, ...), ``lower@level``/``upper@level`` per level, ood_score, ood (n,) at
    ``X`` (n, ...): the calibrated predictive, and the OOD detector on the raw one."""
    raw = surrogate.predict(X, calibrated=False)  # one prediction serves both
    pred = surrogate.apply_calibration(raw)
    out = {"mean": pred.mean, "std": pred.stddev}
    for level in levels:
        out[f"lower@{level}"], out[f"upper@{level}"] = pred.interval(level)
    arrays = {k: v.cpu().numpy() for k, v in out.items()}
    if surrogate.ood_detector is not None:
        arrays["ood_score"], arrays["ood"] = surrogate.ood(X, raw)
    return arrays


def _error(status: int, detail: Any) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


def _validation_detail(exc: ValidationError) -> str:
    parts = [f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors(
        include_url=False, include_input=False)[:5]]
    return "; ".join(parts)


async def _body(request: Request, limit: int) -> bytes | JSONResponse:
    """The request body, or a 413 response as soon as it is known to exceed ``limit`` bytes."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        return _error(413, f"request body must be at most {limit} bytes; got {length}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return _error(413, f"request body must be at most {limit} bytes; got more")
        chunks.append(chunk)
    return b"".join(chunks)


def metadata(surrogate: Any, limits: dict[str, Any]) -> dict[str, Any]:
    cfg = surrogate.config
    networks = next(iter(surrogate.params.values())).shape[0]
    return {"x_shape": list(surrogate.x_shape), "y_shape": list(surrogate.y_shape),
            "members": int(networks), "backbone": cfg.model.backbone, "head": cfg.model.head,
            "ensemble": cfg.train.ensemble,
            "calibration": None if surrogate.calibrator is None else surrogate.calibrator.method,
            "ood_detector": surrogate.ood_detector is not None, "max_levels": MAX_LEVELS,
            **limits}


def create_app(surrogate: Any, *, max_rows: int = 10_000, max_body_bytes: int = 16 * 2**20,
               max_wait: float = 0.002, batch_rows: int = 256) -> FastAPI:
    """The ASGI app serving ``surrogate`` (see the module docstring). ``max_rows``: most rows
    per request; ``max_body_bytes``: largest request body; ``max_wait`` (seconds) and
    ``batch_rows``: micro-batching (``max_wait=0, batch_rows=1``: none)."""
    batcher = MicroBatcher(lambda X, levels: predict_arrays(surrogate, X, levels),
                           max_wait=max_wait, max_rows=batch_rows)
    limits = {"max_rows": max_rows, "max_body_bytes": max_body_bytes,
              "batch_wait_ms": max_wait * 1e3, "batch_rows": batch_rows}
    x_shape = tuple(surrogate.x_shape)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.start()
        yield
        await batcher.stop()  # every request already queued is answered first

    app = FastAPI(title="choral prediction service", lifespan=lifespan)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "waiting": batcher.waiting, **batcher.stats}

    @app.get("/metadata")
    async def get_metadata() -> dict[str, Any]:
        return metadata(surrogate, limits)

    @app.post("/predict", openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": PredictRequest.model_json_schema()}}}})
    async def predict(request: Request) -> Response:
        body = await _body(request, max_body_bytes)
        if isinstance(body, Response):
            return body
        try:
            content = json.loads(body)
        except (ValueError, RecursionError) as e:
            return _error(400, f"request body must be JSON ({type(e).__name__}: {e})")
        try:
            req = PredictRequest.model_validate(content)
        except ValidationError as e:
            return _error(422, _validation_detail(e))
        except RecursionError:
            return _error(422, "inputs are nested too deeply")
        try:
            X = decode(req, x_shape, max_rows)
        except DataError as e:
            return _error(422, str(e))
        try:
            out = await batcher.submit(X, req.levels)
        except ChoralError as e:
            return _error(422, str(e))
        return Response(json.dumps(encode(out, req.levels)), media_type="application/json")

    return app


def serve(surrogate: Any, host: str = "127.0.0.1", port: int = 8000, *,
          graceful_seconds: float = 30.0, log_level: str = "warning", **options: Any) -> None:
    """Serve ``surrogate`` on ``host:port`` until SIGTERM/SIGINT (see the module docstring);
    ``options`` go to :func:`create_app`."""
    import uvicorn

    sys.setswitchinterval(5e-4)  # the event loop waits less for the GIL of a predict thread
    config = uvicorn.Config(create_app(surrogate, **options), host=host, port=port,
                            log_level=log_level, timeout_graceful_shutdown=graceful_seconds,
                            backlog=4096, access_log=False)
    uvicorn.Server(config).run()

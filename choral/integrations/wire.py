"""What the prediction service reads and writes: the typed request, the response, their checks.

A request carries inputs X (n, d) or (n, c_in, *grid), either as nested JSON lists (``inputs``)
or as base64 of the raw little-endian bytes with a ``dtype`` and a ``shape`` (``data``), and
the central interval levels it wants (``levels``). :func:`decode` turns it into a float64
array (n, ...) and checks it against the model, raising :class:`~choral.errors.DataError` with
a message naming the field, what was expected and what came (the service answers 422 with it).

Examples:
    >>> import base64, numpy as np
    >>> req = PredictRequest(data=base64.b64encode(np.ones((2, 3)).tobytes()).decode(),
    ...                      shape=[2, 3])
    >>> decode(req, x_shape=(3,), max_rows=10).shape
    (2, 3)
    >>> decode(PredictRequest(inputs=[[1.0, 2.0]]), x_shape=(3,), max_rows=10)
    Traceback (most recent call last):
    ...
    choral.errors.DataError: inputs must have shape (n, 3) with 1 <= n <= 10; got shape (1, 2)
"""

from __future__ import annotations

import base64
import binascii
import math
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, model_validator
from typing_extensions import TypeAliasType

from choral.errors import DataError

__all__ = ["MAX_LEVELS", "PredictRequest", "PredictResponse", "decode", "encode"]

MAX_LEVELS = 8
"""Most interval levels one request may ask for."""

Nested = TypeAliasType("Nested", "StrictFloat | StrictInt | list[Nested]")  # type: ignore


class PredictRequest(BaseModel):
    """``inputs`` (nested lists, (n, *x_shape)) or ``data`` (base64) with ``dtype`` and
    ``shape``; ``levels``: central interval levels in (0, 1) (default [0.9])."""

    model_config = ConfigDict(extra="forbid")

    inputs: list[Nested] | None = None
    data: str | None = None
    dtype: Literal["float32", "float64"] = "float64"
    shape: list[StrictInt] | None = Field(default=None, max_length=8)
    levels: list[StrictFloat] = Field(default=[0.9], min_length=0, max_length=MAX_LEVELS)

    @model_validator(mode="after")
    def _one_source(self) -> PredictRequest:
        if (self.inputs is None) == (self.data is None):
            raise ValueError("give exactly one of 'inputs' (nested lists) or 'data' (base64 "
                             "with 'shape')")
        if self.data is not None and self.shape is None:
            raise ValueError("'data' needs 'shape', e.g. [n, d]")
        if bad := [v for v in self.levels if not 0.0 < v < 1.0]:
            raise ValueError(f"levels must lie in (0, 1); got {bad}")
        return self


class Interval(BaseModel):
    lower: list[Any]
    upper: list[Any]


class PredictResponse(BaseModel):
    """Per row: ``mean``, ``std`` (n, *y_shape), ``intervals`` by level, OOD ``ood_score``
    and ``ood`` flag (n,) (empty lists for a model without an OOD detector)."""

    rows: int
    mean: list[Any]
    std: list[Any]
    intervals: dict[str, Interval]
    ood_score: list[float]
    ood: list[bool]


def _from_base64(req: PredictRequest) -> np.ndarray:
    shape = tuple(req.shape or ())
    if not shape or min(shape) < 1:
        raise DataError(f"shape must be positive integers [n, ...]; got {list(shape)}")
    try:
        raw = base64.b64decode(req.data or "", validate=True)
    except (binascii.Error, ValueError) as e:
        raise DataError(f"data must be base64 (RFC 4648, standard alphabet); {e}") from None
    itemsize = np.dtype(req.dtype).itemsize
    if len(raw) != math.prod(shape) * itemsize:
        raise DataError(f"data must hold {math.prod(shape)} {req.dtype} values "
                        f"({math.prod(shape) * itemsize} bytes) for shape {list(shape)}; "
                        f"got {len(raw)} bytes")
    return np.frombuffer(raw, dtype=np.dtype(req.dtype).newbyteorder("<")).reshape(shape)


def decode(req: PredictRequest, x_shape: tuple[int, ...], max_rows: int) -> np.ndarray:
    """The inputs of ``req`` as float64 (n, *x_shape), or a DataError: wrong shape, more than
    ``max_rows`` rows, NaN/inf values (naming the first rows)."""
    name = "data" if req.data is not None else "inputs"
    if req.data is not None:
        X = _from_base64(req)
    else:
        try:
            X = np.asarray(req.inputs, dtype=np.float64)
        except (ValueError, TypeError, OverflowError):
            raise DataError("inputs must be a rectangular nested list of numbers (every row "
                            "the same shape)") from None
    if X.ndim != 1 + len(x_shape) or X.shape[1:] != tuple(x_shape) or not 1 <= len(X) <= max_rows:
        want = ", ".join(map(str, x_shape))
        raise DataError(f"{name} must have shape (n, {want}) with 1 <= n <= {max_rows}; "
                        f"got shape {X.shape}")
    X = X.astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(X).reshape(len(X), -1).all(axis=1))
    if bad.size:
        raise DataError(f"{name} has NaN/inf values in rows {bad[:10].tolist()}"
                        f"{' (first 10 shown)' if bad.size > 10 else ''}")
    return X


def encode(arrays: dict[str, np.ndarray], levels: list[float]) -> dict[str, Any]:
    """The response body of one request's rows of ``arrays`` (mean, std, lower/upper per
    level as ``lower@level``, ood_score, ood)."""
    return {"rows": len(arrays["mean"]), "mean": arrays["mean"].tolist(),
            "std": arrays["std"].tolist(),
            "intervals": {str(lv): {"lower": arrays[f"lower@{lv}"].tolist(),
                                    "upper": arrays[f"upper@{lv}"].tolist()} for lv in levels},
            "ood_score": arrays["ood_score"].tolist() if "ood_score" in arrays else [],
            "ood": arrays["ood"].tolist() if "ood" in arrays else []}

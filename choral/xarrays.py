"""netCDF and zarr data through xarray: named variables in, predictions with coordinates out.

Inputs and targets are lists of variables sharing a sample dimension (``sample_dim``, default:
the first dimension of the first variable). Variables of dims (sample,) become columns: X (n, k)
for k variables; variables of dims (sample, *grid) become channels: X (n, k, *grid). Every
variable of one list must have the same other dims. netCDF opens with the h5netcdf engine,
zarr (a directory ``*.zarr``) with xarray's zarr backend; ``lazy=True`` gives
:class:`XRows` (dask-chunked, read block by block by the streaming path of ``Surrogate.fit``),
else float64 arrays. :func:`write_predictions` writes ``predict``'s arrays back as a dataset
with the input's coordinates. Bad names are :class:`~choral.errors.DataError` listing what the
file has.

Examples:
    >>> import tempfile, numpy as np, xarray as xr
    >>> path = tempfile.mkdtemp() + "/r.nc"
    >>> xr.Dataset({"k": (("run", "x"), np.ones((3, 4))), "p": (("run", "x"), np.zeros((3, 4)))},
    ...            coords={"run": [10, 11, 12]}).to_netcdf(path, engine="h5netcdf")
    >>> X, Y = read_xarray(path, "k", "p")
    >>> X.shape, Y.shape
    ((3, 1, 4), (3, 1, 4))
    >>> read_xarray(path, "perm", "p")
    Traceback (most recent call last):
    ...
    choral.errors.DataError: r.nc has no variable 'perm' (variables there: k, p; dims: run=3, x=4)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from choral.atomic import atomic_directory, atomic_write
from choral.errors import DataError
from choral.rows import Rows, as_index

__all__ = ["SUFFIXES", "XRows", "names", "read_xarray", "write_predictions"]

SUFFIXES = (".nc", ".nc4", ".netcdf", ".zarr")


def names(key: str | list[str]) -> list[str]:
    """Variable names from a list or a comma-separated string.

    >>> names("a, b"), names(["c"])
    (['a', 'b'], ['c'])
    """
    items = key.split(",") if isinstance(key, str) else list(key)
    return [s.strip() for s in items if s.strip()]


def open_dataset(path: str | os.PathLike, chunks: Any = None) -> Any:
    """The xarray Dataset at ``path`` (netCDF via h5netcdf, or a zarr directory), lazily."""
    import xarray as xr

    path = Path(path)
    if not path.exists():
        raise DataError(f"--data file not found: {path}")
    try:
        if path.suffix.lower() == ".zarr":
            return xr.open_zarr(path, chunks=chunks)
        return xr.open_dataset(path, engine="h5netcdf", chunks=chunks)
    except Exception as e:  # noqa: BLE001 - any failure to parse a foreign or damaged file
        raise DataError(f"could not read {path} with xarray: {type(e).__name__}: {e}") from e


def _inventory(ds: Any) -> str:
    dims = ", ".join(f"{k}={v}" for k, v in ds.sizes.items())
    return f"variables there: {', '.join(map(str, ds.data_vars)) or 'none'}; dims: {dims}"


def _layout(ds: Any, path: Path, key: str, sample_dim: str | None) -> tuple[list[str], str, tuple]:
    """(variable names, sample dim, other dims) of ``key`` in ``ds``, checked."""
    variables = names(key)
    if not variables:
        raise DataError(f"no variable named for {path.name}; {_inventory(ds)}")
    for v in variables:
        if v not in ds.data_vars:
            raise DataError(f"{path.name} has no variable '{v}' ({_inventory(ds)})")
    first = ds[variables[0]]
    sample = sample_dim or (first.dims[0] if first.dims else None)
    if sample not in ds.dims:
        raise DataError(f"sample_dim '{sample}' is not a dimension of {path.name} "
                        f"({_inventory(ds)})")
    rest = tuple(d for d in first.dims if d != sample)
    for v in variables:
        dims = ds[v].dims
        if sample not in dims or set(dims) - {sample} != set(rest) or len(dims) != len(rest) + 1:
            raise DataError(f"variables {variables} must all have dims ({sample}, "
                            f"{', '.join(rest)}) in some order; '{v}' has {dims}")
        if ds[v].dtype.kind not in "biuf":
            raise DataError(f"variable '{v}' must hold numbers; got dtype {ds[v].dtype}")
    return variables, sample, rest


def _stack(ds: Any, variables: list[str], sample: str, rest: tuple, sel: Any) -> np.ndarray:
    """float64 (len(sel), k) or (len(sel), k, *grid) of the rows ``sel`` of the variables."""
    parts = [np.asarray(ds[v].transpose(sample, *rest).isel({sample: sel}).values,
                        dtype=np.float64) for v in variables]
    return np.stack(parts, axis=1)


class XRows(Rows):
    """Rows of variables ``variables`` of a netCDF/zarr dataset, read on demand as float64:
    (n, k) for variables of dims (sample,), (n, k, *grid) for (sample, *grid). Only the path,
    names and row selection are pickled; the dataset opens (dask-chunked) on first use."""

    def __init__(self, path: str | os.PathLike, key: str, sample_dim: str | None = None,
                 index: Any = None) -> None:
        self.path, self.key, self.index = Path(path).absolute(), key, None
        self._ds = None
        ds = self._dataset()
        self.variables, self.sample_dim, self.rest = _layout(ds, self.path, key, sample_dim)
        self._n = ds.sizes[self.sample_dim]
        grid = tuple(ds.sizes[d] for d in self.rest)
        self._row = (len(self.variables), *grid) if grid else (len(self.variables),)
        if index is not None:
            self.index = as_index(index, self._n, "index", one_d=True)

    def _dataset(self) -> Any:
        if self._ds is None:
            self._ds = open_dataset(self.path, chunks={})
        return self._ds

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_ds"} | {"_ds": None}

    @property
    def shape(self) -> tuple[int, ...]:
        return (self._n if self.index is None else len(self.index), *self._row)

    def __repr__(self) -> str:
        return f"XRows({str(self.path)!r}, {self.variables}, sample_dim={self.sample_dim!r})"

    def subset(self, idx: Any) -> XRows:
        idx = as_index(idx, len(self), "idx", one_d=True)
        view = object.__new__(XRows)
        view.__dict__.update(self.__getstate__())
        view.index = idx if self.index is None else self.index[idx]
        return view

    def _rows(self, rows: np.ndarray) -> np.ndarray:
        """File rows ``rows`` (any shape) as (*rows.shape, *row shape), each unique row once."""
        flat = rows.ravel()
        unique, where = np.unique(flat, return_inverse=True)
        if unique.size == 0:
            return np.empty((*rows.shape, *self._row))
        data = _stack(self._dataset(), self.variables, self.sample_dim, self.rest, unique)
        return data[where].reshape(*rows.shape, *self._row)

    def read(self, idx: Any) -> np.ndarray:
        idx = as_index(idx, len(self), "idx")
        return self._rows(idx if self.index is None else self.index[idx])

    def read_slice(self, start: int, stop: int) -> np.ndarray:
        if not 0 <= start <= stop <= len(self):
            raise DataError(f"start, stop must satisfy 0 <= start <= stop <= {len(self)}; "
                            f"got start={start!r}, stop={stop!r}")
        if self.index is not None:
            return self._rows(self.index[start:stop])
        return _stack(self._dataset(), self.variables, self.sample_dim, self.rest,
                      slice(start, stop))


def read_xarray(path: str | os.PathLike, x_key: str, y_key: str, *,
                sample_dim: str | None = None, require_y: bool = True,
                lazy: bool = False) -> tuple[Any, Any]:
    """X (n, k_x[, *grid]) and Y (n, k_y[, *grid]) (None when absent and not ``require_y``)
    from the variables ``x_key`` and ``y_key`` (comma-separated names) of a netCDF or zarr
    file; :class:`XRows` when ``lazy``, else float64 arrays (checks as in ``load_data``)."""
    path = Path(path)
    ds = open_dataset(path)
    out = []
    try:
        missing_y = any(v not in ds.data_vars for v in names(y_key))
        for key in (x_key, y_key):
            if key is y_key and missing_y and not require_y:
                out.append(None)
            elif lazy:
                out.append(XRows(path, key, sample_dim))
            else:
                variables, sample, rest = _layout(ds, path, key, sample_dim)
                out.append(_stack(ds, variables, sample, rest, slice(None)))
    finally:
        ds.close()
    if out[1] is not None and len(out[0]) != len(out[1]):
        raise DataError(f"{x_key} has {len(out[0])} rows but {y_key} has {len(out[1])}")
    return out[0], out[1]


def write_predictions(path: str | os.PathLike, source: str | os.PathLike, x_key: str,
                      y_key: str, arrays: dict[str, np.ndarray], level: float,
                      sample_dim: str | None = None) -> None:
    """Write ``predict``'s ``arrays`` (mean, std, lower, upper (n, m[, *grid]); ood_score,
    ood (n,)) as a netCDF file or zarr directory at ``path``, atomically: one variable per
    target and statistic (``<y>_mean``, ``<y>_std``, ``<y>_lower``, ``<y>_upper``) with the
    dims and coordinates of the inputs in ``source``, plus ``ood_score`` and ``ood``."""
    import xarray as xr

    path, source = Path(path), Path(source)
    if path.suffix.lower() not in SUFFIXES:
        raise DataError(f"cannot save {path.name} with xarray: use {', '.join(SUFFIXES)}")
    ds = open_dataset(source)
    _, sample, rest = _layout(ds, source, x_key, sample_dim)
    targets = names(y_key)
    dims = (sample, *rest) if arrays["mean"].ndim > 2 else (sample,)
    variables = {}
    for j, y in enumerate(targets):
        for stat in ("mean", "std", "lower", "upper"):
            a = arrays[stat][:, j]
            if a.shape[1:] != tuple(ds.sizes[d] for d in dims[1:]):
                raise DataError(f"predictions of shape {a.shape} do not fit dims {dims}")
            variables[f"{y}_{stat}"] = (dims, a, {"level": level} if stat in ("lower", "upper")
                                        else {})
    for k in ("ood_score", "ood"):
        if k in arrays:
            variables[k] = ((sample,), arrays[k])
    coords = {k: c for k, c in ds.coords.items() if set(c.dims) <= set(dims)}
    out = xr.Dataset(variables, coords=coords, attrs={"source": str(source),
                                                      "interval_level": level})
    if path.suffix.lower() == ".zarr":
        atomic_directory(path, lambda tmp: out.to_zarr(tmp, mode="w", consolidated=False))
    else:
        atomic_write(path, lambda tmp: out.to_netcdf(tmp, engine="h5netcdf"))
    ds.close()

"""Loading, validating and saving data arrays.

Shapes: n samples, d input features, m outputs; X is (n, d), Y is (n, m), fields are (n, c, *grid).
Every problem with the data is a DataError naming the argument, what was expected and what came.

>>> import tempfile; path = tempfile.mkdtemp() + "/train.npz"
>>> save_data(path, [[0.0, 1.0], [2.0, 3.0]], [1.0, 2.0])
>>> X, Y = load_data(path)
>>> X.shape, Y.shape
((2, 2), (2, 1))
"""

import csv
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from choral.atomic import atomic_write
from choral.errors import DataError
from choral.rows import H5Rows, Rows

XARRAY = (".nc", ".nc4", ".netcdf", ".zarr")
"""netCDF and zarr, read through xarray (:mod:`choral.xarrays`, extra ``choral[xarray]``)."""

SUPPORTED_LOAD = (".npz", ".csv", ".h5", ".hdf5", ".pt", *XARRAY)
SUPPORTED_SAVE = (".npz", ".csv", ".h5", ".hdf5")


def _to_numpy(a: Any, name: str) -> np.ndarray:
    if hasattr(a, "detach") and hasattr(a, "is_complex"):  # a torch tensor
        a = a.detach().cpu()
        a = (a if a.is_complex() else a.double()).numpy()
    try:
        arr = np.asarray(a)
    except (ValueError, TypeError) as e:
        raise DataError(f"{name} could not be made into an array ({e})") from e
    if arr.dtype.kind not in "biuf":
        raise DataError(f"{name} must hold numbers, got dtype {arr.dtype}")
    return arr.astype(np.float64, copy=False)


def _check_shape(shape: tuple[int, ...], name: str, letter: str) -> None:
    if len(shape) < 2:
        want = "1-D (n,), 2-D (n, m)" if letter == "m" else "2-D (n, d)"
        raise DataError(f"{name} must be {want} or a field (n, c, *grid); got shape {shape}")
    if 0 in shape:
        raise DataError(f"{name} is empty: got shape {shape}; need >= 1 row and >= 1 feature")


def _check_one(a: np.ndarray, name: str, letter: str) -> None:
    _check_shape(a.shape, name, letter)
    bad = np.flatnonzero(~np.isfinite(a).reshape(a.shape[0], -1).all(axis=1))
    if bad.size:
        rows = f"{bad.size} rows" if bad.size > 1 else "1 row"
        more = " (first 10 shown)" if bad.size > 10 else ""
        raise DataError(f"{name} has NaN/inf values in {rows}: {bad[:10].tolist()}{more}")


def check_arrays(
    X: Any, Y: Any = None, *, x_name: str = "X", y_name: str = "Y"
) -> tuple[np.ndarray, np.ndarray | None]:
    """Validate inputs X (n, d) or (n, c, *grid) and targets Y (n,), (n, m) or (n, c, *grid).

    Returns float64 numpy arrays; a 1-D Y of length n becomes (n, 1). Raises DataError for
    non-numeric data, wrong number of dimensions, empty data, NaN/inf values and a row-count
    mismatch between X and Y.

    >>> X, Y = check_arrays([[1, 2], [3, 4], [5, 6]], [0.5, 1.5, 2.5])
    >>> X.dtype, X.shape, Y.shape
    (dtype('float64'), (3, 2), (3, 1))
    >>> check_arrays([[1.0], [float("nan")]])
    Traceback (most recent call last):
    ...
    choral.errors.DataError: X has NaN/inf values in 1 row: [1]
    """
    x = _to_numpy(X, x_name)
    _check_one(x, x_name, "d")
    if Y is None:
        return x, None
    y = _to_numpy(Y, y_name)
    y = y.reshape(-1, 1) if y.ndim == 1 else y
    _check_one(y, y_name, "m")
    if x.shape[0] != y.shape[0]:
        raise DataError(f"{x_name} has {x.shape[0]} rows but {y_name} has {y.shape[0]}")
    return x, y


def _missing(path: Path, kind: str, key: str, keys: list[str]) -> DataError:
    there = ", ".join(keys) or "none"
    return DataError(
        f"{path.name} has no {kind} '{key}' ({kind}s there: {there}); name it with --x/--y"
    )


def _check_suffix(path: Path, supported: tuple[str, ...], verb: str) -> str:
    suffix = path.suffix.lower()
    if suffix not in supported:
        raise DataError(f"{verb} {path.name}: unknown type '{suffix}' (use {', '.join(supported)})")
    return suffix


def _csv_columns(header: list[str], key: str) -> list[str] | None:
    """Column names for key: a comma-separated list, or key0..key{k-1} when no column is key."""
    names = [s.strip() for s in key.split(",") if s.strip()]
    if len(names) == 1 and names[0] not in header:
        pat = re.compile(re.escape(names[0]) + r"(\d+)")
        numbered = [(int(mt.group(1)), h) for h in header if (mt := pat.fullmatch(h))]
        return [h for _, h in sorted(numbered)] or None
    return names


def _read_csv(path: Path, x_key: str, y_key: str, require_y: bool) -> tuple[dict, list[str]]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = [r for r in csv.reader(f) if any(c.strip() for c in r)]
    if not rows:
        raise DataError(f"{path.name} is empty; expected a header row of column names")
    header = [h.strip() for h in rows[0]]
    for i, r in enumerate(rows[1:], start=2):
        if len(r) != len(header):
            raise DataError(f"{path.name} line {i} has {len(r)} fields, header has {len(header)}")
    try:
        data = np.array(rows[1:], dtype=np.float64).reshape(len(rows) - 1, len(header))
    except ValueError as e:
        raise DataError(f"{path.name}: could not parse numbers ({e})") from e
    col = {h: data[:, j] for j, h in enumerate(header)}
    out: dict[str, np.ndarray] = {}
    if (y_cols := _csv_columns(header, y_key)) and not require_y and not set(y_cols) <= set(col):
        y_cols = None  # inputs only: a Y that is not there is not needed
    x_cols = _csv_columns(header, x_key)
    if x_cols is None and x_key == "X":
        x_cols = [h for h in header if h not in (y_cols or [])]
    for cols, key in ((x_cols, x_key), (y_cols, y_key)):
        if missing := [c for c in cols or [] if c not in col]:
            raise _missing(path, "column", missing[0], header)
        if cols:
            out[key] = np.stack([col[c] for c in cols], axis=1)
    return out, header


def _read(
    path: Path, suffix: str, x_key: str, y_key: str, require_y: bool, lazy: bool = False
) -> tuple:
    """The arrays found under x_key/y_key, all keys there, and what the keys are called."""
    if suffix == ".csv":
        return (*_read_csv(path, x_key, y_key, require_y), "column")
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            if not hasattr(z, "files"):
                raise DataError(f"{path.name} is not an .npz archive")
            return {k: z[k] for k in (x_key, y_key) if k in z.files}, list(z.files), "array"
    if suffix == ".pt":
        import torch

        obj = torch.load(path, weights_only=True, map_location="cpu")
        if not isinstance(obj, dict):
            raise DataError(f"{path.name} must hold a dict of tensors, got {type(obj).__name__}")
        return {k: obj[k] for k in (x_key, y_key) if k in obj}, [str(k) for k in obj], "array"
    with h5py.File(path, "r") as f:
        keys: list[str] = []
        f.visititems(lambda name, o: keys.append(name) if isinstance(o, h5py.Dataset) else None)
        take = (lambda k: H5Rows(path, k)) if lazy else (lambda k: f[k][()])
        return {k: take(k) for k in (x_key, y_key) if k.strip("/") in keys}, keys, "dataset"


def _check_rows(
    x: Rows, y: Rows | None, x_name: str, y_name: str
) -> tuple[Rows, Rows | None]:
    """:func:`check_arrays` for lazy rows, less the NaN/inf check (a pass over the data)."""
    _check_shape(x.shape, x_name, "d")
    if y is None:
        return x, None
    y = H5Rows(y.path, y.key, add_channel_axis=True) if y.ndim == 1 else y
    _check_shape(y.shape, y_name, "m")
    if len(x) != len(y):
        raise DataError(f"{x_name} has {len(x)} rows but {y_name} has {len(y)}")
    return x, y


def load_data(
    path: str | os.PathLike,
    *,
    x_key: str = "X",
    y_key: str = "Y",
    require_y: bool = True,
    lazy: bool = False,
    sample_dim: str | None = None,
) -> tuple[np.ndarray, np.ndarray | None] | tuple[H5Rows, H5Rows | None]:
    """Read inputs X (n, d) and targets Y (n, m) from a .npz, .csv, .h5/.hdf5 or .pt file.

    npz/h5/pt: arrays (h5: dataset paths) x_key and y_key; .pt is a dict of tensors read with
    ``weights_only=True`` (no code is unpickled). csv: header row of names; x_key/y_key are comma-
    separated column lists (or K for columns K0..K{k-1}); default x_key "X" with no such column
    means all non-target columns. ``require_y=False``: a missing Y gives (X, None). Checked by
    :func:`check_arrays`. ``lazy=True`` with .h5/.hdf5: X and Y come as :class:`H5Rows` (read on
    demand; a 1-D Y reads as (n, 1)), with keys, dtypes, shapes and row counts checked but not
    NaN/inf (``Standardiser.fit_blocks`` does that in its pass); other types ignore ``lazy``.
    netCDF (.nc) and zarr (.zarr): x_key/y_key name variables (comma-separated) along the
    dimension ``sample_dim`` (see :mod:`choral.xarrays`); ``lazy``: dask-chunked
    :class:`~choral.xarrays.XRows`.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"--data file not found: {path}")
    suffix = _check_suffix(path, SUPPORTED_LOAD, "cannot read")
    if suffix in XARRAY:
        from choral.xarrays import read_xarray  # xarray is an optional extra

        x, y = read_xarray(path, x_key, y_key, sample_dim=sample_dim, require_y=require_y,
                           lazy=lazy)
        if lazy:
            return _check_rows(x, y, x_key, y_key)
        return check_arrays(x, y, x_name=x_key, y_name=y_key)
    lazy = lazy and suffix in (".h5", ".hdf5")
    try:
        found, keys, kind = _read(path, suffix, x_key, y_key, require_y, lazy)
    except DataError:
        raise
    except Exception as e:  # any parse failure of a damaged or foreign file
        why = "a .pt file may hold only tensors/arrays (weights_only=True); " * (suffix == ".pt")
        msg = re.sub(r"\x1b\[[0-9;]*m", "", str(e))  # torch colours its messages
        raise DataError(f"could not read {path}: {why}{type(e).__name__}: {msg}") from e
    if x_key not in found or (require_y and y_key not in found):
        raise _missing(path, kind, x_key if x_key not in found else y_key, keys)
    if lazy:
        return _check_rows(found[x_key], found.get(y_key), x_key, y_key)
    return check_arrays(found[x_key], found.get(y_key), x_name=x_key, y_name=y_key)


def _csv_table(arrays: dict[str, np.ndarray], n: int) -> tuple[list[str], np.ndarray]:
    names: list[str] = []
    for k, v in arrays.items():
        if v.ndim not in (1, 2) or v.shape[0] != n:
            raise DataError(f"csv takes (n,) or (n, k) arrays, n={n}; '{k}' has shape {v.shape}")
        names += [k] if v.ndim == 1 or v.shape[1] == 1 else [f"{k}{j}" for j in range(v.shape[1])]
    if len(set(names)) != len(names):
        raise DataError(f"csv column names clash: {names}")
    return names, np.concatenate([v.reshape(n, -1) for v in arrays.values()], axis=1)


def save_data(
    path: str | os.PathLike,
    X: Any,
    Y: Any = None,
    *,
    x_key: str = "X",
    y_key: str = "Y",
    **extra_arrays: Any,
) -> None:
    """Write X (n, d), optional Y (n, m) and extra arrays to .npz, .h5/.hdf5 or .csv, atomically.

    ``load_data(path)`` with the same keys reads X and Y back. npz/h5: one array per key; csv
    (n-row vectors only): columns X0..X{d-1}, Y0..Y{m-1}, key0.. (just the key for one column).
    Written to a temporary file beside path, fsynced, then moved onto path: never a partial file.
    """
    path = Path(path)
    suffix = _check_suffix(path, SUPPORTED_SAVE, "cannot save")
    x, y = check_arrays(X, Y, x_name=x_key, y_name=y_key)
    arrays = {x_key: x} if y is None else {x_key: x, y_key: y}
    if clash := set(arrays) & set(extra_arrays):
        raise DataError(f"extra arrays {sorted(clash)} clash with the X/Y keys {list(arrays)}")
    arrays |= {k: _to_numpy(v, k) for k, v in extra_arrays.items()}
    if suffix == ".csv":
        names, table = _csv_table(arrays, x.shape[0])

    def write(tmp: Path) -> None:
        if suffix == ".npz":
            with open(tmp, "wb") as f:  # a file object, so np.savez appends no ".npz"
                np.savez(f, **arrays)
        elif suffix == ".csv":
            with open(tmp, "w", newline="", encoding="utf-8") as f:
                csv.writer(f).writerows([names, *table.tolist()])  # float repr reads back exactly
        else:
            with h5py.File(tmp, "w") as f:
                for k, v in arrays.items():
                    f.create_dataset(k, data=v)

    atomic_write(path, write)


def _write_block(datasets: dict[str, h5py.Dataset], block: dict[str, Any], start: int) -> int:
    """Write one block's arrays (b, ...) at row ``start``; return the next start."""
    if set(block) != set(datasets):
        raise DataError(f"each block must map exactly {sorted(datasets)} to arrays; "
                        f"got {sorted(block)}")
    arrays = {k: _to_numpy(v, k) for k, v in block.items()}
    b = next(iter(arrays.values())).shape[:1]
    for k, a in arrays.items():
        n, want = datasets[k].shape[0], datasets[k].shape[1:]
        if a.shape[:1] != b or a.shape[1:] != want or start + a.shape[0] > n:
            raise DataError(f"block array {k!r} must have shape (b, *{want}), b the same for "
                            f"every key and <= {n - start} rows left; got shape {a.shape}")
        datasets[k][start:start + a.shape[0]] = a
    return start + b[0]


def save_blocks(
    path: str | os.PathLike,
    shapes: dict[str, tuple[int, ...]],
    blocks: Iterable[dict[str, Any]],
    *,
    chunk_rows: int | None = None,
) -> None:
    """Write float64 datasets of full shapes ``shapes`` (n, ...) to .h5/.hdf5 block by block.

    Each block maps every key to its next rows (b, ...), the same b for every key; the blocks fill
    the n rows in order, so one block at a time is in memory. Datasets are chunked ``chunk_rows``
    rows a chunk (default: rows making 16 KiB, at least 1). Atomic: the file appears complete or
    not at all. ``load_data(path, lazy=True)`` reads it back.

    >>> import tempfile; path = tempfile.mkdtemp() + "/pred.h5"
    >>> parts = ({"X": np.full((2, 3), i), "Y": np.full(2, i)} for i in range(2))
    >>> save_blocks(path, {"X": (4, 3), "Y": (4,)}, parts)
    >>> X, Y = load_data(path, lazy=True)
    >>> X.shape, Y.read_slice(0, 4).ravel().tolist()
    ((4, 3), [0.0, 0.0, 1.0, 1.0])
    """
    path = Path(path)
    _check_suffix(path, (".h5", ".hdf5"), "cannot save blocks to")
    shapes = {k: tuple(s) for k, s in shapes.items()}
    sizes = {s[:1] for s in shapes.values()}
    dims = [d for s in shapes.values() for d in s]
    ints = all(isinstance(d, int | np.integer) and not isinstance(d, bool) for d in dims)
    if len(sizes) != 1 or not ints or min(dims, default=0) < 1:
        raise DataError(f"shapes must map keys to (n, ...) with one n >= 1 and no empty axis; "
                        f"got {shapes}")
    n = sizes.pop()[0]

    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w") as f:
            datasets = {k: f.create_dataset(k, shape=s, dtype="f8", chunks=_chunks(s, chunk_rows))
                        for k, s in shapes.items()}
            done = 0
            for block in blocks:
                done = _write_block(datasets, block, done)
            if done != n:
                raise DataError(f"blocks gave {done} rows; shapes say n = {n}")

    atomic_write(path, write)


def _chunks(shape: tuple[int, ...], chunk_rows: int | None) -> tuple[int, ...]:
    row_bytes = 8 * int(np.prod(shape[1:], dtype=np.int64))
    rows = max(1, 2**14 // row_bytes) if chunk_rows is None else chunk_rows
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1:
        raise DataError(f"chunk_rows must be an integer >= 1 or None; got {chunk_rows!r}")
    return (min(rows, shape[0]), *shape[1:])

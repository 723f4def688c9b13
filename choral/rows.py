"""Lazy rows of one HDF5 dataset: mini-batches and blocks of a data set larger than memory.

:class:`H5Rows` holds a file path, a dataset key and optionally a selection of row numbers, and
reads rows on demand as float64. Only those are pickled, so a view can travel to other processes
(Ray workers), which open the file on first use. :func:`block_rows` sizes the blocks of one
streaming pass over every row.

Examples:
    >>> import tempfile, h5py, numpy as np
    >>> path = tempfile.mkdtemp() + "/d.h5"
    >>> with h5py.File(path, "w") as f:
    ...     _ = f.create_dataset("X", data=np.arange(12.0).reshape(6, 2))
    >>> rows = H5Rows(path, "X")
    >>> rows.shape, rows.read(np.array([[5, 0], [0, 0]])).shape
    ((6, 2), (2, 2, 2))
    >>> odd = rows.subset(np.array([1, 3, 5]))
    >>> odd.shape, odd.read_slice(1, 3)[:, 0].tolist()
    ((3, 2), [6.0, 10.0])
    >>> [(start, len(block)) for start, block in odd.blocks(2)]
    [(0, 2), (2, 1)]
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from choral.errors import DataError

__all__ = ["H5Rows", "Rows", "as_index", "block_rows"]

DENSE = 2  # read the whole span of the rows asked for when they fill at least 1/DENSE of it


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise DataError(f"{name} must be an integer >= 1; got {name}={value!r}")
    return int(value)


def as_index(idx: Any, n: int, name: str, one_d: bool = False) -> np.ndarray:
    """``idx`` (numpy, torch or lists) as int64 row numbers in [0, n), or a DataError."""
    if hasattr(idx, "detach"):  # a torch tensor, possibly on a GPU
        idx = idx.detach().cpu().numpy()
    a = np.asarray(idx)
    a = a.astype(np.int64) if a.size == 0 else a
    if a.dtype.kind not in "iu" or (one_d and a.ndim != 1):
        want = "a 1-D array" if one_d else "an array"
        raise DataError(f"{name} must be {want} of integer row numbers; "
                        f"got dtype {a.dtype}, shape {a.shape}")
    a = a.astype(np.int64, copy=False)
    if a.size and (a.min() < 0 or a.max() >= n):
        bad = a[(a < 0) | (a >= n)]
        raise DataError(f"{name} must hold row numbers in [0, {n}); got {bad[:5].tolist()}"
                        f"{' ...' if bad.size > 5 else ''} ({bad.size} out of range)")
    return a


def _open(path: Path, key: str) -> tuple[h5py.File, h5py.Dataset]:
    if not path.is_file():
        raise DataError(f"path must be an existing HDF5 file; got {str(path)!r} (not found)")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise DataError(f"path {str(path)!r} could not be read as HDF5 ({e})") from e
    ds = f.get(key) if key else None
    if isinstance(ds, h5py.Dataset) and ds.dtype.kind in "biuf" and ds.ndim >= 1:
        return f, ds
    if isinstance(ds, h5py.Dataset):
        got = f"dtype {ds.dtype}, shape {ds.shape}"
        f.close()
        raise DataError(f"dataset {key!r} in {path.name} must hold numbers in rows (n, ...); "
                        f"got {got}")
    keys: list[str] = []
    f.visititems(lambda name, o: keys.append(name) if isinstance(o, h5py.Dataset) else None)
    f.close()
    raise DataError(f"key {key!r} must name a dataset in {path.name}; "
                    f"datasets there: {', '.join(keys) or 'none'}")


def block_rows(row_shape: tuple[int, ...], budget_bytes: int = 64 * 2**20) -> int:
    """Rows per block so a float64 block of rows of ``row_shape`` fits in ``budget_bytes``.

    At least 1, however large a row.

    >>> block_rows((1, 32, 32)), block_rows((8,), budget_bytes=100), block_rows((10**9,))
    (8192, 1, 1)
    """
    row_bytes = 8 * int(np.prod(row_shape, dtype=np.int64))
    return max(1, _positive_int(budget_bytes, "budget_bytes") // max(row_bytes, 1))


class Rows:
    """Rows (n, ...) of a data set read on demand as float64: the contract the streaming path
    of ``Surrogate.fit`` reads (:class:`H5Rows`; :class:`~choral.xarrays.XRows` for netCDF and
    zarr). Subclasses give ``shape``, :meth:`subset`, :meth:`read` and :meth:`read_slice`."""

    shape: tuple[int, ...]

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def subset(self, idx: Any) -> Rows:
        """The rows ``idx`` (1-D ints) of this view, as a view; reads no data."""
        raise NotImplementedError

    def read(self, idx: Any) -> np.ndarray:
        """Rows ``idx`` (ints of any shape): (*idx.shape, *row shape)."""
        raise NotImplementedError

    def read_slice(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start`` to ``stop - 1``: (stop - start, *row shape)."""
        raise NotImplementedError

    def blocks(self, rows: int) -> Iterator[tuple[int, np.ndarray]]:
        """``(start, block)`` over every row of this view in order, ``rows`` rows at most each."""
        rows, n = _positive_int(rows, "rows"), len(self)
        return ((s, self.read_slice(s, min(s + rows, n))) for s in range(0, n, rows))


class H5Rows(Rows):
    """Rows of the dataset ``key`` (n, ...) of the HDF5 file ``path``, read on demand as float64.

    ``index`` (1-D int row numbers, or None for every row) selects and orders file rows: row
    ``i`` of this view is file row ``index[i]``. ``add_channel_axis`` inserts an axis of size 1
    after the row axis, so a dataset (n, *grid) reads as (n, 1, *grid) and (n,) as (n, 1).
    Only path, key, index and the flag are pickled; the file opens on first use, and again in
    any other process. Every problem is a :class:`~choral.errors.DataError`.
    """

    def __init__(self, path: str | os.PathLike, key: str, index: Any = None,
                 add_channel_axis: bool = False) -> None:
        self.__setstate__({"path": Path(path).absolute(), "key": str(key), "index": None,
                           "add_channel_axis": bool(add_channel_axis)})
        n = self._dataset().shape[0]  # opens and checks the file and the dataset now
        if index is not None:
            self._set_index(as_index(index, n, "index", one_d=True))

    def _set_index(self, index: np.ndarray | None) -> None:
        if index is not None:
            index = np.array(index, dtype=np.int64)
            index.setflags(write=False)
        self.index = index

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "key": self.key, "index": self.index,
                "add_channel_axis": self.add_channel_axis}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path, self.key = state["path"], state["key"]
        self.add_channel_axis = state["add_channel_axis"]
        self._set_index(state["index"])
        self._file: h5py.File | None = None
        self._ds: h5py.Dataset | None = None
        self._pid = -1

    def _dataset(self) -> h5py.Dataset:
        if self._ds is None or self._pid != os.getpid():  # not open here yet, or forked
            self._file, self._ds = _open(self.path, self.key)
            self._pid = os.getpid()
        return self._ds

    def close(self) -> None:
        """Close the file in this process; the next read opens it again."""
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file = self._ds = None

    def __repr__(self) -> str:
        rows = "all" if self.index is None else len(self.index)
        return (f"H5Rows({str(self.path)!r}, {self.key!r}, rows={rows}, "
                f"add_channel_axis={self.add_channel_axis})")

    @property
    def shape(self) -> tuple[int, ...]:
        """(selected rows, *row shape), the channel axis included."""
        ds = self._dataset()
        n = ds.shape[0] if self.index is None else len(self.index)
        return (n, *(1,) * self.add_channel_axis, *ds.shape[1:])

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def subset(self, idx: Any) -> H5Rows:
        """The rows ``idx`` (1-D ints, numpy or torch) of this view, as a view; reads no data."""
        idx = as_index(idx, len(self), "idx", one_d=True)
        view = object.__new__(H5Rows)
        index = idx if self.index is None else self.index[idx]
        view.__setstate__({**self.__getstate__(), "index": index})
        return view

    def read(self, idx: Any) -> np.ndarray:
        """Rows ``idx`` (ints of any shape, any order, repeats allowed): (*idx.shape, *row shape).

        E.g. ``idx`` (s, b) gives one mini-batch per ensemble member, (s, b, *row shape).
        """
        idx = as_index(idx, len(self), "idx")
        return self._gather(idx if self.index is None else self.index[idx])

    def read_slice(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start`` to ``stop - 1`` of this view: (stop - start, *row shape)."""
        n = len(self)
        ok = all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in (start, stop))
        if not ok or not 0 <= start <= stop <= n:
            raise DataError(f"start, stop must be integers with 0 <= start <= stop <= {n}; "
                            f"got start={start!r}, stop={stop!r}")
        if self.index is not None:
            return self._gather(self.index[start:stop])
        block = self._dataset()[int(start):int(stop)]
        return block.astype(np.float64, copy=False).reshape(stop - start, *self.shape[1:])

    def blocks(self, rows: int) -> Iterator[tuple[int, np.ndarray]]:
        """``(start, block)`` over every row of this view in order, ``rows`` rows at most each."""
        rows, n = _positive_int(rows, "rows"), len(self)
        return ((s, self.read_slice(s, min(s + rows, n))) for s in range(0, n, rows))

    def _gather(self, rows: np.ndarray) -> np.ndarray:
        """File rows ``rows`` (any shape) as float64 (*rows.shape, *row shape).

        Reads each unique row once: the whole span when the rows fill at least 1/DENSE of it
        (a contiguous range is one slice), else one slice per run of consecutive rows, which
        h5py reads several times faster than a fancy index of the same rows.
        """
        shape = (*rows.shape, *self.shape[1:])
        if rows.size == 0:
            return np.empty(shape)
        flat = rows.ravel()
        unique = np.unique(flat)
        lo, hi = int(unique[0]), int(unique[-1]) + 1
        ds = self._dataset()
        if hi - lo <= DENSE * unique.size:
            data, where = ds[lo:hi], flat - lo
        else:
            cut = np.flatnonzero(np.diff(unique) != 1) + 1
            starts, stops = unique[np.r_[0, cut]], unique[np.r_[cut - 1, unique.size - 1]] + 1
            data = np.concatenate([ds[a:b] for a, b in zip(starts, stops, strict=True)])
            where = np.searchsorted(unique, flat)
        return data[where].astype(np.float64, copy=False).reshape(shape)

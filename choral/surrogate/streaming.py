"""Training data larger than memory: rows read on demand (:class:`~choral.rows.Rows`: HDF5,
netCDF, zarr).

``Surrogate.fit`` accepts lazy rows wherever it accepts arrays. Statistics and OOD features
come from one pass over blocks of rows; training reads each step's mini-batches and the
validation rows in chunks, standardised, as tensors on the training device; only the rows held
out for calibration are held in memory (at most ``calibration.max_rows``).

Examples:
    >>> import tempfile, numpy as np
    >>> from choral.data import save_data, load_data
    >>> path = tempfile.mkdtemp() + "/d.h5"
    >>> save_data(path, np.arange(12.0).reshape(6, 2), np.ones(6))
    >>> X, _ = load_data(path, lazy=True)
    >>> norm = statistics(X, "X")
    >>> device = torch.zeros(0).device  # where the training tensors live
    >>> rows = StandardisedRows(X, norm, torch.float64, device)
    >>> rows[torch.tensor([[0, 5]])].shape, len(rows.subset(np.array([1, 2])))
    (torch.Size([1, 2, 2]), 2)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from choral.evaluation.ood import pooled_features
from choral.normalise import Standardiser
from choral.rows import Rows, block_rows

__all__ = ["StandardisedRows", "features", "input_box", "is_lazy", "rows_of", "statistics",
           "take"]


def is_lazy(a: Any) -> bool:
    """Whether ``a`` is read on demand (:class:`~choral.rows.Rows`: HDF5, netCDF, zarr)."""
    return isinstance(a, Rows)


def _blocks(rows: Rows):
    return (block for _, block in rows.blocks(block_rows(rows.shape[1:])))


def statistics(rows: Rows, name: str) -> Standardiser:
    """The standardiser of ``rows``, in one streaming pass (NaN/inf rows are errors)."""
    return Standardiser.fit_blocks(_blocks(rows), name)


def features(rows: Rows, norm: Standardiser) -> np.ndarray:
    """OOD features (n, f) of every row (:func:`~choral.evaluation.ood.pooled_features`)."""
    return np.concatenate([pooled_features(norm.transform(b)) for b in _blocks(rows)])


def input_box(a: Any) -> list[list[float]]:
    """The box [[lower, upper], ...] (d pairs) of vector inputs ``a`` (n, d), lazy or not.

    Examples:
        >>> input_box(np.array([[0.0, 5.0], [2.0, 3.0]]))
        [[0.0, 2.0], [3.0, 5.0]]
    """
    blocks = _blocks(a) if is_lazy(a) else (np.asarray(a),)
    lo_hi = np.array([(b.min(0), b.max(0)) for b in blocks])  # (blocks, 2, d)
    return np.stack([lo_hi[:, 0].min(0), lo_hi[:, 1].max(0)], axis=1).tolist()


def take(a: Any, idx: np.ndarray) -> np.ndarray:
    """Rows ``idx`` (k,) of an array or of lazy rows, as a float64 array in memory."""
    return a.read(idx) if is_lazy(a) else a[idx]


def rows_of(a: Any, idx: Tensor) -> Any:
    """Rows ``idx`` of a tensor (a copy) or of :class:`StandardisedRows` (a view)."""
    return a.subset(idx.numpy()) if isinstance(a, StandardisedRows) else a[idx]


class StandardisedRows:
    """Lazy rows as training reads them: standardised by ``norm``, ``dtype`` on ``device``.

    ``rows[idx]`` for an index tensor of any shape (e.g. (s, b), one mini-batch per member)
    and ``rows[i:j]`` read from the file; :meth:`subset` makes a view.
    """

    def __init__(self, rows: Rows, norm: Standardiser, dtype: torch.dtype,
                 device: torch.device) -> None:
        self.rows, self.norm, self.dtype, self.device = rows, norm, dtype, device

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.rows.shape

    def subset(self, idx: np.ndarray) -> StandardisedRows:
        return StandardisedRows(self.rows.subset(idx), self.norm, self.dtype, self.device)

    def __getitem__(self, idx: slice | Tensor) -> Tensor:
        if isinstance(idx, slice):
            start, stop, _ = idx.indices(len(self))
            block = self.rows.read_slice(start, max(start, stop))
        else:
            block = self.rows.read(idx.cpu().numpy())
        shape = block.shape
        z = self.norm.transform(block.reshape(-1, *self.shape[1:])).reshape(shape)
        return torch.as_tensor(z, dtype=self.dtype).to(self.device)

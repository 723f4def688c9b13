"""Export a campaign's runs to HDF5 (h5py), written atomically.

The file holds ``X`` (n, d) and ``Y`` (n, ...) of the done runs with their ``run_id`` and
``round`` (n,), the failed runs under ``failed/`` (``X``, ``run_id``, ``error``), and the campaign
config as JSON in the ``config`` attribute.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from choral.atomic import atomic_write
from choral.campaign.status import open_ledger


def export_h5(workdir: str | Path, out: str | Path) -> dict[str, int]:
    """Write ``out`` from the ledger in ``workdir``; returns {done, failed} counts written."""
    with open_ledger(workdir) as ledger:
        done, failed = ledger.runs("done"), ledger.runs("failed")
        config = ledger.meta("config")

    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w") as f:
            f.attrs["config"] = json.dumps(config)
            d = len(done[0].x) if done else len(failed[0].x) if failed else 0
            f["X"] = np.stack([r.x for r in done]) if done else np.zeros((0, d))
            f["Y"] = np.stack([r.y for r in done]) if done else np.zeros((0,))
            f["run_id"] = np.array([r.id for r in done], dtype=np.int64)
            f["round"] = np.array([r.round for r in done], dtype=np.int64)
            g = f.create_group("failed")
            g["X"] = np.stack([r.x for r in failed]) if failed else np.zeros((0, d))
            g["run_id"] = np.array([r.id for r in failed], dtype=np.int64)
            g["error"] = np.array([r.error or "" for r in failed], dtype=h5py.string_dtype())

    atomic_write(out, write)
    return {"done": len(done), "failed": len(failed)}

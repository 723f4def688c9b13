"""The ledger: an SQLite database (WAL mode) of a campaign's runs and rounds.

Every proposed point is a row of ``runs`` with a state that moves only along :data:`TRANSITIONS`::

    pending -> running -> done | failed
    running -> pending     (recovery: the process that ran it died)
    done    -> pending     (recovery: its output file is missing or fails its checksum)

Each change is one committed transaction, and an output file is written atomically *before* its
run is marked done, so after ``kill -9`` at any moment the ledger holds finished runs once and
never points at a half-written file (:meth:`Ledger.recover` checks the checksums).

>>> import tempfile, numpy as np
>>> led = Ledger(Path(tempfile.mkdtemp()) / "ledger.db")
>>> led.add_round(0, np.zeros((2, 3)))
[1, 2]
>>> led.start(1); led.finish(1, np.array([4.0]))
>>> led.counts()
{'pending': 1, 'running': 0, 'done': 1, 'failed': 0}
>>> led.finish(2, np.array([1.0]))
Traceback (most recent call last):
...
choral.errors.CampaignError: run 2 cannot go from pending to done (allowed from pending: running)
"""

from __future__ import annotations

import hashlib
import io
import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from choral.atomic import atomic_write
from choral.errors import CampaignError

STATES = ("pending", "running", "done", "failed")
TRANSITIONS = {"pending": ("running",), "running": ("done", "failed", "pending"),
               "done": ("pending",), "failed": ()}
INLINE_MAX = 16
"""Outputs with more values than this go to an .npy file referenced by path and SHA-256."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY, round INTEGER NOT NULL, x TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'running', 'done', 'failed')),
    y TEXT, path TEXT, checksum TEXT, error TEXT, attempts INTEGER NOT NULL DEFAULT 0,
    seconds REAL, updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS rounds (
    round INTEGER PRIMARY KEY, model TEXT, scores TEXT NOT NULL, created REAL NOT NULL);
"""


@dataclass(frozen=True)
class Run:
    """One ledger row; ``x`` (d,), ``y`` (...) for done runs (read from its file if large)."""

    id: int
    round: int
    x: np.ndarray
    state: str
    y: np.ndarray | None
    error: str | None
    attempts: int


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class Ledger:
    """The campaign database at ``path``; large outputs live in ``path.parent / "outputs"``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.outputs = self.path.parent / "outputs"
        self.db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(_SCHEMA)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

    # -- campaign metadata ---------------------------------------------------------------------
    def bind(self, key: str, value: dict[str, Any]) -> None:
        """Store ``value`` under ``key`` once; a different value later is a CampaignError."""
        text = json.dumps(value, sort_keys=True)
        self.db.execute("INSERT OR IGNORE INTO meta VALUES (?, ?)", (key, text))
        stored = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0]
        if stored != text:
            raise CampaignError(f"{self.path} belongs to a campaign with a different {key}: "
                                f"stored {stored}, given {text}; use a new working directory")

    def meta(self, key: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    # -- rounds ---------------------------------------------------------------------------------
    def add_round(self, r: int, X: np.ndarray, model: str | None = None,
                  scores: dict[str, Any] | None = None) -> list[int]:
        """Record round ``r`` and its points ``X`` (k, d) as pending runs, in one transaction."""
        now = time.time()
        with self._transaction():
            self.db.execute("INSERT INTO rounds VALUES (?, ?, ?, ?)",
                            (r, model, json.dumps(scores or {}), now))
            ids = [self.db.execute("INSERT INTO runs (round, x, state, updated) "
                                   "VALUES (?, ?, 'pending', ?)",
                                   (r, json.dumps([float(v) for v in x]), now)).lastrowid
                   for x in np.asarray(X, dtype=np.float64)]
        return ids

    def rounds(self) -> list[dict[str, Any]]:
        """Every round: {round, model, scores}, in order."""
        rows = self.db.execute("SELECT round, model, scores FROM rounds ORDER BY round")
        return [{"round": r, "model": m, "scores": json.loads(s)} for r, m, s in rows]

    # -- run states -----------------------------------------------------------------------------
    def _move(self, run_id: int, new: str, attempt: bool = False, **fields: Any) -> None:
        with self._transaction():
            row = self.db.execute("SELECT state FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise CampaignError(f"no run with id {run_id} in {self.path}")
            if new not in TRANSITIONS[row[0]]:
                allowed = ", ".join(TRANSITIONS[row[0]]) or "nothing (final state)"
                raise CampaignError(f"run {run_id} cannot go from {row[0]} to {new} "
                                    f"(allowed from {row[0]}: {allowed})")
            sets = ", ".join(f"{k} = ?" for k in fields)
            bump = ", attempts = attempts + 1" if attempt else ""
            self.db.execute(f"UPDATE runs SET state = ?, updated = ?{bump}"
                            f"{', ' if sets else ''}{sets} WHERE id = ?",
                            (new, time.time(), *fields.values(), run_id))

    def start(self, run_id: int) -> None:
        """pending -> running (counts an attempt)."""
        self._move(run_id, "running", attempt=True)

    def finish(self, run_id: int, y: np.ndarray, seconds: float | None = None) -> None:
        """running -> done with output ``y``; a large one is written to a file first."""
        y = np.asarray(y, dtype=np.float64)
        if y.size <= INLINE_MAX:
            self._move(run_id, "done", y=json.dumps({"shape": y.shape, "v": y.ravel().tolist()}),
                       path=None, checksum=None, seconds=seconds, error=None)
            return
        path = self.outputs / f"run_{run_id}.npy"
        atomic_write(path, lambda tmp: tmp.write_bytes(_npy_bytes(y)))
        self._move(run_id, "done", y=None, path=str(path.relative_to(self.path.parent)),
                   checksum=sha256(path), seconds=seconds, error=None)

    def fail(self, run_id: int, error: str, seconds: float | None = None) -> None:
        """running -> failed, keeping the error message."""
        self._move(run_id, "failed", error=error, seconds=seconds)

    def recover(self) -> dict[str, int]:
        """After a crash: in-flight runs go back to pending, and so do done runs whose output
        file is missing or fails its checksum. Returns how many of each were moved."""
        running = [r for (r,) in self.db.execute("SELECT id FROM runs WHERE state = 'running'")]
        for run_id in running:
            self._move(run_id, "pending")
        bad = [run_id for run_id, path, checksum in self.db.execute(
            "SELECT id, path, checksum FROM runs WHERE state = 'done' AND path IS NOT NULL")
            if not self._intact(path, checksum)]
        for run_id in bad:
            self._move(run_id, "pending", y=None, path=None, checksum=None)
        return {"running": len(running), "corrupt": len(bad)}

    def _intact(self, path: str, checksum: str) -> bool:
        full = self.path.parent / path
        return full.is_file() and sha256(full) == checksum

    # -- queries --------------------------------------------------------------------------------
    def runs(self, state: str | None = None) -> list[Run]:
        """Runs (optionally in one state) in id order; done outputs are read and verified."""
        query = "SELECT id, round, x, state, y, path, checksum, error, attempts FROM runs"
        rows = self.db.execute(query + (" WHERE state = ?" if state else "") + " ORDER BY id",
                               (state,) if state else ())
        return [Run(i, r, np.asarray(json.loads(x)), s, self._output(i, y, p, c), e, a)
                for i, r, x, s, y, p, c, e, a in rows]

    def _output(self, run_id: int, y: str | None, path: str | None, checksum: str | None):
        if y is not None:
            v = json.loads(y)
            return np.asarray(v["v"], dtype=np.float64).reshape(v["shape"])
        if path is None:
            return None
        if not self._intact(path, checksum):
            raise CampaignError(f"output of run {run_id} ({path}) is missing or fails its "
                                "checksum; run the campaign again to recover it")
        return np.load(self.path.parent / path, allow_pickle=False)

    def table(self) -> list[tuple]:
        """Every run as plain values that compare with ``==``: (id, round, state, x, y, error)."""
        return [(r.id, r.round, r.state, r.x.tolist(), None if r.y is None else r.y.tolist(),
                 r.error) for r in self.runs()]

    def counts(self) -> dict[str, int]:
        """Runs per state."""
        found = dict(self.db.execute("SELECT state, COUNT(*) FROM runs GROUP BY state"))
        return {s: found.get(s, 0) for s in STATES}

    def data(self) -> tuple[np.ndarray, np.ndarray]:
        """Training data of the done runs: ``X`` (n, d), ``Y`` (n, ...), in id order."""
        done = self.runs("done")
        if not done:
            return np.zeros((0, 0)), np.zeros((0, 0))
        return np.stack([r.x for r in done]), np.stack([r.y for r in done])

    def _transaction(self):
        return _Transaction(self.db)


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (or ``ROLLBACK`` on an exception)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind, *_: Any) -> None:
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")


def _npy_bytes(y: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, y, allow_pickle=False)
    return buf.getvalue()

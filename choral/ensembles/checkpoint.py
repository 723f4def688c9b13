"""Checkpoints of a training run that survive ``kill -9``: resume ends bit-identical on a CPU.

A method trains in one or more *stages* (calls of
:func:`~choral.ensembles.training.train_members`: a pretraining run, then a collecting run, or
one per member for the loop backend). A :class:`Checkpoint` numbers them in call order and keeps
in one file the results of the finished stages and the whole state of the running one (weights,
optimiser, per-member early stopping, mini-batch generators, position in the epoch, the state of
the method's accumulator). The file is replaced atomically, so a kill leaves the previous
checkpoint or the new one. Running the same training again skips the finished stages and goes on
from the saved step; as every step is a deterministic function of that state, the weights end
bit-identical to an uninterrupted run on the CPU.

A checkpoint is tied to a *fingerprint* of its configuration and data: one written by another
configuration is ignored (and overwritten) rather than resumed. It is read with
``torch.load(weights_only=True)``: tensors, numbers and strings only, no code is unpickled.

Examples:
    >>> import tempfile
    >>> from pathlib import Path
    >>> path = Path(tempfile.mkdtemp()) / "fit.checkpoint"
    >>> ckpt = Checkpoint(path, "abc")
    >>> stage = ckpt.stage(); ckpt.finish(stage, {"w": torch.ones(2)}, {"epochs_run": 3})
    >>> again = Checkpoint(path, "abc"); again.result(again.stage())[1]
    {'epochs_run': 3}
    >>> Checkpoint(path, "other").result(0) is None  # another configuration: start over
    True
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from choral.atomic import atomic_write
from choral.errors import ConfigError, ModelFileError

__all__ = ["Checkpoint", "Resume"]

Resume = Literal["auto", "require", "never"]
"""``auto``: resume a matching checkpoint, else start over; ``require``: a matching checkpoint
must exist; ``never``: start over (the old checkpoint is overwritten)."""
VERSION = 1


class Checkpoint:
    """The training state at ``path`` for the run with ``fingerprint``, saved every
    ``every_epochs`` epochs and at the first step ``every_seconds`` after the last save."""

    def __init__(self, path: str | Path, fingerprint: str, *, every_epochs: int | None = None,
                 every_seconds: float | None = 60.0, resume: Resume = "auto") -> None:
        self.path, self.fingerprint = Path(path), fingerprint
        self.every_epochs, self.every_seconds = every_epochs, every_seconds
        self.done: list[dict[str, Any]] = []
        self.current: dict[str, Any] | None = None
        self.stale = False
        """A checkpoint was found but belongs to another configuration or data."""
        saved = self._read() if resume != "never" and self.path.exists() else None
        if saved is not None and saved.get("fingerprint") != fingerprint:
            self.stale, saved = True, None
        if resume == "require" and saved is None:
            why = "was written by another configuration or data" if self.stale else "is missing"
            raise ConfigError(f"--resume: the checkpoint {self.path} {why}")
        if saved is not None:
            self.done, self.current = saved["done"], saved["current"]
        self.resumed = saved is not None
        self._next = 0
        self._saved_at = time.monotonic()

    def _read(self) -> dict[str, Any]:
        try:
            saved = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is reported the same way
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
            raise ModelFileError(f"checkpoint {self.path} is unreadable ({type(exc).__name__}: "
                                 f"{first}); delete it to start over") from None
        if not isinstance(saved, dict) or saved.get("version") != VERSION:
            raise ModelFileError(f"{self.path} is not a choral checkpoint (version {VERSION}); "
                                 f"delete it to start over")
        return saved

    def stage(self) -> int:
        """The number of the next stage (stages are numbered in call order)."""
        self._next += 1
        return self._next - 1

    def result(self, stage: int) -> tuple[dict[str, Tensor], dict[str, Any]] | None:
        """The saved (weights, history fields) of ``stage`` if it finished, else ``None``."""
        if stage >= len(self.done):
            return None
        return self.done[stage]["params"], self.done[stage]["history"]

    def state(self, stage: int) -> dict[str, Any] | None:
        """The saved state of the running ``stage``, if that is the one that was running."""
        return self.current if self.current and self.current["stage"] == stage else None

    def due(self, epoch_end: int | None = None) -> bool:
        """Whether to save now: after the step when ``every_seconds`` passed since the last
        save, or at the end of 0-based epoch ``epoch_end`` when it completes ``every_epochs``."""
        if epoch_end is not None and self.every_epochs and (epoch_end + 1) % self.every_epochs == 0:
            return True
        return bool(self.every_seconds) and \
            time.monotonic() - self._saved_at >= self.every_seconds

    def save(self, stage: int, state: dict[str, Any]) -> None:
        """Replace the checkpoint with the finished stages and ``state`` of ``stage``."""
        self.current = {"stage": stage, **state}
        self._write()

    def finish(self, stage: int, params: dict[str, Tensor], history: dict[str, Any]) -> None:
        """Record ``stage`` as finished with its result, and save."""
        if stage != len(self.done):
            raise RuntimeError(f"stage {stage} finished out of order ({len(self.done)} done)")
        cpu = {k: v.detach().to("cpu", copy=True) for k, v in params.items()}
        self.done.append({"params": cpu, "history": history})
        self.current = None
        self._write()

    def _write(self) -> None:
        content = {"version": VERSION, "fingerprint": self.fingerprint, "done": self.done,
                   "current": self.current}
        atomic_write(self.path, lambda tmp: torch.save(content, tmp))
        self._saved_at = time.monotonic()

    def remove(self) -> None:
        """Delete the checkpoint file (a finished fit needs it no more)."""
        self.path.unlink(missing_ok=True)

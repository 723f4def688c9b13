"""Simulators a campaign can run, one point at a time, each with an optional timeout.

A simulator is a Python callable ``f(X (1, d)) -> Y (1, ...)``, an importable ``module:function``
of the same form, a built-in choral simulator name (``borehole``, ``branin``, ``hartmann6``), or
a shell command. A command gets ``{input}`` (a text file with one row of ``d`` numbers) and
``{output}`` (where it must write its numbers, as text) substituted as absolute paths, also in
``$CHORAL_INPUT`` and ``$CHORAL_OUTPUT``; it runs in the current directory.

With a ``timeout``, a Python simulator runs in a forked process that is killed when the time is
up (so what it changes in memory does not reach the caller); without one it runs in process.

Every evaluation returns an :class:`Outcome`: the output ``y`` or the error that stopped it (an
exception, a non-zero exit, a missing output, a timeout); it never raises.

>>> sim = Simulation.from_config(SimulatorConfig(builtin="branin"))
>>> round(float(sim.evaluate(np.array([np.pi, 2.275]), Path(".")).y[0]), 6)
0.397887
>>> Simulation(lambda X: 1 / 0).evaluate(np.zeros(2), Path(".")).error
'ZeroDivisionError: division by zero'
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import shlex
import signal
import subprocess
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from choral.campaign.config import SimulatorConfig
from choral.errors import ConfigError


@dataclass(frozen=True)
class Outcome:
    """The result of one run: ``y`` (...) when it worked, else ``error``; its wall ``seconds``."""

    y: np.ndarray | None
    error: str | None
    seconds: float


@dataclass(frozen=True)
class Simulation:
    """A runnable simulator: a Python ``function`` or a shell ``command``, and a ``timeout``."""

    function: Callable[[np.ndarray], np.ndarray] | None = None
    command: str | None = None
    timeout: float | None = None

    @classmethod
    def from_config(cls, cfg: SimulatorConfig,
                    function: Callable[[np.ndarray], np.ndarray] | None = None) -> Simulation:
        """Build from ``[simulator]``; a Python ``function`` given here overrides the file."""
        if function is not None:
            return cls(function=function, timeout=cfg.timeout)
        if cfg.command is not None:
            return cls(command=cfg.command, timeout=cfg.timeout)
        if cfg.function is not None:
            return cls(function=import_function(cfg.function), timeout=cfg.timeout)
        if cfg.builtin is not None:
            return cls(function=cfg.builtin_simulator(), timeout=cfg.timeout)
        raise ConfigError("[simulator] needs one of builtin, function or command; got none "
                          "(or pass a Python callable to run_campaign)")

    def evaluate(self, x: np.ndarray, workdir: Path) -> Outcome:
        """Run the simulator at ``x`` (d,); ``workdir`` holds a command's input/output files."""
        start = time.perf_counter()
        if self.command is not None:
            y, error = _run_command(self.command, x, Path(workdir), self.timeout)
        elif self.timeout is None:
            y, error = _call(self.function, x)
        else:
            y, error = _call_forked(self.function, x, self.timeout)
        return Outcome(y, error, time.perf_counter() - start)


def import_function(spec: str) -> Callable[[np.ndarray], np.ndarray]:
    """``"package.module:function"`` -> the function; errors name what was not found."""
    module, _, name = spec.partition(":")
    if not module or not name:
        raise ConfigError(f"simulator.function = {spec!r}: expected 'module:function'")
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"simulator.function = {spec!r} cannot be imported: {exc}") from None
    if not callable(fn):
        raise ConfigError(f"simulator.function = {spec!r} is not callable")
    return fn


def _call(function: Callable, x: np.ndarray) -> tuple[np.ndarray | None, str | None]:
    try:
        y = np.asarray(function(np.asarray(x, dtype=np.float64)[None]), dtype=np.float64)
        y = y[0] if y.ndim >= 1 and y.shape[0] == 1 else y
        if not np.all(np.isfinite(y)):
            return None, f"output has NaN or inf: {y.ravel()[:8].tolist()}"
        return y.reshape(-1) if y.ndim == 0 else y, None
    except Exception as exc:  # any failure of the user's code is the run's failure
        return None, f"{type(exc).__name__}: {exc}"


def _child(function: Callable, x: np.ndarray, conn) -> None:
    try:
        conn.send(_call(function, x))
    except Exception:  # pragma: no cover - pickling the result failed
        conn.send((None, traceback.format_exc(limit=1)))
    finally:
        conn.close()


def _call_forked(function: Callable, x: np.ndarray,
                 timeout: float) -> tuple[np.ndarray | None, str | None]:
    """Call in a forked process that is killed after ``timeout`` seconds."""
    ctx = multiprocessing.get_context("fork")
    receive, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(function, x, send), daemon=True)
    proc.start()
    send.close()
    try:
        if receive.poll(timeout):
            return receive.recv()
        return None, f"timed out after {timeout:g} s"
    except EOFError:
        return None, f"simulator process died (exit code {proc.exitcode})"
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join()
        receive.close()


def _run_command(command: str, x: np.ndarray, workdir: Path,
                 timeout: float | None) -> tuple[np.ndarray | None, str | None]:
    workdir.mkdir(parents=True, exist_ok=True)
    inp, out = workdir / "input.txt", workdir / "output.txt"
    out.unlink(missing_ok=True)  # a stale output from a killed attempt is never read
    np.savetxt(inp, np.asarray(x, dtype=np.float64)[None], fmt="%.17g")
    line = command.format(input=shlex.quote(str(inp)), output=shlex.quote(str(out)))
    env = {**os.environ, "CHORAL_INPUT": str(inp), "CHORAL_OUTPUT": str(out)}
    proc = subprocess.Popen(line, shell=True, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        log, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the whole group: the shell and what it started
        proc.communicate()
        return None, f"timed out after {timeout:g} s: {line}"
    if proc.returncode != 0:
        return None, f"exit code {proc.returncode}: {line}: {log.strip()[-500:]}"
    if not out.is_file():
        return None, f"command wrote no output file {out}: {line}"
    try:
        y = np.atleast_1d(np.loadtxt(out, dtype=np.float64))
    except ValueError as exc:
        return None, f"output file {out} is not numbers: {exc}"
    if y.size == 0 or not np.all(np.isfinite(y)):
        return None, f"output file {out} is empty or has NaN/inf"
    return y, None

"""First-order and total Sobol indices through a surrogate, member by member.

The estimators are scipy's :func:`scipy.stats.sobol_indices`: Saltelli et al. (2010) for the
first-order indices and Jansen (1999) for the total ones, on the scrambled Sobol' sample matrices
A, B and AB (``n (d + 2)`` function evaluations), with its bootstrap for the Monte Carlo error.
scipy rather than SALib because it takes a function with many outputs at once: the ``s`` member
mean functions times ``m`` output values run as ``s m`` outputs of one evaluation, so every
member is judged on the same inputs in one vectorised forward pass, and the bootstrap resamples
all of them together (SALib analyses one output per call).

The inputs are independent and uniform on a box ``bounds`` (d, 2). A member's mean function is
used (not its noise): the indices are those of the function each member believes, and the
spread over members is the epistemic part of the error bars (:class:`SobolIndices`).

Examples:
    >>> import numpy as np
    >>> f = lambda X: np.stack([X[:, :1], 2 * X[:, :1] + X[:, 1:]])  # s=2 members, m=1
    >>> res = sobol_indices(f, [[0.0, 1.0], [0.0, 1.0]], n=256, resamples=20, seed=0)
    >>> res.first_members.shape, res.first_members[0, 0].round(2).tolist()
    ((2, 1, 2), [1.0, 0.0])
    >>> res.first_members[1, 0].round(1).tolist()  # 4 / 5 and 1 / 5 of the variance
    [0.8, 0.2]
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from scipy import stats

from choral.checks import check_bounds, check_int
from choral.errors import DataError
from choral.sensitivity.result import SobolIndices

__all__ = ["member_function", "sobol_indices"]

MemberFunction = Callable[[np.ndarray], np.ndarray]
"""``f(X (n, d)) -> (s, n, ...)`` member means, or ``(n, ...)`` for one function."""


def member_function(model: Any, batch: int = 16384,
                    on_rows: Callable[[int], None] | None = None) -> MemberFunction:
    """The member means of a surrogate (anything with ``member_means(X (n, d) tensor)``) as a
    numpy function ``X (n, d) -> (s, n, ...)``, on the model's device, ``batch`` rows at a time
    and without gradients; ``on_rows(k)`` is told each batch of ``k`` rows done."""
    device = getattr(model, "device", None)  # a Surrogate's; torch's default otherwise

    def f(X: np.ndarray) -> np.ndarray:
        parts = []
        with torch.no_grad():
            for i in range(0, len(X), batch):
                x = torch.as_tensor(X[i:i + batch], dtype=torch.float64, device=device)
                parts.append(model.member_means(x).cpu().numpy())
                if on_rows is not None:
                    on_rows(len(x))
        return np.concatenate(parts, axis=1)

    return f


def sobol_indices(model: Any, bounds: Any, n: int = 4096, resamples: int = 200,
                  seed: int | None = 0,
                  on_rows: Callable[[int], None] | None = None) -> SobolIndices:
    """Per-member first-order and total Sobol indices of ``model`` on the box ``bounds``.

    Args:
        model: a surrogate (its members' mean functions) or a function ``X (n, d) ->`` member
            means ``(s, n, ...)`` (or ``(n, ...)``, one function).
        bounds: the input box (d, 2); the inputs are independent and uniform on it.
        n: base samples, a power of 2; the functions run on ``n (d + 2)`` inputs.
        resamples: bootstrap resamples for the Monte Carlo standard errors.
        seed: seeds the scrambled Sobol' sequence and the bootstrap.
        on_rows: told the rows a surrogate has evaluated, batch by batch (a progress bar).

    Returns:
        :class:`SobolIndices` with indices and standard errors (s, m, d), ``m`` the number of
        output values (a field's are flattened).
    """
    n = check_int(n, "n", minimum=2)
    if n & (n - 1):
        raise DataError(f"n must be a power of 2 (Sobol' sequences); got {n}")
    resamples = check_int(resamples, "resamples", minimum=2)
    b = check_bounds(bounds)
    f = model if callable(model) and not hasattr(model, "member_means") else \
        member_function(model, on_rows=on_rows)
    shape: list[tuple[int, ...]] = []

    def outputs(x: np.ndarray) -> np.ndarray:  # x (d, k) -> (s m, k)
        y = np.asarray(f(x.T), dtype=np.float64)
        y = y[None] if y.shape[0] == x.shape[1] else y  # one function (n, ...): s = 1
        if y.ndim < 2 or y.shape[1] != x.shape[1]:
            raise DataError(f"the model must map X ({x.shape[1]}, {len(b)}) to (s, "
                            f"{x.shape[1]}, ...) or ({x.shape[1]}, ...); got {y.shape}")
        if not np.isfinite(y).all():
            raise DataError("the model gave NaN or inf on the Sobol' inputs")
        shape[:] = [(y.shape[0], math.prod(y.shape[2:]))]
        return np.moveaxis(y.reshape(y.shape[0], y.shape[1], -1), 1, -1).reshape(-1, x.shape[1])

    sample_rng, boot_rng = (np.random.default_rng(s) for s in
                            np.random.SeedSequence(seed).spawn(2))
    evaluations = _evaluate(outputs, b, n, sample_rng)
    first, total, first_se, total_se = _estimate(evaluations, n, resamples, boot_rng)
    s, m = shape[0]
    d = len(b)

    def per_member(a: np.ndarray) -> np.ndarray:
        return np.asarray(a, dtype=np.float64).reshape(s, m, d)

    return SobolIndices(per_member(first), per_member(total), per_member(first_se),
                        per_member(total_se), n)


def _evaluate(f: Callable[[np.ndarray], np.ndarray], b: np.ndarray, n: int,
              rng: np.random.Generator) -> dict[str, np.ndarray]:
    """``f`` on the sample matrices A, B (n, d) and AB (A with column i from B), as scipy's
    ``sobol_indices`` builds them (one scrambled Sobol' sequence in 2d dimensions), in one
    call: ``f_A``, ``f_B`` (p, n) and ``f_AB`` (d, p, n) for ``p`` outputs."""
    d = len(b)
    u = stats.qmc.Sobol(2 * d, scramble=True, rng=rng).random(n)
    A, B = (b[:, 0] + (b[:, 1] - b[:, 0]) * part for part in (u[:, :d], u[:, d:]))
    AB = np.repeat(A[None], d, axis=0)
    AB[np.arange(d), :, np.arange(d)] = B.T
    y = f(np.concatenate([A, B, AB.reshape(d * n, d)]).T)  # (p, (d + 2) n)
    return {"f_A": y[:, :n], "f_B": y[:, n:2 * n],
            "f_AB": y[:, 2 * n:].reshape(-1, d, n).transpose(1, 0, 2)}


def _estimate(ev: dict[str, np.ndarray], n: int, resamples: int,
              rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """scipy's estimators on the evaluations (first, total (p, d)) and their bootstrap standard
    errors: the same estimators on base samples drawn with replacement. (scipy's own
    ``bootstrap`` computes BCa intervals, whose jackknife costs n estimates: minutes at n = 2^13.)
    """
    res = stats.sobol_indices(func=ev, n=n)
    boots = []
    for _ in range(resamples):
        idx = rng.integers(0, n, n)
        part = {k: v[..., idx] for k, v in ev.items()}
        with warnings.catch_warnings():  # a constant resample divides by zero variance
            warnings.simplefilter("ignore", RuntimeWarning)
            r = stats.sobol_indices(func=part, n=n)
        boots.append((np.atleast_2d(r.first_order), np.atleast_2d(r.total_order)))
    first_b, total_b = (np.stack([b[i] for b in boots]) for i in (0, 1))
    return (np.atleast_2d(res.first_order), np.atleast_2d(res.total_order),
            np.nanstd(first_b, axis=0, ddof=1), np.nanstd(total_b, axis=0, ddof=1))

"""Autoregressive rollouts: fit a one-step surrogate on trajectories, roll its members forward.

Trajectories are arrays (n, t, c, *grid) (no grid: vector states of size c). With a history
window h, :func:`history_pairs` makes the training pairs: inputs the h states
``u[i-h+1..i]`` stacked as channels (n_pairs, h*c, *grid), target the next state ``u[i+1]``
(n_pairs, c, *grid); :func:`fit_rollout` fits an ordinary :class:`~choral.surrogate.Surrogate`
on them (U-Net or FNO on fields, MLP on vectors).

:func:`rollout` rolls the ``s`` members forward as coherent trajectories: member k always sees
its own past, so a trajectory is a path member k believes, never a patchwork. All members step at
once: the stacked networks are evaluated on member-specific inputs (s, n, h*c, *grid). Each step
either feeds back the member means (``noise="mean"``) or a draw from each member's Gaussian
(``noise="sample"``, seeded; ``gaussian`` head only). States stay in user units; the surrogate's
standardisers are applied on the way in and out. Per step, the predictive is the mixture of the
members' one-step distributions, each at its own state (uncalibrated unless ``calibrated``: the
model's calibration was fitted on one step, not along a rollout).

Examples:
    >>> import numpy as np
    >>> from choral.config import Config
    >>> u = np.cumsum(np.random.default_rng(0).normal(size=(4, 12, 2)), axis=1)
    >>> cfg = Config().updated(**{"train.members": 2, "train.epochs": 2})
    >>> model = fit_rollout(u, history=3, config=cfg)  # one trajectory of four held out
    >>> out = rollout(model, u[:, :3], steps=5)
    >>> tuple(out.members.shape), len(out.predictives), tuple(out.mean.shape)
    ((2, 4, 5, 2), 5, (4, 5, 2))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from choral.checks import check_choice, check_int
from choral.config import Config
from choral.distributions import Predictive
from choral.errors import ConfigError, DataError
from choral.evaluation.calibration import Scale
from choral.evaluation.rollout import spread_scale
from choral.surrogate.model import Surrogate
from choral.surrogate.pushforward import TrainingInputs, previous_rows
from choral.surrogate.transfer import check_grid

__all__ = ["Rollout", "fit_rollout", "history_pairs", "rollout", "with_conditions"]

NOISES = ("mean", "sample")


def _trajectories(u: Any, name: str, min_t: int) -> np.ndarray:
    u = np.asarray(u)
    if u.ndim < 3 or u.shape[1] < min_t or not np.issubdtype(u.dtype, np.number):
        raise DataError(f"{name} must be a numeric array (n, t, c, *grid) with t >= {min_t}; "
                        f"got shape {u.shape} of {u.dtype}")
    return u.astype(np.float64, copy=False)


def history_pairs(trajectories: Any, history: int,
                  conditions: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """One-step pairs from ``trajectories`` (n, t, c, *grid) with a window of ``history`` = h.

    Returns ``X`` (n (t - h), h c, *grid), the h states before each target stacked as channels
    (oldest first), and ``Y`` (n (t - h), c, *grid), ordered trajectory by trajectory. With
    ``conditions`` (n, k), each trajectory's parameters (e.g. its viscosity), ``X`` has k more
    channels holding them, broadcast over the grid (what FiLM reads, ``model.conditions``).

    >>> u = np.arange(2 * 4 * 1.0).reshape(2, 4, 1)
    >>> X, Y = history_pairs(u, 2)
    >>> X.tolist(), Y.ravel().tolist()
    ([[0.0, 1.0], [1.0, 2.0], [4.0, 5.0], [5.0, 6.0]], [2.0, 3.0, 6.0, 7.0])
    """
    h = check_int(history, "history", minimum=1)
    u = _trajectories(trajectories, "trajectories", h + 1)
    n, t = u.shape[:2]
    windows = np.stack([u[:, i:t - h + i] for i in range(h)], axis=2)  # (n, t-h, h, c, ...)
    X = windows.reshape(n * (t - h), h * u.shape[2], *u.shape[3:])
    if conditions is not None:
        X = with_conditions(X, np.repeat(_conditions(conditions, n), t - h, axis=0))
    return X, u[:, h:].reshape(n * (t - h), *u.shape[2:])


def _conditions(conditions: Any, n: int) -> np.ndarray:
    p = np.asarray(conditions, dtype=np.float64)
    p = p[:, None] if p.ndim == 1 else p
    if p.ndim != 2 or len(p) != n or not np.isfinite(p).all():
        raise DataError(f"conditions must be finite numbers (n, k) or (n,) with n = {n} "
                        f"trajectories; got shape {np.shape(conditions)}")
    return p


def with_conditions(X: np.ndarray, conditions: np.ndarray) -> np.ndarray:
    """``X`` (n, c, *grid) with the columns of ``conditions`` (n, k) appended as k channels
    constant over the grid: (n, c + k, *grid)."""
    p = conditions.reshape(*conditions.shape, *[1] * (X.ndim - 2))
    return np.concatenate([X, np.broadcast_to(p, (len(X), p.shape[1], *X.shape[2:]))], axis=1)


def fit_rollout(trajectories: Any, history: int | None = None, config: Config | None = None,
                conditions: Any = None, **fit_options: Any) -> Surrogate:
    """A :class:`~choral.surrogate.Surrogate` fitted on :func:`history_pairs` of
    ``trajectories`` (n, t, c, *grid), with ``history`` h (default ``config.data.history``,
    else 1; the fitted model's ``config.data.history`` says which).

    ``config.rollout`` (:class:`~choral.config.RolloutConfig`): ``validation`` of the
    trajectories (at least one when n >= 2, chosen with ``train.seed``) are held out whole;
    the ensemble is rolled out over them from their first h states and
    ``records["rollout"]["spread_scale"]`` (one factor per ``noise`` mode of :func:`rollout`)
    is fitted there (:func:`~choral.evaluation.rollout.spread_scale`). The other trajectories
    give the training pairs, with ``pushforward`` and ``input_noise``
    (:mod:`choral.surrogate.pushforward`). The surrogate's own validation and calibration rows
    are drawn from those pairs, so they share trajectories with the training rows.

    ``conditions`` (n, k), each trajectory's parameters (e.g. a viscosity per trajectory),
    condition the U-Net through FiLM: ``model.conditions`` is set to k (a ConfigError for
    the other backbones).
    """
    cfg = config or Config()
    h = check_int(history if history is not None else cfg.data.history or 1, "history",
                  minimum=1)
    u = _trajectories(trajectories, "trajectories", h + 1)
    p = None if conditions is None else _conditions(conditions, len(u))
    cfg = cfg.updated(**{"data.history": h, "model.conditions": None if p is None else p.shape[1]})
    fit_rows, val_rows = _held_out(len(u), cfg.rollout.validation, cfg.train.seed)
    opts = cfg.rollout
    inputs = None
    if opts.pushforward > 0 or opts.input_noise > 0:
        inputs = TrainingInputs(previous_rows(len(fit_rows), u.shape[1], h), h, u.shape[2],
                                opts.pushforward, opts.input_noise, cfg.train.seed)
    model = Surrogate(cfg).fit(*history_pairs(u[fit_rows], h, None if p is None else p[fit_rows]),
                               inputs=inputs, **fit_options)
    record: dict[str, Any] = {"history": h, "validation_trajectories": len(val_rows),
                              "pushforward": opts.pushforward, "input_noise": opts.input_noise}
    first = next(iter(model.params.values()))
    if len(val_rows) and first.shape[0] > 1:
        truth = u[val_rows, h:]
        scales = {
            noise: spread_scale(rollout(model, u[val_rows, :h], truth.shape[1], noise=noise,
                                        seed=cfg.train.seed, spread=False,
                                        conditions=None if p is None else p[val_rows]).members,
                                truth)
            for noise in (NOISES if model.config.model.head == "gaussian" else ("mean",))}
        # identical members (no spread) or a perfect mean give no usable factor
        record["spread_scale"] = {k: a for k, a in scales.items() if 0 < a < float("inf")}
    model.records["rollout"] = record
    return model


def _held_out(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Trajectory indices (kept, held out): ``fraction`` of ``n``, at least one when n >= 2
    and ``fraction`` > 0, sorted."""
    n_val = 0 if fraction == 0 or n < 2 else min(max(round(fraction * n), 1), n - 1)
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


@dataclass(frozen=True)
class Rollout:
    """Member trajectories (s, n, steps, c, *grid) and the mixture predictive of each step."""

    members: Tensor
    predictives: list[Predictive]

    @property
    def mean(self) -> Tensor:
        """The ensemble mean trajectory (n, steps, c, *grid)."""
        return self.members.mean(0)


def _standardiser(norm: Any, ndim: int, like: Tensor) -> tuple[Tensor, Tensor]:
    return tuple(torch.as_tensor(a, dtype=like.dtype, device=like.device)
                 for a in norm.loc_scale(ndim))


def rollout(model: Surrogate, history: Any, steps: int, noise: str = "mean",
            seed: int | None = 0, calibrated: bool = False, spread: bool = True,
            conditions: Any = None) -> Rollout:
    """Roll ``model``'s members ``steps`` steps on from ``history`` (n, h, c, *grid).

    Returns a :class:`Rollout`: member trajectories (s, n, steps, c, *grid) in user units and
    per step the mixture predictive (n, c, *grid). ``noise``: ``"mean"`` feeds back each member's
    mean, ``"sample"`` a draw from its Gaussian (``seed`` seeds a CPU generator).

    With ``spread`` and a spread scale ``a`` fitted by :func:`fit_rollout` for this ``noise``
    (``model.records["rollout"]``), the returned member states are ``mean + a (state - mean)``
    about the member mean of each step, and each step's predictive is scaled about its mean by
    ``a`` (as a :class:`~choral.evaluation.calibration.Scale` calibration); the members
    themselves roll on unscaled, and the mean trajectory is unchanged. ``calibrated`` applies
    the model's one-step calibration to each step instead. ``conditions`` (n, k): each
    trajectory's parameters, for a model fitted with them (``model.conditions`` = k).
    """
    params = model._check_fitted()
    steps = check_int(steps, "steps", minimum=1)
    check_choice(noise, "noise", NOISES)
    if noise == "sample" and model.config.model.head != "gaussian":
        raise ConfigError(f"noise='sample' draws from each member's Gaussian: it needs "
                          f"model.head = 'gaussian'; got {model.config.model.head!r}")
    first = next(iter(params.values()))
    u = torch.as_tensor(_trajectories(history, "history", 1), dtype=first.dtype,
                        device=first.device)
    n, h, c = u.shape[:3]
    k = model.config.model.conditions
    if h * c + k != model.x_shape[0] or c != model.y_shape[0] or \
            u.ndim != 2 + len(model.y_shape):
        raise DataError(f"history must have shape (n, h, c, *grid) with c = {model.y_shape[0]} "
                        f"and h c = {model.x_shape[0] - k}; got {tuple(u.shape)}")
    if (conditions is None) != (k == 0):
        raise DataError(f"this model takes conditions (n, k) with k = {k} (model.conditions); "
                        f"got {'none' if conditions is None else np.shape(conditions)}")
    check_grid(model.config.model.backbone, model.x_shape, (n, h * c + k, *u.shape[3:]))
    p = None
    if k:
        p = _conditions(conditions, n)
        if p.shape[1] != k:
            raise DataError(f"conditions must have k = {k} columns (model.conditions); got "
                            f"{p.shape[1]}")
        p = torch.as_tensor(p, dtype=first.dtype, device=first.device)
        p = p.reshape(n, k, *[1] * (u.ndim - 3)).expand(n, k, *u.shape[3:])
    s = first.shape[0]
    x_loc, x_scale = _standardiser(model.x_norm, 1 + len(model.x_shape), first)
    y_loc, y_scale = _standardiser(model.y_norm, 1 + len(model.y_shape), first)
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    states = u.expand(s, *u.shape).clone()  # (s, n, h, c, *grid)
    path, predictives = [], []
    with torch.no_grad():
        for _ in range(steps):
            x = states.flatten(2, 3)  # (s, n, h c, *grid), then the conditions' k channels
            x = x if p is None else torch.cat([x, p.expand(s, *p.shape)], dim=2)
            x = (x - x_loc) / x_scale
            pred = model.head.predictive(model.forward(params, x)).affine(y_loc, y_scale)
            view = pred.members()
            new = view.means
            if noise == "sample":
                eps = torch.randn(new.shape, generator=generator, dtype=new.dtype)
                new = new + view.variances.sqrt() * eps.to(new.device)
            new = new.to(first.dtype)
            predictives.append(model.apply_calibration(pred) if calibrated else pred)
            path.append(new)
            states = torch.cat([states[:, :, 1:], new[:, :, None]], dim=2)
    members = torch.stack(path, dim=2)
    a = model.records.get("rollout", {}).get("spread_scale", {}).get(noise)
    if spread and not calibrated and a is not None:
        centre = members.mean(0)
        members = centre + a * (members - centre)
        scale = Scale([a] * c)
        predictives = [scale.apply(p) for p in predictives]
    return Rollout(members, predictives)

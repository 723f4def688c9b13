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
    >>> model = fit_rollout(u, history=3, config=cfg)
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
from choral.surrogate.model import Surrogate
from choral.surrogate.transfer import check_grid

__all__ = ["Rollout", "fit_rollout", "history_pairs", "rollout"]

NOISES = ("mean", "sample")


def _trajectories(u: Any, name: str, min_t: int) -> np.ndarray:
    u = np.asarray(u)
    if u.ndim < 3 or u.shape[1] < min_t or not np.issubdtype(u.dtype, np.number):
        raise DataError(f"{name} must be a numeric array (n, t, c, *grid) with t >= {min_t}; "
                        f"got shape {u.shape} of {u.dtype}")
    return u.astype(np.float64, copy=False)


def history_pairs(trajectories: Any, history: int) -> tuple[np.ndarray, np.ndarray]:
    """One-step pairs from ``trajectories`` (n, t, c, *grid) with a window of ``history`` = h.

    Returns ``X`` (n (t - h), h c, *grid), the h states before each target stacked as channels
    (oldest first), and ``Y`` (n (t - h), c, *grid), ordered trajectory by trajectory.

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
    return X, u[:, h:].reshape(n * (t - h), *u.shape[2:])


def fit_rollout(trajectories: Any, history: int = 1, config: Config | None = None,
                **fit_options: Any) -> Surrogate:
    """A :class:`~choral.surrogate.Surrogate` fitted on :func:`history_pairs` of
    ``trajectories``. Its validation and calibration rows are drawn from all pairs, so they
    share trajectories with the training rows (a held-out score is optimistic)."""
    return Surrogate(config).fit(*history_pairs(trajectories, history), **fit_options)


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
            seed: int | None = 0, calibrated: bool = False) -> Rollout:
    """Roll ``model``'s members ``steps`` steps on from ``history`` (n, h, c, *grid).

    Returns a :class:`Rollout`: member trajectories (s, n, steps, c, *grid) in user units and
    per step the mixture predictive (n, c, *grid). ``noise``: ``"mean"`` feeds back each member's
    mean, ``"sample"`` a draw from its Gaussian (``seed`` seeds a CPU generator).
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
    if h * c != model.x_shape[0] or c != model.y_shape[0] or u.ndim != 2 + len(model.y_shape):
        raise DataError(f"history must have shape (n, h, c, *grid) with c = {model.y_shape[0]} "
                        f"and h c = {model.x_shape[0]}; got {tuple(u.shape)}")
    check_grid(model.config.model.backbone, model.x_shape, (n, h * c, *u.shape[3:]))
    s = first.shape[0]
    x_loc, x_scale = _standardiser(model.x_norm, 1 + len(model.x_shape), first)
    y_loc, y_scale = _standardiser(model.y_norm, 1 + len(model.y_shape), first)
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    states = u.expand(s, *u.shape).clone()  # (s, n, h, c, *grid)
    path, predictives = [], []
    with torch.no_grad():
        for _ in range(steps):
            x = (states.flatten(2, 3) - x_loc) / x_scale  # (s, n, h c, *grid)
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
    return Rollout(torch.stack(path, dim=2), predictives)

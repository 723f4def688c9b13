"""``choral predict --steps T``: roll a one-step model fitted with ``fit --history`` forward."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from choral.cli.common import err, load_xy
from choral.data import save_data
from choral.errors import DataError
from choral.evaluation.rollout import rollout_scores
from choral.surrogate import Surrogate
from choral.surrogate.rollout import history_pairs, rollout

__all__ = ["history_window", "predict_rollout", "report_rollout", "trajectories_for_fit"]


def history_window(model: Surrogate) -> int:
    """The history h of a model fitted on windows: its ``data.history``, or for models saved
    before that key its input channels over its output's."""
    c_in, c_out = model.x_shape[0], model.y_shape[0]
    if model.config.data.history is not None:
        return model.config.data.history
    if len(model.x_shape) != len(model.y_shape) or c_in % c_out:
        raise DataError(f"--steps needs a model fitted with --history (inputs h*c channels, "
                        f"outputs c); this one maps {model.x_shape} to {model.y_shape}")
    return c_in // c_out


def trajectories_for_fit(Y: object, history: int) -> np.ndarray:
    """``fit --history``: the trajectories ``Y`` (n, t, c, *grid), checked to make pairs."""
    if not isinstance(Y, np.ndarray):
        raise DataError("--history reads the trajectories into memory: drop --stream")
    history_pairs(Y[:1], history)  # the shape checks
    return Y


def _rolled(surrogate: Surrogate, data: Path, y: str | None, steps: int, noise: str, seed: int,
            need_truth: bool = False, spread: bool = True) -> tuple:
    """(the rollout of the first h states of ``data``'s trajectories, Y, h)."""
    h = history_window(surrogate)
    X, Y = load_xy(surrogate, data, None, y, require_y=True)
    Y = np.asarray(Y)
    least = h + steps if need_truth else h
    if Y.ndim != 2 + len(surrogate.y_shape) or Y.shape[1] < least:
        raise DataError(f"--steps reads trajectories (n, t, c, *grid) with t >= "
                        f"{'h + T' if need_truth else 'h'} = {least} from {data}; got shape "
                        f"{Y.shape}")
    conditions = np.asarray(X) if surrogate.config.model.conditions else None
    out = rollout(surrogate, Y[:, :h], steps, noise=noise, seed=seed, conditions=conditions,
                  spread=spread)
    return out, Y, h


def report_rollout(surrogate: Surrogate, data: Path, y: str | None, steps: int,
                   out_dir: Path, noise: str, seed: int, info: dict) -> Path:
    """``report --steps T``: the rollout report (:mod:`choral.evaluation.rollout_report`) of
    the trajectories in ``data`` (t >= h + T states), with the spread before its calibration
    drawn too when the model has one."""
    from choral.evaluation.rollout_report import write_rollout_report  # matplotlib: only here

    out, Y, h = _rolled(surrogate, data, y, steps, noise, seed, need_truth=True)
    raw = None
    if "spread_scale" in surrogate.records.get("rollout", {}):
        raw = _rolled(surrogate, data, y, steps, noise, seed, spread=False)[0].members
    return write_rollout_report(out_dir, out.members, out.predictives, Y[:, h:h + steps],
                                title=f"choral rollout report: {info['model']}",
                                model_info={**info, "history": h, "noise": noise},
                                raw_members=raw)


def predict_rollout(surrogate: Surrogate, data: Path, y: str | None, steps: int,
                    out_path: Path, noise: str, seed: int, as_json: bool) -> None:
    """Roll the first h states of each trajectory in ``data`` (its Y, (n, t, c, *grid)) on by
    ``steps``; write the per-step mixture mean and std (n, T, c, *grid), the spread of the
    member trajectories (member_std) and the members (n, s, T, c, *grid). When the file holds
    the following T true states, print the rollout scores. A model fitted with ``--film``
    reads each trajectory's parameters from the file's X (n, k)."""
    out, Y, h = _rolled(surrogate, data, y, steps, noise, seed)
    mean = torch.stack([p.mean for p in out.predictives], 1).cpu().numpy()
    std = torch.stack([p.stddev for p in out.predictives], 1).cpu().numpy()
    members = out.members.double().cpu()
    save_data(out_path, mean, None, x_key="mean", std=std,
              member_std=members.std(0).numpy() if len(members) > 1 else np.zeros_like(mean),
              members=members.movedim(0, 1).numpy())
    err.print(f"wrote {steps}-step rollouts of {len(Y)} trajectories to {out_path}")
    if Y.shape[1] >= h + steps:
        scores = rollout_scores(members, out.predictives, Y[:, h:h + steps])
        if as_json:
            print(json.dumps(scores))
        else:
            err.print(f"correlation time {scores['correlation_time']} steps; rel. L2 at the "
                      f"last step {scores['relative_l2'][-1]:.4g}")

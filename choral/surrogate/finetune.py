"""WiSE-FT (Wortsman et al. 2022) for surrogates: fine-tune on a new regime, then interpolate.

A trained surrogate ``theta_0`` is fine-tuned on data from a new regime (``theta_ft``), keeping
its standardisers, so both are judged in the same units. The weights
``theta(alpha) = (1 - alpha) theta_0 + alpha theta_ft`` (member by member) are scored by the
mixture NLL per target on validation data of each regime, and ``alpha`` is chosen by the mean
NLL over the regimes given: the old regime's data (if any) and a held-out part of the new one.

Examples:
    >>> import numpy as np
    >>> from choral.config import Config
    >>> from choral.surrogate import Surrogate
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(-1, 1, (80, 1)); Y = X ** 2
    >>> cfg = Config().updated(**{"train.members": 2, "train.epochs": 5, "finetune.epochs": 3,
    ...                           "finetune.alphas": 3})
    >>> model = Surrogate(cfg).fit(X, Y)
    >>> tuned, info = finetune(model, X + 1, (X + 1) ** 2, old=(X, Y))
    >>> [row["alpha"] for row in info["curve"]], sorted(info["curve"][0])
    ([0.0, 0.5, 1.0], ['alpha', 'mean_nll', 'new_nll', 'old_nll'])
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from choral.data import check_arrays
from choral.ensembles.params import Params, count
from choral.ensembles.training import History, train_members
from choral.ensembles.wiseft import interpolate
from choral.errors import DataError
from choral.evaluation.metrics import nll
from choral.surrogate.model import MIN_CALIBRATION, Surrogate, member_seeds, split_indices

__all__ = ["curve", "fine_weights", "finetune", "tune"]

Regimes = dict[str, tuple[np.ndarray, np.ndarray]]


def curve(model: Surrogate, theta_ft: Params, alphas: np.ndarray, regimes: Regimes) -> list[dict]:
    """NLL per target (original units) of ``theta(alpha)`` on each regime, and their mean."""
    rows = []
    for alpha in alphas:
        pred = model.with_params(interpolate(model.params, theta_ft, float(alpha)))
        row = {"alpha": round(float(alpha), 12)}
        row.update({f"{name}_nll": nll(pred.predict(X), Y) for name, (X, Y) in regimes.items()})
        row["mean_nll"] = float(np.mean([row[f"{name}_nll"] for name in regimes]))
        rows.append(row)
    return rows


def tune(model: Surrogate, X: np.ndarray, Y: np.ndarray, X_val: np.ndarray,
         Y_val: np.ndarray) -> tuple[Params, History]:
    """Fine-tune every member of ``model`` on (X, Y) in its own standardised units."""
    cfg, ft = model.config.train, model.config.finetune
    first = next(iter(model.params.values()))

    def scaled(A: np.ndarray, norm: Any) -> Tensor:
        return torch.as_tensor(norm.transform(A), dtype=first.dtype, device=first.device)

    _, seeds, _ = member_seeds(cfg.seed + 1, count(model.params))
    train_cfg = cfg.model_copy(update={"epochs": ft.epochs, "lr": cfg.lr * ft.lr_factor})
    return train_members(model.forward, model.params, scaled(X, model.x_norm),
                         scaled(Y, model.y_norm), scaled(X_val, model.x_norm),
                         scaled(Y_val, model.y_norm), train_cfg, seeds, model.head.loss)


def fine_weights(model: Surrogate, X: Any, Y: Any) -> tuple[Params, History, Regimes]:
    """``theta_ft``: ``model`` fine-tuned on the new regime ``X``, ``Y`` less the held-out
    ``finetune.val_fraction``, which is returned as the validation regime ``"new"``."""
    X, Y = _checked(model, X, Y, "--data")
    train_idx, val_idx = split_indices(len(X), model.config.finetune.val_fraction,
                                model.config.train.seed)
    train_idx, val_idx = train_idx.numpy(), val_idx.numpy()
    theta_ft, history = tune(model, X[train_idx], Y[train_idx], X[val_idx], Y[val_idx])
    return theta_ft, history, {"new": (X[val_idx], Y[val_idx])}


def finetune(model: Surrogate, X: Any, Y: Any,
             old: tuple[Any, Any] | None = None) -> tuple[Surrogate, dict[str, Any]]:
    """Fine-tune ``model`` on a new regime ``X``, ``Y`` and return the WiSE-FT surrogate at the
    chosen ``alpha`` with its curve (the content of ``wiseft.json``), calibrated
    (``calibration.method``) on the held-out new-regime data when it has at least
    ``MIN_CALIBRATION`` rows.

    ``finetune.val_fraction`` of the new data is held out; ``old`` is validation data of the
    training regime (without it, alpha is chosen on the new regime alone).
    """
    ft = model.config.finetune
    theta_ft, history, regimes = fine_weights(model, X, Y)
    if old is not None:
        regimes["old"] = _checked(model, *old, "--old-data")
    rows = curve(model, theta_ft, np.linspace(0.0, 1.0, ft.alphas), regimes)
    best = min(rows, key=lambda r: r["mean_nll"])
    tuned = model.with_params(interpolate(model.params, theta_ft, best["alpha"]))
    info = {"alpha": best["alpha"], "selected_on": sorted(regimes), "curve": rows,
            "n_train": len(X) - len(regimes["new"][0]), "n_val_new": len(regimes["new"][0]),
            "epochs_run": history.epochs_run, "finetune": ft.model_dump()}
    tuned.metrics = {**model.metrics, "wiseft_alpha": best["alpha"]}
    tuned.records = {"wiseft": info}
    if len(regimes["new"][0]) >= MIN_CALIBRATION:
        tuned.calibrate(*regimes["new"], model.config.calibration.method)
    else:
        tuned.metrics["calibration"] = {"method": "none", "reason": "too few samples"}
    return tuned, info


def _checked(model: Surrogate, X: Any, Y: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    X, Y = check_arrays(X, Y)
    if X.shape[1:] != tuple(model.x_shape) or Y.shape[1:] != tuple(model.y_shape):
        raise DataError(f"{what} must have samples shaped like the model's training data, X "
                        f"{tuple(model.x_shape)} and Y {tuple(model.y_shape)}; got X "
                        f"{X.shape[1:]} and Y {Y.shape[1:]}")
    return X, Y

"""Early-exit ensemble cascades: a few members for every input, all of them only where needed.

An ensemble of s members costs s forward passes per input, though most inputs are easy. A
cascade evaluates the first ``k`` members on every input and the other ``s - k`` only on the
inputs whose first-stage prediction is *undecided*:

- ``threshold``: its central ``level`` interval straddles a decision threshold (any output);
- ``ood``: the OOD detector flags it (``ood_above``: or its score exceeds that value);
- ``top_fraction``: it ranks in the top fraction of an acquisition score (default: the mean
  predictive variance over outputs), i.e. it is a candidate the loop may choose.

Decided inputs keep the first-stage (k-member) predictive, undecided ones get exactly the full
ensemble's (the first members' outputs are reused). The model's calibration is applied to both
stages (it was fitted on the full ensemble, so the first stage is only approximately
calibrated). Member forward passes used: ``k n + (s - k) n_undecided`` of ``s n``.

Examples:
    >>> import numpy as np
    >>> from choral.config import Config
    >>> X = np.random.default_rng(0).uniform(-1, 1, (64, 2)); Y = X[:, :1] ** 2
    >>> model = Surrogate(Config().updated(**{"train.members": 4, "train.epochs": 3})).fit(X, Y)
    >>> result = cascade(model, X[:10], Rules(first=2, top_fraction=0.3))
    >>> int(result.undecided.sum()), result.forward_passes, result.fraction
    (3, 26, 0.65)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from choral.checks import check_int
from choral.data import check_arrays
from choral.distributions import Predictive
from choral.errors import ConfigError, DataError
from choral.networks.members import predict_members
from choral.surrogate.model import Surrogate

__all__ = ["CascadeResult", "Rules", "cascade", "mean_variance"]


def mean_variance(pred: Predictive) -> Tensor:
    """The default acquisition score (n,): predictive variance averaged over output values."""
    return pred.variance.flatten(1).mean(1)


@dataclass
class Rules:
    """Which inputs a cascade sends on to the remaining members (see the module)."""

    first: int = 2
    threshold: float | None = None
    level: float = 0.9
    ood: bool = False
    ood_above: float | None = None
    top_fraction: float = 0.0
    acquisition: Callable[[Predictive], Tensor] = mean_variance


@dataclass
class CascadeResult:
    """The two stages of a cascade over n inputs.

    ``first``: the k-member predictive at every input (n, ...); ``full``: the s-member
    predictive at the undecided inputs (n_u, ...); ``undecided`` (n,) booleans; ``ood_score``
    and ``ood`` (n,) from the stage each input ended in; ``forward_passes`` and ``total``
    (``s n``) member forward passes.
    """

    first: Predictive
    full: Predictive
    undecided: Tensor
    ood_score: np.ndarray | None
    ood: np.ndarray | None
    forward_passes: int
    total: int
    members: tuple[int, int]

    @property
    def fraction(self) -> float:
        """Share of the full ensemble's member forward passes used."""
        return self.forward_passes / self.total

    def summaries(self, level: float = 0.9) -> dict[str, np.ndarray]:
        """Per input (n, ...): mean, std, lower, upper, aleatoric, epistemic from the stage it
        ended in, ``members_used`` (n,), and ``ood_score``, ``ood`` when the model has them."""
        idx = self.undecided.nonzero().flatten()
        out = {}
        for name, get in (("mean", lambda p: p.mean), ("std", lambda p: p.stddev),
                          ("lower", lambda p: p.interval(level)[0]),
                          ("upper", lambda p: p.interval(level)[1]),
                          ("aleatoric", lambda p: p.aleatoric),
                          ("epistemic", lambda p: p.epistemic)):
            value = get(self.first).clone()
            if len(idx):
                value[idx] = get(self.full)
            out[name] = value.cpu().numpy()
        k, s = self.members
        out["members_used"] = np.where(self.undecided.cpu().numpy(), s, k)
        if self.ood_score is not None:
            out["ood_score"], out["ood"] = self.ood_score, self.ood
        return out


def _undecided(model: Surrogate, X: np.ndarray, raw: Predictive, pred: Predictive,
               rules: Rules) -> tuple[Tensor, tuple | None]:
    n = pred.shape[0]
    flag = torch.zeros(n, dtype=torch.bool, device=pred.device)
    if rules.threshold is not None:
        lower, upper = pred.interval(rules.level)
        flag |= ((lower < rules.threshold) & (upper > rules.threshold)).flatten(1).any(1)
    ood = model.ood(X, raw) if model.ood_detector is not None else None
    if (rules.ood or rules.ood_above is not None) and ood is None:
        raise ConfigError("the OOD rule of a cascade needs a model with an OOD detector")
    if rules.ood:
        flag |= torch.as_tensor(ood[1], device=flag.device)
    if rules.ood_above is not None:
        flag |= torch.as_tensor(ood[0] > rules.ood_above, device=flag.device)
    if rules.top_fraction > 0:
        q = math.ceil(rules.top_fraction * n)
        flag[torch.topk(rules.acquisition(pred).to(flag.device), min(q, n)).indices] = True
    return flag, ood


def _predictive(model: Surrogate, out: Tensor) -> Predictive:
    loc, scale = model.y_norm.loc_scale(out.ndim - 1)
    return model.head.predictive(out).affine(torch.as_tensor(loc), torch.as_tensor(scale))


def cascade(model: Surrogate, X: Any, rules: Rules | None = None,
            batch_size: int | None = None) -> CascadeResult:
    """Predict ``X`` (n, d) or (n, c_in, *grid) with the first ``rules.first`` members, then
    with all members where ``rules`` say the prediction is undecided."""
    rules = rules or Rules()
    params = model._check_fitted()
    s = next(iter(params.values())).shape[0]
    k = check_int(rules.first, "first", 1, s)
    if not 0 <= rules.top_fraction <= 1:
        raise ConfigError(f"top_fraction must be in [0, 1]; got {rules.top_fraction}")
    X, _ = check_arrays(X)
    if X.shape[1:] != model.x_shape:
        raise DataError(f"X must have {model.x_shape} features per sample, as in training; "
                        f"got shape {X.shape}")
    first = next(iter(params.values()))
    Xs = torch.as_tensor(model.x_norm.transform(X), dtype=first.dtype, device=first.device)
    chunk = batch_size or max(1, 2**20 // (math.prod(model.x_shape) * s))
    out_k = predict_members(model.forward, {n: v[:k] for n, v in params.items()}, Xs, chunk)
    raw_k = _predictive(model, out_k)
    undecided, ood = _undecided(model, X, raw_k, model.apply_calibration(raw_k), rules)
    idx = undecided.nonzero().flatten()
    rest = predict_members(model.forward, {n: v[k:] for n, v in params.items()}, Xs[idx],
                           chunk) if k < s else out_k[:0, idx]
    raw_full = _predictive(model, torch.cat([out_k[:, idx], rest]))
    if ood is not None and len(idx):
        full_ood = model.ood(X[idx.cpu().numpy()], raw_full)
        ood = tuple(a.copy() for a in ood)
        for mine, theirs in zip(ood, full_ood, strict=True):
            mine[idx.cpu().numpy()] = theirs
    n = len(X)
    return CascadeResult(model.apply_calibration(raw_k), model.apply_calibration(raw_full),
                         undecided, None if ood is None else ood[0],
                         None if ood is None else ood[1], k * n + (s - k) * len(idx), s * n,
                         (k, s))

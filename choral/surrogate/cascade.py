"""Early-exit ensemble cascades: a few members for every input, all of them only where needed.

An ensemble of s members costs s forward passes per input, though most inputs are easy. A
cascade evaluates the first ``k`` members on every input and the other ``s - k`` only on the
inputs whose first-stage prediction is *undecided*:

- ``threshold``: its central ``level`` interval straddles a decision threshold (any output);
- ``ood``: the OOD detector flags it (``ood_above``: or its score exceeds that value);
- ``top_fraction``: it ranks in the top fraction of an acquisition score (default: the mean
  predictive variance over outputs), i.e. it is a candidate the loop may choose.

Decided inputs keep the first-stage (k-member) predictive, undecided ones get exactly the full
ensemble's (the first members' outputs are reused). Member forward passes used:
``k n + (s - k) n_undecided`` of ``s n``.

By default the model's calibration (fitted on the full ensemble) is applied to both stages, and
the OOD score of a first-stage input uses the k members' epistemic variance, which is smaller
than the s members' on average. Both make a first stage over-confident: fewer members agree more
by chance. :func:`fit_first_stage` fits, on held-out data, the first stage's own calibration
(the model's calibration method on the k-member predictive) and the factor that brings its
epistemic variances to the full ensemble's scale (the ratio of their geometric means), so
first-stage intervals and OOD scores are on the full ensemble's footing
(``Rules(first_stage=...)``).

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
from choral.evaluation.calibration import Calibrator, fit_calibrator
from choral.evaluation.ood import pooled_features
from choral.networks.members import predict_members
from choral.surrogate.model import Surrogate

__all__ = ["CascadeResult", "FirstStage", "Rules", "cascade", "fit_first_stage",
           "mean_variance"]


def mean_variance(pred: Predictive) -> Tensor:
    """The default acquisition score (n,): predictive variance averaged over output values."""
    return pred.variance.flatten(1).mean(1)


@dataclass
class FirstStage:
    """The first ``first`` members' own calibration and epistemic scale
    (:func:`fit_first_stage`)."""

    first: int
    calibrator: Calibrator | None
    epistemic_factor: float = 1.0


def fit_first_stage(model: Surrogate, X: Any, Y: Any, first: int) -> FirstStage:
    """Fit the first stage of ``first`` members on held-out ``X`` (n, ...), ``Y`` (n, ...): the
    model's calibration method refitted on their predictive, and the factor
    ``exp(mean log e_s - mean log e_k)`` of the epistemic variances (1 for one member)."""
    params = model._check_fitted()
    s = next(iter(params.values())).shape[0]
    k = check_int(first, "first", 1, s)
    X, Y = check_arrays(X, Y)
    sub = model.with_params({n: v[:k] for n, v in params.items()})
    raw_k = sub.predict(X, calibrated=False)
    method = model.calibrator.method if model.calibrator is not None else "none"
    calibrator = None if method == "none" else fit_calibrator(method, raw_k, Y)
    factor = 1.0
    if k > 1:
        tiny = np.finfo(np.float64).tiny
        full = np.log(np.maximum(model._epistemic(X), tiny))
        part = np.log(np.maximum(model._epistemic(X, raw_k), tiny))
        factor = float(np.exp(full.mean() - part.mean()))
    return FirstStage(k, calibrator, factor)


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
    first_stage: FirstStage | None = None
    """The first stage's own calibration and epistemic scale; default: the model's, unscaled."""


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


def _ood(model: Surrogate, X: np.ndarray, raw: Predictive, factor: float) -> tuple | None:
    """OOD (scores, flags) (n,) with the epistemic variances times ``factor``."""
    if model.ood_detector is None:
        return None
    features = pooled_features(model.x_norm.transform(X))
    return model.ood_detector(features, model._epistemic(X, raw) * factor)


def _undecided(model: Surrogate, X: np.ndarray, raw: Predictive, pred: Predictive,
               rules: Rules) -> tuple[Tensor, tuple | None]:
    n = pred.shape[0]
    flag = torch.zeros(n, dtype=torch.bool, device=pred.device)
    if rules.threshold is not None:
        lower, upper = pred.interval(rules.level)
        flag |= ((lower < rules.threshold) & (upper > rules.threshold)).flatten(1).any(1)
    stage = rules.first_stage
    ood = _ood(model, X, raw, 1.0 if stage is None else stage.epistemic_factor)
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
    stage = rules.first_stage
    if stage is not None and stage.first != k:
        raise ConfigError(f"first_stage was fitted for {stage.first} members; got first = {k}")
    pred_k = stage.calibrator.apply(raw_k) if stage is not None and stage.calibrator else \
        model.apply_calibration(raw_k)
    undecided, ood = _undecided(model, X, raw_k, pred_k, rules)
    idx = undecided.nonzero().flatten()
    rest = predict_members(model.forward, {n: v[k:] for n, v in params.items()}, Xs[idx],
                           chunk) if k < s else out_k[:0, idx]
    raw_full = _predictive(model, torch.cat([out_k[:, idx], rest]))
    if ood is not None and len(idx):
        full_ood = _ood(model, X[idx.cpu().numpy()], raw_full, 1.0)
        ood = tuple(a.copy() for a in ood)
        for mine, theirs in zip(ood, full_ood, strict=True):
            mine[idx.cpu().numpy()] = theirs
    n = len(X)
    return CascadeResult(pred_k, model.apply_calibration(raw_full),
                         undecided, None if ood is None else ood[0],
                         None if ood is None else ood[1], k * n + (s - k) * len(idx), s * n,
                         (k, s))

"""Merging surrogates fine-tuned from one pretrained surrogate (``choral merge``).

The fine-tunes must share the base's network and standardisers (as
:func:`~choral.surrogate.finetune.tune` keeps them). Their task vectors are merged member by
member (:mod:`choral.ensembles.merging`) into one surrogate ``theta_0 + lambda tau``:

- ``task_arithmetic``: ``tau = sum_t w_t tau_t``; ``ties``: trim, elect sign, disjoint mean;
  ``breadcrumbs``: drop the smallest and largest changes, sum; ``balanced``: the mean of the
  vectors rescaled to equal norms (a soup / WiSE-FT that no over-confident fine-tune dominates);
- ``consensus``: the sum, kept where at least ``k`` regimes' TALL masks use a weight;
- ``tall``: the consensus model as the default weights, plus the base, the summed vector and one
  packed mask per regime, so that ``Surrogate.load(dir, regime=name)`` rebuilds regime ``name``'s
  ``theta_0 + m_t * tau_MTL``.

With validation data of every regime (``val``), ``lambda`` is chosen from :data:`SCALES` by the
mean over regimes of ``criterion`` (``nll`` or ``rel_l2``), and each TALL ``lambda_t`` from
:data:`LAMBDAS` on regime ``t``'s own data. Without, ``lambda`` is 1 for ``ties`` and
``balanced`` (means) and ``1/T`` for the sums, and every ``lambda_t`` is 0.4. The merged model is
not calibrated: recalibrate it (``choral calibrate``) on data of the regime it will serve.

Examples:
    >>> import numpy as np
    >>> from choral.config import Config
    >>> from choral.surrogate.finetune import tune
    >>> X = np.random.default_rng(0).uniform(-1, 1, (60, 2)); Y = X[:, :1] ** 2
    >>> base = Surrogate(Config().updated(**{"train.members": 2, "train.epochs": 3,
    ...                                      "finetune.epochs": 2})).fit(X, Y)
    >>> tuned = [base.with_params(tune(base, X, Y + c, X, Y + c)[0]) for c in (0.5, -0.5)]
    >>> merged, info = merge(base, tuned, ["up", "down"], "tall")
    >>> info["regimes"], info["scale"], info["lambdas"]
    (['up', 'down'], 0.5, [0.4, 0.4])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from choral.checks import check_choice
from choral.ensembles.merging import (
    add,
    balanced,
    breadcrumbs,
    consensus_mask,
    regime_params,
    tall_masks,
    task_arithmetic,
    task_vectors,
    ties,
)
from choral.ensembles.merging.align import align_to_base
from choral.ensembles.merging.tall import to_record
from choral.ensembles.params import Params
from choral.ensembles.permutations import perm_spec
from choral.errors import DataError
from choral.evaluation.metrics import nll, relative_l2
from choral.surrogate.model import Surrogate

__all__ = ["LAMBDAS", "METHODS", "SCALES", "mask_bytes", "merge"]

METHODS = ("task_arithmetic", "ties", "breadcrumbs", "balanced", "consensus", "tall")
SCALES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
LAMBDAS = (0.2, 0.3, 0.4, 0.5, 0.6)
"""The TALL paper's grid of ``lambda_t``."""
_CRITERIA = {"nll": nll, "rel_l2": relative_l2}
Val = Sequence[tuple[np.ndarray, np.ndarray]]


def _check_models(base: Surrogate, models: Sequence[Surrogate], names: Sequence[str]) -> None:
    if len(models) < 1 or len(names) != len(models):
        raise DataError(f"--models: give at least one model and one name per model; got "
                        f"{len(models)} models and {len(names)} names")
    if len(set(names)) != len(names):
        raise DataError(f"regime names must be distinct; got {list(names)}")
    want = (base.config.model.model_dump(), base.x_shape, base.y_shape,
            base.x_norm.to_dict(), base.y_norm.to_dict())
    for name, m in zip(names, models, strict=True):
        if (m.config.model.model_dump(), m.x_shape, m.y_shape) != want[:3]:
            raise DataError(f"model {name!r} must have the base's network and data shapes to be "
                            f"merged; got a different [model] config or shapes")
        if (m.x_norm.to_dict(), m.y_norm.to_dict()) != want[3:]:
            raise DataError(f"model {name!r} must keep the base's standardisers (fine-tune it "
                            f"with choral finetune); its normaliser.json differs")


def _score(model: Surrogate, params: Params, data: tuple, criterion: str) -> float:
    return _CRITERIA[criterion](model.with_params(params).predict(data[0], calibrated=False),
                                data[1])


def _vector(method: str, taus: Params, weights: Any, density: float, gamma: float) -> Params:
    if method == "ties":
        return ties(taus, density, weights)
    if method == "breadcrumbs":
        return breadcrumbs(taus, density, gamma, weights)
    if method == "balanced":
        return balanced(taus)
    return task_arithmetic(taus, weights)


def _lambdas(base: Surrogate, taus: Params, mtl: Params, val: Val | None,
             criterion: str, grid: Sequence[float]) -> list[float]:
    """Each regime's TALL ``lambda_t``: the best of ``grid`` on its data (or 0.4)."""
    T = next(iter(taus.values())).shape[0]
    if val is None:
        return [0.4] * T
    best = []
    for t in range(T):
        scores = [_score(base, regime_params(base.params, mtl,
                                             tall_masks(taus, mtl, [lam] * T), t), val[t],
                         criterion) for lam in grid]
        best.append(float(grid[int(np.argmin(scores))]))
    return best


def merge(base: Surrogate, models: Sequence[Surrogate], names: Sequence[str], method: str, *,
          scale: float | None = None, density: float = 0.2, gamma: float = 0.01, k: int = 2,
          weights: Sequence[float] | None = None, align: bool = False, val: Val | None = None,
          criterion: str = "nll", lambda_grid: Sequence[float] = LAMBDAS,
          ) -> tuple[Surrogate, dict[str, Any]]:
    """One surrogate from ``base`` and its fine-tunes ``models`` (regimes ``names``) by
    ``method`` (:data:`METHODS`), and what was done (the content of ``merge.json``).

    ``align``: permute each model's members to the base's first (for fine-tunes that did not
    start from the base). ``val``: validation data (X, Y) of every regime, in ``names`` order;
    ``lambda_grid``: the TALL ``lambda_t`` tried on it.
    """
    check_choice(method, "--method", METHODS)
    check_choice(criterion, "--criterion", tuple(_CRITERIA))
    _check_models(base, models, names)
    if val is not None and len(val) != len(models):
        raise DataError(f"--val: give one validation file per model ({len(models)}); got "
                        f"{len(val)}")
    tuned = [m.params for m in models]
    if align:
        tuned = align_to_base(base.params, tuned, perm_spec(base.template))
    taus = task_vectors(base.params, tuned)
    T = len(models)
    info: dict[str, Any] = {"method": method, "regimes": list(names), "density": density,
                            "gamma": gamma, "k": k, "weights": weights, "aligned": align,
                            "criterion": criterion if val is not None else None}
    if method in ("consensus", "tall"):
        mtl = task_arithmetic(taus, weights)
        info["lambdas"] = _lambdas(base, taus, mtl, val, criterion, lambda_grid)
        masks = tall_masks(taus, mtl, info["lambdas"])
        keep = consensus_mask(masks, k)
        tau = {n: v * keep[n] for n, v in mtl.items()}
        info["consensus_fraction"] = float(sum(v.sum() for v in keep.values()) /
                                           sum(v.numel() for v in keep.values()))
    else:
        tau = _vector(method, taus, weights, density, gamma)
    if scale is None and val is not None:
        curve = [float(np.mean([_score(base, add(base.params, tau, c), d, criterion)
                                for d in val])) for c in SCALES]
        scale = SCALES[int(np.argmin(curve))]
        info["scale_curve"] = dict(zip(map(str, SCALES), curve, strict=True))
    elif scale is None:
        scale = 1.0 if method in ("ties", "balanced") else 1.0 / T
    info["scale"] = scale
    merged = base.with_params(add(base.params, tau, scale))
    merged.records = {"merge": info}
    if method == "tall":
        info["mask_bytes"], info["copies_bytes"] = mask_bytes(base.params, T)
        merged.records["tall"] = {n: v.cpu() for n, v in to_record(base.params, mtl,
                                                                   masks).items()}
    merged.metrics = {"merge": {k_: info[k_] for k_ in ("method", "regimes", "scale")},
                      "calibration": {"method": "none", "reason": "merged model: recalibrate "
                                      "with choral calibrate"}}
    return merged, info


def mask_bytes(params: Params, regimes: int) -> tuple[int, int]:
    """(bytes of ``regimes`` packed masks, bytes of as many float copies of ``params``)."""
    first = next(iter(params.values()))
    n = sum(v.numel() for v in params.values())
    return sum(regimes * -(-v.numel() // 8) for v in params.values()), \
        regimes * n * first.element_size()

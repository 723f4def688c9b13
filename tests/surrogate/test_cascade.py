"""Early-exit cascades: all undecided is the full ensemble, none is the first-k sub-ensemble,
each rule sends on exactly the inputs it names, and the forward passes add up."""

import math

import numpy as np
import pytest
import torch

from choral.config import Config
from choral.surrogate import Surrogate
from choral.surrogate.cascade import Rules, cascade

KEYS = ("mean", "std", "lower", "upper", "aleatoric", "epistemic")


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (200, 2))
    Y = np.sin(3 * X[:, :1]) + X[:, 1:] ** 2 + 0.1 * rng.normal(size=(200, 1))
    cfg = Config().updated(**{"train.members": 5, "train.epochs": 30, "train.dtype": "float64",
                              "model.hidden": [16]})
    model = Surrogate(cfg).fit(X, Y)
    X_test = np.concatenate([rng.uniform(-1, 1, (40, 2)), rng.uniform(2, 3, (8, 2))])
    return model, X_test


def _reference(model, X, members):
    """What the cascade must give from the first ``members`` members: a separate surrogate."""
    sub = model.with_params({k: v[:members] for k, v in model.params.items()})
    sub.calibrator = model.calibrator
    raw = sub.predict(X, calibrated=False)
    pred = sub.apply_calibration(raw)
    lo, hi = pred.interval(0.9)
    arrays = {"mean": pred.mean, "std": pred.stddev, "lower": lo, "upper": hi,
              "aleatoric": pred.aleatoric, "epistemic": pred.epistemic}
    out = {k: v.numpy() for k, v in arrays.items()}
    out["ood_score"], out["ood"] = sub.ood(X, raw)
    return out


def test_everything_undecided_is_the_full_ensemble(fitted):
    model, X = fitted
    result = cascade(model, X, Rules(first=2, top_fraction=1.0))
    got, ref = result.summaries(0.9), _reference(model, X, 5)
    for key in (*KEYS, "ood_score", "ood"):
        assert np.array_equal(got[key], ref[key]), key
    assert result.forward_passes == result.total == 5 * len(X) and result.fraction == 1.0
    assert (got["members_used"] == 5).all()


def test_no_rule_is_the_first_k_sub_ensemble(fitted):
    model, X = fitted
    result = cascade(model, X, Rules(first=2))
    got, ref = result.summaries(0.9), _reference(model, X, 2)
    for key in (*KEYS, "ood_score", "ood"):
        assert np.array_equal(got[key], ref[key]), key
    assert result.forward_passes == 2 * len(X) and result.fraction == pytest.approx(0.4)


@pytest.mark.parametrize("rule", ["threshold", "ood", "top"])
def test_each_rule_sends_on_exactly_its_inputs(fitted, rule):
    model, X = fitted
    first, full = _reference(model, X, 2), _reference(model, X, 5)
    if rule == "threshold":
        t = float(np.median(first["mean"]))
        rules = Rules(first=2, threshold=t)
        expect = ((first["lower"] < t) & (first["upper"] > t)).any(1)
    elif rule == "ood":
        rules = Rules(first=2, ood=True)
        expect = first["ood"]
        assert expect[-8:].all()   # the far points
    else:
        rules = Rules(first=2, top_fraction=0.25)
        q = math.ceil(0.25 * len(X))
        expect = np.zeros(len(X), dtype=bool)
        expect[np.argsort(-(first["std"] ** 2).mean(1))[:q]] = True
    result = cascade(model, X, rules)
    undecided = result.undecided.numpy()
    assert np.array_equal(undecided, expect) and 0 < undecided.sum() < len(X)
    got = result.summaries(0.9)
    for key in (*KEYS, "ood_score"):   # a matrix product over fewer rows may round differently
        assert np.allclose(got[key][undecided], full[key][undecided], rtol=1e-12, atol=0), key
        assert np.array_equal(got[key][~undecided], first[key][~undecided]), key
    assert result.forward_passes == 2 * len(X) + 3 * int(undecided.sum())
    assert torch.equal(torch.as_tensor(got["members_used"]),
                       torch.where(result.undecided, 5, 2))


def test_first_stage_calibration_and_epistemic_factor(fitted):
    from choral.evaluation.calibration import fit_calibrator
    from choral.surrogate.cascade import fit_first_stage

    model, X = fitted
    rng = np.random.default_rng(5)
    X_cal = rng.uniform(-1, 1, (60, 2))
    Y_cal = np.sin(3 * X_cal[:, :1]) + X_cal[:, 1:] ** 2 + 0.1 * rng.normal(size=(60, 1))
    stage = fit_first_stage(model, X_cal, Y_cal, 2)
    # the factor: ratio of geometric means of the epistemic variances (standardised units),
    # here from the member means directly
    means = model.predict(X_cal, calibrated=False).member_means / torch.as_tensor(
        model.y_norm.scale)

    def epistemic(m):
        return m.var(0, unbiased=False).flatten(1).mean(1).numpy()

    expect = np.exp(np.log(epistemic(means)).mean() - np.log(epistemic(means[:2])).mean())
    assert stage.epistemic_factor == pytest.approx(expect, rel=1e-9) and expect > 1
    # decided rows: the sub-ensemble with the calibration refitted on it
    sub = model.with_params({k: v[:2] for k, v in model.params.items()})
    raw = sub.predict(X_cal, calibrated=False)
    calibrator = fit_calibrator(model.calibrator.method, raw, Y_cal)
    ref = calibrator.apply(sub.predict(X, calibrated=False))
    got = cascade(model, X, Rules(first=2, first_stage=stage)).summaries(0.9)
    lo, hi = ref.interval(0.9)
    assert np.allclose(got["lower"], lo.numpy(), rtol=1e-12) and \
        np.allclose(got["upper"], hi.numpy(), rtol=1e-12)
    with pytest.raises(Exception, match="fitted for 2 members"):
        cascade(model, X, Rules(first=3, first_stage=stage))

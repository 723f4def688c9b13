"""Predictives, calibrators, scores and acquisitions on every device present give the CPU's results.

Each case is built on the CPU and on the device under test from the same CPU tensors; targets
are NumPy arrays, generators CPU generators (whose draws must not depend on the predictive's
device). Without a GPU only the CPU runs: then these tests check the CPU path, and on a GPU
machine the same tests run on CUDA.

:func:`test_tensor_factories_in_the_predictive_code_name_a_device` needs no GPU: it records every
tensor made by a factory (``torch.zeros``, ``arange``, ``tensor``, ...) from the predictive,
calibration, metric and acquisition code while it runs on the CPU, and fails on one with
``ndim >= 1`` made without a ``device=`` (it would be on the CPU whatever the predictive's
device: the usual "Expected all tensors to be on the same device" error on a GPU).
"""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode

import choral
from choral.acquisition import KINDS, members_of, score, select_batch
from choral.checks import as_float64
from choral.distributions import GaussianMixture, QuantilePredictive
from choral.evaluation.calibration import METHODS, calibrator_from_dict, cross_fit, fit_calibrator
from choral.evaluation.metrics import evaluate, pit_calibration_error
from choral.evaluation.ood import OODDetector, pooled_features

F64 = torch.float64
N, P = 3, 4
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
TOL = {"rtol": 1e-6, "atol": 1e-9}  # float64 on both; the GPU's exp, log, erf differ by ulps


def _random(seed, *shapes):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=g, dtype=F64) for shape in shapes]


def _gaussian(device, shape=(N, P)):
    """Three weighted Gaussian members; variances and weights given as NumPy arrays, so that
    the constructor must put them on the device of the means."""
    means, noise = _random(0, (3, *shape), (3, *shape))
    return GaussianMixture((3.0 * means).to(device), (0.2 + noise.abs()).numpy(),
                           np.array([0.5, 0.3, 0.2]))


def _mdn(device):
    """Two members of two components each, with per-sample weights."""
    means, noise, logits = _random(1, (4, N, P), (4, N, P), (2, 2, N, P))
    within = torch.softmax(logits, dim=1).reshape(4, N, P) / 2
    return GaussianMixture((2.0 * means).to(device), (0.2 + noise.abs()).to(device),
                           within.to(device), members=2)


def _quantiles(device, combine):
    base, gaps = _random(2, (3, N, P, 1), (3, N, P, 9))
    levels = torch.linspace(0.05, 0.95, 9, dtype=F64)  # on the CPU: follows the quantiles
    return QuantilePredictive(levels, (2.0 * base + 0.1 + gaps.abs().cumsum(-1)).to(device),
                              combine)


CASES = {
    "gaussian": _gaussian,
    "mdn": _mdn,
    "field": lambda device: _gaussian(device, (N, 2, 2, 2)),
    "quantile_vincentise": lambda device: _quantiles(device, "vincentise"),
    "quantile_mixture": lambda device: _quantiles(device, "mixture"),
}


def _targets(pred, seed=5):
    """NumPy targets of the predictive's shape drawn from a wider version of it."""
    return pred.affine(0.3, 1.3).sample(1, generator=torch.Generator().manual_seed(seed))[0] \
        .cpu().numpy()


def _same(got, want, device):
    """``got`` (from the device) equals ``want`` (from the CPU), tensor by tensor."""
    if isinstance(want, dict):
        assert got.keys() == want.keys()
        for key in want:
            _same(got[key], want[key], device)
    elif isinstance(want, list | tuple):
        assert len(got) == len(want)
        for a, b in zip(got, want, strict=True):
            _same(a, b, device)
    elif isinstance(want, torch.Tensor):
        assert got.device.type == torch.device(device).type
        torch.testing.assert_close(got.cpu(), want, **TOL)
    elif isinstance(want, float):
        assert got == pytest.approx(want, rel=TOL["rtol"], abs=TOL["atol"], nan_ok=True)
    else:
        assert got == want


def _everything(pred, y):
    """Every method of the contract, at NumPy arguments."""
    n = pred.shape[0]
    flat = [1, pred.shape.numel() - 1]
    return {
        "summaries": [pred.mean, pred.variance, pred.aleatoric, pred.epistemic, pred.stddev],
        "members": list(pred.members()),
        "log_prob": [pred.log_prob(y), pred.log_prob(y, joint=True)],
        "cdf": pred.cdf(y),
        "quantile": [pred.quantile(0.3), pred.quantile(np.full(pred.shape, 0.8))],
        "interval": list(pred.interval(0.8)),
        "crps": pred.crps(y),
        "sample": pred.sample(4, generator=torch.Generator().manual_seed(1)),
        "affine": pred.affine(np.full(pred.shape[1:], 0.5), np.full(pred.shape, 2.0)).cdf(y),
        "select": pred.select(np.arange(n)[::-1].copy()).log_prob(y[::-1].copy()),
    } | ({} if hasattr(pred, "rebase") else {  # calibrations are per output: no flat subset
        "flat": pred.select(flat, flat=True).cdf(y.reshape(-1)[flat])})


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", sorted(CASES))
def test_predictive_on_a_device_gives_the_cpu_results(name, device):
    pred, ref = CASES[name](device), CASES[name]("cpu")
    assert pred.device.type == torch.device(device).type
    y = _targets(ref)
    _same(_everything(pred, y), _everything(ref, y), device)
    _same(evaluate(pred, y), evaluate(ref, y), device)


def _calibration_set(pred):
    """A calibration predictive of 8 copies of each sample, and NumPy targets for it."""
    cal = pred.select(np.tile(np.arange(pred.shape[0]), 8))
    return cal, _targets(cal, seed=6)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("method", sorted(METHODS))
@pytest.mark.parametrize("name", ["field", "quantile_vincentise"])
def test_calibrator_on_a_device_gives_the_cpu_results(name, method, device):
    pred, ref = CASES[name](device), CASES[name]("cpu")
    (cal, y_cal), (ref_cal, _) = _calibration_set(pred), _calibration_set(ref)
    fitted, ref_fitted = fit_calibrator(method, cal, y_cal), fit_calibrator(method, ref_cal, y_cal)
    saved = json.loads(json.dumps(fitted.to_dict()))  # plain lists whatever the device
    _same(calibrator_from_dict(saved).to_dict(), ref_fitted.to_dict(), device)
    y = _targets(ref)

    def some(p):
        return {"interval": list(p.interval(0.9)), "cdf": p.cdf(y), "log_prob": p.log_prob(y),
                "select": p.select([1]).cdf(y[1:2]), "pit": pit_calibration_error(p.cdf(y))}

    def results(p):
        return some(p) | {"joint": p.log_prob(y, joint=True), "mean": p.mean,
                          "sample": p.sample(2, generator=torch.Generator().manual_seed(2)),
                          "scores": evaluate(p, y)}

    _same(results(fitted.apply(pred)), results(ref_fitted.apply(ref)), device)
    want = some(ref_fitted.apply(ref))
    # fitted on the CPU, and read from JSON (a model saved on another device)
    for calibrator in (ref_fitted, calibrator_from_dict(saved)):
        _same(some(calibrator.apply(pred)), want, device)
    _same(some(fitted.apply(ref)), want, "cpu")  # fitted on the device, applied on the CPU
    _same(cross_fit(method, cal, y_cal, folds=2), cross_fit(method, ref_cal, y_cal, folds=2),
          device)


@pytest.mark.parametrize("device", DEVICES)
def test_acquisition_on_a_device_gives_the_cpu_results(device):
    pred, ref = CASES["gaussian"](device), CASES["gaussian"]("cpu")
    scalar, ref_scalar = (p.select([0, 1, 2, 0, 1, 2], flat=True) for p in (pred, ref))

    def scores(p, q):
        return {**{kind: score(kind, p, objective=lambda d: d.sum(-1), reference=p)
                   for kind in KINDS},
                **{f"flat_{kind}": score(kind, q) for kind in KINDS},
                "members": list(members_of(p, objective=lambda d: d.mean(-1)))}

    _same(scores(pred, scalar), scores(ref, ref_scalar), device)
    X = np.linspace(0.0, 1.0, 12)[:, None]
    flat = np.tile(np.arange(N * P), 2)[:12]

    def batches(p):
        fn = lambda x: p.select(flat[: len(x)], flat=True)  # noqa: E731
        return [select_batch(kind, fn, X, 4, reference=X[:6]).tolist() for kind in KINDS]

    assert batches(pred) == batches(ref)


@pytest.mark.parametrize("device", DEVICES)
def test_ood_features_from_a_device(device):
    fields = torch.randn(40, 2, 8, 8, generator=torch.Generator().manual_seed(0), dtype=F64)
    want = pooled_features(fields.numpy())
    features = pooled_features(fields.to(device))
    np.testing.assert_allclose(features, want, **TOL)
    epistemic = torch.linspace(0.01, 0.1, 20, dtype=F64)
    det = OODDetector.fit(torch.as_tensor(features[:20], device=device), want[20:],
                          epistemic.to(device))
    ref = OODDetector.fit(want[:20], want[20:], epistemic.numpy())
    for got, exp in zip(det(features[20:], epistemic.to(device)), ref(want[20:], epistemic),
                        strict=True):
        np.testing.assert_allclose(got, exp, **TOL)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ["field", "gaussian"])
def test_report_of_a_predictive_on_a_device(name, device, tmp_path):
    from choral.evaluation.report import write_report  # matplotlib: only here

    pred = CASES[name](device)
    y = _targets(pred)
    calibrated = fit_calibrator("scale", pred, y).apply(pred)
    X = np.zeros((N, 2, 2, 2)) if name == "field" else np.zeros((N, 2))
    index = write_report(tmp_path, X, y, calibrated, evaluate(calibrated, y), title=name,
                         n_examples=1, uncalibrated=pred)
    assert "after calibration" in index.read_text(encoding="utf-8")


# -- the guard: tensors made by a factory in the predictive code name their device ---------------
FACTORIES = {torch.zeros, torch.ones, torch.full, torch.empty, torch.arange, torch.linspace,
             torch.logspace, torch.tensor, torch.as_tensor, torch.rand, torch.randn,
             torch.randint, torch.randperm, torch.eye}
ROOT = Path(choral.__file__).resolve().parent
WATCHED = [ROOT / "distributions", ROOT / "evaluation" / "calibration.py",
           ROOT / "evaluation" / "metrics.py", ROOT / "acquisition"]
PASS_THROUGH = ROOT / "checks.py"  # as_float64(x, name) without device: blame its caller


def _watched(path):
    return any(path == w or w in path.parents for w in WATCHED)


class _Factories(TorchFunctionMode):
    """Records ``file:line func`` for every factory call from a watched file that makes a
    tensor with ``ndim >= 1`` without a device (``device=None`` counts as none); converting a
    tensor (``as_tensor(t)``, which keeps its device), scalars and ``*_like`` are fine."""

    def __init__(self):
        super().__init__()
        self.missing = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if (func in FACTORIES and kwargs.get("device") is None
                and isinstance(out, torch.Tensor) and out.ndim >= 1
                and not (args and isinstance(args[0], torch.Tensor))):
            frame = sys._getframe(1)
            while Path(frame.f_code.co_filename).resolve() == PASS_THROUGH:
                frame = frame.f_back
            path = Path(frame.f_code.co_filename).resolve()
            if _watched(path):
                self.missing.append(f"{path.relative_to(ROOT.parent)}:{frame.f_lineno} "
                                    f"{func.__name__}")
        return out


def _exercise():
    """Every predictive, calibrator, metric and acquisition path on float64 CPU inputs; the
    predictives and their NumPy targets are made outside the recorded region."""
    preds = {name: make("cpu") for name, make in CASES.items()}
    targets = {name: _targets(p) for name, p in preds.items()}
    sets = {name: _calibration_set(preds[name]) for name in ("field",)}
    X = np.linspace(0.0, 1.0, 12)[:, None]
    scalar = preds["gaussian"].select(np.tile(np.arange(N * P), 2)[:12], flat=True)
    with _Factories() as mode:
        for name, pred in preds.items():
            _everything(pred, targets[name])
            evaluate(pred, targets[name])
        for name, (cal, y_cal) in sets.items():
            for method in METHODS:
                calibrated = fit_calibrator(method, cal, y_cal).apply(preds[name])
                _everything(calibrated, targets[name])
                evaluate(calibrated, targets[name])
                cross_fit(method, cal, y_cal, folds=2)
        for kind in KINDS:
            score(kind, preds["gaussian"], objective=lambda d: d.sum(-1))
            score(kind, scalar, reference=scalar)
            select_batch(kind, lambda x: scalar, X, 3, reference=X)
    return mode.missing


def test_tensor_factories_in_the_predictive_code_name_a_device():
    missing = _exercise()
    assert not missing, "tensors made without device= (CPU whatever the predictive's " \
        "device):\n" + "\n".join(sorted(set(missing)))


def test_the_factory_guard_catches_a_tensor_without_a_device():
    """The guard is not vacuous: calls written in a watched file are caught unless they name a
    device, make a scalar or convert a tensor; ``as_float64`` blames its caller."""
    probe = compile("torch.zeros(3); torch.arange(2, device='cpu'); torch.zeros(()); "
                    "torch.as_tensor(t); torch.zeros_like(t); as_float64([1.0], 'y'); "
                    "as_float64([1.0], 'y', device='cpu')",
                    str(ROOT / "distributions" / "probe.py"), "exec")
    elsewhere = compile("torch.zeros(3)", str(ROOT / "surrogate" / "probe.py"), "exec")
    with _Factories() as mode:
        exec(probe, {"torch": torch, "as_float64": as_float64, "t": torch.ones(2)})
        exec(elsewhere, {"torch": torch})
    assert mode.missing == ["choral/distributions/probe.py:1 zeros",
                            "choral/distributions/probe.py:1 as_tensor"]

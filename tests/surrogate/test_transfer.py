"""FNO surrogates: fit on a small field problem, save/load, predict on a 2x grid; the errors."""

import warnings

import numpy as np
import pytest
import torch

from choral.config import Config
from choral.errors import DataError, GridWarning
from choral.evaluation.calibration import Conformal, PitScale
from choral.normalise import Standardiser
from choral.surrogate import Surrogate
from choral.surrogate.transfer import resample_calibrator

SHIFT = 0.125


def shifted(n: int, grid: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Periodic fields with modes 1-3 on ``grid`` points (n, 1, grid) and the same fields
    shifted by 1/8 of the period: a linear operator that does not depend on the grid."""
    rng = np.random.default_rng(seed)
    x = np.arange(grid) / grid
    a, b = rng.normal(size=(2, n, 3, 1))
    k = np.arange(1, 4)[:, None]

    def field(t):
        return (a * np.sin(2 * np.pi * k * t) + b * np.cos(2 * np.pi * k * t)).sum(1)

    return field(x)[:, None], field(x - SHIFT)[:, None]


def rel_l2(pred: np.ndarray, y: np.ndarray) -> float:
    n = len(y)
    return float((np.linalg.norm((pred - y).reshape(n, -1), axis=1)
                  / np.linalg.norm(y.reshape(n, -1), axis=1)).mean())


@pytest.fixture(scope="module")
def fitted():
    X, Y = shifted(96, 16, seed=0)
    cfg = Config.from_dict({
        "model": {"backbone": "fno", "fno": {"modes": 6, "width": 8, "layers": 2}},
        "train": {"members": 2, "epochs": 40, "lr": 1e-2, "batch_size": 16,
                  "dtype": "float64", "seed": 1}})
    return Surrogate(cfg).fit(X, Y)


def quiet_predict(model: Surrogate, X: np.ndarray):
    """``model.predict(X)`` without the GridWarning of another grid (tested on its own)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GridWarning)
        return model.predict(X)


def test_fno_fits_and_predicts_at_twice_the_grid(fitted):
    """Trained at 16 points, the ensemble approximates the truth at 32 about as well: the
    mean's relative L2 is small at both and within 50% of each other; the intervals are
    finite and of the new grid's shape."""
    errors = {}
    for grid in (16, 32):
        Xt, Yt = shifted(40, grid, seed=2)
        pred = quiet_predict(fitted, Xt)
        assert tuple(pred.shape) == (40, 1, grid)
        errors[grid] = rel_l2(pred.mean.numpy(), Yt)
        lo, hi = pred.interval(0.9)
        assert bool(torch.isfinite(hi - lo).all())
    assert errors[16] < 0.1, errors
    assert errors[32] < 1.5 * errors[16] + 0.01, errors
    baseline = rel_l2(np.zeros_like(Yt), Yt)  # predicting zero: relative L2 exactly 1
    assert errors[32] < 0.2 * baseline


def test_save_load_round_trip_is_bit_identical(fitted, tmp_path):
    fitted.save(tmp_path / "m")
    loaded = Surrogate.load(tmp_path / "m")
    for grid in (16, 32):
        Xt, _ = shifted(5, grid, seed=3)
        a, b = quiet_predict(fitted, Xt), quiet_predict(loaded, Xt)
        assert torch.equal(a.mean, b.mean) and torch.equal(a.variance, b.variance)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", GridWarning)  # tested on its own
            assert torch.equal(fitted.member_means(torch.as_tensor(Xt)),
                               loaded.member_means(torch.as_tensor(Xt)))


def test_unet_refuses_another_grid_with_a_clear_error():
    X, Y = shifted(40, 16, seed=0)
    cfg = Config.from_dict({"model": {"backbone": "unet", "unet": {"depth": 1, "width": 2}},
                            "train": {"members": 2, "epochs": 1}})
    model = Surrogate(cfg).fit(X, Y)
    with pytest.raises(DataError, match=r"\(1, 16\).*got shape \(3, 1, 32\).*"
                                        r"resolution transfer needs model.backbone"):
        model.predict(shifted(3, 32, seed=1)[0])


def test_fno_refuses_other_channels(fitted):
    with pytest.raises(DataError, match=r"X must have \(1, 16\) features.*got shape \(2, 2, 32\)$"):
        fitted.predict(np.zeros((2, 2, 32)))


def test_standardisation_is_per_channel_not_per_cell():
    """The statistics of a field set are one mean and scale per channel, whatever the grid:
    the same fields sampled twice as finely give the same statistics (closed form of a sine
    with a random amplitude over whole periods: mean 0, variance E[a^2] / 2)."""
    rng = np.random.default_rng(0)
    a = rng.normal(size=(500, 1, 1))
    coarse, fine = (a * np.sin(2 * np.pi * np.arange(g) / g) for g in (16, 32))
    s16, s32 = Standardiser.fit(coarse), Standardiser.fit(fine)
    assert s16.mean.shape == (1,) and s32.mean.shape == (1,)
    np.testing.assert_allclose(s16.scale, s32.scale, rtol=1e-12)
    np.testing.assert_allclose(s16.scale**2, (a**2).mean() / 2, rtol=1e-12)


def test_resampled_calibration_interpolates_between_shared_end_points():
    """A per-cell factor that is linear along the grid stays that line on a finer grid with the
    same end points; conformal quantiles with an infinite cell are copied to the nearest."""
    line = torch.linspace(1.0, 2.0, 5, dtype=torch.float64)[None]  # (c=1, 5 nodes)
    fine = resample_calibrator(PitScale(line), (1, 9)).factor
    torch.testing.assert_close(fine, torch.linspace(1.0, 2.0, 9, dtype=torch.float64)[None])
    q = torch.tensor([[1.0, float("inf"), 3.0]], dtype=torch.float64)
    out = resample_calibrator(Conformal({0.9: q}), (1, 6)).q[0.9]
    assert out.shape == (1, 6) and torch.isinf(out).sum() == 2


def test_prediction_on_another_grid_warns_until_recalibrated_there(fitted, tmp_path):
    """The calibration records its grid (saved with the model); a prediction elsewhere warns,
    and a calibration on runs at the new grid moves the warning to the old grid."""
    fitted.save(tmp_path / "m")
    model = Surrogate.load(tmp_path / "m")
    assert model.metrics["calibration"]["grid"] == [16]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.predict(shifted(5, 16, seed=3)[0])
        model.predict(shifted(5, 32, seed=3)[0], calibrated=False)
    X32, Y32 = shifted(30, 32, seed=4)
    with pytest.warns(GridWarning, match=r"grid \[16\].*\[32\]"):
        model.predict(X32)
    with pytest.warns(GridWarning, match=r"grid \[16\].*\[32\]"):  # acquisition's path too
        model.member_means(torch.as_tensor(X32))
    model.calibrate(X32, Y32)
    assert model.metrics["calibration"]["grid"] == [32]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.predict(X32)
    with pytest.warns(GridWarning, match=r"grid \[32\].*\[16\]"):
        model.predict(shifted(5, 16, seed=3)[0])

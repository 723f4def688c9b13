import re

import numpy as np
import pytest
import torch

from choral.distributions import GaussianMixture
from choral.errors import DataError
from choral.evaluation.calibration import Isotonic, Scale
from choral.evaluation.metrics import calibration_error, coverage
from choral.evaluation.report import LEVELS, _pit, reliability, write_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SCORES = {"rmse": 0.123456789, "nll": -1.98765, "coverage_90": 0.9}


def _mixture(shape, seed):
    """A 2-member mixture over ``shape`` (n, ...) and targets drawn from it (so calibrated)."""
    g = torch.Generator().manual_seed(seed)
    means = torch.randn((2, *shape), generator=g, dtype=torch.float64)
    variances = 0.05 + torch.rand((2, *shape), generator=g, dtype=torch.float64)
    mixture = GaussianMixture(means, variances)
    return mixture, mixture.sample(1, generator=g)[0]


def _check_report(index, n_png):
    assert index.name == "index.html" and index.exists()
    page = index.read_text(encoding="utf-8")
    refs = set(re.findall(r'<img src="([^"]+)" alt="[^"]+">', page))
    pngs = {p.name for p in index.parent.glob("*.png")}
    assert refs == pngs and len(pngs) == n_png
    for name in pngs:
        data = (index.parent / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 5_000
    assert not [f for f in index.parent.iterdir() if f.name.endswith(".tmp")]  # atomic writes
    for value in ("0.1235", "-1.988", "0.9"):
        assert f'<td class="num">{value}</td>' in page
    return page


def test_vector_report(tmp_path):
    p, y = _mixture((200, 2), seed=0)
    x = torch.randn(200, 3, dtype=torch.float64)
    info = {"members": 2, "backbone": "mlp & <b>", "widths": [64, 64], "parameters": 12345678}
    index = write_report(tmp_path / "rep", x, y, p, SCORES, model_info=info,
                         title="Vector <script>alert(1)</script>")
    page = _check_report(index, n_png=3)
    assert {"parity.png", "pit.png", "error_vs_std.png"} <= set(re.findall(r'src="([^"]+)"', page))
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "mlp &amp; &lt;b&gt;" in page and "[64, 64]" in page and ">12345678<" in page
    assert page.count("<figcaption>") == 3


def test_field_1d_report(tmp_path):
    p, y = _mixture((6, 1, 64), seed=1)
    x = np.random.default_rng(1).normal(size=(6, 2, 64))
    index = write_report(tmp_path, x, y, p, SCORES, title="Burgers 1-D", n_examples=2)
    page = _check_report(index, n_png=4)
    assert 'src="example_0.png"' in page and 'src="example_1.png"' in page
    assert "example_2.png" not in page


def test_field_2d_report(tmp_path):
    p, y = _mixture((6, 1, 16, 16), seed=2)
    x = torch.randn(6, 1, 16, 16, dtype=torch.float64)
    page = _check_report(write_report(tmp_path, x, y, p, SCORES, title="Darcy", n_examples=1),
                         n_png=3)
    assert 'src="example_0.png"' in page


def test_vector_input_field_output_and_rewrite_removes_stale_examples(tmp_path):
    p, y = _mixture((5, 1, 32), seed=3)
    x = torch.rand(5, 3)
    _check_report(write_report(tmp_path, x, y, p, SCORES, title="params", n_examples=2), n_png=4)
    page = _check_report(write_report(tmp_path, x, y, p, SCORES, title="params", n_examples=0),
                         n_png=2)
    assert "example_" not in page and not list(tmp_path.glob("example_*.png"))


def test_reliability_calibrated_vs_overconfident():
    g = torch.Generator().manual_seed(4)
    mu = torch.randn(5000, 1, generator=g, dtype=torch.float64)
    var = 0.1 + torch.rand(5000, 1, generator=g, dtype=torch.float64)
    y = mu + var.sqrt() * torch.randn(5000, 1, generator=g, dtype=torch.float64)
    levels, observed = reliability(GaussianMixture(mu[None], var[None]), y, LEVELS)
    np.testing.assert_allclose(levels, LEVELS)
    assert np.abs(observed - levels).max() < 0.03
    _, narrow = reliability(GaussianMixture(mu[None], var[None] / 4), y, LEVELS)
    assert narrow[-1] < 0.7  # exact: P(|Z| < 1.645 / 2) = 0.59
    assert np.all(narrow < observed - 0.03)


def test_reliability_of_mixture_matches_pit():
    # a central interval holds y exactly when F(y) lies in [(1 - level) / 2, (1 + level) / 2]
    p, y = _mixture((300, 2), seed=7)
    levels, observed = reliability(p, y, LEVELS)
    u = p.cdf(y)
    expected = [((u >= (1 - lv) / 2) & (u <= (1 + lv) / 2)).double().mean().item() for lv in LEVELS]
    np.testing.assert_allclose(observed, expected, atol=1 / 600)


def test_reliability_closed_form_gaussian():
    # one N(0, 1) member, y spread so that exactly 60% lie within the central 50% (|y| < 0.674)
    p = GaussianMixture(torch.zeros(1, 10, 1), torch.ones(1, 10, 1))
    y = torch.tensor([0.0, 0.1, -0.2, 0.3, 0.6, -0.6, 1.0, -1.0, 2.0, -3.0])[:, None]
    assert reliability(p, y, [0.5])[1].tolist() == [0.6]


def _overconfident(shape, seed):
    """Targets from a 2-member mixture and that mixture with its spread halved (too narrow)."""
    truth, y = _mixture(shape, seed)
    members = truth.members()
    mean = truth.mean
    narrow = GaussianMixture(mean + (members.means - mean) / 2, members.variances / 4)
    return narrow, y


def _legend(fig, axis):
    return fig.axes[axis].get_legend_handles_labels()[1]


def test_uncalibrated_report_has_one_reliability_curve(tmp_path):
    p, y = _overconfident((300, 2), seed=8)
    page = _check_report(write_report(tmp_path, torch.rand(300, 3), y, p, SCORES, title="t"),
                         n_png=3)
    assert "before calibration" not in page and "<h2>Calibration</h2>" not in page
    (fig, name, _, _), rows = _pit(y, p, np.random.default_rng(0))
    assert name == "pit.png" and rows is None
    assert _legend(fig, 1) == ["calibrated", "observed"]
    assert fig.axes[0].get_legend() is None


@pytest.mark.parametrize("calibrator", [Scale([2.0, 2.0]),
                                        Isotonic([[0.0, 0.3, 0.5, 0.7, 1.0]] * 2)])
def test_calibrated_report_shows_both_curves_and_scores(tmp_path, calibrator):
    raw, y = _overconfident((300, 2), seed=9)
    cal = calibrator.apply(raw)
    page = _check_report(write_report(tmp_path, torch.rand(300, 3), y, cal, SCORES, title="t",
                                      uncalibrated=raw), n_png=3)
    assert "<h2>Calibration</h2>" in page
    assert "<th>before calibration</th><th>after calibration</th>" in page
    assert "before calibration" in page and "after calibration" in page  # the figure's alt/caption
    (fig, _, _, _), rows = _pit(y, cal, np.random.default_rng(0), raw)
    assert _legend(fig, 1) == ["calibrated", "before calibration", "after calibration"]
    assert _legend(fig, 0) == ["before calibration", "after calibration"]
    before, after = (np.asarray(line.get_ydata()) for line in fig.axes[1].get_lines()[1:])
    np.testing.assert_allclose(before, reliability(raw, y)[1])  # 600 values: all of them
    np.testing.assert_allclose(after, reliability(cal, y)[1])
    assert rows["calibration_error"] == pytest.approx(
        (calibration_error(raw, y), calibration_error(cal, y)), rel=1e-12)
    assert rows["coverage_90"] == (coverage(raw, y, 0.9), coverage(cal, y, 0.9))
    assert rows["coverage_50"] == (coverage(raw, y, 0.5), coverage(cal, y, 0.5))
    assert rows["reliability_gap"][0] == pytest.approx(np.abs(before - np.asarray(LEVELS)).mean())
    assert rows["coverage_90"][0] < 0.8  # the raw mixture is too narrow: its curve lies below
    for key, (b, a) in rows.items():
        assert f'<tr><th>{key}</th><td class="num">{b:.4g}</td><td class="num">{a:.4g}</td></tr>' \
            in page


def test_calibrated_field_report_subsamples_both_curves_alike(tmp_path, monkeypatch):
    monkeypatch.setattr("choral.evaluation.report.MAX_RELIABILITY", 50)
    raw, y = _overconfident((4, 1, 8, 8), seed=10)
    cal = Scale([2.0]).apply(raw)  # a plain mixture again: both curves on one flat subset
    idx = torch.as_tensor(np.sort(np.random.default_rng(0).choice(256, 50, replace=False)))
    (fig, _, _, _), rows = _pit(y, cal, np.random.default_rng(0), raw)
    before, after = (np.asarray(line.get_ydata()) for line in fig.axes[1].get_lines()[1:])
    flat = y.reshape(-1)[idx]
    np.testing.assert_allclose(before, reliability(raw.select(idx, flat=True), flat)[1])
    np.testing.assert_allclose(after, reliability(cal.select(idx, flat=True), flat)[1])
    assert rows["coverage_90"] == (coverage(raw, y, 0.9), coverage(cal, y, 0.9))  # all values
    page = _check_report(write_report(tmp_path, torch.rand(4, 1, 8, 8), y, cal, SCORES,
                                      title="t", n_examples=1, uncalibrated=raw), n_png=3)
    assert "<h2>Calibration</h2>" in page


def test_bad_inputs_raise_data_error(tmp_path):
    p, y = _mixture((10, 2), seed=5)
    with pytest.raises(DataError, match="predictive's shape"):
        write_report(tmp_path, torch.zeros(10, 3), y[:, :1], p, {}, title="t")
    with pytest.raises(DataError, match="X must be"):
        write_report(tmp_path, torch.zeros(9, 3), y, p, {}, title="t")
    q, yq = _mixture((2, 1, 2, 2, 2), seed=6)
    with pytest.raises(DataError, match=r"\(n, c, H, W\)"):
        write_report(tmp_path, torch.zeros(2, 3), yq, q, {}, title="t")
    with pytest.raises(DataError, match="finite"):
        write_report(tmp_path, torch.zeros(10, 3), y * float("nan"), p, {}, title="t")
    with pytest.raises(DataError, match="n_examples"):
        write_report(tmp_path, torch.zeros(10, 3), y, p, {}, title="t", n_examples=-1)
    with pytest.raises(DataError, match=r"uncalibrated must be a Predictive of Y's shape "
                                        r"\(10, 2\).*; got GaussianMixture of shape \(10, 1\)"):
        write_report(tmp_path, torch.zeros(10, 3), y, p, {}, title="t",
                     uncalibrated=GaussianMixture(torch.zeros(2, 10, 1), torch.ones(2, 10, 1)))
    with pytest.raises(DataError, match=r"uncalibrated must be .*; got ndarray"):
        write_report(tmp_path, torch.zeros(10, 3), y, p, {}, title="t",
                     uncalibrated=np.zeros((10, 2)))
    assert not (tmp_path / "index.html").exists()

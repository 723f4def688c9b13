"""The posterior report: valid HTML whose images exist, a field panel that is the pointwise
mean/std of the draws' fields, atomic files; and ``choral infer --report --field``."""

import json
from html.parser import HTMLParser

import numpy as np
import pytest
from typer.testing import CliRunner

from choral.cli.app import app
from choral.config import Config
from choral.errors import DataError
from choral.inference.mcmc import Posterior
from choral.inference.report import darcy_modes_field, field_figure, write_posterior_report
from choral.simulators.darcy_modes import coefficient_field, simulate_darcy_modes
from choral.surrogate import Surrogate

VOID = {"meta", "img", "br", "hr", "link", "input"}


class _Checker(HTMLParser):
    """Tags must nest and close; collects the images' sources."""

    def __init__(self):
        super().__init__()
        self.stack, self.images, self.errors = [], [], []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs)["src"])
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack.pop() != tag:
            self.errors.append(tag)


def _check_page(index):
    text = index.read_text()
    checker = _Checker()
    checker.feed(text)
    assert text.startswith("<!DOCTYPE html>") and not checker.errors and not checker.stack
    for src in checker.images:
        assert (index.parent / src).read_bytes()[:4] == b"\x89PNG"
    return text, checker.images


def _posterior(d=3, seed=0):
    rng = np.random.default_rng(seed)
    return Posterior(rng.normal(size=(2, 300, d)) * 0.3 + 0.5, np.ones(d), np.full(d, 500.0),
                     {"chains": 2, "draws": 300, "acceptance": 0.8, "divergences": 0})


def test_field_panels_are_the_pointwise_posterior_mean_and_std():
    post, truth = _posterior(), [0.2, -0.1, 0.4]
    field = darcy_modes_field(9)
    fig = field_figure(post.flat, field, truth=truth)
    images = [ax.images[0].get_array() for ax in fig.axes if ax.images]
    F = coefficient_field(post.flat, 9)  # a second route to the fields: (n, 9, 9)
    expected = [coefficient_field(np.array([truth]), 9)[0], F.mean(0), F.std(0),
                np.abs(F.mean(0) - coefficient_field(np.array([truth]), 9)[0])]
    assert len(images) == 4
    for image, want in zip(images, expected, strict=True):
        np.testing.assert_allclose(np.asarray(image).T, want, rtol=1e-12)  # drawn transposed
    with pytest.raises(DataError, match=r"field must map samples"):
        field_figure(post.flat, lambda X: X)


def test_report_is_valid_html_with_its_images_and_atomic(tmp_path):
    post = _posterior()
    index = write_posterior_report(tmp_path, post, truth=[0.5, 0.5, 0.5],
                                   field=darcy_modes_field(9), field_name="Darcy <a>")
    text, images = _check_page(index)
    assert images == ["corner.png", "field.png"] and "Darcy &lt;a&gt;" in text
    s = post.summary(0.9)
    assert f"{s['mean'][1]:.4g}" in text and "R-hat" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corner.png", "field.png",
                                                         "index.html"]  # no temporary files
    write_posterior_report(tmp_path, post)  # no field now: the stale field.png goes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corner.png", "index.html"]
    assert _check_page(index)[1] == ["corner.png"]


def test_infer_cli_writes_the_field_report(tmp_path):
    X, Y = simulate_darcy_modes(120, seed=0, resolution=9, modes=2, sensors=2)
    data = tmp_path / "train.npz"
    np.savez(data, X=X, Y=Y)
    config = Config().updated(**{"train.members": 3, "train.epochs": 150, "train.seed": 0})
    Surrogate(config).fit(X, Y).save(tmp_path / "model")
    xt, yt = simulate_darcy_modes(1, seed=9, resolution=9, modes=2, sensors=2)
    observed = tmp_path / "y.json"
    observed.write_text(json.dumps(yt[0].tolist()))
    args = ["infer", "--model", str(tmp_path / "model"), "--observed", str(observed),
            "--noise", str(0.02 * float(np.abs(Y).mean())), "--prior", "gaussian",
            "--prior-loc", "[0, 0]", "--prior-scale", "1", "--out", str(tmp_path / "p.npz"),
            "--chains", "2", "--warmup", "40", "--draws", "40", "--json"]
    result = CliRunner().invoke(app, [*args, "--report", str(tmp_path / "rep"), "--field",
                                      "darcy_modes", "--field-resolution", "9", "--truth",
                                      json.dumps(xt[0].tolist())])
    assert result.exit_code == 0, (result.output, result.exception)
    assert _check_page(tmp_path / "rep" / "index.html")[1] == ["corner.png", "field.png"]
    bad = CliRunner().invoke(app, [*args, "--field", "darcy_modes"])
    assert isinstance(bad.exception, DataError) and "--report" in str(bad.exception)
    bad = CliRunner().invoke(app, [*args, "--report", str(tmp_path / "r2"), "--field", "nope"])
    assert isinstance(bad.exception, DataError) and "darcy_modes" in str(bad.exception)

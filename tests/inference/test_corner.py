"""The corner plot: d (d + 1) / 2 panels holding the samples' histograms, a PNG on disk."""

import numpy as np
import pytest
from matplotlib.image import imread

from choral.errors import DataError
from choral.inference.corner import corner_figure, write_corner


def test_panels_are_the_samples_histograms(tmp_path):
    X = np.random.default_rng(0).normal(size=(400, 3)) * [1.0, 2.0, 0.5]
    fig = corner_figure(X, truth=[0.0, 1.0, 2.0], bounds=[[-4, 4], [-8, 8], [-2, 2]], bins=20)
    assert len(fig.axes) == 6  # 3 diagonal + 3 below
    diag = [ax for ax in fig.axes if ax.patches]  # the 1-D histograms
    assert len(diag) == 3
    counts, _ = np.histogram(X[:, 1], bins=20, range=(-8, 8))
    heights = np.array([y for _, y in diag[1].patches[0].get_xy()])
    assert heights.max() == counts.max()  # the drawn histogram is the samples' histogram
    assert fig.axes[0].get_xlim() == (-4.0, 4.0)  # the box as limits
    assert len(fig.axes[0].lines) == 1  # the truth mark on the diagonal
    f = tmp_path / "c.png"
    write_corner(f, X[:, :2], labels=["a", "b"])
    image = imread(f)
    assert image.ndim == 3 and min(image.shape[:2]) > 100
    assert len(list(tmp_path.iterdir())) == 1  # no temporary file left


def test_errors_name_the_argument():
    with pytest.raises(DataError, match="samples"):
        corner_figure(np.zeros(5))
    with pytest.raises(DataError, match="truth"):
        corner_figure(np.zeros((5, 2)), truth=[1.0])
    with pytest.raises(DataError, match="bounds"):
        corner_figure(np.zeros((5, 2)), bounds=[[0, 1]])

"""netCDF and zarr through the command line: fit, predict, coordinates kept, bad names."""

import numpy as np
import pytest
import xarray as xr
from typer.testing import CliRunner

from choral.cli.app import app
from choral.errors import DataError
from choral.surrogate import Surrogate
from choral.xarrays import XRows, read_xarray

runner = CliRunner()
CONFIG = """
[data]
x = ["permeability"]
y = ["pressure"]
sample_dim = "run"
[model]
backbone = "unet"
[model.unet]
depth = 1
width = 4
[train]
members = 2
epochs = 2
batch_size = 8
"""


def _darcy_like(n, seed):
    """Permeability fields a (run, y, x) and the pressure of 1-D Darcy flow along x in each
    row of cells (exact for layered media: u = cumulative sum of 1/a), with coordinates."""
    rng = np.random.default_rng(seed)
    a = np.exp(rng.normal(size=(n, 8, 6)))
    u = np.cumsum(1.0 / a, axis=-1) / 6
    coords = {"run": np.arange(1000 + 100 * seed, 1000 + 100 * seed + n),
              "y": np.linspace(0.0, 1.0, 8), "x": np.linspace(0.0, 0.5, 6)}
    return xr.Dataset({"permeability": (("run", "y", "x"), a, {"units": "m2"}),
                       "pressure": (("run", "y", "x"), u)}, coords=coords)


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, (result.output, result.exception)
    return result


@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
def test_fit_predict_round_trip_keeps_coordinates(tmp_path, suffix):
    train, test = _darcy_like(40, 0), _darcy_like(7, 1).transpose("y", "run", "x")
    if suffix == ".nc":
        train.to_netcdf(tmp_path / "train.nc", engine="h5netcdf")
        test.to_netcdf(tmp_path / "test.nc", engine="h5netcdf")
    else:
        train.to_zarr(tmp_path / "train.zarr")
        test.to_zarr(tmp_path / "test.zarr")
    (tmp_path / "c.toml").write_text(CONFIG)
    stream = ["--stream"] if suffix == ".zarr" else []  # zarr: the lazy path (XRows)
    invoke("fit", "--data", tmp_path / f"train{suffix}", "--config", tmp_path / "c.toml",
           "--out", tmp_path / "model", "--quiet", *stream)
    invoke("predict", "--model", tmp_path / "model", "--data", tmp_path / f"test{suffix}",
           "--out", tmp_path / f"pred{suffix}", "--level", 0.8)
    out = xr.open_zarr(tmp_path / "pred.zarr") if suffix == ".zarr" else xr.open_dataset(
        tmp_path / "pred.nc", engine="h5netcdf")
    for dim in ("run", "y", "x"):  # the input's coordinates, values and order
        np.testing.assert_array_equal(out[dim].values, test[dim].values)
    assert out["pressure_mean"].dims == ("run", "y", "x")
    assert out["ood"].dims == ("run",) and out["ood"].dtype == bool
    # the values: choral's own predict on the input read by xarray, not by choral
    X = test["permeability"].transpose("run", "y", "x").values[:, None]
    pred = Surrogate.load(tmp_path / "model").predict(X)
    np.testing.assert_allclose(out["pressure_mean"].values, pred.mean.numpy()[:, 0], rtol=1e-12)
    lower, upper = pred.interval(0.8)
    np.testing.assert_allclose(out["pressure_lower"].values, lower.numpy()[:, 0], rtol=1e-12)
    np.testing.assert_allclose(out["pressure_upper"].values, upper.numpy()[:, 0], rtol=1e-12)
    np.testing.assert_allclose(out["pressure_std"].values, pred.stddev.numpy()[:, 0], rtol=1e-12)
    assert out["pressure_lower"].attrs["level"] == 0.8


def test_vector_variables_lazy_rows_match_eager(tmp_path):
    """Variables of dims (run,) are columns; XRows reads what the eager reader reads."""
    rng = np.random.default_rng(2)
    ds = xr.Dataset({k: (("run",), rng.normal(size=30)) for k in ("a", "b", "f")},
                    coords={"run": np.arange(30) * 10})
    ds.to_zarr(tmp_path / "v.zarr")
    X, Y = read_xarray(tmp_path / "v.zarr", "a,b", "f")
    np.testing.assert_array_equal(X, np.c_[ds["a"].values, ds["b"].values])
    assert Y.shape == (30, 1)
    rows = XRows(tmp_path / "v.zarr", "a,b")
    idx = np.array([[29, 0], [3, 3]])
    np.testing.assert_array_equal(rows.read(idx), X[idx])
    np.testing.assert_array_equal(rows.subset(np.array([5, 1, 7])).read_slice(1, 3), X[[1, 7]])
    assert [len(b) for _, b in rows.blocks(12)] == [12, 12, 6]


def test_bad_names_list_what_the_file_has(tmp_path):
    _darcy_like(5, 0).to_netcdf(tmp_path / "d.nc", engine="h5netcdf")
    with pytest.raises(DataError, match=r"no variable 'perm' \(variables there: permeability, "
                                        r"pressure; dims: run=5, y=8, x=6\)"):
        read_xarray(tmp_path / "d.nc", "perm", "pressure")
    with pytest.raises(DataError, match="sample_dim 'time' is not a dimension of d.nc"):
        read_xarray(tmp_path / "d.nc", "permeability", "pressure", sample_dim="time")
    # through the command line (main() turns a ChoralError into exit code 2, tests/cli)
    result = runner.invoke(app, ["fit", "--data", str(tmp_path / "d.nc"), "--x", "perm",
                                 "--y", "pressure", "--out", str(tmp_path / "m")])
    assert isinstance(result.exception, DataError)
    assert "variables there: permeability, pressure" in str(result.exception)
    assert not (tmp_path / "m").exists()

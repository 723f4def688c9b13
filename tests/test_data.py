"""Tests for choral.data: validation, loading, saving and their error messages."""

import os
import re

import h5py
import numpy as np
import pytest
import torch

from choral.data import check_arrays, load_data, save_data
from choral.errors import DataError


def _xy(n=6, d=3, m=2, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)), rng.normal(size=(n, m))


class NotATensor:
    """A custom class: a .pt file holding one must never be unpickled."""

    unpickled = False

    def __setstate__(self, state):
        NotATensor.unpickled = True
        self.__dict__.update(state)


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("suffix", [".npz", ".h5", ".hdf5", ".csv"])
@pytest.mark.parametrize("m", [1, 3])
def test_save_load_round_trip(tmp_path, suffix, m):
    X, Y = _xy(m=m)
    path = tmp_path / f"data{suffix}"
    save_data(path, X, Y)
    X2, Y2 = load_data(path)
    assert X2.dtype == np.float64 and Y2.dtype == np.float64
    np.testing.assert_array_equal(X2, X)
    np.testing.assert_array_equal(Y2, Y)


def test_round_trip_pt(tmp_path):
    X, Y = _xy()
    path = tmp_path / "data.pt"
    torch.save({"X": torch.from_numpy(X), "Y": torch.from_numpy(Y)}, path)
    X2, Y2 = load_data(path)
    np.testing.assert_array_equal(X2, X)
    np.testing.assert_array_equal(Y2, Y)


def test_round_trip_fields_npz_h5(tmp_path):
    rng = np.random.default_rng(1)
    X, Y = rng.normal(size=(4, 2, 5, 5)), rng.normal(size=(4, 1, 5, 5))
    for suffix in (".npz", ".h5"):
        save_data(tmp_path / f"f{suffix}", X, Y)
        X2, Y2 = load_data(tmp_path / f"f{suffix}")
        np.testing.assert_array_equal(X2, X)
        np.testing.assert_array_equal(Y2, Y)


@pytest.mark.parametrize("suffix", [".npz", ".h5", ".csv"])
def test_extra_arrays_and_custom_keys(tmp_path, suffix):
    X, Y = _xy()
    path = tmp_path / f"pred{suffix}"
    save_data(path, X, Y, x_key="inp", y_key="out", mean=Y + 1, std=np.ones(6))
    X2, Y2 = load_data(path, x_key="inp", y_key="out")
    np.testing.assert_array_equal(X2, X)
    np.testing.assert_array_equal(Y2, Y)
    _, mean = load_data(path, x_key="inp", y_key="mean")
    np.testing.assert_array_equal(mean, Y + 1)


def test_csv_column_selection(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,b,c,t\n1,2,3,4\n5,6,7,8\n")
    X, Y = load_data(path, y_key="t")
    np.testing.assert_array_equal(X, [[1, 2, 3], [5, 6, 7]])
    np.testing.assert_array_equal(Y, [[4], [8]])
    X, Y = load_data(path, x_key="c, a", y_key="t,b")
    np.testing.assert_array_equal(X, [[3, 1], [7, 5]])
    np.testing.assert_array_equal(Y, [[4, 2], [8, 6]])


def test_require_y_false_returns_none(tmp_path):
    X, _ = _xy()
    for suffix in (".npz", ".h5", ".csv"):
        save_data(tmp_path / f"in{suffix}", X)
        X2, Y2 = load_data(tmp_path / f"in{suffix}", require_y=False)
        np.testing.assert_array_equal(X2, X)
        assert Y2 is None
    with pytest.raises(DataError, match=r"in.npz has no array 'Y' \(arrays there: X\)"):
        load_data(tmp_path / "in.npz")


# ---------------------------------------------------------------- check_arrays


def test_check_arrays_converts_and_reshapes():
    X, Y = check_arrays([[1, 2], [3, 4]], torch.tensor([1.0, 2.0], dtype=torch.float32))
    assert X.dtype == np.float64 and Y.dtype == np.float64
    assert Y.shape == (2, 1)
    X, Y = check_arrays(torch.ones(3, 2, dtype=torch.bfloat16, requires_grad=True))
    assert X.shape == (3, 2) and Y is None


def test_nan_and_inf_rows_named():
    X = np.ones((10, 2))
    X[2, 0] = np.nan
    X[5, 1] = np.inf
    X[7, :] = -np.inf
    with pytest.raises(DataError, match=re.escape("X has NaN/inf values in 3 rows: [2, 5, 7]")):
        check_arrays(X)
    Y = np.ones(10)
    Y[4] = np.inf
    with pytest.raises(DataError, match=re.escape("Y has NaN/inf values in 1 row: [4]")):
        check_arrays(np.ones((10, 2)), Y)


def test_many_nan_rows_first_ten_and_count():
    X = np.full((30, 2), np.nan)
    with pytest.raises(DataError, match=r"in 30 rows: \[0, 1, .*, 9\] \(first 10 shown\)"):
        check_arrays(X)


def test_mismatched_rows():
    with pytest.raises(DataError, match="X has 10 rows but Y has 9"):
        check_arrays(np.ones((10, 2)), np.ones((9, 1)))


def test_wrong_ndim():
    msg = "X must be 2-D (n, d) or a field (n, c, *grid); got shape (5,)"
    with pytest.raises(DataError, match=re.escape(msg)):
        check_arrays(np.ones(5))
    with pytest.raises(DataError, match=r"Y must be .*got shape \(\)"):
        check_arrays(np.ones((5, 2)), np.float64(1.0))


@pytest.mark.parametrize("shape", [(0, 3), (4, 0), (0,)])
def test_empty(shape):
    with pytest.raises(DataError, match="(is empty|must be 2-D).*got shape"):
        check_arrays(np.ones(shape))


def test_empty_y():
    with pytest.raises(DataError, match=r"Y is empty: got shape \(0, 1\)"):
        check_arrays(np.ones((1, 2)), np.ones(0))


def test_strings_and_objects_rejected():
    with pytest.raises(DataError, match="X must hold numbers, got dtype <U3"):
        check_arrays([["abc", "def"]])
    with pytest.raises(DataError, match="Y must hold numbers, got dtype object"):
        check_arrays(np.ones((2, 1)), np.array([1.0, None], dtype=object))
    with pytest.raises(DataError, match="X could not be made into an array"):
        check_arrays([[1.0, 2.0], [3.0]])


def test_custom_names_in_messages():
    with pytest.raises(DataError, match="inputs has 2 rows but targets has 3"):
        check_arrays(np.ones((2, 1)), np.ones(3), x_name="inputs", y_name="targets")


# ---------------------------------------------------------------- file errors


def test_missing_file(tmp_path):
    path = tmp_path / "nope.npz"
    with pytest.raises(DataError, match=f"--data file not found: {re.escape(str(path))}"):
        load_data(path)


def test_unknown_suffix(tmp_path):
    path = tmp_path / "data.xlsx"
    path.write_bytes(b"x")
    with pytest.raises(DataError, match=r"unknown type '\.xlsx'.*\.npz, \.csv, \.h5, \.hdf5, \.pt"):
        load_data(path)
    with pytest.raises(DataError, match=r"cannot save data\.pt: unknown type"):
        save_data(tmp_path / "data.pt", np.ones((2, 2)))


@pytest.mark.parametrize("suffix", [".npz", ".h5", ".pt"])
def test_corrupted_file(tmp_path, suffix):
    path = tmp_path / f"bad{suffix}"
    path.write_bytes(b"\x00garbage, not a data file\xff" * 20)
    with pytest.raises(DataError, match=f"could not read .*bad\\{suffix}: .+"):
        load_data(path)


def test_truncated_npz(tmp_path):
    path = tmp_path / "t.npz"
    save_data(path, *_xy(n=100))
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DataError, match="could not read"):
        load_data(path)


def test_missing_array_lists_available_keys(tmp_path):
    X, Y = _xy()
    save_data(tmp_path / "train.npz", X, Y)
    msg = r"train.npz has no array 'Z' \(arrays there: X, Y\); name it with --x/--y"
    with pytest.raises(DataError, match=msg):
        load_data(tmp_path / "train.npz", y_key="Z")
    save_data(tmp_path / "train.h5", X, Y)
    with pytest.raises(
        DataError, match=r"train.h5 has no dataset 'inputs' \(datasets there: X, Y\)"
    ):
        load_data(tmp_path / "train.h5", x_key="inputs")
    save_data(tmp_path / "train.csv", X, Y)
    with pytest.raises(DataError, match=r"has no column 'q' \(columns there: X0, X1, X2, Y0, Y1\)"):
        load_data(tmp_path / "train.csv", x_key="X0,q")
    torch.save({"inp": torch.ones(2, 2)}, tmp_path / "train.pt")
    with pytest.raises(DataError, match=r"train.pt has no array 'X' \(arrays there: inp\)"):
        load_data(tmp_path / "train.pt")


def test_csv_bad_content(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,Y\n1,2\n3,oops\n")
    with pytest.raises(DataError, match="could not parse numbers.*oops"):
        load_data(path)
    path.write_text("a,Y\n1,2\n3\n")
    with pytest.raises(DataError, match="line 3 has 1 fields, header has 2"):
        load_data(path)
    path.write_text("")
    with pytest.raises(DataError, match="is empty"):
        load_data(path)
    path.write_text("a,Y\n1,2\nnan,3\n")
    with pytest.raises(DataError, match=re.escape("X has NaN/inf values in 1 row: [1]")):
        load_data(path)


def test_pt_with_custom_class_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"X": NotATensor(), "Y": torch.ones(2, 1)}, path)
    NotATensor.unpickled = False
    with pytest.raises(DataError, match=r"could not read .*evil.pt: .*weights_only=True.*Unpickl"):
        load_data(path)
    assert not NotATensor.unpickled


def test_pt_must_hold_a_dict(tmp_path):
    path = tmp_path / "list.pt"
    torch.save([torch.ones(2, 2)], path)
    with pytest.raises(DataError, match="list.pt must hold a dict of tensors, got list"):
        load_data(path)


def test_npz_with_object_array_not_unpickled(tmp_path):
    path = tmp_path / "obj.npz"
    np.savez(path, X=np.array([{"a": 1}], dtype=object), Y=np.ones(1))
    with pytest.raises(DataError, match="could not read"):
        load_data(path)


# ---------------------------------------------------------------- atomic writes


def test_atomic_write_leaves_no_temp_files(tmp_path):
    X, Y = _xy()
    for suffix in (".npz", ".h5", ".csv"):
        save_data(tmp_path / f"a{suffix}", X, Y)
        save_data(tmp_path / f"a{suffix}", X + 1, Y)  # overwrite in place
    assert sorted(os.listdir(tmp_path)) == ["a.csv", "a.h5", "a.npz"]
    np.testing.assert_array_equal(load_data(tmp_path / "a.npz")[0], X + 1)


def test_failed_write_leaves_target_and_no_partial_file(tmp_path, monkeypatch):
    X, Y = _xy()
    path = tmp_path / "keep.npz"
    save_data(path, X, Y)

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(OSError, match="disk full"):
        save_data(path, X + 1, Y)
    assert os.listdir(tmp_path) == ["keep.npz"]
    np.testing.assert_array_equal(load_data(path)[0], X)


def test_save_creates_parent_and_validates(tmp_path):
    X, Y = _xy()
    save_data(tmp_path / "a" / "b" / "c.h5", X, Y)
    with h5py.File(tmp_path / "a" / "b" / "c.h5", "r") as f:
        assert set(f) == {"X", "Y"}
    with pytest.raises(DataError, match="csv takes .* 'X' has shape"):
        save_data(tmp_path / "f.csv", np.ones((2, 3, 4)))
    with pytest.raises(DataError, match="clash"):
        save_data(tmp_path / "c.npz", X, Y, x_key="a", a=X)
    assert not (tmp_path / "f.csv").exists() and not (tmp_path / "c.npz").exists()

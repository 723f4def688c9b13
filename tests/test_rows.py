"""Tests for choral.rows (lazy HDF5 rows), Standardiser.fit_blocks and the lazy/block I/O of
choral.data."""

from copy import deepcopy

import h5py
import numpy as np
import pytest
import torch

from choral.data import load_data, save_blocks, save_data
from choral.errors import DataError
from choral.normalise import Standardiser
from choral.rows import H5Rows, block_rows


def _h5(tmp_path, name="d.h5", chunks=True, **arrays):
    path = tmp_path / name
    with h5py.File(path, "w") as f:
        for k, v in arrays.items():
            f.create_dataset(k, data=v, chunks=chunks if np.ndim(v) else None)
    return path


@pytest.fixture
def field(tmp_path):
    """A field data set (40, 1, 3, 2) in an HDF5 file, chunked one row a chunk."""
    a = np.random.default_rng(0).normal(size=(40, 1, 3, 2))
    return _h5(tmp_path, chunks=(1, 1, 3, 2), X=a), a


# ---------------------------------------------------------------- reading


@pytest.mark.parametrize("shape", [(4, 8), (3, 25), (2, 2, 2), (40,)])
def test_read_equals_numpy_fancy_indexing(field, shape):
    path, a = field
    rows = H5Rows(path, "X")
    idx = np.random.default_rng(1).integers(0, 40, size=shape)  # repeats and any order
    out = rows.read(idx)
    assert out.dtype == np.float64 and out.shape == (*shape, 1, 3, 2)
    np.testing.assert_array_equal(out, a[idx])


@pytest.mark.parametrize("idx", [np.arange(5, 17), np.array([3, 1, 2, 2]), np.array([0, 39]),
                                 np.array([7]), np.array([], dtype=np.int64)])
def test_read_contiguous_sparse_and_empty(field, idx):
    path, a = field
    np.testing.assert_array_equal(H5Rows(path, "X").read(idx), a[idx])


def test_read_takes_torch_and_lists(field):
    path, a = field
    rows = H5Rows(path, "X")
    np.testing.assert_array_equal(rows.read(torch.tensor([[2, 9], [9, 0]])), a[[[2, 9], [9, 0]]])
    np.testing.assert_array_equal(rows.read([4, 4]), a[[4, 4]])


def test_shape_len_ndim_and_channel_axis(tmp_path):
    g = np.random.default_rng(2).normal(size=(6, 4, 5))
    y = np.arange(6.0)
    path = _h5(tmp_path, G=g, y=y)
    rows = H5Rows(path, "G", add_channel_axis=True)
    assert rows.shape == (6, 1, 4, 5) and rows.ndim == 4 and len(rows) == 6
    np.testing.assert_array_equal(rows.read(np.array([[5, 0]])), g[[[5, 0]]][:, :, None])
    y_rows = H5Rows(path, "y", add_channel_axis=True)
    assert y_rows.shape == (6, 1)
    np.testing.assert_array_equal(y_rows.read_slice(1, 4), y[1:4, None])
    assert H5Rows(path, "y").shape == (6,)


def test_integer_datasets_read_as_float64(tmp_path):
    path = _h5(tmp_path, X=np.arange(12, dtype=np.int32).reshape(6, 2))
    out = H5Rows(path, "X").read(np.array([1, 0]))
    assert out.dtype == np.float64 and out.tolist() == [[2.0, 3.0], [0.0, 1.0]]


def test_subset_composes_with_index(field):
    path, a = field
    rng = np.random.default_rng(3)
    outer = rng.permutation(40)[:25]
    inner = rng.permutation(25)[:10]
    rows = H5Rows(path, "X", index=outer)
    view = rows.subset(inner).subset(torch.tensor([9, 0, 3]))
    assert len(rows) == 25 and view.shape == (3, 1, 3, 2)
    np.testing.assert_array_equal(view.index, outer[inner][[9, 0, 3]])
    np.testing.assert_array_equal(view.read(np.array([[2, 2], [0, 1]])),
                                  a[outer[inner][[9, 0, 3]]][[[2, 2], [0, 1]]])
    np.testing.assert_array_equal(rows.subset(inner).read_slice(2, 7), a[outer[inner][2:7]])
    assert len(H5Rows(path, "X").subset(np.arange(0))) == 0


def test_read_slice_with_and_without_index(field):
    path, a = field
    np.testing.assert_array_equal(H5Rows(path, "X").read_slice(3, 11), a[3:11])
    index = np.arange(39, -1, -2)
    np.testing.assert_array_equal(H5Rows(path, "X", index=index).read_slice(4, 9), a[index[4:9]])
    assert H5Rows(path, "X").read_slice(5, 5).shape == (0, 1, 3, 2)


@pytest.mark.parametrize("size", [1, 7, 40, 100])
def test_blocks_cover_every_row_once_in_order(field, size):
    path, a = field
    index = np.random.default_rng(4).permutation(40)[:33]
    for rows, want in ((H5Rows(path, "X"), a), (H5Rows(path, "X", index=index), a[index])):
        blocks = list(rows.blocks(size))
        assert [s for s, _ in blocks] == list(range(0, len(want), size))
        assert all(len(b) <= size for _, b in blocks)
        np.testing.assert_array_equal(np.concatenate([b for _, b in blocks]), want)


def test_block_rows():
    assert block_rows((1, 32, 32)) == 8192
    assert block_rows((5,), budget_bytes=8 * 5 * 3 + 7) == 3
    assert block_rows((10**6,), budget_bytes=10) == 1
    with pytest.raises(DataError, match="budget_bytes must be an integer >= 1"):
        block_rows((2,), budget_bytes=0)


# ---------------------------------------------------------------- pickling and files


def test_state_round_trip_reopens_the_file(field):
    path, a = field
    rows = H5Rows(path, "X", index=np.array([5, 1, 7]), add_channel_axis=False)
    rows.read(np.array([0]))  # the file is open now
    state = rows.__getstate__()
    assert set(state) == {"path", "key", "index", "add_channel_axis"}
    copy = deepcopy(rows)  # through __getstate__/__setstate__, as a pickle to a worker goes
    assert copy._file is None  # opened lazily, on first use
    np.testing.assert_array_equal(copy.read(np.array([[2, 0]])), a[[[7, 5]]])
    copy.close()
    copy.close()  # closing twice is harmless; reading again reopens
    np.testing.assert_array_equal(copy.read_slice(0, 3), a[[5, 1, 7]])
    rows.close()


def test_path_is_absolute_so_copies_survive_a_change_of_directory(field, monkeypatch):
    path, a = field
    monkeypatch.chdir(path.parent)
    rows = H5Rows(path.name, "X")
    monkeypatch.chdir("/")
    np.testing.assert_array_equal(deepcopy(rows).read_slice(0, 2), a[:2])


def test_index_is_read_only(field):
    rows = H5Rows(field[0], "X", index=np.array([1, 2]))
    with pytest.raises(ValueError):
        rows.index[0] = 5


# ---------------------------------------------------------------- errors


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"path must be an existing HDF5 file; got .*nope.h5"):
        H5Rows(tmp_path / "nope.h5", "X")


def test_not_hdf5(tmp_path):
    (tmp_path / "bad.h5").write_text("not hdf5")
    with pytest.raises(DataError, match="could not be read as HDF5"):
        H5Rows(tmp_path / "bad.h5", "X")


def test_missing_key_lists_datasets(tmp_path):
    path = _h5(tmp_path, A=np.zeros((2, 2)), B=np.zeros((2, 1)))
    with pytest.raises(DataError, match=r"key 'X' must name a dataset in d.h5; datasets "
                                        r"there: A, B"):
        H5Rows(path, "X")


@pytest.mark.parametrize("value", [np.array([b"ab", b"cd"]), np.float64(1.0)])
def test_non_numeric_or_scalar_dataset(tmp_path, value):
    with pytest.raises(DataError, match=r"dataset 'S' in d.h5 must hold numbers in rows"):
        H5Rows(_h5(tmp_path, S=value), "S")


def test_index_errors_name_the_argument(field):
    path = field[0]
    with pytest.raises(DataError, match=r"index must hold row numbers in \[0, 40\); got \[40"):
        H5Rows(path, "X", index=np.array([0, 40]))
    with pytest.raises(DataError, match="index must be a 1-D array of integer row numbers"):
        H5Rows(path, "X", index=np.array([[0]]))
    with pytest.raises(DataError, match="index must be a 1-D array of integer row numbers; "
                                        "got dtype float64"):
        H5Rows(path, "X", index=np.array([0.5]))
    rows = H5Rows(path, "X", index=np.arange(10))
    with pytest.raises(DataError, match=r"idx must hold row numbers in \[0, 10\); got \[-1\]"):
        rows.read(np.array([[0, -1]]))
    with pytest.raises(DataError, match=r"idx must hold row numbers in \[0, 10\); got \[10\]"):
        rows.subset(np.array([10]))
    with pytest.raises(DataError, match=r"0 <= start <= stop <= 10; got start=3, stop=11"):
        rows.read_slice(3, 11)
    with pytest.raises(DataError, match="rows must be an integer >= 1; got rows=0"):
        rows.blocks(0)


# ---------------------------------------------------------------- Standardiser.fit_blocks


def _uneven_blocks(a, sizes):
    cuts = np.cumsum(sizes)[:-1]
    return np.split(a, cuts)


def _assert_same(a, blocks):
    want, got = Standardiser.fit(a), Standardiser.fit_blocks(iter(blocks))
    np.testing.assert_allclose(got.mean, want.mean, rtol=1e-12, atol=0)
    np.testing.assert_allclose(got.scale, want.scale, rtol=1e-12, atol=0)


@pytest.mark.parametrize("shape", [(103, 4), (57, 2, 5, 3), (31, 1, 7)])
def test_fit_blocks_equals_fit_on_uneven_blocks(shape):
    a = np.random.default_rng(5).normal(2.0, 3.0, size=shape)
    _assert_same(a, _uneven_blocks(a, [1, 17, 2, 5, shape[0] - 25]))
    _assert_same(a, [a])
    _assert_same(a, np.split(a, shape[0]))  # one row a block: a deep merge tree


def test_fit_blocks_constant_feature_gets_scale_one():
    a = np.random.default_rng(6).normal(size=(50, 3, 4))
    a[:, 1] = 0.1  # not exactly representable: fit's std is tiny but not zero
    s = Standardiser.fit_blocks(_uneven_blocks(a, [9, 30, 11]))
    assert s.scale[1] == 1.0 == Standardiser.fit(a).scale[1]
    _assert_same(a, _uneven_blocks(a, [9, 30, 11]))


def test_fit_blocks_large_offset_keeps_precision():
    rng = np.random.default_rng(7)
    a = 1e6 + rng.normal(0.0, 1e-2, size=(4000, 3))
    for sizes in ([1000, 1, 2500, 499], [1] * 4000):
        _assert_same(a, _uneven_blocks(a, sizes))
    naive = np.sqrt(np.mean(a**2, axis=0) - np.mean(a, axis=0) ** 2)  # sum of squares
    assert not np.allclose(naive, a.std(axis=0), rtol=1e-3)  # the naive one is off


def test_fit_blocks_exact_where_fit_loses_digits():
    a = 1e8 + np.random.default_rng(8).normal(0.0, 1e-3, size=(4000, 2))
    exact = (a - 1e8).std(axis=0)  # the subtraction is exact (Sterbenz)
    got = Standardiser.fit_blocks(_uneven_blocks(a, [1000, 1, 2999])).scale
    np.testing.assert_allclose(got, exact, rtol=1e-12, atol=0)


def test_fit_blocks_from_h5rows_blocks(field):
    path, a = field
    rows = H5Rows(path, "X")
    s = Standardiser.fit_blocks(b for _, b in rows.blocks(7))
    np.testing.assert_allclose(s.mean, Standardiser.fit(a).mean, rtol=1e-12)
    np.testing.assert_allclose(s.scale, Standardiser.fit(a).scale, rtol=1e-12)


def test_fit_blocks_names_nonfinite_rows_across_blocks():
    a = np.zeros((30, 2, 2))
    a[[3, 17, 18], 1, 0] = [np.nan, np.inf, -np.inf]
    with pytest.raises(DataError, match=r"^Y has NaN/inf values in 3 rows: \[3, 17, 18\]$"):
        Standardiser.fit_blocks(_uneven_blocks(a, [10, 5, 15]), name="Y")
    a = np.full((25, 1), np.nan)
    with pytest.raises(DataError, match=r"in 25 rows: \[0, 1, .*9\] \(first 10 shown\)"):
        Standardiser.fit_blocks(_uneven_blocks(a, [3, 22]))


def test_fit_blocks_rejects_empty_and_mismatched_blocks():
    with pytest.raises(DataError, match="X is empty"):
        Standardiser.fit_blocks([])
    with pytest.raises(DataError, match="X is empty"):
        Standardiser.fit_blocks([np.zeros((0, 3))])
    with pytest.raises(DataError, match=r"X blocks must have shape \(b, \*\(3,\)\); got shape "
                                        r"\(2, 4\)"):
        Standardiser.fit_blocks([np.zeros((2, 3)), np.zeros((2, 4))])
    with pytest.raises(DataError, match="X blocks must have shape"):
        Standardiser.fit_blocks([np.zeros(3)])


# ---------------------------------------------------------------- load_data(lazy) and save_blocks


@pytest.mark.parametrize("suffix", [".h5", ".hdf5"])
def test_lazy_load_round_trip_with_save_data(tmp_path, suffix):
    rng = np.random.default_rng(8)
    X, Y = rng.normal(size=(12, 1, 4, 4)), rng.normal(size=(12, 1, 4, 4))
    path = tmp_path / f"d{suffix}"
    save_data(path, X, Y)
    x, y = load_data(path, lazy=True)
    assert isinstance(x, H5Rows) and isinstance(y, H5Rows) and x.shape == X.shape
    np.testing.assert_array_equal(x.read_slice(0, 12), X)
    np.testing.assert_array_equal(y.read(np.array([[11, 0]])), Y[[[11, 0]]])


def test_lazy_load_vector_y_gets_a_column_and_missing_y(tmp_path):
    path = _h5(tmp_path, X=np.ones((5, 2)), y=np.arange(5.0))
    x, y = load_data(path, y_key="y", lazy=True)
    assert y.shape == (5, 1) and y.read_slice(0, 5).ravel().tolist() == [0, 1, 2, 3, 4]
    x, y = load_data(path, y_key="Y", require_y=False, lazy=True)
    assert y is None and x.shape == (5, 2)


def test_lazy_load_errors(tmp_path):
    path = _h5(tmp_path, X=np.ones((5, 2)), Y=np.ones((4, 1)), v=np.ones(5), S=np.array([b"a"]))
    with pytest.raises(DataError, match="X has 5 rows but Y has 4"):
        load_data(path, lazy=True)
    with pytest.raises(DataError, match=r"d.h5 has no dataset 'Z' \(datasets there: "):
        load_data(path, y_key="Z", lazy=True)
    with pytest.raises(DataError, match=r"v must be 2-D \(n, d\) or a field"):
        load_data(path, x_key="v", require_y=False, lazy=True)
    with pytest.raises(DataError, match="dataset 'S' in d.h5 must hold numbers"):
        load_data(path, y_key="S", lazy=True)


def test_lazy_ignored_for_other_formats(tmp_path):
    X, Y = np.ones((3, 2)), np.zeros((3, 1))
    save_data(tmp_path / "d.npz", X, Y)
    x, y = load_data(tmp_path / "d.npz", lazy=True)
    assert isinstance(x, np.ndarray) and isinstance(y, np.ndarray)


def test_save_blocks_round_trip(tmp_path):
    rng = np.random.default_rng(9)
    X, Y = rng.normal(size=(23, 1, 5, 5)), rng.normal(size=(23, 2))
    sizes = [4, 10, 1, 8]
    parts = zip(_uneven_blocks(X, sizes), _uneven_blocks(Y, sizes), strict=True)
    path = tmp_path / "out.h5"
    save_blocks(path, {"X": X.shape, "Y": Y.shape}, ({"X": x, "Y": y} for x, y in parts),
                chunk_rows=1)
    with h5py.File(path) as f:
        assert f["X"].chunks == (1, 1, 5, 5) and f["Y"].chunks == (1, 2)
    x, y = load_data(path, lazy=True)
    np.testing.assert_array_equal(x.read_slice(0, 23), X)
    np.testing.assert_array_equal(y.read_slice(0, 23), Y)
    save_blocks(tmp_path / "vec.h5", {"Y": (5000, 3)}, [{"Y": np.zeros((5000, 3))}])
    with h5py.File(tmp_path / "vec.h5") as f:  # default: rows making 16 KiB
        assert f["Y"].chunks == (682, 3)


def test_save_blocks_is_atomic_and_checks_blocks(tmp_path):
    path = tmp_path / "out.h5"
    save_data(path, np.ones((2, 2)))  # an old file that a failed write must leave alone
    shapes = {"X": (4, 2), "Y": (4,)}
    bad = [
        ([{"X": np.ones((4, 2))}], r"each block must map exactly \['X', 'Y'\]"),
        ([{"X": np.ones((2, 2)), "Y": np.ones(3)}], r"'Y' must have shape \(b, \*\(\)\)"),
        ([{"X": np.ones((4, 3)), "Y": np.ones(4)}], r"'X' must have shape \(b, \*\(2,\)\)"),
        ([{"X": np.ones((3, 2)), "Y": np.ones(3)}] * 2, "<= 1 rows left; got shape"),
        ([{"X": np.ones((3, 2)), "Y": np.ones(3)}], "blocks gave 3 rows; shapes say n = 4"),
    ]
    for blocks, message in bad:
        with pytest.raises(DataError, match=message):
            save_blocks(path, shapes, blocks)
    assert load_data(path, require_y=False)[0].shape == (2, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.h5"]  # no temporary left
    with pytest.raises(DataError, match="one n >= 1"):
        save_blocks(path, {"X": (4, 2), "Y": (3,)}, [])
    with pytest.raises(DataError, match="cannot save blocks to out.npz"):
        save_blocks(tmp_path / "out.npz", shapes, [])
    with pytest.raises(DataError, match="chunk_rows must be an integer >= 1"):
        save_blocks(path, shapes, [], chunk_rows=0)

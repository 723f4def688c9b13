"""ChoralRegressor as a scikit-learn estimator: sklearn's own checks, params, std, pipelines."""

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import check_regressors_train, parametrize_with_checks

from choral.integrations.sklearn import ChoralRegressor

FAST = {"members": 2, "epochs": 3, "hidden": (8,), "patience": 2}

EXPECTED_FAILED_CHECKS = {
    # Asserts R^2 > 0.5 on sklearn's 200 x 10 regression data after fit. Three epochs of a
    # neural ensemble cannot get there (R^2 ~ 0.1), and a longer budget would make every other
    # check slow; test_regressors_train_check_passes_with_a_real_budget runs this very check
    # with enough epochs, so only the score assertion under the tiny budget is excused here.
    "check_regressors_train": "3 training epochs cannot reach R^2 > 0.5",
}


@parametrize_with_checks([ChoralRegressor(**FAST)],
                         expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_regressors_train_check_passes_with_a_real_budget():
    check_regressors_train("ChoralRegressor",
                           ChoralRegressor(members=2, epochs=60, hidden=(16,), patience=20))


def _data(n=60, d=3, m=None, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, (n, d))
    y = np.sin(2 * X[:, 0]) + X[:, 1] ** 2
    if m is not None:
        y = np.column_stack([y + k for k in range(m)])
    return X, y


def test_multi_output_tag_and_single_output_support():
    tags = ChoralRegressor().__sklearn_tags__()
    assert tags.target_tags.multi_output and tags.target_tags.single_output


def test_clone_keeps_params_and_drops_the_fit():
    reg = ChoralRegressor(members=3, hidden=(4, 4), activation="tanh", lr=1e-2, seed=5)
    reg.fit(*_data())
    copy = clone(reg)
    assert copy is not reg and copy.get_params() == reg.get_params()
    assert not hasattr(copy, "surrogate_") and hasattr(reg, "surrogate_")


def test_get_params_set_params_round_trip():
    params = ChoralRegressor(members=4, hidden=(16,), epochs=7, batch_size=32,
                             weight_decay=0.0, val_fraction=0.2, backend="loop").get_params()
    assert params["hidden"] == (16,) and params["backend"] == "loop"
    reg = ChoralRegressor()
    assert reg.set_params(**params) is reg
    assert reg.get_params() == params
    assert set(params) == {"members", "hidden", "activation", "epochs", "batch_size", "lr",
                           "weight_decay", "val_fraction", "patience", "seed", "backend"}
    with pytest.raises(ValueError, match="nonsense"):
        reg.set_params(nonsense=1)


@pytest.mark.parametrize("m", [None, 1, 2])
def test_predict_return_std_shapes(m):
    X, y = _data(m=m)
    reg = ChoralRegressor(**FAST).fit(X, y)
    mean, std = reg.predict(X[:7], return_std=True)
    shape = (7,) if m is None else (7, m)
    assert mean.shape == shape and std.shape == shape
    assert np.isfinite(mean).all() and (std > 0).all()
    np.testing.assert_array_equal(reg.predict(X[:7]), mean)
    mixture = reg.predictive(X[:7])  # the full mixture agrees with predict
    np.testing.assert_allclose(mixture.mean.numpy().reshape(shape), mean)


def test_inside_a_pipeline():
    X, y = _data()
    X = X * [1.0, 100.0, 1e-3] + [0.0, 50.0, 0.0]
    pipe = make_pipeline(StandardScaler(), ChoralRegressor(**FAST)).fit(X, y)
    assert pipe.predict(X).shape == (60,)
    mean, std = pipe.predict(X, return_std=True)  # passed through to the last step
    assert mean.shape == std.shape == (60,) and (std > 0).all()
    assert np.isfinite(pipe.score(X, y))
    assert clone(pipe).get_params()["choralregressor__members"] == 2


def test_same_seed_same_predictions_different_seed_different():
    X, y = _data()
    a = ChoralRegressor(**FAST, seed=0).fit(X, y).predict(X)
    b = ChoralRegressor(**FAST, seed=0).fit(X, y).predict(X)
    c = ChoralRegressor(**FAST, seed=1).fit(X, y).predict(X)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_bad_hyperparameter_is_a_value_error_naming_it():
    with pytest.raises(ValueError, match="members"):
        ChoralRegressor(members=0, epochs=1).fit(*_data())

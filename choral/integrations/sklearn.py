"""A scikit-learn regressor around :class:`~choral.surrogate.Surrogate`.

Needs the optional ``scikit-learn`` dependency. ``predict`` returns the mixture mean, and
``predict(X, return_std=True)`` also its standard deviation, like sklearn's Gaussian process.

Examples:
    >>> import numpy as np
    >>> X = np.linspace(0, 1, 40)[:, None]; y = np.sin(3 * X[:, 0])
    >>> reg = ChoralRegressor(members=2, epochs=3).fit(X, y)
    >>> mean, std = reg.predict(X[:5], return_std=True)
    >>> mean.shape, std.shape
    ((5,), (5,))
"""

from __future__ import annotations

from typing import Any

from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from choral.config import Config, TrainConfig
from choral.surrogate import Surrogate

_T = TrainConfig()  # the defaults below are choral's own


class ChoralRegressor(RegressorMixin, BaseEstimator):
    """Deep-ensemble regressor with a mixture predictive; parameters mirror ``Config``."""

    def __init__(self, members: int = _T.members, hidden: tuple[int, ...] = (64, 64),
                 activation: str = "relu", epochs: int = _T.epochs,
                 batch_size: int = _T.batch_size, lr: float = _T.lr,
                 weight_decay: float = _T.weight_decay, val_fraction: float = _T.val_fraction,
                 patience: int = _T.patience, seed: int = 0, backend: str = "auto") -> None:
        self.members = members
        self.hidden = hidden
        self.activation = activation
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.val_fraction = val_fraction
        self.patience = patience
        self.seed = seed
        self.backend = backend

    def _config(self) -> Config:
        train = {k: getattr(self, k) for k in ("members", "epochs", "batch_size", "lr",
                                               "weight_decay", "val_fraction", "patience",
                                               "seed", "backend")}
        model = {"hidden": list(self.hidden), "activation": self.activation}
        return Config.from_dict({"model": model, "train": train})

    def fit(self, X: Any, y: Any) -> ChoralRegressor:
        """Fit on ``X`` (n, d) and ``y`` (n,) or (n, m)."""
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True)
        self._single = y.ndim == 1
        self.surrogate_ = Surrogate(self._config()).fit(X, y)
        return self

    def predict(self, X: Any, return_std: bool = False):
        """Mixture mean (n,) or (n, m); with ``return_std`` also the predictive std."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False)
        pred = self.surrogate_.predict(X)
        mean, std = pred.mean.cpu().numpy(), pred.stddev.cpu().numpy()
        if self._single:
            mean, std = mean[:, 0], std[:, 0]
        return (mean, std) if return_std else mean

    def predictive(self, X: Any):
        """The full :class:`~choral.distributions.GaussianMixture` at ``X``."""
        check_is_fitted(self)
        return self.surrogate_.predict(validate_data(self, X, reset=False))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True  # y may be (n,) or (n, m); single output works too
        tags.non_deterministic = False
        return tags

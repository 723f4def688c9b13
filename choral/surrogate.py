"""The surrogate: a deep ensemble of Gaussian members behind ``fit`` / ``predict`` / ``save``.

Examples:
    >>> import numpy as np
    >>> from choral.config import Config
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(-1, 1, (64, 2)); Y = X[:, :1] ** 2
    >>> cfg = Config().updated(**{"train.members": 3, "train.epochs": 5})
    >>> pred = Surrogate(cfg).fit(X, Y).predict(X[:4])
    >>> tuple(pred.mean.shape), tuple(pred.member_means.shape)
    ((4, 1), (3, 4, 1))
"""

from __future__ import annotations

import copy
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from choral.backbones import build_backbone
from choral.calibration import calibrator_from_dict, fit_calibrator
from choral.config import Config
from choral.data import check_arrays
from choral.errors import DataError, ModelFileError
from choral.heads import make_head
from choral.members import choose_backend, init_members, member_forward, predict_members
from choral.normalise import Standardiser
from choral.ood import OODDetector, pooled_features
from choral.predictive import Predictive
from choral.storage import read_extras, read_model_dir, write_model_dir
from choral.training import EpochCallback, History, train_members
from choral.weightspace import TrainContext, train_weightspace

FORMAT = {"format": "choral-surrogate", "version": 1}


def member_seeds(seed: int, s: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Independent (initialisation seeds (s,), mini-batch seeds (s,), split seed) from ``seed``."""
    init, batch, split = np.random.SeedSequence(seed).spawn(3)
    return init.generate_state(s), batch.generate_state(s), int(split.generate_state(1)[0])


class Surrogate:
    """A vectorised deep ensemble whose predictive is the mixture of its Gaussian members."""

    def __init__(self, config: Config | None = None) -> None:
        self.config = config or Config()
        self.params: dict[str, Tensor] | None = None
        self.metrics: dict[str, Any] = {}
        self.extras: dict[str, dict[str, Any]] = {}
        """Optional model files by name (``calibration.json``, ...), saved and loaded as is."""

    # -- training ------------------------------------------------------------------------------
    def fit(self, X: Any, Y: Any, on_epoch: EpochCallback | None = None) -> Surrogate:
        """Train on vectors ``X`` (n, d), ``Y`` (n, m) (or (n,)) with the MLP backbone, or on
        fields ``X`` (n, c_in, *grid), ``Y`` (n, c_out, *grid) with the U-Net; returns ``self``."""
        X, Y = check_arrays(X, Y)
        cfg = self.config
        self.x_norm, self.y_norm = Standardiser.fit(X), Standardiser.fit(Y)
        self.x_shape, self.y_shape = X.shape[1:], Y.shape[1:]
        dtype = getattr(torch, cfg.train.dtype)
        Z = self.x_norm.transform(X)
        Xs = torch.as_tensor(Z, dtype=dtype)
        Ys = torch.as_tensor(self.y_norm.transform(Y), dtype=dtype)
        init_seeds, batch_seeds, split_seed = member_seeds(cfg.train.seed, cfg.train.members)
        train_idx, val_idx = _split(len(Xs), cfg.train.val_fraction, split_seed)
        val = (Xs[val_idx], Ys[val_idx]) if len(val_idx) else (None, None)
        self._build(init_seeds, dtype, probe=Xs[:2])
        start = time.perf_counter()
        self.params, history = self._train(Xs[train_idx], Ys[train_idx], *val, batch_seeds,
                                           on_epoch)
        self.metrics = {"train_seconds": time.perf_counter() - start, "n_train": len(train_idx),
                        "n_val": len(val_idx), "backend": self.backend, **vars(history)}
        self.extras.pop("calibration.json", None)  # fitted to the previous networks
        self._fit_ood(X, Z, train_idx.numpy(), val_idx.numpy())
        return self

    def _fit_ood(self, X: np.ndarray, Z: np.ndarray, train_idx: np.ndarray,
                 val_idx: np.ndarray) -> None:
        """Fit the OOD detector (``ood.json``) from inputs ``X`` and their standardised ``Z``:
        density of the training inputs, threshold on the validation inputs (on the training
        inputs when there is no validation split)."""
        val_idx = val_idx if len(val_idx) else train_idx
        features = pooled_features(Z)
        detector = OODDetector.fit(features[train_idx], features[val_idx],
                                   self._epistemic(X[val_idx]), seed=self.config.train.seed)
        self.extras["ood.json"] = detector.to_dict()

    def _epistemic(self, X: np.ndarray, pred: Predictive | None = None) -> np.ndarray:
        """Mean epistemic variance per sample (n,), in standardised target units."""
        pred = self.predict(X, calibrated=False) if pred is None else pred
        _, scale = self.y_norm.loc_scale(pred.epistemic.ndim)
        return (pred.epistemic / torch.as_tensor(scale) ** 2).flatten(1).mean(1).numpy()

    def calibrate(self, X: Any, Y: Any, method: str = "conformal", *,
                  pred: Predictive | None = None, **options: Any) -> Surrogate:
        """Fit a post-hoc calibration (``scale``, ``isotonic`` or ``conformal``; see
        :mod:`choral.calibration`) on held-out ``X``, ``Y``; stored as ``calibration.json`` and
        applied by :meth:`predict` from then on. ``pred``, the uncalibrated predictive at ``X``,
        saves a second prediction when given. Returns ``self``."""
        X, Y = check_arrays(X, Y)
        pred = self.predict(X, calibrated=False) if pred is None else pred
        self.extras["calibration.json"] = fit_calibrator(method, pred, Y, **options).to_dict()
        return self

    def ood(self, X: Any, pred: Predictive | None = None) -> tuple[np.ndarray, np.ndarray]:
        """OOD scores (n,) and flags (n,) of inputs ``X`` (see :mod:`choral.ood`); ``pred``, the
        uncalibrated predictive at ``X``, saves a second prediction when given."""
        if "ood.json" not in self.extras:
            raise ModelFileError("this model has no ood.json (saved before OOD detection "
                                 "existed): refit it")
        X, _ = check_arrays(X)
        try:
            detector = OODDetector.from_dict(self.extras["ood.json"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFileError(f"ood.json is corrupted ({type(exc).__name__}: {exc})") from None
        return detector(pooled_features(self.x_norm.transform(X)), self._epistemic(X, pred))

    def _build(self, init_seeds: np.ndarray, dtype: torch.dtype, probe: Tensor | None) -> None:
        self.head = make_head(self.config.model)

        def make() -> torch.nn.Module:
            return build_backbone(self.config.model, self.x_shape, self.y_shape,
                                  self.head.channels)

        self.template, self._init_params = init_members(make, init_seeds, dtype)
        self.backend = choose_backend(self.template, self.config.train.backend, probe)
        self._forward = member_forward(self.template, self.backend)

    def _train(self, X, Y, X_val, Y_val, batch_seeds, on_epoch):
        method = self.config.train.ensemble
        if self.backend != "loop" or method != "deep":
            ctx = TrainContext(self._forward, self._init_params, X, Y, X_val, Y_val, self.config,
                               batch_seeds, self.head.loss, on_epoch, self.template)
            result = train_weightspace(method, ctx)
            self.extras.update(result.extras)
            return result.params, result.history
        args = (X, Y, X_val, Y_val, self.config.train)
        parts, history = [], History()
        for i in range(len(batch_seeds)):  # the fallback: one member after another
            sub = {k: v[i:i + 1] for k, v in self._init_params.items()}
            best, h = train_members(self._forward, sub, *args, batch_seeds[i:i + 1],
                                    self.head.loss, on_epoch)
            parts.append(best)
            history.epochs_run = max(history.epochs_run, h.epochs_run)
            for key in ("best_epoch", "best_val_nll", "train_nll"):
                getattr(history, key).extend(getattr(h, key))
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}, history

    # -- prediction ----------------------------------------------------------------------------
    def predict(self, X: Any, calibrated: bool = True) -> Predictive:
        """The mixture predictive at ``X`` (n, d) or (n, c_in, *grid), in original units.

        Its shape is (n, m) or (n, c_out, *grid); members (s, n, ...). With a stored calibration
        (:meth:`calibrate`) and ``calibrated=True`` it is the recalibrated predictive.
        """
        if self.params is None:
            raise DataError("this surrogate is not fitted yet: call fit(X, Y) or load(dir)")
        X, _ = check_arrays(X)
        if X.shape[1:] != self.x_shape:
            raise DataError(f"X must have {self.x_shape} features per sample, as in training; "
                            f"got shape {X.shape}")
        first = next(iter(self.params.values()))
        Xs = torch.as_tensor(self.x_norm.transform(X), dtype=first.dtype)
        chunk = max(1, 2**22 // (math.prod(self.x_shape) * first.shape[0]))  # rows x members
        out = predict_members(self._forward, self.params, Xs, chunk)
        loc, scale = self.y_norm.loc_scale(out.ndim - 1)
        pred = self.head.predictive(out).affine(torch.as_tensor(loc), torch.as_tensor(scale))
        return self.apply_calibration(pred) if calibrated else pred

    def apply_calibration(self, pred: Predictive) -> Predictive:
        """The uncalibrated predictive ``pred`` (``predict(X, calibrated=False)``) with the
        stored calibration applied; ``pred`` itself when the model has none."""
        if "calibration.json" not in self.extras:
            return pred
        return calibrator_from_dict(self.extras["calibration.json"]).apply(pred)

    def with_params(self, params: dict[str, Tensor]) -> Surrogate:
        """A copy evaluating the networks ``params`` (s, ...) with this surrogate's config, network
        and standardisers (e.g. fine-tuned weights judged in the original units); no extras."""
        other = copy.copy(self)
        other.params, other.metrics, other.extras = params, {}, {}
        return other

    # -- persistence ---------------------------------------------------------------------------
    def save(self, path: str | Path, metrics: dict[str, Any] | None = None) -> None:
        """Write the model directory atomically (see :mod:`choral.storage`)."""
        if self.params is None:
            raise DataError("cannot save a surrogate that is not fitted")
        config = {**FORMAT, "config": self.config.model_dump(), "backend": self.backend,
                  "x_shape": list(self.x_shape), "y_shape": list(self.y_shape)}
        normaliser = {"x": self.x_norm.to_dict(), "y": self.y_norm.to_dict()}
        write_model_dir(path, config, self.params, normaliser, {**self.metrics, **(metrics or {})},
                        self.extras)

    @classmethod
    def load(cls, path: str | Path) -> Surrogate:
        """Rebuild a saved surrogate; the weights are checked against the rebuilt network.

        The stored networks (their number need not be ``train.members``: weight-space methods
        store samples or a single averaged network) are evaluated as they are.
        """
        config, weights, normaliser, metrics = read_model_dir(path)
        try:
            if config.get("format") != FORMAT["format"]:
                raise KeyError("format")
            self = cls(Config.from_dict(config["config"]))
            self.x_shape, self.y_shape = tuple(config["x_shape"]), tuple(config["y_shape"])
            self.x_norm = Standardiser.from_dict(normaliser["x"])
            self.y_norm = Standardiser.from_dict(normaliser["y"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFileError(f"{Path(path) / 'config.json'} or normaliser.json is not a "
                                 f"choral model file (bad or missing {exc})") from None
        first = next(iter(weights.values()), None)
        s = self.config.train.members if first is None else first.shape[0]
        dtype = torch.float32 if first is None else first.dtype
        self._build(np.zeros(s, dtype=np.uint32), dtype, probe=None)
        self.backend = config.get("backend", self.backend)
        self._forward = member_forward(self.template, self.backend)
        expected = {k: tuple(v.shape) for k, v in self._init_params.items()}
        got = {k: tuple(v.shape) for k, v in weights.items()}
        if expected != got:
            raise ModelFileError(f"{Path(path) / 'weights.safetensors'} does not match the network "
                                 f"in config.json: expected {expected}, found {got}")
        self.params, self.metrics, self.extras = weights, metrics, read_extras(path)
        return self


def _split(n: int, fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """Shuffled train and validation indices, with at least one validation row when asked."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val = min(max(int(round(fraction * n)), 1 if fraction > 0 else 0), n - 1)
    return perm[n_val:], perm[:n_val]

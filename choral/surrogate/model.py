"""The surrogate: an ensemble of distribution members behind ``fit`` / ``predict`` / ``save``.

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
import hashlib
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from choral.checks import check_choice, check_int
from choral.config import CALIBRATIONS, CalibrationConfig, Config
from choral.data import check_arrays
from choral.devices import resolve_device
from choral.distributions import Predictive
from choral.ensembles import TrainContext
from choral.ensembles import fit as fit_ensemble
from choral.ensembles.checkpoint import Checkpoint, Resume
from choral.ensembles.merging.tall import select_regime
from choral.ensembles.training import EpochCallback, History, InputHook, train_members
from choral.errors import ConfigError, DataError, ModelFileError
from choral.evaluation.calibration import (
    Calibrator,
    calibrator_from_dict,
    cross_fit,
    fit_calibrator,
    scale_factor,
)
from choral.evaluation.ood import OODDetector, pooled_features
from choral.networks import build_member, make_head
from choral.networks.members import (
    choose_backend,
    init_members,
    member_forward,
    own_storage,
    predict_members,
)
from choral.normalise import Standardiser
from choral.storage import ModelFiles, read_model_dir, write_model_dir
from choral.surrogate.shards import run_shards
from choral.surrogate.streaming import (
    StandardisedRows,
    input_box,
    is_lazy,
    rows_of,
    statistics,
    take,
)
from choral.surrogate.streaming import features as streamed_features
from choral.surrogate.transfer import check_grid, resample_calibrator, warn_grid

__all__ = ["Surrogate", "member_seeds", "split_indices", "warm_members"]

InputsFactory = Callable[["Surrogate", Tensor, Tensor], InputHook]
"""``fit``'s ``inputs``: (the surrogate, standardised inputs (n, ...), training rows) -> hook."""

FORMAT = {"format": "choral-surrogate", "version": 1}
MIN_CALIBRATION = 10
"""Fewest held-out rows ``fit`` calibrates on (a finite conformal 90% interval needs 9)."""


def member_seeds(seed: int, s: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Independent (initialisation seeds (s,), mini-batch seeds (s,), split seed) from ``seed``."""
    init, batch, split = np.random.SeedSequence(seed).spawn(3)
    return init.generate_state(s), batch.generate_state(s), int(split.generate_state(1)[0])


def split_indices(n: int, fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """Shuffled train and validation indices, with at least one validation row when asked."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val = min(max(int(round(fraction * n)), 1 if fraction > 0 else 0), n - 1)
    return perm[n_val:], perm[:n_val]


class Surrogate:
    """A vectorised ensemble whose predictive is the mixture of its members' distributions.

    State after :meth:`fit` or :meth:`load`: ``params`` (stacked member weights (s, ...)),
    ``x_norm`` / ``y_norm`` (standardisers), ``ood_detector``, ``calibrator`` (fitted by
    :meth:`fit` on the rows it holds out, see :class:`~choral.config.CalibrationConfig`;
    replaced by :meth:`calibrate`), ``metrics``, ``records`` (what the ensemble method
    recorded, by name), ``head`` and ``forward``, the stacked member forward
    ``(params (s, ...), x (s, b, ...)) -> outputs (s, b, ...)``.
    """

    def __init__(self, config: Config | None = None) -> None:
        self.config = config or Config()
        self.params: dict[str, Tensor] | None = None
        self.metrics: dict[str, Any] = {}
        self.calibrator: Calibrator | None = None
        self.ood_detector: OODDetector | None = None
        self.records: dict[str, dict[str, Any]] = {}
        self.resumed = False
        """Whether the last :meth:`fit` resumed its training from a checkpoint."""

    # -- training ------------------------------------------------------------------------------
    def fit(self, X: Any, Y: Any, on_epoch: EpochCallback | None = None, *,
            checkpoint: str | Path | None = None, resume: Resume = "auto",
            warm_start: Surrogate | None = None,
            inputs: InputsFactory | None = None) -> Surrogate:
        """Train on vectors ``X`` (n, d), ``Y`` (n, m) (or (n,)) with the MLP backbone, or on
        fields ``X`` (n, c_in, *grid), ``Y`` (n, c_out, *grid) with the U-Net, then calibrate
        on the rows held out for it (``calibration``); returns ``self``.

        Rows: ``calibration.fraction`` held out first (networks never train or stop early on
        them), then ``train.val_fraction`` of the rest for early stopping, the rest to train.
        Training runs on ``train.device``. With a ``checkpoint`` file the training state is
        saved there (``train.checkpoint_epochs``, ``train.checkpoint_seconds``) and a
        checkpoint of the same configuration and data is resumed as ``resume`` says
        (:data:`~choral.ensembles.checkpoint.Resume`); the file is removed when fit ends.

        ``warm_start``, a fitted surrogate of the same network, makes training continue from
        its members (:func:`warm_members`) in its standardised units (its standardisers are
        kept, so its weights mean the same), instead of from a fresh initialisation.

        ``inputs(self, Xs, train_rows)``, given the standardised inputs ``Xs`` (n, ...) and the
        indices of the training rows in them, returns an
        :data:`~choral.ensembles.training.InputHook` that changes the training mini-batches
        (noise injection, pushforward: :mod:`choral.surrogate.pushforward`); in-memory data
        only, not with ``train.cluster = "ray"``.
        """
        cfg = self.config
        self.device = resolve_device(cfg.train.device)
        dtype = getattr(torch, cfg.train.dtype)
        X, Y, Xs, Ys = self._standardised(X, Y, dtype, warm_start)
        self.config = cfg = cfg.for_data(fields=len(self.x_shape) > 1)
        init_seeds, batch_seeds, split_seed = member_seeds(cfg.train.seed, cfg.train.members)
        rest, cal_idx = self._calibration_split(len(X), split_seed)
        train_idx, val_idx = (rest[i] for i in split_indices(len(rest), cfg.train.val_fraction,
                                                             split_seed))
        val = (rows_of(Xs, val_idx), rows_of(Ys, val_idx)) if len(val_idx) else (None, None)
        init_params = self._build(init_seeds, dtype, probe=Xs[:2])
        self._warm_key = None
        if warm_start is not None:
            init_params = warm_members(warm_start, init_params)
            self._warm_key = hashlib.sha256(b"".join(
                v.detach().cpu().numpy().tobytes() for v in init_params.values())).hexdigest()
        ckpt = None if checkpoint is None else self._checkpoint(checkpoint, len(X), resume)
        self.resumed = ckpt is not None and ckpt.resumed
        hook = None
        if inputs is not None:
            if is_lazy(X) or cfg.train.cluster == "ray":
                raise ConfigError("inputs (noise injection, pushforward) needs in-memory data "
                                  "and train.cluster = 'local'")
            hook = inputs(self, Xs, train_idx)
        start = time.perf_counter()
        params, history = self._train(init_params, rows_of(Xs, train_idx),
                                      rows_of(Ys, train_idx), *val, batch_seeds, on_epoch, ckpt,
                                      hook)
        self.params = own_storage(params)
        self.metrics = {"train_seconds": time.perf_counter() - start, "n_train": len(train_idx),
                        "n_val": len(val_idx), "n_calibration": len(cal_idx),
                        "backend": self.backend, **vars(history)}
        if len(self.x_shape) == 1:  # the default box of choral infer and choral sensitivity
            self.metrics["input_box"] = input_box(X)
        held = next(rows for rows in (cal_idx, val_idx, train_idx) if len(rows)).numpy()
        X_held, Y_held = take(X, held), take(Y, held)
        pred = self.predict(X_held, calibrated=False)
        features = streamed_features(X, self.x_norm) if is_lazy(X) else \
            pooled_features(self.x_norm.transform(X))
        self.ood_detector = OODDetector.fit(features[train_idx.numpy()], features[held],
                                            self._epistemic(X_held, pred), seed=cfg.train.seed)
        if len(cal_idx):
            self.calibrate(X_held, Y_held, cfg.calibration.method, pred=pred)
        else:  # no calibration of the previous networks survives a refit
            self.calibrator = None
            reason = "turned off" if cfg.calibration.method == "none" else "too few samples"
            self.metrics["calibration"] = {"method": "none", "reason": reason}
        if ckpt is not None:
            ckpt.remove()
        return self

    def _checkpoint(self, path: str | Path, n: int, resume: Resume) -> Checkpoint:
        """The checkpoint of this fit. With ``train.cluster = "ray"`` the shards keep theirs
        (``<path>.shard<k>``) and this one only names them."""
        train = self.config.train
        if train.cluster == "ray":
            shards = sorted(Path(path).parent.glob(f"{Path(path).name}.shard*"))
            if resume == "require" and not shards:
                raise ConfigError(f"--resume: no shard checkpoints {path}.shard<k> are there")
            for shard in shards if resume == "never" else ():
                shard.unlink()
            resume = "never"
        return Checkpoint(path, self._fingerprint(n), every_epochs=train.checkpoint_epochs,
                          every_seconds=train.checkpoint_seconds, resume=resume)

    def _fingerprint(self, n: int) -> str:
        """What a checkpoint must match to be resumed: the configuration (but where and how
        often it checkpoints), the data, by its row count and exact statistics, and the
        members a warm fit starts from."""
        config = self.config.model_dump()
        for key in ("device", "checkpoint_epochs", "checkpoint_seconds", "cluster", "address"):
            config["train"].pop(key)
        content = {"config": config, "n": n, "x": self.x_norm.to_dict(),
                   "y": self.y_norm.to_dict(), "shapes": [self.x_shape, self.y_shape]}
        if getattr(self, "_warm_key", None) is not None:  # a warm fit starts from these members
            content["warm_start"] = self._warm_key
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()

    def _calibration_split(self, n: int, seed: int) -> tuple[Tensor, Tensor]:
        """Rows (rest, calibration): ``calibration.fraction`` of the ``n`` rows (at most
        ``calibration.max_rows``) held out from training and early stopping alike, or none when
        calibration is off or it would leave fewer than ``MIN_CALIBRATION`` rows to calibrate on
        (or 2 to train on)."""
        every = torch.arange(n)
        cal = self.config.calibration
        n_cal = min(round(cal.fraction * n), cal.max_rows)
        if cal.method == "none" or n_cal < MIN_CALIBRATION or n - n_cal < 2:
            return every, every[:0]
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 1))
        return perm[n_cal:], perm[:n_cal]

    def _standardised(self, X: Any, Y: Any, dtype: torch.dtype,
                      warm_start: Surrogate | None = None) -> tuple:
        """Checked ``X``, ``Y`` (arrays, or lazy rows: :mod:`~choral.surrogate.streaming`) and
        what training reads: standardised tensors on the device, or lazy rows that read so.
        Sets the shapes and the standardisers (``warm_start``'s, when given)."""
        if is_lazy(X) or is_lazy(Y):
            if not (is_lazy(X) and is_lazy(Y)) or len(X) != len(Y):
                raise DataError(f"X and Y must both be HDF5 rows (H5Rows) or netCDF/zarr rows "
                                f"(XRows) of the same length; got {type(X).__name__} and "
                                f"{type(Y).__name__}")
            self.x_norm, self.y_norm = (statistics(X, "X"), statistics(Y, "Y")) \
                if warm_start is None else (warm_start.x_norm, warm_start.y_norm)
            Xs, Ys = (StandardisedRows(a, norm, dtype, self.device)
                      for a, norm in ((X, self.x_norm), (Y, self.y_norm)))
        else:
            X, Y = check_arrays(X, Y)
            self.x_norm, self.y_norm = (Standardiser.fit(X), Standardiser.fit(Y)) \
                if warm_start is None else (warm_start.x_norm, warm_start.y_norm)
            Xs, Ys = (torch.as_tensor(norm.transform(a), dtype=dtype, device=self.device)
                      for a, norm in ((X, self.x_norm), (Y, self.y_norm)))
        self.x_shape, self.y_shape = tuple(X.shape[1:]), tuple(Y.shape[1:])
        return X, Y, Xs, Ys

    def _epistemic(self, X: np.ndarray, pred: Predictive | None = None) -> np.ndarray:
        """Mean epistemic variance per sample (n,), in standardised target units."""
        pred = self.predict(X, calibrated=False) if pred is None else pred
        epistemic = pred.epistemic
        _, scale = self.y_norm.loc_scale(epistemic.ndim)
        scale = torch.as_tensor(scale, device=epistemic.device)
        return (epistemic / scale**2).flatten(1).mean(1).cpu().numpy()

    def calibrate(self, X: Any, Y: Any, method: str = "auto", *,
                  pred: Predictive | None = None, **options: Any) -> Surrogate:
        """Fit a post-hoc calibration on held-out ``X``, ``Y``, applied by :meth:`predict` from
        then on, and record in ``metrics["calibration"]`` its held-out scores before and after
        (:func:`~choral.evaluation.calibration.cross_fit`). ``method`` is a calibrator of
        :data:`~choral.evaluation.calibration.METHODS` (``scale``, ``pit_scale``,
        ``isotonic``, ``conformal``, ``cqr``), ``auto`` (the head's default, see
        :class:`~choral.config.CalibrationConfig`) or ``none`` (remove it). ``pred``, the
        uncalibrated predictive at ``X``, saves a second prediction when given; ``options`` go
        to the calibrator (e.g. ``levels``). Returns ``self``."""
        check_choice(method, "method", CALIBRATIONS)
        method = CalibrationConfig(method=method).resolved(self.config.model.head)
        self.calibrator = None
        if method == "none":
            self.metrics["calibration"] = {"method": "none", "reason": "turned off"}
            return self
        X, Y = check_arrays(X, Y)
        pred = self.predict(X, calibrated=False) if pred is None else pred
        self.calibrator = fit_calibrator(method, pred, Y, **options)
        grid = {"grid": list(pred.shape[2:])} if len(pred.shape) > 2 else {}  # fields only
        self.metrics["calibration"] = {"method": method, "samples": len(Y), **grid,
                                       **cross_fit(method, pred, Y, seed=self.config.train.seed)}
        return self

    def ood(self, X: Any, pred: Predictive | None = None) -> tuple[np.ndarray, np.ndarray]:
        """OOD scores (n,) and flags (n,) of inputs ``X`` (see :mod:`choral.evaluation.ood`);
        ``pred``, the uncalibrated predictive at ``X``, saves a second prediction when given."""
        if self.ood_detector is None:
            raise ModelFileError("this model has no OOD detector (saved before OOD detection "
                                 "existed): refit it")
        X, _ = check_arrays(X)
        return self.ood_detector(pooled_features(self.x_norm.transform(X)),
                                 self._epistemic(X, pred))

    def _build(self, init_seeds: np.ndarray, dtype: torch.dtype,
               probe: Tensor | None) -> dict[str, Tensor]:
        """Make the head, the member template and the forward; the initial members (s, ...)."""
        self.head = make_head(self.config.model, self.config.train.nll_beta)

        prior = self.config.posterior.prior_scale if self.config.train.ensemble == "prior" \
            else None

        def make() -> torch.nn.Module:
            return build_member(self.config.model, self.x_shape, self.y_shape,
                                self.head.channels, prior)

        self.template, init_params = init_members(make, init_seeds, dtype)
        self.backend = choose_backend(self.template, self.config.train.backend, probe)
        self.forward = member_forward(self.template, self.backend)
        return {k: v.to(self.device) for k, v in init_params.items()}

    def _train(self, init_params, X, Y, X_val, Y_val, batch_seeds, on_epoch, checkpoint,
               inputs=None):
        cfg = self.config
        if cfg.train.cluster == "ray":
            return self._train_shards(init_params, (X, Y, X_val, Y_val), batch_seeds, checkpoint)
        if self.backend != "loop" or cfg.train.ensemble != "deep":
            ctx = TrainContext(self.forward, init_params, X, Y, X_val, Y_val, cfg.train,
                               batch_seeds, self.head.loss, on_epoch, self.template,
                               cfg.weightspace, cfg.soup, checkpoint, cfg.posterior,
                               self.head.nll, inputs)
            result = fit_ensemble(cfg.train.ensemble, ctx)
            self.records = dict(result.records)
            return result.params, result.history
        args = (X, Y, X_val, Y_val, cfg.train)
        parts, history = [], History()
        for i in range(len(batch_seeds)):  # the fallback: one member after another
            sub = {k: v[i:i + 1] for k, v in init_params.items()}
            best, h = train_members(self.forward, sub, *args, batch_seeds[i:i + 1],
                                    self.head.loss, on_epoch, checkpoint=checkpoint,
                                    inputs=inputs)
            parts.append(best)
            history.epochs_run = max(history.epochs_run, h.epochs_run)
            for key in ("best_epoch", "best_val_nll", "train_nll"):
                getattr(history, key).extend(getattr(h, key))
        self.records = {}
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}, history

    def _train_shards(self, init_params, data, batch_seeds, checkpoint):
        """Train the members in shards of Ray tasks (:mod:`choral.surrogate.shards`), each
        with a checkpoint ``<checkpoint>.shard<k>``; gather them in member order."""
        train = self.config.train
        if train.ensemble != "deep":
            raise ConfigError(f"train.cluster = 'ray' shards independent members: "
                              f"train.ensemble must be 'deep'; got {train.ensemble!r}")
        gpus = self.device.type == "cuda"

        def args(k: int, members: np.ndarray) -> tuple:
            path = None if checkpoint is None else f"{checkpoint.path}.shard{k}"
            key = None if checkpoint is None else f"{checkpoint.fingerprint}:{members.tolist()}"
            params = {name: v[members].cpu() for name, v in init_params.items()}
            return params, batch_seeds[members], path, key

        cpu = tuple(None if a is None else a.cpu() for a in data)
        shared = (self.config.model_dump(), (self.x_shape, self.y_shape), self.backend, *cpu,
                  "cuda" if gpus else "cpu", torch.get_num_threads())
        parts = run_shards(_fit_shard, shared, len(batch_seeds), args, train.shards,
                           train.address, gpus)
        self.resumed = any(part[2] for part in parts)
        if checkpoint is not None:
            for k in range(len(parts)):
                Path(f"{checkpoint.path}.shard{k}").unlink(missing_ok=True)
        histories = [History(**part[1]) for part in parts]
        history = History(max(h.epochs_run for h in histories),
                          *([v for h in histories for v in getattr(h, key)]
                            for key in ("best_epoch", "best_val_nll", "train_nll")))
        params = {k: torch.cat([part[0][k] for part in parts]).to(self.device)
                  for k in init_params}
        self.records = {}
        return params, history

    # -- prediction ----------------------------------------------------------------------------
    def _check_fitted(self) -> dict[str, Tensor]:
        if self.params is None:
            raise DataError("this surrogate is not fitted yet: call fit(X, Y) or load(dir)")
        return self.params

    def predict(self, X: Any, calibrated: bool = True,
                batch_size: int | None = None) -> Predictive:
        """The mixture predictive at ``X`` (n, d) or (n, c_in, *grid), in original units.

        Its shape is (n, m) or (n, c_out, *grid); members (s, n, ...); its tensors live on the
        model's device. An FNO model also predicts on grids other than its training grid
        (:mod:`choral.surrogate.transfer`); the others raise a DataError there. With a
        calibration (:meth:`calibrate`) and ``calibrated=True`` it is the recalibrated
        predictive. The networks see ``batch_size`` rows at a time (default:
        as many as make 2^20 input values times members, 8 MiB in float64).
        """
        params = self._check_fitted()
        X, _ = check_arrays(X)
        check_grid(self.config.model.backbone, self.x_shape, X.shape)
        first = next(iter(params.values()))
        Xs = torch.as_tensor(self.x_norm.transform(X), dtype=first.dtype, device=first.device)
        chunk = batch_size or max(1, 2**20 // (math.prod(X.shape[1:]) * first.shape[0]))
        out = predict_members(self.forward, params, Xs, check_int(chunk, "batch_size", 1))
        loc, scale = self.y_norm.loc_scale(out.ndim - 1)
        pred = self.head.predictive(out).affine(torch.as_tensor(loc), torch.as_tensor(scale))
        return self.apply_calibration(pred) if calibrated else pred

    def member_means(self, X: Tensor) -> Tensor:
        """Member means (s, n, ...) at ``X`` (n, d) or (n, c_in, *grid), in original units and
        ``X``'s dtype, differentiable with respect to ``X`` (for gradient-based acquisition
        optimisers such as BoTorch's). Under a scale calibration (``scale``, ``pit_scale``)
        they are spread about their mean by its factor, as :meth:`predict`'s are; the other
        calibrations change quantiles or intervals, not these.

        Examples:
            >>> import numpy as np
            >>> from choral.config import Config
            >>> X = np.random.default_rng(0).uniform(0, 1, (32, 2))
            >>> model = Surrogate(Config().updated(**{"train.members": 2, "train.epochs": 2}))
            >>> model = model.fit(X, X.sum(1, keepdims=True))
            >>> x = torch.zeros(3, 2, dtype=torch.float64, requires_grad=True)
            >>> model.member_means(x).sum().backward(); tuple(x.grad.shape)
            (3, 2)
        """
        params = self._check_fitted()
        if not isinstance(X, Tensor):
            raise DataError(f"X must be a tensor of shape (n, {', '.join(map(str, self.x_shape))})"
                            f"; got {type(X).__name__} of shape {tuple(getattr(X, 'shape', ()))}")
        check_grid(self.config.model.backbone, self.x_shape, tuple(X.shape))
        first = next(iter(params.values()))
        x_loc, x_scale = (torch.as_tensor(a, dtype=X.dtype, device=X.device)
                          for a in self.x_norm.loc_scale(X.ndim))
        y_loc, y_scale = (torch.as_tensor(a, dtype=X.dtype, device=X.device)
                          for a in self.y_norm.loc_scale(1 + len(self.y_shape)))
        xs = ((X - x_loc) / x_scale).to(first.device, first.dtype)
        out = self.forward(params, xs.expand(first.shape[0], *xs.shape))
        means = self.head.member_means(out).to(X.device, X.dtype) * y_scale + y_loc
        factor = scale_factor(resample_calibrator(self.calibrator, tuple(means.shape[2:])),
                              tuple(means.shape[2:]))
        if factor is not None:  # spread about the mean as the predictive's are
            warn_grid(self.metrics.get("calibration", {}).get("grid"), tuple(means.shape[2:]))
            c = factor.to(X.device, X.dtype)
            centre = means.mean(0)
            means = centre + c * (means - centre)
        return means

    def apply_calibration(self, pred: Predictive) -> Predictive:
        """The uncalibrated predictive ``pred`` (``predict(X, calibrated=False)``) with the
        calibration applied; ``pred`` itself when the model has none."""
        if self.calibrator is None:
            return pred
        warn_grid(self.metrics.get("calibration", {}).get("grid"), tuple(pred.shape[1:]))
        return resample_calibrator(self.calibrator, tuple(pred.shape[1:])).apply(pred)

    def with_params(self, params: dict[str, Tensor]) -> Surrogate:
        """A copy evaluating the networks ``params`` (s, ...) with this surrogate's config,
        network, standardisers and OOD detector (e.g. fine-tuned weights judged in the original
        units); without calibration, metrics or records."""
        other = copy.copy(self)
        other.params, other.metrics, other.records = own_storage(params), {}, {}
        other.calibrator = None
        return other

    # -- persistence ---------------------------------------------------------------------------
    def save(self, path: str | Path, metrics: dict[str, Any] | None = None) -> None:
        """Write the model directory atomically (see :mod:`choral.storage`)."""
        params = {k: v.cpu() for k, v in self._check_fitted().items()}
        config = {**FORMAT, "config": self.config.model_dump(), "backend": self.backend,
                  "x_shape": list(self.x_shape), "y_shape": list(self.y_shape)}
        write_model_dir(path, ModelFiles(
            config, params, {"x": self.x_norm.to_dict(), "y": self.y_norm.to_dict()},
            {**self.metrics, **(metrics or {})},
            calibration=None if self.calibrator is None else self.calibrator.to_dict(),
            ood=None if self.ood_detector is None else self.ood_detector.to_dict(),
            records=self.records))

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device | None = None,
             regime: str | None = None) -> Surrogate:
        """Rebuild a saved surrogate on ``device`` (default: its ``train.device``, where
        ``auto`` means a GPU when this machine has one); the weights are checked against the
        rebuilt network. A model saved on any device loads on any other.

        The stored networks (their number need not be ``train.members``: weight-space methods
        store samples or a single averaged network) are evaluated as they are. ``regime``
        names a regime of a TALL-masked merged model (``choral merge --method tall``), whose
        networks are then that regime's ``theta_0 + m_t * tau_MTL``.
        """
        files = read_model_dir(path)
        config = files.config
        try:
            if config.get("format") != FORMAT["format"]:
                raise KeyError("format")
            self = cls(Config.from_dict(config["config"]))
            self.device = resolve_device(device or self.config.train.device)
            self.x_shape, self.y_shape = tuple(config["x_shape"]), tuple(config["y_shape"])
            self.x_norm = Standardiser.from_dict(files.normaliser["x"])
            self.y_norm = Standardiser.from_dict(files.normaliser["y"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFileError(f"{Path(path) / 'config.json'} or normaliser.json is not a "
                                 f"choral model file (bad or missing {exc})") from None
        weights = files.weights
        first = next(iter(weights.values()), None)
        s = self.config.train.members if first is None else first.shape[0]
        dtype = torch.float32 if first is None else first.dtype
        expected = self._build(np.zeros(s, dtype=np.uint32), dtype, probe=None)
        self.backend = config.get("backend", self.backend)
        self.forward = member_forward(self.template, self.backend)
        want = {k: tuple(v.shape) for k, v in expected.items()}
        got = {k: tuple(v.shape) for k, v in weights.items()}
        if want != got:
            raise ModelFileError(f"{Path(path) / 'weights.safetensors'} does not match the network "
                                 f"in config.json: expected {want}, found {got}")
        weights = {k: v.to(self.device) for k, v in weights.items()}
        self.params, self.metrics, self.records = own_storage(weights), files.metrics, files.records
        if regime is not None:
            records = {k: ({n: t.to(self.device) for n, t in v.items()} if k == "tall" else v)
                       for k, v in files.records.items()}
            self.params = own_storage(select_regime(records, regime, self.params))
        self.calibrator = _parsed(calibrator_from_dict, files.calibration, "calibration")
        self.ood_detector = _parsed(OODDetector.from_dict, files.ood, "OOD detector")
        return self


def warm_members(previous: Surrogate, init: dict[str, Tensor]) -> dict[str, Tensor]:
    """Initial members (s, ...) taken from ``previous``'s stored networks, shaped like ``init``.

    ``previous`` stores ``s`` networks (``deep``, ``prior``) or ``s * k`` member-major ones
    (``multiswag``, ``laplace``: ``k`` samples per member); the first network of each member is
    taken. Anything else (another network, another member count) is a ConfigError.
    """
    params = previous._check_fitted()
    s = next(iter(init.values())).shape[0]
    stored = next(iter(params.values())).shape[0]
    shapes = {k: tuple(v.shape[1:]) for k, v in init.items()}
    if {k: tuple(v.shape[1:]) for k, v in params.items()} != shapes or stored % s:
        raise ConfigError(f"warm_start must be a surrogate of the same network with a multiple "
                          f"of train.members = {s} stored networks; got {stored} networks of "
                          f"another shape or count")
    first = init[next(iter(init))]
    return {k: v[::stored // s].to(first.device, first.dtype).clone() for k, v in params.items()}


def _fit_shard(config: dict[str, Any], shapes: tuple, backend: str, X: Tensor, Y: Tensor,
               X_val: Tensor | None, Y_val: Tensor | None, device: str, threads: int,
               params: dict[str, Tensor], batch_seeds: np.ndarray, checkpoint: str | None,
               fingerprint: str | None) -> tuple[dict[str, Tensor], dict[str, Any], bool]:
    """One shard of members, trained as the deep ensemble (a Ray task of
    :meth:`Surrogate._train_shards`): (weights on the CPU, history fields, resumed?)."""
    torch.set_num_threads(threads)  # the driver's thread count: the same numbers
    model = Surrogate(Config.from_dict(config))
    model.x_shape, model.y_shape = shapes
    model.device = torch.device(device)
    model._build(np.zeros(1, dtype=np.uint32), next(iter(params.values())).dtype, probe=None)
    forward = member_forward(model.template, backend)
    train = model.config.train
    ckpt = None if checkpoint is None else Checkpoint(
        checkpoint, fingerprint, every_epochs=train.checkpoint_epochs,
        every_seconds=train.checkpoint_seconds)
    # tensors from Ray's object store may sit at any address; own aligned copies compute the
    # same bits as the driver's (see own_storage)
    data = [None if a is None else a.to(model.device).clone() for a in (X, Y, X_val, Y_val)]
    ctx = TrainContext(forward, own_storage({k: v.to(model.device) for k, v in params.items()}),
                       *data,
                       train, batch_seeds, model.head.loss, checkpoint=ckpt)
    result = fit_ensemble("deep", ctx)
    return ({k: v.cpu() for k, v in result.params.items()}, vars(result.history),
            ckpt is not None and ckpt.resumed)


def _parsed(parse: Any, content: dict[str, Any] | None, what: str) -> Any:
    """``parse(content)`` (``None`` stays ``None``); a bad record is a ModelFileError."""
    if content is None:
        return None
    try:
        return parse(content)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"the {what} of this model is corrupted ({type(exc).__name__}: "
                             f"{exc})") from None

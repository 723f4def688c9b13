"""Field defaults of ``[train]``: only the settings not given change, and only for fields."""

import numpy as np

from choral.config import Config
from choral.ensembles.config import FIELD_DEFAULTS, TrainConfig
from choral.surrogate import Surrogate


def test_field_defaults_fill_only_what_was_not_given():
    given = Config.from_dict({"train": {"epochs": 3, "members": 2}})
    cfg = given.for_data(fields=True).train
    assert (cfg.epochs, cfg.members) == (3, 2)
    assert (cfg.lr, cfg.lr_schedule, cfg.patience) == tuple(
        FIELD_DEFAULTS[k] for k in ("lr", "lr_schedule", "patience"))
    assert given.for_data(fields=False) is given
    assert Config().for_data(fields=False).train.epochs == TrainConfig().epochs


def test_updated_keeps_unset_settings_unset():
    cfg = Config.from_dict({"train": {"lr": 0.5}}).updated(**{"train.members": 4,
                                                              "train.epochs": None})
    assert cfg.train.model_fields_set == {"lr", "members"}
    assert cfg.for_data(fields=True).train.epochs == FIELD_DEFAULTS["epochs"]


def test_fit_on_fields_records_the_defaults_it_used(tmp_path):
    """A field fit resolves the defaults (saved with the model); a vector fit keeps its own."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 1, 8))
    cfg = Config.from_dict({"model": {"backbone": "unet", "unet": {"depth": 1, "width": 2}},
                            "train": {"members": 1, "epochs": 1}})
    model = Surrogate(cfg).fit(X, X)
    assert model.config.train.epochs == 1
    assert model.config.train.lr_schedule == FIELD_DEFAULTS["lr_schedule"]
    model.save(tmp_path / "m")
    assert Surrogate.load(tmp_path / "m").config.train == model.config.train
    vec = Surrogate(Config.from_dict({"train": {"members": 1, "epochs": 1}}))
    assert vec.fit(X[:, 0], X[:, 0, :1]).config.train.lr == TrainConfig().lr


def test_beta_nll_field_default_only_for_the_gaussian_head():
    fields = Config().for_data(fields=True).train
    assert fields.nll_beta == FIELD_DEFAULTS["nll_beta"]
    assert Config().train.nll_beta == 0.0
    mdn = Config.from_dict({"model": {"head": "mdn"}}).for_data(fields=True).train
    assert mdn.nll_beta == 0.0
    given = Config.from_dict({"train": {"nll_beta": 1.0}}).for_data(fields=True).train
    assert given.nll_beta == 1.0

"""Configuration: defaults, TOML files, and errors that name the key, value and expectation."""

import pytest

from choral.config import Config
from choral.errors import ConfigError


def test_toml_round_trip(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[model]\nhidden = [8, 8]\n[train]\nmembers = 3\nlr = 0.01\n')
    cfg = Config.from_toml(path)
    assert cfg.model.hidden == [8, 8] and cfg.train.members == 3 and cfg.train.lr == 0.01
    assert cfg.train.epochs == Config().train.epochs


@pytest.mark.parametrize("text, message", [
    ("[train]\nmembrs = 3\n", "unknown key 'train.membrs'"),
    ("[trian]\nmembers = 3\n", "unknown key 'trian'"),
    ("[train]\nmembers = 0\n", "train.members = 0: Input should be greater than 0"),
    ("[train]\nmembers = -2\n", "train.members = -2"),
    ("[train]\nlr = 'fast'\n", "train.lr = 'fast'"),
    ("[model]\nactivation = 'swish'\n", r"model.activation = 'swish'.*'relu'"),
    ("[train]\nval_fraction = 1.5\n", "train.val_fraction = 1.5: Input should be less than 1"),
])
def test_bad_values_are_named(tmp_path, text, message):
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        Config.from_toml(path)


def test_bad_toml_and_missing_file(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[train\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        Config.from_toml(path)
    with pytest.raises(ConfigError, match="not found"):
        Config.from_toml(tmp_path / "nope.toml")


def test_updated_skips_none_and_validates():
    cfg = Config().updated(**{"train.members": None, "train.epochs": 7})
    assert cfg.train.members == Config().train.members and cfg.train.epochs == 7
    with pytest.raises(ConfigError, match="train.members = 0"):
        Config().updated(**{"train.members": 0})

"""The model directory: file by file, atomic, never unpickling, clear errors when damaged."""

import json

import pytest
import torch

from choral.errors import ModelFileError
from choral.storage import ModelFiles, read_model_dir, write_calibration, write_model_dir


def _files(**extra):
    return ModelFiles({"format": "x"}, {"w": torch.arange(6.0).reshape(2, 3)}, {"x": {}},
                      {"rmse": 1.0}, **extra)


def test_round_trip_keeps_every_part(tmp_path):
    files = _files(calibration={"method": "scale"}, ood={"loc": [0.0]},
                   records={"soup": {"greedy": True}, "swag": {"mean": torch.ones(2)}})
    write_model_dir(tmp_path / "m", files)
    names = sorted(p.name for p in (tmp_path / "m").iterdir())
    assert names == ["calibration.json", "config.json", "metrics.json", "normaliser.json",
                     "ood.json", "soup.json", "swag.safetensors", "weights.safetensors"]
    back = read_model_dir(tmp_path / "m")
    assert back.config == files.config and back.metrics == files.metrics
    assert torch.equal(back.weights["w"], files.weights["w"])
    assert back.calibration == {"method": "scale"} and back.ood == {"loc": [0.0]}
    assert back.records["soup"] == {"greedy": True}
    assert torch.equal(back.records["swag"]["mean"], torch.ones(2))


def test_a_record_may_not_shadow_a_model_file(tmp_path):
    with pytest.raises(ValueError, match="clashes with the model file ood.json"):
        write_model_dir(tmp_path / "m", _files(records={"ood": {}}))
    assert not (tmp_path / "m").exists()


def test_calibration_is_replaced_atomically(tmp_path):
    write_model_dir(tmp_path / "m", _files())
    write_calibration(tmp_path / "m", {"method": "scale", "factor": [2.0]})
    assert json.loads((tmp_path / "m" / "calibration.json").read_text())["factor"] == [2.0]
    assert not [p for p in (tmp_path / "m").iterdir() if p.name.startswith(".")]
    with pytest.raises(ModelFileError, match="directory not found"):
        write_calibration(tmp_path / "nope", {})


def test_missing_and_damaged_files_are_named(tmp_path):
    write_model_dir(tmp_path / "m", _files())
    (tmp_path / "m" / "weights.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(ModelFileError, match="weights.safetensors is corrupted"):
        read_model_dir(tmp_path / "m")
    (tmp_path / "m" / "metrics.json").unlink()
    with pytest.raises(ModelFileError, match="is missing metrics.json"):
        read_model_dir(tmp_path / "m")

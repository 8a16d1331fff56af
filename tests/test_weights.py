"""The weights file format: round trip, metadata, and one-line errors for bad files."""

import json

import pytest
import torch

from facedet.detector import build_model
from facedet.errors import FacedetError
from facedet.inference import Detector
from facedet.weights import load_weights, read_metadata, save_weights, training_summary


def test_round_trip(tmp_path):
    torch.manual_seed(1)
    model = build_model("m4")
    path = save_weights(tmp_path / "w.safetensors", model, {"epochs": 3, "ap": 0.5})
    loaded, meta = load_weights(path)
    assert meta["arch"] == "m4" and meta["input_size"] == "240x320" and meta["in_channels"] == "1"
    assert json.loads(meta["normalization"]) == {"mean_bgr": [104.0, 117.0, 123.0], "scale": 1.0, "channels": "luma"}
    assert training_summary(meta) == {"epochs": 3, "ap": 0.5}
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    assert not loaded.training


def test_wrong_arch(tmp_path):
    path = save_weights(tmp_path / "w.safetensors", build_model("m4"))
    with pytest.raises(FacedetError, match="holds 'm4' weights, but --arch is 'quant'"):
        load_weights(path, "quant")


def test_truncated_and_corrupt(tmp_path):
    path = save_weights(tmp_path / "w.safetensors", build_model("m4"))
    data = path.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) - 1000])
    with pytest.raises(FacedetError, match="truncated or corrupt|not a valid"):
        load_weights(tmp_path / "cut.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(FacedetError, match="not a valid"):
        load_weights(tmp_path / "junk.safetensors")
    (tmp_path / "pickle.pt").write_bytes(b"\x80\x04\x95")
    with pytest.raises(FacedetError):
        load_weights(tmp_path / "pickle.pt")
    with pytest.raises(FacedetError, match="not found"):
        load_weights(tmp_path / "missing.safetensors")


def test_foreign_safetensors_and_mismatched_tensors(tmp_path):
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(FacedetError, match="not a facedet weights file"):
        read_metadata(tmp_path / "other.safetensors")
    model = build_model("m4")
    path = save_weights(tmp_path / "w.safetensors", model)
    meta = read_metadata(path)
    tensors = {k: v.clone() for k, v in model.state_dict().items()}
    del tensors["heads.3.loc.bias"]
    save_file(tensors, str(tmp_path / "missing.safetensors"), metadata=meta)
    with pytest.raises(FacedetError, match="missing"):
        load_weights(tmp_path / "missing.safetensors")
    tensors = {k: v.clone() for k, v in model.state_dict().items()}
    tensors["heads.3.loc.bias"] = torch.full((4,), float("nan"))
    save_file(tensors, str(tmp_path / "nan.safetensors"), metadata=meta)
    with pytest.raises(FacedetError, match="NaN"):
        load_weights(tmp_path / "nan.safetensors")


def test_detector_without_installed_weights(monkeypatch):
    import facedet.inference as inf

    monkeypatch.setattr(inf, "default_weights_path", lambda arch, quantized=False: None)
    with pytest.raises(FacedetError, match="no weights are installed"):
        Detector.load(None, "m4")


def test_saved_weights_get_default_permissions(tmp_path):
    import os

    umask = os.umask(0o022)
    try:
        path = save_weights(tmp_path / "w.safetensors", build_model("m4"))
    finally:
        os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o644

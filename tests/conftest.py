"""Shared fixtures: small images, videos and weights files made on the fly."""

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from facedet.detector import build_model
from facedet.weights import save_weights


def make_image(h=120, w=160, seed=0, channels=3, dtype=np.uint8):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 255, size=(h, w, channels) if channels > 1 else (h, w), dtype=np.uint8)
    cv2.circle(img, (w // 2, h // 2), min(h, w) // 4, (220,) * max(channels, 1), -1)
    if dtype == np.uint16:
        img = img.astype(np.uint16) * 257
    return img


@pytest.fixture(scope="session", autouse=True)
def _export_cache(tmp_path_factory):
    """The onnxruntime backend's export cache of this test session, never the user's."""
    mp = pytest.MonkeyPatch()
    mp.setenv("FACEDET_CACHE_DIR", str(tmp_path_factory.mktemp("facedet-cache")))
    yield
    mp.undo()


@pytest.fixture(scope="session")
def weights_file(tmp_path_factory) -> Path:
    """An untrained (seeded) m4 model in the shipped weights format."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "m4.safetensors"
    save_weights(path, build_model("m4"), {"note": "untrained test weights"})
    return path


@pytest.fixture
def image_dir(tmp_path) -> Path:
    d = tmp_path / "images"
    d.mkdir()
    cv2.imwrite(str(d / "a.jpg"), make_image(seed=1))
    cv2.imwrite(str(d / "b.png"), make_image(90, 70, seed=2))
    return d


@pytest.fixture
def video_file(tmp_path) -> Path:
    path = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (96, 64))
    assert writer.isOpened()
    for i in range(4):
        writer.write(make_image(64, 96, seed=10 + i))
    writer.release()
    return path

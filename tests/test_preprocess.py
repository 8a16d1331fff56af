"""Image conversion, the area-preserving resize and normalisation."""

import math

import cv2
import numpy as np
import pytest
import torch

from facedet.errors import FacedetError
from facedet.imageio import collect_inputs, read_image
from facedet.inference import Detector
from facedet.detector import build_model
from facedet.preprocess import network_scale, normalize, resize, to_bgr8


def test_to_bgr8_variants():
    grey = np.full((4, 5), 100, np.uint8)
    assert to_bgr8(grey).shape == (4, 5, 3) and to_bgr8(grey)[0, 0].tolist() == [100, 100, 100]
    bgra = np.zeros((4, 5, 4), np.uint8)
    bgra[..., 2] = 200
    assert to_bgr8(bgra)[0, 0].tolist() == [0, 0, 200]
    deep = np.full((4, 5, 3), 65535, np.uint16)
    assert to_bgr8(deep)[0, 0].tolist() == [255, 255, 255]
    assert to_bgr8(np.full((2, 2, 1), 7, np.uint8)).shape == (2, 2, 3)
    with pytest.raises(FacedetError, match="empty"):
        to_bgr8(np.zeros((0, 5, 3), np.uint8))


def test_area_preserving_scale():
    s = network_scale(480, 640, (240, 320))
    assert s == pytest.approx(0.5)
    s = network_scale(100, 100, (240, 320))
    assert s == pytest.approx(math.sqrt(76800 / 10000))  # small images are enlarged
    r = resize(np.zeros((480, 640, 3), np.uint8), 0.5)
    assert r.image.shape == (240, 320, 3) and r.sx == 0.5 and r.sy == 0.5


def test_normalize_mono_is_luma_minus_mean():
    img = np.zeros((2, 2, 3), np.uint8)
    img[..., 0], img[..., 1], img[..., 2] = 10, 20, 30  # B, G, R
    x = normalize(img, 1)
    expected = 0.299 * (30 - 123) + 0.587 * (20 - 117) + 0.114 * (10 - 104)
    assert x.shape == (1, 2, 2)
    assert x[0, 0, 0] == pytest.approx(expected, abs=1e-4)
    rgb = normalize(img, 3)
    assert rgb[:, 0, 0].tolist() == [30 - 123, 20 - 117, 10 - 104]  # R, G, B order


def test_boxes_map_back_to_original_pixels():
    """A detector whose output is known exactly: boxes are rescaled and clipped."""
    model = build_model("m4").eval()
    det = Detector(model)
    img = np.zeros((480, 640, 3), np.uint8)
    x, sx, sy = det.prepare(img)
    assert x.shape == (1, 1, 240, 320) and sx == 0.5 and sy == 0.5
    with torch.no_grad():
        for p in model.heads.parameters():
            p.zero_()
        model.heads[2].conf.bias.copy_(torch.tensor([-5.0, 5.0]))  # every head-2 cell is a face
    d = det.detect(img, threshold=0.5, nms_threshold=0.0, max_faces=1000)
    # loc = 0 -> boxes are the priors (32 px at stride 16 in the 320x240 input) doubled
    assert len(d) > 0
    widths = d.boxes[:, 2] - d.boxes[:, 0]
    inner = (d.boxes[:, 0] > 0) & (d.boxes[:, 2] < 640) & (d.boxes[:, 1] > 0) & (d.boxes[:, 3] < 480)
    assert np.allclose(widths[inner], 64.0)
    assert d.boxes[:, 0::2].min() >= 0 and d.boxes[:, 0::2].max() <= 640
    assert d.boxes[:, 1::2].max() <= 480


def test_read_image_errors(tmp_path):
    with pytest.raises(FacedetError, match="no such file"):
        read_image(tmp_path / "missing.jpg")
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(FacedetError, match="empty file"):
        read_image(tmp_path / "empty.jpg")
    (tmp_path / "text.jpg").write_text("hello, not an image")
    with pytest.raises(FacedetError, match="not an image"):
        read_image(tmp_path / "text.jpg")
    ok, buf = cv2.imencode(".jpg", np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    for frac in (0.5, 0.97):
        (tmp_path / "cut.jpg").write_bytes(buf.tobytes()[: int(len(buf) * frac)])
        with pytest.raises(FacedetError, match="truncated"):
            read_image(tmp_path / "cut.jpg")
    (tmp_path / "whole.jpg").write_bytes(buf.tobytes())
    assert read_image(tmp_path / "whole.jpg").shape == (64, 64, 3)


def test_read_image_16bit_and_grey(tmp_path):
    cv2.imwrite(str(tmp_path / "deep.png"), np.full((8, 9), 40000, np.uint16))
    img = read_image(tmp_path / "deep.png")
    assert img.shape == (8, 9, 3) and img.dtype == np.uint8 and img[0, 0, 0] == round(40000 / 257)


def test_collect_inputs(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("b.jpg", "a.png", "notes.txt", "sub/c.jpg"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in collect_inputs([tmp_path])] == ["a.png", "b.jpg"]
    assert [p.name for p in collect_inputs([tmp_path], recursive=True)] == ["a.png", "b.jpg", "c.jpg"]
    (tmp_path / "emptydir").mkdir()
    with pytest.raises(FacedetError, match="no images"):
        collect_inputs([tmp_path / "emptydir"])


def test_pyramid_scales_and_merge():
    model = build_model("m4").eval()
    det = Detector(model)
    assert det.pyramid_scales(480, 640) == [0.75, 0.5, 0.25, 0.125]
    assert det.pyramid_scales(480, 640, upscale=None) == [0.5, 0.25, 0.125]
    # the 1.5x level only where the image has the pixels: exactly at the edge, and one row short
    assert det.pyramid_scales(360, 480)[0] == pytest.approx(1.0) and len(det.pyramid_scales(360, 480)) == 4
    assert det.pyramid_scales(359, 480)[0] == pytest.approx(math.sqrt(76800 / (359 * 480)))
    s = det.pyramid_scales(40, 40)  # small images are enlarged first, then halved; no upscaled level
    assert s[0] == pytest.approx(math.sqrt(76800 / 1600)) and s[1] == pytest.approx(s[0] / 2)
    assert len(det.pyramid_scales(20, 1000)) == 1  # a 39-pixel-high strip cannot be halved (minimum side 15, x2)
    with torch.no_grad():
        for p in model.heads.parameters():
            p.zero_()
        model.heads[2].conf.bias.copy_(torch.tensor([-5.0, 5.0]))
    img = np.zeros((480, 640, 3), np.uint8)
    single = det.detect(img, threshold=0.5, nms_threshold=1.0, max_faces=5000)
    multi = det.detect(img, threshold=0.5, nms_threshold=1.0, max_faces=5000, pyramid=True)
    widths = set(np.round(multi.boxes[:, 2] - multi.boxes[:, 0]).tolist())
    assert 64.0 in widths and 128.0 in widths  # boxes from the base level and one octave down
    assert np.isclose(multi.boxes[:, 2] - multi.boxes[:, 0], 64 / 1.5, atol=1e-3).any()  # and from the 1.5x level
    octaves = det.detect(img, threshold=0.5, nms_threshold=1.0, max_faces=5000, pyramid=True, upscale=None)
    assert not np.isclose(octaves.boxes[:, 2] - octaves.boxes[:, 0], 64 / 1.5, atol=1e-3).any()
    assert 64.0 in set(np.round(octaves.boxes[:, 2] - octaves.boxes[:, 0]).tolist())
    assert set(np.round(single.boxes[:, 2] - single.boxes[:, 0]).tolist()) <= {64.0} | set(range(0, 64))

"""Augmentation: geometry stays consistent with the pixels, bugs of the reference fixed."""

import cv2
import numpy as np
import pytest

from facedet.data.augment import MEAN_BGR, augment_qvga, augment_vga, hflip, no_augment, photometric_distort


def scene(h, w, boxes):
    """Black image with each box filled white (exact pixel extents)."""
    img = np.zeros((h, w, 3), np.uint8)
    for x1, y1, x2, y2 in boxes:
        img[int(y1) : int(y2), int(x1) : int(x2)] = 255
    return img, np.asarray(boxes, np.float32)


def white_extent(img, box, pad=3):
    """Bounding box of the bright pixels around ``box`` (inside a padded window)."""
    h, w = img.shape[:2]
    x1, y1 = max(int(box[0]) - pad, 0), max(int(box[1]) - pad, 0)
    x2, y2 = min(int(np.ceil(box[2])) + pad, w), min(int(np.ceil(box[3])) + pad, h)
    ys, xs = np.nonzero(img[y1:y2, x1:x2].mean(2) > 160)
    return np.array([xs.min() + x1, ys.min() + y1, xs.max() + x1 + 1, ys.max() + y1 + 1], np.float32)


@pytest.mark.parametrize("seed", range(8))
def test_qvga_boxes_follow_pixels(seed):
    img, boxes = scene(300, 500, [(40, 50, 160, 170), (300, 200, 330, 236)])
    out, b, ig = augment_qvga(img, boxes, np.zeros(2, bool), np.random.default_rng(seed), size=320, photometric=False)
    assert out.shape == (320, 320, 3) and out.dtype == np.uint8
    assert len(b) == 2 and (b >= 0).all() and (b <= 320).all()
    for box in b:
        assert np.abs(white_extent(out, box) - box).max() <= 1.5
    # the largest face was shrunk to at most 48 px before the final resize
    side = np.sqrt((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]))
    assert side.max() <= 48 * 320 / 300 + 1


def test_qvga_padding_uses_bgr_mean_and_boxes_are_not_floored():
    img, boxes = scene(100, 400, [(10.5, 10.25, 60.75, 70.5)])  # wide: padded at the bottom
    rng = np.random.default_rng(0)
    out, b, _ = augment_qvga(img, boxes, np.zeros(1, bool), rng, size=320, photometric=False, max_face=1000)
    # bottom rows are padding; after a resize they keep the BGR mean (not its reverse)
    assert np.abs(out[-2, 160].astype(int) - np.array(MEAN_BGR)).max() <= 1
    assert not np.allclose(b, np.round(b))  # fractional coordinates survive


def test_qvga_tiny_faces_become_ignored():
    img, boxes = scene(960, 1280, [(100, 100, 300, 300), (800, 500, 806, 506)])
    _, b, ig = augment_qvga(img, boxes, np.zeros(2, bool), np.random.default_rng(1), photometric=False)
    assert ig.tolist() == [False, True]


def test_qvga_is_deterministic_per_seed():
    img, boxes = scene(240, 320, [(40, 50, 100, 110)])
    a = augment_qvga(img, boxes, np.zeros(1, bool), np.random.default_rng(5))
    b = augment_qvga(img, boxes, np.zeros(1, bool), np.random.default_rng(5))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


@pytest.mark.parametrize("seed", range(8))
def test_vga_boxes_follow_pixels(seed):
    img, boxes = scene(480, 640, [(100, 120, 180, 220), (400, 300, 440, 340)])
    out, b, ig = augment_vga(img, boxes, np.zeros(2, bool), np.random.default_rng(seed), size=640, photometric=False)
    assert out.shape == (640, 640, 3)
    assert len(b) >= 1 and (b >= 0).all() and (b <= 640).all()
    for box, ignored in zip(b, ig):
        inside = box[0] > 2 and box[1] > 2 and box[2] < 638 and box[3] < 638
        if inside and not ignored and (box[2] - box[0]) > 8:
            assert np.abs(white_extent(out, box) - box).max() <= 0.02 * (box[2] - box[0]) + 2


def test_hflip_and_no_augment():
    img, boxes = scene(50, 80, [(10, 5, 30, 25)])
    out, b = hflip(img, boxes)
    assert b.tolist() == [[50, 5, 70, 25]] and out[10, 55, 0] == 255
    out, b, ig = no_augment(img, boxes, np.zeros(1, bool), size=160)
    assert out.shape == (160, 160, 3) and b.tolist() == [[20, 16, 60, 80]]


def test_photometric_keeps_shape_and_range():
    img = np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8)
    outs = [photometric_distort(img, np.random.default_rng(s)) for s in range(6)]
    assert all(o.shape == img.shape and o.dtype == np.uint8 for o in outs)
    assert any(not np.array_equal(o, img) for o in outs)

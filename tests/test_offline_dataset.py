"""Pure parts of scripts/build_offline_dataset.py (no downloads, no teachers)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

import build_offline_dataset as bod  # noqa: E402


def _synthetic_face(size: int = 60) -> "bod.FaceCrop":
    """A bright square 'face' (box 20..40) on a black 60x60 patch."""
    patch = np.zeros((size, size, 3), np.uint8)
    patch[20:40, 20:40] = 255
    return bod.FaceCrop(patch, np.array([20, 20, 40, 40], np.float32), "synthetic")


def test_paste_face_box_matches_pixels():
    canvas = np.zeros((240, 320, 3), np.uint8)
    box = bod.paste_face(canvas, _synthetic_face(), centre=(100.0, 80.0), side=40.0)
    np.testing.assert_allclose(box, [80, 60, 120, 100], atol=1e-4)
    # the pasted bright area sits on the box (soft mask: check the core and the far outside)
    assert canvas[70:90, 90:110].min() > 200
    assert canvas[:40].max() == 0 and canvas[:, 160:].max() == 0


def test_paste_face_flip_and_stretch():
    canvas = np.zeros((240, 320, 3), np.uint8)
    box = bod.paste_face(canvas, _synthetic_face(), centre=(160.0, 120.0), side=20.0, stretch=1.5, flip=True)
    w, h = box[2] - box[0], box[3] - box[1]
    assert w == pytest.approx(30.0, abs=1e-3) and h == pytest.approx(20.0, abs=1e-3)
    assert (box[0] + box[2]) / 2 == pytest.approx(160.0)


def test_rotated_box_grows_with_angle_and_is_symmetric():
    base = np.array([0, 0, 20, 40], np.float32)
    b0 = bod.rotated_box(base, (50, 50), 1.0, 0.0)
    np.testing.assert_allclose(b0, [40, 30, 60, 70], atol=1e-4)
    b15 = bod.rotated_box(base, (50, 50), 1.0, 15.0)
    bm15 = bod.rotated_box(base, (50, 50), 1.0, -15.0)
    np.testing.assert_allclose(b15, bm15, atol=1e-4)
    assert b15[2] - b15[0] > 20 and b15[3] - b15[1] < 40  # tall ellipse gets wider, less tall


def test_elliptical_mask_is_soft_and_centred():
    m = bod.elliptical_mask((100, 100), np.array([30, 30, 70, 70], np.float32))
    assert m[50, 50] == pytest.approx(1.0)
    assert m[0, 0] == 0.0 and m[99, 99] == 0.0
    edge = m[50, 50 + 23]  # near the ellipse border (half-axis 20 * 1.15)
    assert 0.0 < edge < 1.0


def test_cut_face_pads_outside_the_image():
    img = np.full((50, 50, 3), 7, np.uint8)
    crop = bod.cut_face(img, np.array([0, 0, 20, 20], np.float32), "x", margin=0.5)
    assert crop.patch.shape[:2] == (40, 40)
    np.testing.assert_allclose(crop.box, [10, 10, 30, 30])
    assert crop.side == pytest.approx(20.0)


def test_label_policy():
    rf = (np.array([[10, 10, 50, 50], [100, 100, 140, 140], [200, 200, 240, 240], [300, 10, 305, 15]], np.float32),
          np.array([0.95, 0.92, 0.6, 0.99], np.float32))
    yn = (np.array([[12, 11, 50, 52], [400, 100, 440, 140]], np.float32), np.array([0.9, 0.8], np.float32))
    lab = bod.label_policy(rf, yn)
    # confirmed face; unconfirmed 0.92 -> ignore; 0.6 -> ignore; tiny 5 px -> ignore; YuNet-only -> ignore
    assert lab.ignore.tolist() == [False, True, True, True, True]
    assert lab.origin == ["both", "rf", "rf", "rf", "yn"]
    assert lab.boxes.dtype == np.float32 and lab.boxes.shape == (5, 4)


def test_make_composite_boxes_inside_and_valid():
    rng = np.random.default_rng(0)
    bgs = [np.full((300, 400, 3), 90, np.uint8), np.full((200, 200, 3), 30, np.uint8)]
    donors = [_synthetic_face(60), _synthetic_face(120)]
    for k in range(20):
        img, boxes, ign = bod.make_composite(np.random.default_rng([1, k]), bgs, donors, donors[:1])
        h, w = img.shape[:2]
        assert img.dtype == np.uint8 and img.ndim == 3
        assert len(boxes) == len(ign)
        if len(boxes):
            assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
            assert (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
            assert (boxes[:, 2] >= boxes[:, 0]).all() and (boxes[:, 3] >= boxes[:, 1]).all()
    a = bod.make_composite(np.random.default_rng([1, 3]), bgs, donors, donors[:1])
    b = bod.make_composite(np.random.default_rng([1, 3]), bgs, donors, donors[:1])
    np.testing.assert_array_equal(a[0], b[0])  # reproducible for a seed
    np.testing.assert_array_equal(a[1], b[1])


def test_skin_fraction():
    skin = np.zeros((10, 10, 3), np.uint8)
    skin[:] = (120, 150, 210)  # BGR of a light skin tone
    blue = np.zeros((10, 10, 3), np.uint8)
    blue[:] = (200, 60, 20)
    assert bod.skin_fraction(skin) == 1.0
    assert bod.skin_fraction(blue) == 0.0


def test_cut_distractors_stay_clear_of_faces():
    # a white face (and its 30 % surround, also white) in the middle of a textured image
    rng = np.random.default_rng(0)
    img = rng.integers(0, 200, (300, 400, 3)).astype(np.uint8)
    face = np.array([[170, 120, 230, 180]], np.float32)
    img[102:199, 152:249] = 255  # the face grown by 30 % on each side
    crops = bod.cut_distractors(np.random.default_rng(1), img, face, 30, "t")
    assert 20 <= len(crops) <= 30
    for c in crops:
        x1, y1, x2, y2 = (int(round(v)) for v in c.box)
        inside = c.patch[y1:y2, x1:x2]
        assert inside.size and not (inside == 255).all(axis=2).any()
        assert 0.6 <= (c.box[2] - c.box[0]) / (c.box[3] - c.box[1]) <= 1.0
    # a photo that is all face has no room for a distractor
    assert bod.cut_distractors(np.random.default_rng(1), img, np.array([[0, 0, 400, 300]], np.float32), 5, "t") == []


def test_make_composite_distractors_never_touch_a_label():
    """Green distractors are pasted, unlabelled, and no labelled box holds a green pixel."""
    bgs = [np.full((300, 400, 3), 90, np.uint8)]
    donors = [_synthetic_face(60), _synthetic_face(120)]
    green = np.zeros((60, 60, 3), np.uint8)
    green[..., 1] = 255
    distractors = [bod.FaceCrop(green, np.array([15, 12, 45, 48], np.float32), "green")]
    pasted = 0
    for k in range(40):
        img, boxes, ign = bod.make_composite(np.random.default_rng([2, k]), bgs, donors, donors[:1], distractors)
        i = img.astype(int)
        is_green = i[..., 1] > np.maximum(i[..., 0], i[..., 2]) + 100  # face tints stay far below this
        pasted += int(is_green.any())
        for b in boxes:
            x1, y1, x2, y2 = int(np.floor(b[0])), int(np.floor(b[1])), int(np.ceil(b[2])), int(np.ceil(b[3]))
            assert not is_green[y1:y2, x1:x2].any(), (k, b)
    assert pasted >= 20  # 80 % of composites get at least one distractor


def test_no_distractors_keeps_the_version_2_composites():
    """--distractors-per-photo 0 gives an empty pool, and an empty pool leaves the RNG untouched."""
    bgs = [np.full((300, 400, 3), 90, np.uint8)]
    photos = [(bod.PHOTOS[0], np.zeros((100, 100, 3), np.uint8), None)]
    assert bod.distractor_pool(0, photos, bgs, ["bg"], np.zeros((200, 25, 25), np.float32)) == []
    donors = [_synthetic_face(60), _synthetic_face(120)]
    a = bod.make_composite(np.random.default_rng([1, 5]), bgs, donors, donors[:1], [])
    b = bod.make_composite(np.random.default_rng([1, 5]), bgs, donors, donors[:1])
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_write_annotations_roundtrip(tmp_path):
    from facedet.data.generic import read_generic

    recs = [
        {"file": "images/train/000001.jpg", "width": 640, "height": 480,
         "boxes": np.array([[1.5, 2, 30.25, 40]], np.float32), "ignore": np.array([True])},
        {"file": "images/train/000002.jpg", "width": 320, "height": 240, "boxes": np.zeros((0, 4), np.float32), "ignore": np.zeros(0, bool)},
    ]
    path = tmp_path / "train.json"
    bod.write_annotations(path, recs)
    doc = json.loads(path.read_text())
    assert doc["format"] == "facedet-generic" and doc["version"] == 1
    assert doc["images"][0]["faces"] == [{"box": [1.5, 2, 30.25, 40], "ignore": True}]
    assert doc["images"][1]["faces"] == []
    back = read_generic(path)
    assert back[0].width == 640 and back[1].boxes.shape == (0, 4)


def test_photo_groups_share_a_split_and_val_has_photos():
    groups: dict[str, set] = {}
    for p in bod.PHOTOS:
        if p.group:
            groups.setdefault(p.group, set()).add(p.split)
    assert all(len(v) == 1 for v in groups.values())
    assert sum(p.split == "val" for p in bod.PHOTOS) >= 8
    assert not any("dlib" in p.path.lower() for p in bod.PHOTOS)


def test_photo_specs_are_consistent():
    sids = [p.sid for p in bod.PHOTOS]
    assert len(set(sids)) == len(sids)
    assert all(p.pkg in bod.PACKAGES for p in bod.PHOTOS)
    assert len({(p.pkg, p.path) for p in bod.PHOTOS}) == len(bod.PHOTOS)
    # tight crops only donate faces: never validation photos, never training views
    assert all(p.split == "train" for p in bod.PHOTOS if not p.views)
    # the default is recipe 4's 27 photos; recipe 5 (--extra-photos) added train photos only
    assert bod.selected_photos(extra_photos=True) == bod.PHOTOS
    old = bod.selected_photos(extra_photos=False)
    assert len(old) == 27 and all(p.recipe <= 4 for p in old)
    assert all(p.split == "train" for p in bod.PHOTOS if p.recipe > 4)
    assert [p for p in bod.PHOTOS if p.split == "val"] == [p for p in old if p.split == "val"]
    assert bod.parse_args([]).extra_photos is False and bod.parse_args(["--extra-photos"]).extra_photos is True
    # no training photo was picked for a validation face's identity (see PHOTOS' comment)
    assert not any("walter" in p.path.lower() for p in bod.PHOTOS)

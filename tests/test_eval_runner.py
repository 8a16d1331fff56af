"""The test-time runner with a fake detector: scale schedule, flip mapping, voting, files, resume."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from facedet.errors import FacedetError
from facedet.evaluation.runner import (
    RunItem,
    bbox_vote,
    flip_boxes,
    multiscale_detect,
    multiscale_schedule,
    run_detector,
    wider_items,
)
from facedet.evaluation.wider import read_wider_pred_file


class BrightBoxDetector:
    """Finds the bounding box of the bright pixels (in original pixels), records every call."""

    def __init__(self, score=0.9):
        self.calls = []
        self.score = score

    def detect(self, image, *, threshold=0.5, nms_threshold=0.3, max_faces=750, scale=None):
        self.calls.append(dict(scale=scale, threshold=threshold, nms_threshold=nms_threshold, max_faces=max_faces, first_col=image[:, 0].copy()))
        ys, xs = np.nonzero(image[..., 0] > 128)
        if len(xs) == 0:
            return SimpleNamespace(boxes=np.zeros((0, 4), np.float32), scores=np.zeros(0, np.float32))
        box = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], np.float32)
        return SimpleNamespace(boxes=box, scores=np.array([self.score], np.float32))


def _image(h, w, box):
    img = np.zeros((h, w, 3), np.uint8)
    x1, y1, x2, y2 = box
    img[y1:y2, x1:x2] = 255
    return img


def test_schedule_small_image_enlarges_in_powers_of_two():
    s = multiscale_schedule(100, 100)
    m = math.sqrt(1700 * 1200 / 10000)
    assert s["m"] == pytest.approx(m) and s["s0"] == 1.0 and s["shrink"] == 0.5
    assert s["enlarge"] == pytest.approx([2.0, 4.0, 8.0, m])
    assert s["enlarge_keeps_small"]


def test_schedule_typical_and_large_images():
    s = multiscale_schedule(768, 1024)  # m ~ 1.6: one enlarge pass at m
    m = math.sqrt(1700 * 1200 / (768 * 1024))
    assert s["s0"] == 1.0 and s["shrink"] == 0.5 and s["enlarge"] == pytest.approx([m]) and s["enlarge_keeps_small"]
    s = multiscale_schedule(2000, 3000)  # m < 0.75: everything shrinks
    m = math.sqrt(1700 * 1200 / 6e6)
    assert s["s0"] == pytest.approx(m) and s["shrink"] == pytest.approx(0.5 * m)
    assert s["enlarge"] == pytest.approx([(0.5 * m + m) / 2]) and not s["enlarge_keeps_small"]


def test_flip_mapping_is_exact():
    b = np.array([[10.0, 5, 30, 25]])
    assert flip_boxes(b, 100).tolist() == [[70, 5, 90, 25]]
    assert np.array_equal(flip_boxes(flip_boxes(b, 100), 100), b)


def test_multiscale_calls_and_flip_back():
    det = BrightBoxDetector()
    img = _image(100, 120, (10, 20, 60, 70))  # 50x50 face, off-centre horizontally
    boxes, scores = multiscale_detect(det, img, threshold=0.01)
    sch = multiscale_schedule(100, 120)
    assert [c["scale"] for c in det.calls] == pytest.approx([sch["s0"], sch["s0"], sch["shrink"], *sch["enlarge"]])
    assert all(c["threshold"] == 0.01 and c["nms_threshold"] == 0.3 for c in det.calls)
    # second call saw the mirrored image: its first column is the original's last column
    assert np.array_equal(det.calls[1]["first_col"], img[:, -1])
    # every pass found the same box (flip mapped back exactly) -> one voted box, the face
    assert boxes.tolist() == [[10, 20, 60, 70]] and scores.tolist() == pytest.approx([0.9])


class ScaleScoredDetector(BrightBoxDetector):
    """Scores reveal which pass a voted box came from: shrink 0.95, enlarge 0.9, s0/flip 0.5."""

    def __init__(self, h, w):
        super().__init__()
        self.sch = multiscale_schedule(h, w)

    def detect(self, image, *, scale=None, **kw):
        d = super().detect(image, scale=scale, **kw)
        self.score = 0.95 if scale == self.sch["shrink"] else 0.9 if scale in self.sch["enlarge"] else 0.5
        d.scores[:] = self.score
        return d


def test_multiscale_size_filters():
    # 20x20 face: the shrink pass (needs larger side + 1 > 30) drops it, enlarge keeps it (+1 < 100)
    boxes, scores = multiscale_detect(ScaleScoredDetector(100, 100), _image(100, 100, (0, 0, 20, 20)))
    assert boxes.tolist() == [[0, 0, 20, 20]] and scores.tolist() == pytest.approx([0.9])
    # 29 pixels: +1 = 30 is not > 30, still dropped by the shrink pass; 30 pixels: kept
    _, scores = multiscale_detect(ScaleScoredDetector(100, 100), _image(100, 100, (0, 0, 29, 29)))
    assert scores.tolist() == pytest.approx([0.9])
    _, scores = multiscale_detect(ScaleScoredDetector(100, 100), _image(100, 100, (0, 0, 30, 30)))
    assert scores.tolist() == pytest.approx([0.95])
    # 99 pixels (+1 = 100, not < 100): the enlarge passes drop it; 98 pixels: kept
    for side, expected in ((99, 0.5), (98, 0.9)):
        det = ScaleScoredDetector(120, 120)
        det.sch = dict(det.sch, shrink=-1.0)  # the shrink pass scores 0.5 like s0 here
        _, scores = multiscale_detect(det, _image(120, 120, (0, 0, side, side)))
        assert scores.tolist() == pytest.approx([expected])


def test_bbox_vote_weighted_mean_singletons_and_threshold():
    dets = np.array(
        [
            [0, 0, 9, 9, 0.9],
            [0, 0, 9, 2, 0.3],  # +1 IoU with the first: 30/100 = 0.3 exactly -> merged
            [0, 0, 9, 1.9, 0.5],  # 29/100 < 0.3 -> its own group (a singleton: kept)
            [100, 100, 110, 110, 0.4],  # far away singleton: kept (the reference drops it)
        ]
    )
    out = bbox_vote(dets)
    assert len(out) == 3
    assert out[:, 4].tolist() == [0.9, 0.5, 0.4]  # group max scores, descending
    w = np.array([0.9, 0.3])
    assert out[0, :4] == pytest.approx((dets[[0, 1], :4] * w[:, None]).sum(0) / w.sum())
    assert out[1, :4].tolist() == [0, 0, 9, 1.9] and out[2, :4].tolist() == [100, 100, 110, 110]
    assert len(bbox_vote(dets, max_out=2)) == 2
    assert bbox_vote(np.zeros((0, 5))).shape == (0, 5)


def _items(tmp_path, n=3):
    import cv2

    items = []
    for i in range(n):
        p = tmp_path / "imgs" / f"im{i}.png"
        p.parent.mkdir(exist_ok=True)
        cv2.imwrite(str(p), _image(40, 50, (5 + i, 5, 25 + i, 30)))
        items.append(RunItem(("ev", f"im{i}"), p, tmp_path / "out" / "ev" / f"im{i}.txt", f"im{i}"))
    return items


@pytest.mark.parametrize("workers", [0, 2])
def test_run_writes_official_files_and_resumes(tmp_path, workers):
    items = _items(tmp_path)
    det = BrightBoxDetector(score=0.75)
    res, stats = run_detector(det, items, mode="single", workers=workers, show_progress=False)
    assert stats.processed == 3 and stats.skipped == 0 and set(res) == {it.key for it in items}
    assert all(c["scale"] is None for c in det.calls)  # single: the detector's default scale
    text = items[1].out.read_text().splitlines()
    assert text[:2] == ["im1", "1"]
    a = read_wider_pred_file(items[1].out)
    assert a.tolist() == [[6, 5, 20, 25, 0.75]]  # x y w h score
    # resume: existing files are skipped, a removed one is redone
    items[0].out.unlink()
    det2 = BrightBoxDetector()
    _, stats = run_detector(det2, items, mode="single", workers=workers, show_progress=False)
    assert (stats.processed, stats.skipped) == (1, 2) and len(det2.calls) == 1
    _, stats = run_detector(BrightBoxDetector(), items, mode="single", force=True, workers=workers, show_progress=False)
    assert (stats.processed, stats.skipped) == (3, 0)


def test_run_multiscale_mode_and_errors(tmp_path):
    items = _items(tmp_path, 1)
    det = BrightBoxDetector()
    run_detector(det, items, mode="multiscale", workers=0, show_progress=False)
    assert len(det.calls) >= 4
    with pytest.raises(FacedetError, match="unknown mode"):
        run_detector(det, items, mode="bogus")
    bad = [RunItem("x", tmp_path / "missing.jpg", None, "x")]
    with pytest.raises(FacedetError, match="missing.jpg"):
        run_detector(det, bad, workers=1, show_progress=False)


def test_run_pyramid_mode_is_what_detect_runs():
    """--mode pyramid gives exactly Detector.detect(pyramid=True); single scale differs."""
    from pathlib import Path

    from facedet.imageio import read_image
    from facedet.inference import Detector

    path = Path(__file__).resolve().parent / "data" / "astronaut.jpg"
    det = Detector.load()  # the shipped weights
    item = [RunItem("a", path, None, "a")]
    res, _ = run_detector(det, item, mode="pyramid", workers=0, show_progress=False)
    ref = det.detect(read_image(path), threshold=0.01, pyramid=True)
    np.testing.assert_array_equal(res["a"][0], ref.boxes)
    np.testing.assert_array_equal(res["a"][1], ref.scores)
    single, _ = run_detector(det, item, mode="single", workers=0, show_progress=False)
    assert len(single["a"][1]) != len(ref.scores)


def test_wider_items_layout(tmp_path):
    root = tmp_path / "wider"
    for ev, names in {"1--Handshaking": ["b.jpg", "a.jpg"], "0--Parade": ["c.jpg", "notes.txt"]}.items():
        (root / "WIDER_val" / "images" / ev).mkdir(parents=True)
        for n in names:
            (root / "WIDER_val" / "images" / ev / n).write_bytes(b"")
    items = wider_items(root, "val", tmp_path / "out")
    assert [it.key for it in items] == [("0--Parade", "c"), ("1--Handshaking", "a"), ("1--Handshaking", "b")]
    assert items[1].out == tmp_path / "out" / "1--Handshaking" / "a.txt" and items[1].name == "a"
    with pytest.raises(FacedetError, match="WIDER_test/images"):
        wider_items(root, "test", tmp_path / "out")


@pytest.mark.parametrize("workers", [0, 2])
def test_run_skips_unreadable_images_with_on_error(tmp_path, workers):
    items = _items(tmp_path)
    items[1].image.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 8)  # broken
    seen = []
    res, stats = run_detector(BrightBoxDetector(), items, mode="single", workers=workers, show_progress=False, on_error=lambda f, msg: seen.append((f, msg)))
    assert set(res) == {items[0].key, items[2].key} and stats.processed == 2
    assert [f for f, _ in stats.failed] == [items[1].image] and seen == stats.failed
    assert items[0].out.is_file() and not items[1].out.exists() and items[2].out.is_file()

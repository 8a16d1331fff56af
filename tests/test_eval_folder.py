"""COCO-style AP for annotated folders, and the VOC / generic annotation readers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from facedet.data.generic import read_generic, write_generic
from facedet.data.types import ImageAnnotation
from facedet.data.voc import read_voc_dir, read_voc_xml
from facedet.errors import FacedetError
from facedet.boxes import box_iou
from facedet.evaluation.ap import COCO_IOUS, coco_ap, match_image
from facedet.evaluation.folder import evaluate_folder, load_folder_annotations, read_folder_predictions


# --------------------------------------------------------------------------- slow oracle (COCO evaluateImg + accumulate, one class)


def oracle_iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def oracle_folder_ap(anns, preds, t):
    """Greedy matching per image, pooled, COCO 101-point AP -- plain loops."""
    records = []  # (score, status) status: 1 tp, 0 fp, None ignored
    num_gt = 0
    for a in anns:
        num_gt += int(sum(1 for ig in a.ignore if not ig))
        boxes, scores = preds.get(a.file, (np.zeros((0, 4)), np.zeros(0)))
        order = sorted(range(len(scores)), key=lambda i: -scores[i])  # stable
        taken = [False] * len(a.boxes)
        for d in order:
            best, best_iou = -1, -1.0
            for g in range(len(a.boxes)):
                if a.ignore[g] or taken[g]:
                    continue
                o = oracle_iou(boxes[d], a.boxes[g])
                if o >= t and o > best_iou:
                    best, best_iou = g, o
            if best >= 0:
                taken[best] = True
                records.append((scores[d], 1))
                continue
            on_ignored = any(a.ignore[g] and oracle_iou(boxes[d], a.boxes[g]) >= t for g in range(len(a.boxes)))
            records.append((scores[d], None if on_ignored else 0))
    records = [r for r in sorted(records, key=lambda r: -r[0]) if r[1] is not None]
    tp = fp = 0
    rec, prec = [], []
    for _, s in records:
        tp += s
        fp += 1 - s
        rec.append(tp / num_gt)
        prec.append(tp / (tp + fp))
    for i in range(len(prec) - 2, -1, -1):
        prec[i] = max(prec[i], prec[i + 1])
    total = 0.0
    for k in range(101):
        r = k / 100
        q = 0.0
        for i in range(len(rec)):
            if rec[i] >= r - 1e-12:
                q = prec[i]
                break
        total += q
    return total / 101


def _random_folder(seed):
    rng = np.random.default_rng(seed)
    anns, preds = [], {}
    for i in range(12):
        m = 0 if i % 5 == 0 else int(rng.integers(1, 8))
        xy = rng.uniform(0, 200, (m, 2))
        wh = rng.uniform(5, 60, (m, 2))
        boxes = np.hstack([xy, xy + wh])
        ig = rng.random(m) < 0.2
        a = ImageAnnotation(f"img{i}.jpg", boxes, ig)
        anns.append(a)
        dets, sc = [], []
        for b in a.boxes:
            for _ in range(int(rng.integers(0, 3))):
                dets.append(b + rng.normal(0, 3, 4))
                sc.append(np.round(rng.uniform(0.3, 1), 2))
        for _ in range(int(rng.integers(0, 4))):
            p = rng.uniform(0, 200, 2)
            dets.append(np.r_[p, p + rng.uniform(5, 60, 2)])
            sc.append(np.round(rng.uniform(0, 0.8), 2))
        preds[a.file] = (np.asarray(dets, float).reshape(-1, 4), np.asarray(sc, float))
    return anns, preds


@pytest.mark.parametrize("seed", range(4))
def test_folder_ap_matches_loop_oracle(seed):
    anns, preds = _random_folder(seed)
    res = evaluate_folder(anns, preds)
    for t in (0.5, 0.75, 0.95):
        assert res.ap_per_iou[t] == pytest.approx(oracle_folder_ap(anns, preds, t), abs=1e-9)
    assert res.ap50_95 == pytest.approx(np.mean([oracle_folder_ap(anns, preds, float(t)) for t in COCO_IOUS]), abs=1e-9)
    assert 0 < res.ap50 < 1


def test_hand_computed_coco_ap_and_operating_point():
    gt = ImageAnnotation("a.jpg", [[0, 0, 10, 10], [20, 0, 30, 10]])
    neg = ImageAnnotation("neg.jpg")
    preds = {
        "a.jpg": (np.array([[0, 0, 10, 10], [50, 50, 60, 60], [20, 0, 30, 10]], float), np.array([0.9, 0.8, 0.7])),
        "neg.jpg": (np.zeros((0, 4)), np.zeros(0)),
    }
    res = evaluate_folder([gt, neg], preds, threshold=0.75)
    # points (R, P): (0.5, 1), (0.5, 0.5), (1, 2/3); envelope 1 up to R 0.5, then 2/3
    assert res.ap50 == pytest.approx((51 * 1 + 50 * 2 / 3) / 101)
    assert res.ap50_95 == pytest.approx(res.ap50)  # exact boxes: the same at every IoU
    assert (res.tp, res.fp) == (1, 1) and res.precision == 0.5 and res.recall == 0.5 and res.f1 == 0.5
    assert res.negatives == 1 and res.faces == 2 and res.images == 2
    # a false positive on the negative image lowers precision
    preds["neg.jpg"] = (np.array([[0, 0, 5, 5]], float), np.array([0.95]))
    res2 = evaluate_folder([gt, neg], preds)
    assert res2.ap50 < res.ap50


def test_iou_exactly_on_threshold_matches_and_ignored_boxes_absorb():
    gt = np.array([[0.0, 0, 10, 10]])
    half = np.array([[0.0, 0, 10, 5]])  # IoU exactly 0.5
    assert box_iou(half, gt)[0, 0] == 0.5
    _, tp, ig = match_image(half, [0.9], gt, [False], np.array([0.5, 0.55]))
    assert tp[:, 0].tolist() == [True, False] and not ig.any()
    # two detections on an ignored face: both ignored, not false positives
    _, tp, ig = match_image(np.array([[0.0, 0, 10, 10], [0, 0, 10, 9]]), [0.9, 0.8], gt, [True], np.array([0.5]))
    assert not tp.any() and ig.all()
    # a detection prefers a free non-ignored face over an ignored one
    gts = np.array([[0.0, 0, 10, 10], [0, 0, 10, 9]])
    _, tp, ig = match_image(np.array([[0.0, 0, 10, 10]]), [0.9], gts, [True, False], np.array([0.5]))
    assert tp.all()


def test_no_faces_gives_undefined_ap():
    res = evaluate_folder([ImageAnnotation("a.jpg")], {"a.jpg": (np.array([[0, 0, 5, 5.0]]), np.array([0.9]))})
    assert np.isnan(res.ap50) and res.to_json()["ap50"] is None
    assert json.dumps(res.to_json())  # valid JSON, no NaN
    assert np.isnan(coco_ap(np.zeros(0, bool), np.zeros(0, bool), 0))


def test_unknown_prediction_key_is_an_error():
    with pytest.raises(FacedetError, match="zzz.jpg"):
        evaluate_folder([ImageAnnotation("a.jpg")], {"zzz.jpg": (np.zeros((0, 4)), np.zeros(0))})


# --------------------------------------------------------------------------- VOC


VOC = """<annotation>
  <folder>x</folder><filename>{fn}</filename>
  <size><width>640</width><height>480</height><depth>3</depth></size>
  {objs}
</annotation>
"""


def _obj(name, b, difficult=0):
    return f"<object><name>{name}</name><difficult>{difficult}</difficult><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"


def test_voc_reader_coordinates_difficult_and_classes(tmp_path):
    p = tmp_path / "a.xml"
    p.write_text(VOC.format(fn="a.jpg", objs=_obj("person", (1, 1, 10, 20)) + _obj("face", (11, 5, 30.5, 25), 1) + _obj("car", (1, 1, 2, 2))))
    a = read_voc_xml(p)
    assert a.file == "a.jpg" and (a.width, a.height) == (640, 480)
    # 1-based inclusive -> continuous: pixel 1..10 is [0, 10]
    assert a.boxes.tolist() == [[0, 0, 10, 20], [10, 4, 30.5, 25], [0, 0, 2, 2]]
    assert a.ignore.tolist() == [False, True, False]
    assert read_voc_xml(p, one_based=False).boxes[0].tolist() == [1, 1, 10, 20]
    assert len(read_voc_xml(p, classes=["person", "face"]).boxes) == 2
    assert len(read_voc_xml(p, classes=[]).boxes) == 0
    assert [x.file for x in read_voc_dir(tmp_path)] == ["a.jpg"]


@pytest.mark.parametrize(
    "body, match",
    [
        ("<annotation>\n<object>\n</annotation>", r"a.xml:3: malformed XML"),
        (VOC.format(fn="a.jpg", objs="<object><name>f</name></object>"), "object 1: missing <bndbox>"),
        (VOC.format(fn="a.jpg", objs=_obj("f", (1, 1, "ten", 3))), "object 1: <xmax> 'ten' is not a number"),
        (VOC.format(fn="a.jpg", objs=_obj("f", (1, 1, 2, 2)) + _obj("f", (10, 1, 5, 3))), "object 2: xmax/ymax smaller"),
        (VOC.format(fn="a.jpg", objs=_obj("f", (1, 1, 2, 2), "maybe")), "object 1: <difficult>"),
        ("<foo/>", "expected <annotation>"),
    ],
)
def test_voc_reader_errors(tmp_path, body, match):
    p = tmp_path / "a.xml"
    p.write_text(body)
    with pytest.raises(FacedetError, match=match):
        read_voc_xml(p)


# --------------------------------------------------------------------------- generic JSON


def test_generic_roundtrip_and_negatives(tmp_path):
    anns = [
        ImageAnnotation("images/a.jpg", [[1.5, 2, 30.25, 40], [0.1, 0.2, 5, 6]], [False, True], 640, 480),
        ImageAnnotation("images/neg.jpg"),
    ]
    p = tmp_path / "g.json"
    write_generic(p, anns)
    doc = json.loads(p.read_text())
    assert doc["format"] == "facedet-generic" and doc["version"] == 1
    assert doc["images"][0]["faces"][1] == {"box": [0.1, 0.2, 5, 6], "ignore": True}
    assert doc["images"][1] == {"file": "images/neg.jpg", "faces": []}
    back = read_generic(p)
    assert [b.file for b in back] == ["images/a.jpg", "images/neg.jpg"]
    assert np.array_equal(back[0].boxes, anns[0].boxes) and back[0].ignore.tolist() == [False, True]
    assert (back[0].width, back[0].height) == (640, 480) and back[1].width is None
    assert back[1].boxes.shape == (0, 4)
    write_generic(tmp_path / "e.json", [])
    assert read_generic(tmp_path / "e.json") == []


@pytest.mark.parametrize(
    "doc, match",
    [
        ({"format": "coco", "version": 1, "images": []}, "'format' must be"),
        ({"format": "facedet-generic", "version": 2, "images": []}, "unsupported 'version'"),
        ({"format": "facedet-generic", "version": 1, "images": [{"faces": []}]}, r"images\[0\]: 'file'"),
        ({"format": "facedet-generic", "version": 1, "images": [{"file": "a", "faces": [{"box": [0, 0, 1]}]}]}, r"images\[0\].faces\[0\].box"),
        ({"format": "facedet-generic", "version": 1, "images": [{"file": "a", "faces": [{"box": [5, 0, 1, 1]}]}]}, r"faces\[0\].box: x2 < x1"),
        ({"format": "facedet-generic", "version": 1, "images": [{"file": "a", "faces": [{"box": [0, 0, 1, 1], "ignore": "yes"}]}]}, r"ignore"),
        ({"format": "facedet-generic", "version": 1, "images": [{"file": "a", "faces": []}, {"file": "a", "faces": []}]}, r"images\[1\]: 'file' 'a' already listed"),
        ({"format": "facedet-generic", "version": 1, "images": [{"file": "a", "width": -3, "faces": []}]}, "'width' must be a positive integer"),
        ({"format": "facedet-generic", "version": 1, "images": [{"file": "a"}]}, "'faces' must be a list"),
    ],
)
def test_generic_errors(tmp_path, doc, match):
    p = tmp_path / "g.json"
    p.write_text(json.dumps(doc))
    with pytest.raises(FacedetError, match=match):
        read_generic(p)


def test_generic_invalid_json_names_line(tmp_path):
    p = tmp_path / "g.json"
    p.write_text('{"format": "facedet-generic",\n "version": 1,\n "images": [,]}')
    with pytest.raises(FacedetError, match=r"g.json:3:\d+: invalid JSON"):
        read_generic(p)
    with pytest.raises(FacedetError, match="not found"):
        read_generic(tmp_path / "missing.json")


# --------------------------------------------------------------------------- folder layout


def _touch_images(root, names):
    for n in names:
        (root / n).parent.mkdir(parents=True, exist_ok=True)
        (root / n).write_bytes(b"")


def test_voc_folder_resolution_and_unannotated_negatives(tmp_path):
    imgs, xml = tmp_path / "JPEGImages", tmp_path / "Annotations"
    _touch_images(imgs, ["a.jpg", "sub/b.png", "c.jpg"])
    xml.mkdir()
    (xml / "a.xml").write_text(VOC.format(fn="a.jpg", objs=_obj("head", (1, 1, 10, 10))))
    (xml / "sub").mkdir()
    (xml / "sub" / "b.xml").write_text(VOC.format(fn="renamed.jpg", objs=""))  # by stem
    anns, unannotated = load_folder_annotations(imgs, xml)
    assert [a.file for a in anns] == ["a.jpg", "c.jpg", "sub/b.png"]
    assert unannotated == 1 and len(anns[1].boxes) == 0
    (xml / "d.xml").write_text(VOC.format(fn="d.jpg", objs=""))
    with pytest.raises(FacedetError, match="d.xml: image 'd.jpg' not found"):
        load_folder_annotations(imgs, xml)


def test_generic_folder_and_prediction_files(tmp_path):
    imgs = tmp_path / "imgs"
    _touch_images(imgs, ["x/a.jpg", "b.jpg"])
    write_generic(tmp_path / "g.json", [ImageAnnotation("x/a.jpg", [[0, 0, 10, 10]]), ImageAnnotation("b.jpg")])
    anns, _ = load_folder_annotations(imgs, tmp_path / "g.json")
    assert [a.file for a in anns] == ["b.jpg", "x/a.jpg"]
    pred = tmp_path / "pred"
    (pred / "x").mkdir(parents=True)
    (pred / "x" / "a.txt").write_text("a\n1\n0.0 0.0 10.0 10.0 0.900\n")
    preds, missing = read_folder_predictions(pred, anns)
    assert missing == 1 and preds["x/a.jpg"][0].tolist() == [[0, 0, 10, 10]]  # x y w h -> xyxy
    (pred / "zzz.txt").write_text("z\n0\n")
    with pytest.raises(FacedetError, match="zzz.txt: prediction for an image that is not in the annotations"):
        read_folder_predictions(pred, anns)
    write_generic(tmp_path / "g2.json", [ImageAnnotation("nope.jpg")])
    with pytest.raises(FacedetError, match="nope.jpg"):
        load_folder_annotations(imgs, tmp_path / "g2.json")

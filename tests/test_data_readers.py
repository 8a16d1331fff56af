"""Dataset readers on fixture files written in the official formats."""

import json

import cv2
import numpy as np
import pytest

from facedet.data.scut import load_scut
from facedet.data.wider import load_wider, parse_wider_gt
from facedet.errors import FacedetError
from facedet.training.trainer import load_data

WIDER_GT = """0--Parade/0_Parade_marchingband_1_5.jpg
3
78 221 7 8 2 0 0 0 0 0
10 20 0 8 0 0 0 0 0 0
50 60 30 40 0 0 0 1 0 0
1--Handshaking/1_Handshaking_empty_1.jpg
0
0 0 0 0 0 0 0 0 0 0
1--Handshaking/1_Handshaking_two_2.jpg
2
5 6 100 120 1 0 0 0 1 0
200 10 40 50 0 1 0 0 0 2
"""


def write_wider(root, split="train", text=WIDER_GT):
    (root / "wider_face_split").mkdir(parents=True, exist_ok=True)
    (root / "wider_face_split" / f"wider_face_{split}_bbx_gt.txt").write_text(text)
    for line in text.splitlines():
        if line.endswith(".jpg"):
            p = root / f"WIDER_{split}" / "images" / line
            p.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(p), np.full((300, 400, 3), 90, np.uint8))
    return root


def test_wider_reader_official_layout(tmp_path):
    recs = load_wider(write_wider(tmp_path), "train")
    assert [r.file for r in recs] == [
        "WIDER_train/images/0--Parade/0_Parade_marchingband_1_5.jpg",
        "WIDER_train/images/1--Handshaking/1_Handshaking_empty_1.jpg",
        "WIDER_train/images/1--Handshaking/1_Handshaking_two_2.jpg",
    ]
    # zero-size and invalid boxes dropped; xywh -> xyxy without +1
    assert recs[0].boxes.tolist() == [[78, 221, 85, 229]]
    assert len(recs[1].boxes) == 0  # zero faces + dummy line
    assert recs[2].boxes.tolist() == [[5, 6, 105, 126], [200, 10, 240, 60]]
    assert recs[0].boxes.dtype == np.float32 and not recs[2].ignore.any()


def test_wider_invalid_can_be_kept_as_ignored():
    recs = parse_wider_gt(WIDER_GT, invalid="ignore")
    assert recs[0].boxes.tolist() == [[78, 221, 85, 229], [50, 60, 80, 100]]
    assert recs[0].ignore.tolist() == [False, True]


@pytest.mark.parametrize(
    "text, line",
    [
        ("a.jpg\n1\n1 2 3 4 0 0 0 0 0\n", 3),  # nine fields
        ("a.jpg\ntwo\n1 2 3 4 0 0 0 0 0 0\n", 2),  # bad count
        ("a.jpg\n1\n1 2 x 4 0 0 0 0 0 0\n", 3),  # non-numeric
        ("a.jpg\n2\n1 2 3 4 0 0 0 0 0 0\n", 3),  # truncated record
        ("a.jpg\n0\n", 2),  # missing dummy line
        ("a.jpg\n1\n1 2 3 4 0 0 0 0 0 0\nnot-an-image\n", 4),
    ],
)
def test_wider_malformed_lines_name_file_and_line(text, line):
    with pytest.raises(FacedetError) as exc:
        parse_wider_gt(text, "gt.txt")
    assert str(exc.value).startswith(f"gt.txt:{line}:")
    assert "\n" not in str(exc.value)


def test_wider_bad_paths(tmp_path):
    with pytest.raises(FacedetError, match="not a folder"):
        load_wider(tmp_path / "nope")
    with pytest.raises(FacedetError, match="wider_face_train_bbx_gt.txt"):
        load_wider(tmp_path)
    with pytest.raises(FacedetError, match="unknown WIDER FACE split"):
        load_wider(tmp_path, "test")


VOC = """<annotation>
  <filename>{name}.jpg</filename>
  <size><width>320</width><height>240</height><depth>3</depth></size>
  {objects}
</annotation>"""
OBJ = "<object><name>person</name><difficult>{d}</difficult><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"


def write_scut(root, ids=("PartB_00001", "PartB_00002", "PartB_00003"), sets=("trainval",)):
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for k, name in enumerate(ids):
        objs = [OBJ.format(d=0, x1=11, y1=21, x2=50, y2=60), OBJ.format(d=1, x1=101, y1=101, x2=120, y2=130), OBJ.format(d=0, x1=5, y1=5, x2=4, y2=9)]
        (root / "Annotations" / f"{name}.xml").write_text(VOC.format(name=name, objects="\n".join(objs)))
        cv2.imwrite(str(root / "JPEGImages" / f"{name}.jpg"), np.full((240, 320, 3), 80, np.uint8))
    for s in sets:
        (root / "ImageSets" / "Main" / f"{s}.txt").write_text("\n".join(ids) + "\n")
    return root


def test_scut_reader(tmp_path):
    recs = load_scut(write_scut(tmp_path), "trainval")
    assert [r.file for r in recs] == ["JPEGImages/PartB_00001.jpg", "JPEGImages/PartB_00002.jpg", "JPEGImages/PartB_00003.jpg"]
    assert recs[0].boxes.tolist() == [[10, 20, 50, 60], [100, 100, 120, 130]]  # VOC 1-based inclusive -> continuous
    assert recs[0].ignore.tolist() == [False, True]
    assert (recs[0].width, recs[0].height) == (320, 240)


def test_scut_bad_layout(tmp_path):
    with pytest.raises(FacedetError, match="trainval.txt"):
        load_scut(tmp_path)
    root = write_scut(tmp_path)
    (root / "Annotations" / "PartB_00002.xml").write_text("<annotation><object>")
    with pytest.raises(FacedetError, match=r"PartB_00002.xml:\d+: malformed XML"):
        load_scut(root)
    (root / "Annotations" / "PartB_00002.xml").unlink()
    with pytest.raises(FacedetError, match=r"trainval.txt:2: annotation .* not found"):
        load_scut(root)


def test_load_data_splits(tmp_path):
    root = write_scut(tmp_path / "scut", ids=tuple(f"PartB_{i:05d}" for i in range(10)))
    train, val = load_data("scut", root, val_split=0.2, seed=3)
    assert len(train) == 8 and len(val) == 2 and not {r.file for r in train} & {r.file for r in val}
    assert load_data("scut", root, val_split=0.2, seed=3)[1][0].file == val[0].file  # deterministic
    wider = write_wider(tmp_path / "wider", "train")
    write_wider(wider, "val")
    train, val = load_data("wider", wider)
    assert len(train) == 3 and val[0].file.startswith("WIDER_val/")
    gen = tmp_path / "gen"
    gen.mkdir()
    doc = {"format": "facedet-generic", "version": 1, "images": [{"file": f"{i}.jpg", "faces": [{"box": [1, 2, 30, 40]}]} for i in range(5)]}
    (gen / "train.json").write_text(json.dumps(doc))
    train, val = load_data("generic", gen, val_split=0.0)
    assert len(train) == 5 and val == []
    (gen / "val.json").write_text(json.dumps(doc))
    assert len(load_data("generic", gen)[1]) == 5


def test_load_data_errors(tmp_path):
    with pytest.raises(FacedetError, match="does not exist"):
        load_data("generic", tmp_path / "missing")
    with pytest.raises(FacedetError, match="train.json not found"):
        load_data("generic", tmp_path)
    with pytest.raises(FacedetError, match="unknown data set kind"):
        load_data("coco", tmp_path)
    (tmp_path / "train.json").write_text('{"format": "facedet-generic", "version": 1, "images": [{"file": "a.jpg", "faces": [{"box": [5, 5, 1, 1]}]}]}')
    with pytest.raises(FacedetError, match=r"images\[0\]\.faces\[0\]\.box"):
        load_data("generic", tmp_path)

"""The shipped default weights: present, well-formed, documented, and they find real faces.

Each photo shows one face.  The reference boxes were checked by eye and agree
with both teacher detectors of the offline data set (RetinaFace and YuNet, IoU
> 0.9 with each); a detection counts as correct at IoU >= 0.5 (the WIDER /
PASCAL criterion).  `astronaut.jpg` was a training photo; `grace_hopper.jpg`
was held out of training.  The full held-out measurement (AP on all validation
photos) is `scripts/measure_val_ap.py`, reported in weights/README.md.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from facedet.boxes import box_iou
from facedet.cli import app
from facedet.imageio import read_image
from facedet.inference import Detector
from facedet.weights import default_weights_path, read_metadata, training_summary

ROOT = Path(__file__).resolve().parent.parent
ASTRONAUT = ROOT / "tests" / "data" / "astronaut.jpg"
FACES = {
    "astronaut.jpg": [178.0, 58.0, 270.0, 176.0],  # RetinaFace [178, 57, 273, 177], YuNet [178, 62, 267, 174]
    "grace_hopper.jpg": [178.0, 101.0, 354.0, 314.0],  # RetinaFace [178, 100, 355, 312], YuNet [182, 104, 351, 317]
}


def test_default_weights_are_shipped_with_a_model_card():
    path = default_weights_path("m4")
    assert path is not None and path.parent == ROOT / "weights"
    meta = read_metadata(path)
    assert meta["arch"] == "m4" and meta["input_size"] == "240x320"
    summary = training_summary(meta)
    # the training summary names the data and the epoch the weights come from
    assert summary.get("data") and isinstance(summary.get("epoch"), int)
    card = (ROOT / "weights" / "README.md").read_text()
    assert path.name in card


def _check_top_is_face(name: str, boxes: np.ndarray, scores: np.ndarray) -> None:
    """The highest-scoring detection is the face."""
    assert len(scores) >= 1, f"{name}: no face found"
    assert scores[0] == max(scores)
    ref = torch.tensor([FACES[name]])
    iou = float(box_iou(torch.as_tensor(boxes[:1], dtype=torch.float32), ref)[0, 0])
    assert iou >= 0.5, f"{name}: top box {boxes[0].tolist()} (score {scores[0]:.3f}) has IoU {iou:.2f} with the face"


@pytest.mark.parametrize("name", sorted(FACES))
def test_shipped_weights_find_the_face(name):
    det = Detector.load()  # the shipped default, as `facedet detect` uses it
    d = det.detect(read_image(ROOT / "tests" / "data" / name), pyramid=True)
    _check_top_is_face(name, d.boxes, d.scores)
    assert d.scores[0] > 0.9


def test_readme_main_job(tmp_path):
    """What README's first command runs, through the CLI, with boxes in the JSON."""
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["detect", str(ASTRONAUT), "--save", str(out), "--json", "-", "--quiet"])
    assert res.exit_code == 0, res.output
    records = json.loads(res.stdout)
    assert len(records) == 1 and records[0]["width"] == 512
    faces = records[0]["faces"]
    _check_top_is_face("astronaut.jpg", np.array([f["box"] for f in faces], np.float32), np.array([f["score"] for f in faces]))
    saved = read_image(out / "astronaut.jpg")
    assert saved.shape == (512, 512, 3)
    # the drawn box changed the image
    assert np.abs(saved.astype(int) - read_image(ASTRONAUT).astype(int)).max() > 100


def test_wheel_installs_carry_the_default_weights():
    """pyproject's data-files copy the shipped weights into non-editable installs."""
    import tomllib

    from facedet.weights import DEFAULT_WEIGHTS

    files = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["data-files"]["share/facedet/weights"]
    assert f"weights/{DEFAULT_WEIGHTS['m4']}" in files
    assert all((ROOT / f).is_file() for f in files)

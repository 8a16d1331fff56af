"""The shipped default weights: present, well-formed, documented, and they find real faces.

Each photo shows one face.  The reference boxes were checked by eye and agree
with both teacher detectors of the offline data set (RetinaFace and YuNet, IoU
> 0.9 with each); a detection counts as correct at IoU >= 0.5 (the WIDER /
PASCAL criterion).  `astronaut.jpg` was a training photo; `grace_hopper.jpg`
was held out of training.  The full held-out measurement (AP on all validation
photos) is `scripts/measure_val_ap.py`, reported in weights/README.md.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from facedet.boxes import box_iou
from facedet.cli import app
from facedet.imageio import read_image
from facedet.inference import Detector
from facedet.weights import DEFAULT_QUANTIZED, DEFAULT_WEIGHTS, default_weights_path, read_metadata, training_summary

ROOT = Path(__file__).resolve().parent.parent
ASTRONAUT = ROOT / "tests" / "data" / "astronaut.jpg"
FACES = {
    "astronaut.jpg": [178.0, 58.0, 270.0, 176.0],  # RetinaFace [178, 57, 273, 177], YuNet [178, 62, 267, 174]
    "grace_hopper.jpg": [178.0, 101.0, 354.0, 314.0],  # RetinaFace [178, 100, 355, 312], YuNet [182, 104, 351, 317]
}


def test_default_weights_are_shipped_with_a_model_card():
    path = default_weights_path("m4")
    assert path is not None and path.parent == ROOT / "weights"  # the repository layout; wheels carry them as package data
    meta = read_metadata(path)
    assert meta["arch"] == "m4" and meta["input_size"] == "240x320"
    summary = training_summary(meta)
    # the training summary names the data and the epoch the weights come from
    assert summary.get("data") and isinstance(summary.get("epoch"), int)
    quantized = default_weights_path("m4", quantized=True)
    assert quantized is not None and quantized.parent == path.parent and read_metadata(quantized)["arch"] == "m4"
    card = (ROOT / "weights" / "README.md").read_text()
    assert path.name in card and quantized.name in card


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


def test_wheel_installed_with_target_finds_its_weights(tmp_path):
    """Build a wheel, `pip install --target` it, and detect a face from another directory.

    Only facedet comes from the wheel (torch, OpenCV, ... from this environment, later on
    PYTHONPATH); the run must not see this checkout, so the shipped weights it finds are the
    wheel's package data.  `pip install --user` puts the package under a site directory the
    same way, so it is covered too.
    """
    src = tmp_path / "src"
    src.mkdir()
    for f in ROOT.iterdir():  # pyproject.toml, README.md, LICENSE...: what the build may read
        if f.is_file():
            shutil.copy2(f, src / f.name)
    shutil.copytree(ROOT / "facedet", src / "facedet", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copytree(ROOT / "weights", src / "weights")  # setup.py puts them into the wheel's package
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}
    pip = [sys.executable, "-m", "pip", "--quiet"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-index", "--no-build-isolation", "-w", str(tmp_path / "dist"), str(src)], check=True, env=env, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("facedet-*.whl")
    target = tmp_path / "target"
    subprocess.run([*pip, "install", "--no-deps", "--no-index", "--target", str(target), str(wheel)], check=True, env=env, capture_output=True)
    assert sorted(p.name for p in (target / "facedet" / "weights_data").glob("*.safetensors")) == sorted([DEFAULT_WEIGHTS["m4"], DEFAULT_QUANTIZED["m4"]])

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(ASTRONAUT, elsewhere / "photo.jpg")
    paths = [str(target), *(p for p in sys.path if p and Path(p).resolve() != ROOT)]
    run_env = {**env, "PYTHONPATH": os.pathsep.join(paths), "PYTHONNOUSERSITE": "1"}
    code = (  # where everything came from (first line), then README's first command
        "import json, sys, facedet\n"
        "from facedet.weights import default_weights_path\n"
        "print(json.dumps([facedet.__file__, str(default_weights_path('m4')), str(default_weights_path('m4', quantized=True))]))\n"
        "sys.argv = ['facedet', 'detect', 'photo.jpg', '--json', '-', '--quiet']\n"
        "from facedet.cli import main\n"
        "main()\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, env=run_env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    first, rest = r.stdout.split("\n", 1)
    for p in json.loads(first):
        assert Path(p).is_relative_to(target), (p, target)
    (record,) = json.loads(rest)
    faces = record["faces"]
    _check_top_is_face("astronaut.jpg", np.array([f["box"] for f in faces], np.float32), np.array([f["score"] for f in faces]))

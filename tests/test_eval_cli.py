"""`facedet evaluate wider|folder` through typer's CliRunner, mounted in a throwaway parent app."""

from __future__ import annotations

import json
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from facedet.data.generic import write_generic
from facedet.data.types import ImageAnnotation
from facedet.evaluation import cli as eval_cli

try:
    from test_eval_fixtures import oracle_evaluation, random_set, write_preds, write_wider_gt
except ImportError:  # pragma: no cover
    from tests.test_eval_fixtures import oracle_evaluation, random_set, write_preds, write_wider_gt

parent = typer.Typer()
parent.add_typer(eval_cli.app, name="evaluate")


@parent.callback()
def _root() -> None:
    """throwaway parent"""


runner = CliRunner()


def invoke(*args):
    return runner.invoke(parent, ["evaluate", *map(str, args)])


@pytest.fixture()
def wider_set(tmp_path):
    events, preds = random_set(5)
    gt = write_wider_gt(tmp_path / "gt", events)
    pred = write_preds(tmp_path / "pred", preds)
    return gt, pred


def test_help_lists_both_commands():
    r = invoke("--help")
    assert r.exit_code == 0 and "wider" in r.stdout and "folder" in r.stdout


def test_wider_json_stdout_equals_reference(wider_set):
    gt, pred = wider_set
    r = invoke("wider", "--pred-dir", pred, "--gt-dir", gt, "--json", "-")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)  # stdout carries the JSON only
    assert [doc["easy"], doc["medium"], doc["hard"]] == pytest.approx(oracle_evaluation(pred, gt), abs=1e-4)
    assert all(0 <= doc[s] <= 1 for s in ("easy", "medium", "hard"))
    c = doc["curves"]["hard"]
    assert len(c["threshold"]) == len(c["precision"]) == len(c["recall"]) == 1000
    assert "easy" in r.stderr and "AP" in r.stderr  # the human summary moved to stderr
    assert "warning:" in r.stderr and "have no prediction file" in r.stderr  # the random set has missing files


def test_wider_json_file_plot_and_force(wider_set, tmp_path):
    gt, pred = wider_set
    out_json, out_png = tmp_path / "r.json", tmp_path / "r.png"
    r = invoke("wider", "--pred-dir", pred, "--gt-dir", gt, "--json", out_json, "--plot", out_png)
    assert r.exit_code == 0, r.output
    assert "medium AP" in r.stdout
    assert set(json.loads(out_json.read_text())) >= {"easy", "medium", "hard", "curves"}
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = invoke("wider", "--pred-dir", pred, "--gt-dir", gt, "--json", out_json)
    assert r.exit_code == 1 and "already exists" in r.stderr
    r = invoke("wider", "--pred-dir", pred, "--gt-dir", gt, "--json", out_json, "--force")
    assert r.exit_code == 0


def test_wider_missing_files_warning_counts(tmp_path):
    events = {"0--E": [("a", [[0, 0, 9, 9]], {"easy": [1]}), ("b", [[0, 0, 9, 9]], {}), ("c", [[0, 0, 9, 9]], {})]}
    gt = write_wider_gt(tmp_path / "gt", events)
    pred = write_preds(tmp_path / "pred", {("0--E", "a"): [[0, 0, 9, 9, 0.9], [50, 50, 9, 9, 0.1]]})
    r = invoke("wider", "--pred-dir", pred, "--gt-dir", gt)
    assert r.exit_code == 0
    assert "warning: 2 of 3 images have no prediction file" in r.stderr


@pytest.mark.parametrize(
    "setup, message",
    [
        ("empty", "no prediction files"),
        ("badline", "a.txt:3: field 5 'high' is not a number"),
        ("badcount", "a.txt:2: box count says 5"),
        ("stranger", "zzz.txt: image 0--E/zzz is not in the ground truth"),
        ("nomat", "wider_face_val.mat: ground-truth file not found"),
        ("badmat", "wider_easy_val.mat: not a readable MATLAB .mat file"),
    ],
)
def test_wider_bad_input_one_line_errors(tmp_path, setup, message):
    gt = write_wider_gt(tmp_path / "gt", {"0--E": [("a", [[0, 0, 9, 9]], {"easy": [1]})]})
    pred = tmp_path / "pred"
    (pred / "0--E").mkdir(parents=True)
    good = "a\n1\n0 0 9 9 0.5\n"
    (pred / "0--E" / "a.txt").write_text({"badline": "a\n1\n0 0 9 9 high\n", "badcount": "a\n5\n0 0 9 9 0.5\n"}.get(setup, good))
    if setup == "empty":
        (pred / "0--E" / "a.txt").unlink()
    if setup == "stranger":
        (pred / "0--E" / "zzz.txt").write_text(good)
    if setup == "nomat":
        (gt / "wider_face_val.mat").unlink()
    if setup == "badmat":
        (gt / "wider_easy_val.mat").write_text("garbage")
    r = invoke("wider", "--pred-dir", pred, "--gt-dir", gt)
    assert r.exit_code == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]


def test_wider_option_conflicts(tmp_path):
    # a wrong command line is a usage error: exit status 2, as for the parser's own errors
    r = invoke("wider", "--pred-dir", tmp_path)
    assert r.exit_code == 2 and "--gt-dir" in r.stderr
    r = invoke("wider", "--wider-root", tmp_path)
    assert r.exit_code == 2 and "--out" in r.stderr
    r = invoke("wider", "--wider-root", tmp_path, "--pred-dir", tmp_path, "--out", tmp_path)
    assert r.exit_code == 2 and "not both" in r.stderr
    r = invoke("wider")
    assert r.exit_code == 2 and "nothing to evaluate" in r.stderr
    r = invoke("wider", "--pred-dir", tmp_path, "--gt-dir", tmp_path, "--eval-threshold", "2")
    assert r.exit_code == 2 and "--eval-threshold" in r.stderr


class FixedDetector:
    """Returns one box per image (the bright square), score 0.8."""

    calls = 0

    def detect(self, image, *, threshold=0.5, nms_threshold=0.3, max_faces=750, scale=None, pyramid=False):
        FixedDetector.calls += 1
        ys, xs = np.nonzero(image[..., 0] > 128)
        if len(xs) == 0:
            return SimpleNamespace(boxes=np.zeros((0, 4), np.float32), scores=np.zeros(0, np.float32))
        return SimpleNamespace(boxes=np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], np.float32), scores=np.array([0.8], np.float32))


def _wider_root(tmp_path):
    root = tmp_path / "wider"
    events = {"0--E": []}
    for i, (x, y) in enumerate([(10, 10), (30, 5)]):
        img = np.zeros((60, 80, 3), np.uint8)
        img[y : y + 20, x : x + 20] = 255
        d = root / "WIDER_val" / "images" / "0--E"
        d.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(d / f"im{i}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 100])
        # WIDER face boxes x y w h with +1: the 20-pixel square is w = 19
        events["0--E"].append((f"im{i}", [[x, y, 19, 19], [0, 50, 5, 5]], {"easy": [1], "medium": [1], "hard": [1, 2]}))
    return root, write_wider_gt(tmp_path / "gt", events)


@pytest.mark.parametrize("mode", ["single", "multiscale", "pyramid"])
def test_wider_run_detector_then_score_and_resume(tmp_path, monkeypatch, mode):
    monkeypatch.setattr(eval_cli, "_load_detector", lambda w, a, int8=False, *args:  FixedDetector())
    root, gt = _wider_root(tmp_path)
    out = tmp_path / "out"
    FixedDetector.calls = 0
    r = invoke("wider", "--wider-root", root, "--out", out, "--gt-dir", gt, "--mode", mode, "--workers", "1", "--json", "-")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (out / "0--E").iterdir()) == ["im0.txt", "im1.txt"]
    doc = json.loads(r.stdout)
    assert doc["easy"] == 1.0 and doc["hard"] == pytest.approx(0.5)
    assert "detected 2 images" in r.stderr
    first_calls = FixedDetector.calls
    r = invoke("wider", "--wider-root", root, "--out", out, "--gt-dir", gt, "--mode", mode)
    assert r.exit_code == 0 and "skipped 2" in r.stdout and FixedDetector.calls == first_calls
    # without --gt-dir: predictions only
    r = invoke("wider", "--wider-root", root, "--out", tmp_path / "out2")
    assert r.exit_code == 0 and (tmp_path / "out2" / "0--E" / "im1.txt").exists()


def test_wider_run_with_real_untrained_detector(tmp_path, weights_file):
    root, gt = _wider_root(tmp_path)
    r = invoke("wider", "--wider-root", root, "--out", tmp_path / "out", "--gt-dir", gt, "--weights", weights_file, "--workers", "0", "--mode", "single", "--json", "-")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert all(0 <= doc[s] <= 1 for s in ("easy", "medium", "hard"))
    lines = (tmp_path / "out" / "0--E" / "im0.txt").read_text().splitlines()
    assert lines[0] == "im0" and int(lines[1]) == len(lines) - 2


def test_folder_generic_with_predictions_and_plot(tmp_path):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for n in ("a.jpg", "neg.jpg"):
        (imgs / n).write_bytes(b"")
    write_generic(tmp_path / "ann.json", [ImageAnnotation("a.jpg", [[0, 0, 10, 10], [20, 0, 30, 10]]), ImageAnnotation("neg.jpg")])
    pred = tmp_path / "pred"
    pred.mkdir()
    (pred / "a.txt").write_text("a\n3\n0 0 10 10 0.9\n50 50 10 10 0.8\n20 0 10 10 0.7\n")
    (pred / "neg.txt").write_text("neg\n0\n")
    png = tmp_path / "pr.png"
    r = invoke("folder", "--images", imgs, "--annotations", tmp_path / "ann.json", "--pred-dir", pred, "--threshold", "0.75", "--json", "-", "--plot", png)
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["ap50"] == pytest.approx((51 + 50 * 2 / 3) / 101, abs=1e-6)
    assert doc["precision"] == 0.5 and doc["recall"] == 0.5 and doc["negative_images"] == 1
    assert png.read_bytes()[:4] == b"\x89PNG"
    r = invoke("folder", "--images", imgs, "--annotations", tmp_path / "ann.json", "--pred-dir", pred)
    assert r.exit_code == 0 and "AP@0.5 0.8350" in r.stdout


def test_folder_voc_runs_detector(tmp_path, monkeypatch):
    monkeypatch.setattr(eval_cli, "_load_detector", lambda w, a, int8=False, *args:  FixedDetector())
    imgs, xml = tmp_path / "JPEGImages", tmp_path / "Annotations"
    imgs.mkdir()
    xml.mkdir()
    img = np.zeros((60, 80, 3), np.uint8)
    img[10:30, 10:30] = 255
    cv2.imwrite(str(imgs / "a.png"), img)
    cv2.imwrite(str(imgs / "b.png"), np.zeros((60, 80, 3), np.uint8))  # no XML: a negative
    (xml / "a.xml").write_text(
        "<annotation><filename>a.png</filename><object><name>head</name>"
        "<bndbox><xmin>11</xmin><ymin>11</ymin><xmax>30</xmax><ymax>30</ymax></bndbox></object></annotation>"
    )
    out = tmp_path / "pred"
    r = invoke("folder", "--images", imgs, "--annotations", xml, "--out", out, "--json", "-")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["ap50"] == 1.0 and doc["ap50_95"] == 1.0 and doc["images"] == 2 and doc["negative_images"] == 1
    assert "1 images under" in r.stderr and (out / "a.txt").exists()
    r = invoke("folder", "--images", imgs, "--annotations", xml, "--class", "car")
    assert r.exit_code == 0 and "AP@0.5 n/a" in r.stdout and "undefined" in r.stderr


def test_folder_bad_annotations(tmp_path):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "ann.json").write_text('{"format": "facedet-generic", "version": 1, "images": [{"file": "a.jpg", "faces": [{"box": [1]}]}]}')
    r = invoke("folder", "--images", tmp_path / "imgs", "--annotations", tmp_path / "ann.json")
    assert r.exit_code == 1
    assert r.stderr.strip().splitlines() == [f"error: {tmp_path / 'ann.json'}: images[0].faces[0].box: must be a list of 4 finite numbers [x1, y1, x2, y2]"]

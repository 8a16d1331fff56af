"""`facedet detect` and `facedet evaluate folder` on the inputs of a new user: rotated phone photos,
huge or lying images, outputs that collide, `--csv -`, truncated videos.

Every fixture is made here (tests/test_imageio.py builds the same kinds of file byte by byte).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from facedet.cli_common import EXIT_PARTIAL
from tests.clitools import messages, run
from tests.conftest import make_image
from tests.test_imageio import jpeg_with_orientation, lying_png

DATA = Path(__file__).resolve().parent / "data"




def errors(result) -> list[str]:
    return messages(result, "error")


def warnings(result) -> list[str]:
    return messages(result, "warning")


def refused(result) -> str:
    """A run refused up front: a failure status (not "some inputs failed") and one error line."""
    assert result.exit_code not in (0, EXIT_PARTIAL), result.output
    errs = errors(result)
    assert len(errs) == 1, result.stderr
    return errs[0]


# --------------------------------------------------------------------------- 1. EXIF orientation


def test_portrait_phone_photo_is_detected_upright_and_saved_upright(tmp_path):
    """Grace Hopper, stored lying on her side with EXIF orientation 6, as a phone writes a portrait photo."""
    upright = cv2.imread(str(DATA / "grace_hopper.jpg"))[:440]  # 512 wide, 440 high: not square
    stored = np.ascontiguousarray(np.rot90(upright, 1))  # the sensor's pixels: rotated counter-clockwise
    photo = tmp_path / "portrait.jpg"
    photo.write_bytes(jpeg_with_orientation(stored, 6))
    out = tmp_path / "out"
    r = run("detect", photo, "--json", "-", "--save", out, "--quiet")
    assert r.exit_code == 0, r.output
    (rec,) = json.loads(r.stdout)
    assert (rec["width"], rec["height"]) == (512, 440)  # the size a viewer shows
    top = max(rec["faces"], key=lambda f: f["score"])
    assert top["score"] > 0.9
    x1, y1, x2, y2 = top["box"]
    rx1, ry1, rx2, ry2 = 178.0, 101.0, 354.0, 314.0  # the face on the upright photo (tests/test_shipped_weights.py)
    inter = max(0.0, min(x2, rx2) - max(x1, rx1)) * max(0.0, min(y2, ry2) - max(y1, ry1))
    iou = inter / ((x2 - x1) * (y2 - y1) + (rx2 - rx1) * (ry2 - ry1) - inter)
    assert iou >= 0.5, top
    saved = cv2.imread(str(out / "portrait.jpg"), cv2.IMREAD_IGNORE_ORIENTATION | cv2.IMREAD_COLOR)
    assert saved.shape == (440, 512, 3)  # the pixels themselves are upright (no EXIF tag to rely on)
    assert np.abs(saved.astype(int) - upright.astype(int)).mean() < 12  # the photo, plus a drawn box


# --------------------------------------------------------------------------- 2. huge or lying images


def _batch_with_liar(tmp_path: Path) -> Path:
    d = tmp_path / "in"
    d.mkdir()
    cv2.imwrite(str(d / "a.jpg"), make_image(seed=1))
    cv2.imwrite(str(d / "b.png"), make_image(90, 70, seed=2))
    (d / "huge.png").write_bytes(lying_png(50000, 50000))
    return d


def test_lying_png_is_skipped_and_the_rest_written(tmp_path, weights_file):
    d = _batch_with_liar(tmp_path)
    out = tmp_path / "out"
    r = run("detect", d, "-w", weights_file, "--json", out / "r.json", "--csv", out / "r.csv", "--save", out / "vis", "-q")
    assert r.exit_code == EXIT_PARTIAL, r.output
    errs = errors(r)
    assert any("huge.png" in e and "50000x50000 pixels is over the limit of 250,000,000 pixels" in e for e in errs), errs
    assert any("1 of 3 inputs failed" in e for e in errs)
    assert [Path(rec["image"]).name for rec in json.loads((out / "r.json").read_text())] == ["a.jpg", "b.png"]
    assert (out / "r.csv").is_file() and sorted(p.name for p in (out / "vis" / "in").iterdir()) == ["a.jpg", "b.png"]


def test_max_pixels_option(tmp_path, weights_file):
    d = _batch_with_liar(tmp_path)
    (d / "huge.png").unlink()
    r = run("detect", d, "-w", weights_file, "--json", "-", "--max-pixels", 160 * 120 - 1)
    assert r.exit_code == EXIT_PARTIAL, r.output  # a.jpg (160x120) is over, b.png (70x90) is not
    assert any("a.jpg: 160x120 pixels is over the limit of 19,199 pixels" in e for e in errors(r))
    assert [Path(rec["image"]).name for rec in json.loads(r.stdout)] == ["b.png"]
    r = run("detect", d, "-w", weights_file, "--json", "-", "--max-pixels", 160 * 120)
    assert r.exit_code == 0 and len(json.loads(r.stdout)) == 2
    r = run("detect", d, "-w", weights_file, "--max-pixels", 0)
    assert r.exit_code not in (0, EXIT_PARTIAL) and "--max-pixels" in r.stderr and "Traceback" not in r.output
    assert "--max-pixels" in run("detect", "--help").stdout


def test_evaluate_folder_skips_a_lying_image(tmp_path, weights_file):
    from facedet.data.generic import write_generic
    from facedet.data.types import ImageAnnotation

    d = _batch_with_liar(tmp_path)
    boxes = np.array([[50.0, 30.0, 110.0, 90.0]], np.float32)
    write_generic(tmp_path / "ann.json", [ImageAnnotation(file=f, boxes=boxes, ignore=np.zeros(1, bool)) for f in ("a.jpg", "b.png", "huge.png")])
    out = tmp_path / "pred"
    r = run("evaluate", "folder", "--images", d, "--annotations", tmp_path / "ann.json", "--out", out, "-w", weights_file, "--json", tmp_path / "m.json")
    assert r.exit_code == EXIT_PARTIAL, r.output
    assert any("huge.png" in e and "over the limit" in e for e in errors(r)), r.stderr
    assert any("1 of 3 images failed" in e for e in errors(r))
    assert any("the metrics are over the other 2" in w for w in warnings(r))
    assert sorted(p.name for p in out.iterdir()) == ["a.txt", "b.txt"]
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["images"] == 2 and metrics["faces"] == 2


def test_evaluate_folder_refuses_two_images_sharing_one_prediction_file(tmp_path, weights_file):
    from facedet.data.generic import write_generic
    from facedet.data.types import ImageAnnotation

    d = tmp_path / "in"
    d.mkdir()
    cv2.imwrite(str(d / "x.png"), make_image(seed=1))
    cv2.imwrite(str(d / "x.ppm"), make_image(seed=2))
    write_generic(tmp_path / "ann.json", [ImageAnnotation(file="x.png"), ImageAnnotation(file="x.ppm")])
    r = run("evaluate", "folder", "--images", d, "--annotations", tmp_path / "ann.json", "--out", tmp_path / "pred", "-w", weights_file)
    assert "would share the prediction file" in refused(r)
    assert not list((tmp_path / "pred").glob("*.txt"))


# --------------------------------------------------------------------------- 3. --save checks the file it writes


def test_save_of_a_ppm_checks_the_png_it_writes(tmp_path, weights_file):
    cv2.imwrite(str(tmp_path / "x.ppm"), make_image(seed=3))
    vis = tmp_path / "vis"
    vis.mkdir()
    (vis / "x.png").write_bytes(b"precious")
    r = run("detect", tmp_path / "x.ppm", "-w", weights_file, "--save", vis, "-q")
    assert "x.png already exist" in refused(r)
    assert (vis / "x.png").read_bytes() == b"precious"
    r = run("detect", tmp_path / "x.ppm", "-w", weights_file, "--save", vis, "-q", "--force")
    assert r.exit_code == 0, r.output
    assert cv2.imread(str(vis / "x.png")).shape == (120, 160, 3) and not (vis / "x.ppm").exists()


# --------------------------------------------------------------------------- 4. outputs unique per input, never an input


def test_same_stem_different_suffix_get_their_own_outputs(tmp_path, weights_file):
    d = tmp_path / "in"
    d.mkdir()
    cv2.imwrite(str(d / "x.png"), make_image(seed=1))
    cv2.imwrite(str(d / "x.ppm"), make_image(seed=2))
    out = tmp_path / "out"
    r = run("detect", d, "-w", weights_file, "-t", "0.2", "--save", out / "vis", "--wider-txt", out / "wider", "--json", out / "r.json", "-q")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (out / "vis" / "in").iterdir()) == ["x.png", "x_1.png"]
    assert sorted(p.name for p in (out / "wider" / "in").iterdir()) == ["x.txt", "x_1.txt"]
    saved = {n: cv2.imread(str(out / "vis" / "in" / n)) for n in ("x.png", "x_1.png")}
    assert not np.array_equal(saved["x.png"], saved["x_1.png"])  # two images, not one written twice
    records = json.loads((out / "r.json").read_text())
    for rec, name in zip(records, ("x.txt", "x_1.txt")):
        assert int((out / "wider" / "in" / name).read_text().splitlines()[1]) == len(rec["faces"])


def _clip(path: Path, fourcc: str, frames: int = 3) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 10, (96, 64))
    assert writer.isOpened()
    for i in range(frames):
        writer.write(make_image(64, 96, seed=20 + i))
    writer.release()
    return path


def test_two_videos_with_one_stem_get_their_own_outputs(tmp_path, weights_file):
    d = tmp_path / "in"
    d.mkdir()
    _clip(d / "clip.mp4", "mp4v")
    _clip(d / "clip.avi", "MJPG")
    out = tmp_path / "out"
    r = run("detect", d, "-w", weights_file, "--save", out / "vis", "--wider-txt", out / "wider", "-q", "--single-scale")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (out / "vis" / "in").iterdir()) == ["clip_1_faces.mp4", "clip_faces.mp4"]
    assert sorted(p.name for p in (out / "wider" / "in").iterdir()) == ["clip", "clip_1"]
    assert len(list((out / "wider" / "in" / "clip_1").iterdir())) == 3


def test_json_and_csv_to_one_file_is_refused(tmp_path, image_dir, weights_file):
    target = tmp_path / "results.txt"
    r = run("detect", image_dir, "-w", weights_file, "--json", target, "--csv", target)
    assert "two outputs of this run would be written to" in refused(r)
    assert not target.exists()
    r = run("detect", image_dir, "-w", weights_file, "--json", "-", "--csv", "-")
    assert "cannot both write to stdout" in refused(r)


@pytest.mark.parametrize("force", [False, True])
def test_an_output_never_overwrites_an_input(tmp_path, image_dir, weights_file, force):
    before = {p.name: p.read_bytes() for p in image_dir.iterdir()}
    extra = ["--force"] if force else []
    cases = [
        ("detect", image_dir / "a.jpg", "--save", image_dir),  # image_dir/a.jpg is the input
        ("detect", image_dir, "--save", image_dir.parent),  # <parent>/images/a.jpg is the input
        ("detect", image_dir, "--json", image_dir / "b.png"),
        ("detect", image_dir, "--csv", image_dir / "a.jpg"),
    ]
    for args in cases:
        r = run(*args, "-w", weights_file, "-q", *extra)
        assert "is one of the inputs" in refused(r), args
    assert {p.name: p.read_bytes() for p in image_dir.iterdir()} == before


# --------------------------------------------------------------------------- 9. --csv -


def test_csv_to_stdout(tmp_path, image_dir, weights_file):
    r = run("detect", image_dir, "-w", weights_file, "-t", "0.2", "--csv", "-", "--json", tmp_path / "r.json")
    assert r.exit_code == 0, r.output
    assert not Path("-").exists()
    lines = r.stdout.splitlines()
    assert lines[0] == "image,frame,width,height,face,x1,y1,x2,y2,score"
    records = json.loads((tmp_path / "r.json").read_text())
    assert len(lines) == 1 + sum(len(rec["faces"]) for rec in records)
    assert "FILE|-" in run("detect", "--help").stdout


# --------------------------------------------------------------------------- 13. truncated video


def test_truncated_video_warns_with_the_frame_count(tmp_path, weights_file):
    whole = _clip(tmp_path / "whole.avi", "MJPG", frames=12)
    data = whole.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    r = run("detect", cut, "-w", weights_file, "--json", "-", "--single-scale")
    assert r.exit_code == 0, r.output
    records = json.loads(r.stdout)
    assert 0 < len(records) < 12
    (w,) = [w for w in warnings(r) if "cut.avi" in w]
    m = re.search(r"only (\d+) of the (\d+) frames", w)
    assert m and (int(m.group(1)), int(m.group(2))) == (len(records), 12), w
    r = run("detect", whole, "-w", weights_file, "--json", "-", "--single-scale")
    assert r.exit_code == 0 and len(json.loads(r.stdout)) == 12 and not warnings(r)


def test_evaluate_folder_never_overwrites_its_annotations(tmp_path, weights_file):
    from facedet.data.generic import write_generic
    from facedet.data.types import ImageAnnotation

    d = tmp_path / "in"
    d.mkdir()
    cv2.imwrite(str(d / "a.png"), make_image(seed=1))
    ann = tmp_path / "ann.json"
    write_generic(ann, [ImageAnnotation(file="a.png")])
    before = ann.read_bytes()
    r = run("evaluate", "folder", "--images", d, "--annotations", ann, "-w", weights_file, "--json", ann, "--force")
    assert "is one of the inputs" in refused(r)
    r = run("evaluate", "folder", "--images", d, "--annotations", ann, "-w", weights_file, "--plot", d / "a.png", "--force")
    assert "is one of the inputs" in refused(r)
    assert ann.read_bytes() == before and cv2.imread(str(d / "a.png")).shape == (120, 160, 3)

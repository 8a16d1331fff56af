"""CLI tests with typer's CliRunner: every command and every bad input of the detect issue."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.clitools import one_line_error, run
from tests.conftest import make_image







def test_version_and_help():
    assert "facedet" in run("--version").stdout
    out = run("--help").stdout
    for cmd in ("detect", "webcam", "profile"):
        assert cmd in out


def test_detect_json_stdout(image_dir, weights_file):
    r = run("detect", image_dir, "--weights", weights_file, "--json", "-", "--threshold", "0.3")
    assert r.exit_code == 0, r.output
    records = json.loads(r.stdout)
    assert [Path(rec["image"]).name for rec in records] == ["a.jpg", "b.png"]
    assert records[0]["width"] == 160 and records[0]["height"] == 120
    for rec in records:
        for face in rec["faces"]:
            x1, y1, x2, y2 = face["box"]
            assert 0 <= x1 <= x2 <= rec["width"] and 0 <= y1 <= y2 <= rec["height"]
            assert 0.3 < face["score"] <= 1


def test_detect_all_outputs_and_force(tmp_path, image_dir, weights_file):
    out = tmp_path / "out"
    args = ["detect", image_dir, "-w", weights_file, "-t", "0.2", "--max-faces", "40", "--json", out / "r.json", "--csv", out / "r.csv", "--wider-txt", out / "wider", "--save", out / "vis", "-q"]
    r = run(*args)
    assert r.exit_code == 0, r.output
    records = json.loads((out / "r.json").read_text())
    n_faces = sum(len(rec["faces"]) for rec in records)
    csv_lines = (out / "r.csv").read_text().splitlines()
    assert csv_lines[0] == "image,frame,width,height,face,x1,y1,x2,y2,score" and len(csv_lines) == 1 + n_faces
    txt = (out / "wider" / "images" / "a.txt").read_text().splitlines()
    assert txt[0] == "a" and int(txt[1]) == len(records[0]["faces"]) == len(txt) - 2
    assert cv2.imread(str(out / "vis" / "images" / "a.jpg")).shape == (120, 160, 3)
    # second run: nothing is overwritten without --force
    before = (out / "r.json").read_text()
    r = run(*args)
    assert r.exit_code == 1 and "already exist" in one_line_error(r)[0]
    assert (out / "r.json").read_text() == before
    r = run(*args, "--force")
    assert r.exit_code == 0, r.output


def test_wider_txt_values(tmp_path, weights_file):
    from facedet.outputs import format_wider_txt

    text = format_wider_txt("img", np.array([[10.0, 20.0, 40.0, 70.0]]), np.array([0.87654]))
    assert text == "img\n1\n10.0 20.0 30.0 50.0 0.877\n"
    assert format_wider_txt("none", np.zeros((0, 4)), np.zeros(0)) == "none\n0\n"


def test_detect_video(tmp_path, video_file, weights_file):
    out = tmp_path / "o"
    r = run("detect", video_file, "-w", weights_file, "--json", out / "v.json", "--save", out / "vis", "-q", "--max-faces", "40")
    assert r.exit_code == 0, r.output
    records = json.loads((out / "v.json").read_text())
    assert [rec["frame"] for rec in records] == [0, 1, 2, 3]
    cap = cv2.VideoCapture(str(out / "vis" / "clip_faces.mp4"))
    assert cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 4


def test_batch_with_one_bad_file(tmp_path, image_dir, weights_file):
    (image_dir / "broken.jpg").write_text("not an image")
    r = run("detect", image_dir, "-w", weights_file, "--json", "-")
    assert r.exit_code == 3  # some inputs failed (2 is a usage error)
    errs = one_line_error(r)
    assert any("broken.jpg" in e and "not an image" in e for e in errs)
    assert any("1 of 3 inputs failed" in e for e in errs)
    assert len(json.loads(r.stdout)) == 2


def _bad_inputs(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.png").write_text("hello")
    ok, buf = cv2.imencode(".jpg", make_image(seed=3))
    (tmp_path / "cut.jpg").write_bytes(buf.tobytes()[: len(buf) * 3 // 4])
    (tmp_path / "nothing").mkdir()
    (tmp_path / "zero.png").write_bytes(bytes.fromhex("89504e470d0a1a0a0000000d4948445200000000000000000806000000"))
    return {
        "missing": ([tmp_path / "nope.jpg"], "no such file"),
        "no images": ([tmp_path / "nothing"], "no images"),
        "empty": ([tmp_path / "empty.jpg"], "empty file"),
        "non-image": ([tmp_path / "text.png"], "not an image"),
        "truncated": ([tmp_path / "cut.jpg"], "truncated"),
        "zero-size": ([tmp_path / "zero.png"], "not an image|empty"),
    }


@pytest.mark.parametrize("case", ["missing", "no images", "empty", "non-image", "truncated", "zero-size"])
def test_bad_inputs(tmp_path, weights_file, case):
    paths, message = _bad_inputs(tmp_path)[case]
    r = run("detect", *paths, "-w", weights_file)
    assert r.exit_code != 0
    import re

    assert re.search(message, one_line_error(r)[0]), r.stderr


@pytest.mark.parametrize(
    "extra,message,code",
    [  # 2: a usage error (the command line alone is wrong); 1: the weights file disagrees
        (["--threshold", "1.5"], "--threshold must be in \\[0, 1\\)", 2),
        (["--threshold", "1"], "--threshold must be in \\[0, 1\\)", 2),
        (["--nms-threshold", "-0.1"], "--nms-threshold must be in \\[0, 1\\]", 2),
        (["--arch", "m5"], "unknown architecture 'm5'", 2),
        (["--arch", "quant"], "holds 'm4' weights, but --arch is 'quant'", 1),
    ],
)
def test_bad_options(image_dir, weights_file, extra, message, code):
    import re

    r = run("detect", image_dir, "-w", weights_file, *extra)
    assert r.exit_code == code
    assert re.search(message, one_line_error(r)[0])


def test_unwritable_output(tmp_path, image_dir, weights_file):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    r = run("detect", image_dir, "-w", weights_file, "--save", blocker / "vis")
    assert r.exit_code == 1 and "cannot create output directory" in one_line_error(r)[0]
    r = run("detect", image_dir, "-w", weights_file, "--json", blocker / "r.json")
    assert r.exit_code == 1


def test_bad_weights_file(tmp_path, image_dir):
    (tmp_path / "w.safetensors").write_bytes(b"garbage")
    r = run("detect", image_dir, "-w", tmp_path / "w.safetensors")
    assert r.exit_code == 1 and "not a valid facedet weights file" in one_line_error(r)[0]


def test_profile_json(tmp_path):
    r = run("profile", "--arch", "m4", "--json", "-")
    assert r.exit_code == 0
    p = json.loads(r.stdout)
    assert p["arch"] == "m4" and p["input"] == [240, 320, 1] and p["params"] == 56330 and p["priors"] == 3000
    assert len(p["layers"]) == 10
    r = run("profile", "--arch", "quant", "--height", "240", "--width", "320")
    assert r.exit_code == 0 and "peak activation memory" in r.stdout and "240x320x3" in r.stdout
    r = run("profile", "--arch", "m4", "--json", tmp_path / "p.json")
    assert r.exit_code == 0 and json.loads((tmp_path / "p.json").read_text())["macs"] == p["macs"]
    r = run("profile", "--arch", "m4", "--json", tmp_path / "p.json")
    assert r.exit_code == 1 and "already exists" in one_line_error(r)[0]
    r = run("profile", "--arch", "m4", "--height", "10", "--width", "10")
    assert r.exit_code == 2 and "--height must be at least 15" in one_line_error(r)[0]
    r = run("profile", "--arch", "nope")
    assert r.exit_code == 2 and "unknown architecture" in one_line_error(r)[0]


def test_webcam_errors(monkeypatch, weights_file):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    r = run("webcam", "-w", weights_file)
    assert r.exit_code == 1 and "no display" in one_line_error(r)[0]
    monkeypatch.setenv("DISPLAY", ":99")
    r = run("webcam", "-w", weights_file, "--camera", "57")
    assert r.exit_code == 1 and "no camera found at index 57" in one_line_error(r)[0]


def test_webcam_loop_with_fake_camera(weights_file):
    from facedet.inference import Detector
    from facedet.webcam import run_live

    class FakeCamera:
        def __init__(self):
            self.n, self.released = 0, False

        def read(self):
            self.n += 1
            return (self.n <= 5), make_image(seed=self.n)

        def release(self):
            self.released = True

    shown = []
    cam = FakeCamera()
    frames = run_live(cam, Detector.load(weights_file), lambda img: shown.append(img) or len(shown) < 3, pyramid=False)
    assert frames == 3 and cam.released  # stopped by the "q" of the show callback
    assert shown[0].shape == (120, 160, 3)
    assert not np.array_equal(shown[0], make_image(seed=1))  # the FPS label was drawn
    cam = FakeCamera()
    assert run_live(cam, Detector.load(weights_file), lambda img: True, max_frames=None, pyramid=False) == 5  # camera ran out

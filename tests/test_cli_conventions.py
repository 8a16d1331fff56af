"""CLI conventions shared by every command: exit statuses, one-line errors, shared defaults,
progress output, and the webcam's display check."""

import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from facedet import cli_common
from facedet.cli import app
from facedet.cli_common import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PARTIAL,
    EXIT_USAGE,
    progress,
)
from facedet.inference import DEFAULT_THRESHOLD

REPO = Path(__file__).resolve().parent.parent
runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def single_error_line(r) -> str:
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("error: "), r.stderr
    assert "Traceback" not in r.output and "╭" not in r.output and "Usage:" not in r.output
    return lines[0]


# --------------------------------------------------------------------------- exit statuses


def test_exit_statuses_are_distinct_and_documented():
    codes = {"ok": EXIT_OK, "error": EXIT_ERROR, "usage": EXIT_USAGE, "partial": EXIT_PARTIAL, "interrupted": EXIT_INTERRUPTED}
    assert codes == {"ok": 0, "error": 1, "usage": 2, "partial": 3, "interrupted": 130}
    readme = (REPO / "README.md").read_text()
    for code, word in ((0, "success"), (1, "error"), (2, "usage error"), (3, "some inputs failed"), (130, "interrupted")):
        assert f"| {code} | {word}" in readme
    assert "2 some inputs failed" not in readme


@pytest.mark.parametrize(
    "args,expected",
    [
        (["detect", "--max-faces", "0", "x.jpg"], "--max-faces"),
        (["detect", "-t", "abc", "x.jpg"], "-t"),
        (["detect"], "missing argument"),
        (["detect", "--bogus", "x.jpg"], "no such option: --bogus"),
        (["profile", "--height", "0"], "--height must be at least 15"),
        (["nope"], "no such command 'nope'"),
        (["evaluate", "folder"], "--images"),
        (["evaluate", "wider", "--no-force"], "no such option: --no-force"),
        (["firmware", "run"], "missing argument"),
        (["train", "--out", "o", "--epochs", "0"], "--epochs"),
        (["quantize", "--out", "q.safetensors"], "--calib"),
    ],
)
def test_usage_errors_are_one_line_with_status_2(args, expected):
    r = run(*args)
    assert r.exit_code == EXIT_USAGE, r.output
    line = single_error_line(r)
    assert expected in line
    assert r.stdout == ""


def test_usage_error_names_where_help_is():
    line = single_error_line(run("detect", "--max-faces", "0", "x.jpg"))
    assert "detect --help" in line


def test_some_inputs_failed_is_status_3(image_dir, weights_file):
    (image_dir / "broken.png").write_bytes(b"not an image")
    r = run("detect", image_dir, "-w", weights_file, "--single-scale", "-q")
    assert r.exit_code == EXIT_PARTIAL, r.output
    assert "1 of 3 inputs failed" in r.stderr


# --------------------------------------------------------------------------- one default per option


def _commands():
    root = typer.main.get_command(app)

    def walk(cmd, path):
        if hasattr(cmd, "commands"):
            for name, sub in cmd.commands.items():
                yield from walk(sub, path + [name])
        else:
            yield " ".join(path), cmd

    return dict(walk(root, []))


def test_force_is_a_plain_flag_in_every_command():
    seen = []
    for name, cmd in _commands().items():
        for p in cmd.params:
            if p.name == "force":
                seen.append(name)
                assert p.opts == ["--force"] and not p.secondary_opts, name
    assert {"detect", "profile", "quantize", "export-firmware", "firmware run", "train", "evaluate wider", "evaluate folder"} <= set(seen)


def test_threshold_defaults_and_help_agree_across_commands():
    cmds = _commands()
    for name in ("detect", "webcam", "export-firmware", "evaluate folder"):
        t = next(p for p in cmds[name].params if p.name == "threshold")
        assert t.default == DEFAULT_THRESHOLD, name
        assert "above" in t.help and "minimum" not in t.help.lower(), name
    for name in ("evaluate wider", "evaluate folder"):
        mode = next(p for p in cmds[name].params if p.name == "mode")
        assert getattr(mode.default, "value", mode.default) == "pyramid", name


def test_profile_height_help_and_minimum_are_the_models():
    from facedet.detector import build_model

    minimum = build_model("m4").min_input_side()
    height = next(p for p in _commands()["profile"].params if p.name == "height")
    # The help cannot print the number: computing it builds the torch model, and the CLI imports
    # without torch (a cold start of 'facedet detect' would pay 3 s); the error names it instead.
    assert "smallest input side" in height.help
    r = run("profile", "--arch", "m4", "--height", minimum - 1)
    assert r.exit_code == EXIT_USAGE and f"at least {minimum}" in single_error_line(r)
    r = run("profile", "--arch", "m4", "--height", minimum, "--width", minimum, "--json", "-")
    assert r.exit_code == 0 and json.loads(r.stdout)["input"][:2] == [minimum, minimum]


def test_threshold_one_is_refused(image_dir, weights_file):
    r = run("detect", image_dir, "-w", weights_file, "-t", "1")
    assert r.exit_code == EXIT_USAGE and "[0, 1)" in single_error_line(r)


class RecordingDetector:
    """One box on the bright square, score 0.75; records how it was called."""

    def __init__(self):
        self.calls = []

    def detect(self, image, *, threshold=0.5, nms_threshold=0.3, max_faces=750, scale=None, pyramid=False):
        self.calls.append(dict(threshold=threshold, nms_threshold=nms_threshold, pyramid=pyramid, scale=scale))
        ys, xs = np.nonzero(image[..., 0] > 128)
        return SimpleNamespace(boxes=np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], np.float32), scores=np.array([0.75], np.float32))


def test_evaluate_scores_what_detect_runs(tmp_path, monkeypatch):
    from facedet.data.generic import write_generic
    from facedet.data.types import ImageAnnotation
    from facedet.evaluation import cli as eval_cli

    imgs = tmp_path / "imgs"
    imgs.mkdir()
    img = np.zeros((60, 80, 3), np.uint8)
    img[10:30, 20:40] = 255
    cv2.imwrite(str(imgs / "a.png"), img)
    write_generic(tmp_path / "ann.json", [ImageAnnotation("a.png", [[20, 10, 40, 30]])])
    det = RecordingDetector()
    monkeypatch.setattr(eval_cli, "_load_detector", lambda w, a, int8=False, *args:  det)
    r = run("evaluate", "folder", "--images", imgs, "--annotations", tmp_path / "ann.json", "--json", "-")
    assert r.exit_code == 0, r.output
    assert det.calls and all(c["pyramid"] for c in det.calls)  # the default mode is detect's pyramid
    doc = json.loads(r.stdout)
    assert doc["threshold"] == DEFAULT_THRESHOLD  # the operating point is detect's default
    assert doc["tp"] == 0  # 0.75 is not above 0.8
    # a face is counted when its score is *above* -t, as detect reports it: 0.75 is not above 0.75
    r = run("evaluate", "folder", "--images", imgs, "--annotations", tmp_path / "ann.json", "-t", "0.75", "--json", "-")
    assert r.exit_code == 0 and json.loads(r.stdout)["tp"] == 0
    r = run("evaluate", "folder", "--images", imgs, "--annotations", tmp_path / "ann.json", "-t", "0.7", "--json", "-")
    assert r.exit_code == 0 and json.loads(r.stdout)["tp"] == 1


# --------------------------------------------------------------------------- progress


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_writes_plain_lines_when_stderr_is_not_a_terminal(monkeypatch):
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    assert list(progress(range(5), desc="work", unit="image", interval=0.0)) == [0, 1, 2, 3, 4]
    out = err.getvalue()
    assert "\r" not in out and "\x1b" not in out
    assert "work: 1/5 image (20%)" in out and "work: 4/5 image" in out
    err.truncate(0)
    err.seek(0)
    assert list(progress(range(3), desc="short")) == [0, 1, 2]  # a short run writes nothing
    assert err.getvalue() == ""


def test_progress_draws_a_bar_on_a_terminal(monkeypatch):
    err = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", err)
    assert list(progress(range(3), desc="bar")) == [0, 1, 2]
    assert "\r" in err.getvalue()


def test_runner_progress_is_plain_in_logs(tmp_path, monkeypatch):
    """The evaluation runner's progress goes through the same helper (no carriage returns)."""
    from facedet.evaluation.runner import RunItem, run_detector

    monkeypatch.setattr(cli_common, "PLAIN_PROGRESS_SECONDS", 0.0)
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    items = []
    for i in range(3):
        p = tmp_path / f"{i}.png"
        img = np.zeros((40, 50, 3), np.uint8)
        img[5:20, 5:20] = 255
        cv2.imwrite(str(p), img)
        items.append(RunItem(i, p, None, str(i)))
    run_detector(RecordingDetector(), items, workers=0)
    assert "\r" not in err.getvalue() and "detect (pyramid): 1/3 img" in err.getvalue()


# --------------------------------------------------------------------------- webcam


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="X11/Wayland displays are a Linux matter")
def test_webcam_with_a_stale_display_is_a_one_line_error(weights_file):
    """DISPLAY names an X server that is not there: OpenCV's Qt backend would abort the process."""
    n = next(n for n in range(99, 300) if not Path(f"/tmp/.X11-unix/X{n}").exists())
    env = {k: v for k, v in os.environ.items() if k not in ("WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    env["DISPLAY"] = f":{n}"
    code = textwrap.dedent(
        f"""
        import sys
        import numpy as np
        import facedet.webcam as webcam

        class Camera:
            def read(self):
                return True, np.zeros((48, 64, 3), np.uint8)

            def release(self):
                pass

        webcam.open_camera = lambda index: Camera()
        sys.argv = ["facedet", "webcam", "-w", {str(weights_file)!r}, "--single-scale"]
        from facedet.cli import main
        main()
        """
    )
    r = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == EXIT_ERROR, (r.returncode, r.stderr[-2000:])
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot open a window on display :{n}"), r.stderr


def test_display_probe_reports_success(monkeypatch):
    from facedet import webcam

    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setattr(webcam, "PROBE_CODE", "pass")
    if sys.platform.startswith("linux"):
        assert webcam.display_error() is None
        monkeypatch.setattr(webcam, "PROBE_CODE", "import sys; sys.stderr.write('qt.qpa.xcb: could not connect to display :0\\n'); sys.exit(134)")
        assert "could not connect to display" in webcam.display_error()

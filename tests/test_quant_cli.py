"""facedet quantize and the quantized file everywhere the float weights work, with every bad input."""

import json
import shutil
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest

from facedet.inference import Detector
from facedet.quant import interpreter
from facedet.quant.qfile import load_program
from tests.clitools import one_line_error, run
from tests.conftest import make_image

DATA = Path(__file__).parent / "data"






@pytest.fixture(scope="module")
def calib_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("calib")
    for i in range(3):
        cv2.imwrite(str(d / f"c{i}.png"), make_image(96, 128, seed=i))
    return d


@pytest.fixture(scope="module")
def qfile(tmp_path_factory, weights_file, calib_dir) -> Path:
    out = tmp_path_factory.mktemp("q") / "m4_int8.safetensors"
    r = run("quantize", "--weights", weights_file, "--calib", calib_dir, "--out", out)
    assert r.exit_code == 0, r.output
    return out


def test_quantize_writes_a_program_and_a_summary(qfile, weights_file, calib_dir, tmp_path):
    program, meta = load_program(qfile)
    assert meta["format"] == "facedet-quantized" and meta["arch"] == "m4"
    assert [op.kind for op in program.ops][:3] == ["conv2d", "rnnpool", "pad_replicate"]
    q = json.loads(meta["quantization"])
    assert q["calibration_images"] == 3 and q["source"] == weights_file.name and len(q["layers"]) > 20
    # the summary table is printed with every calibrated layer
    out = tmp_path / "again.safetensors"
    r = run("quantize", "-w", weights_file, "--calib", calib_dir, "--out", out, "--max-images", "2")
    assert r.exit_code == 0, r.output
    assert "features.1.pool" in r.stdout and "saturated" in r.stdout and "calibrated on 2 images" in r.stdout


def test_quantized_file_is_deterministic(qfile, weights_file, calib_dir, tmp_path):
    out = tmp_path / "twice.safetensors"
    assert run("quantize", "-w", weights_file, "--calib", calib_dir, "--out", out).exit_code == 0
    from safetensors.numpy import load_file

    (_, m1), (_, m2) = load_program(qfile), load_program(out)
    assert m1 == m2  # same program, scales, summary and checksum (safetensors orders the header freely)
    a, b = load_file(str(qfile)), load_file(str(out))
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_detect_evaluate_profile_take_the_quantized_file(qfile, tmp_path):
    r = run("detect", DATA / "grace_hopper.jpg", "--weights", qfile, "--json", "-", "-t", "0.01", "--single-scale")
    assert r.exit_code == 0, r.output
    rec = json.loads(r.stdout)[0]
    assert rec["width"] == 512
    # detect runs the integer program: the same boxes as Detector.detect on the quantized file
    det = Detector.load(qfile)
    assert det.quantized
    d = det.detect(cv2.imread(str(DATA / "grace_hopper.jpg")), threshold=0.01, pyramid=False)
    assert len(rec["faces"]) == len(d)
    # evaluate folder runs it too
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps({"format": "facedet-generic", "version": 1, "images": [{"file": "grace_hopper.jpg", "faces": [{"box": [200, 100, 360, 300]}]}]}))
    r = run("evaluate", "folder", "--images", DATA, "--annotations", ann, "--weights", qfile, "--json", "-")
    assert r.exit_code == 0, r.output
    # profile reports the quantized parameters and the streamed plan
    r = run("profile", "--weights", qfile, "--json", "-")
    assert r.exit_code == 0, r.output
    p = json.loads(r.stdout)
    assert p["arch"] == "m4" and p["streamed_peak_bytes"] <= 128 * 1024
    assert p["streamed_peak_layer"] in {s["name"] for s in p["streamed_stages"]}
    assert p["quantized"]["param_bytes_by_type"]["int8"] > 50_000


def test_int8_flag_uses_the_shipped_integer_model():
    r = run("detect", DATA / "astronaut.jpg", "--int8", "--json", "-", "--single-scale")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)[0]["faces"], "the shipped integer model finds the astronaut's face"


def test_quantize_bad_inputs(tmp_path, weights_file, qfile, calib_dir):
    empty = tmp_path / "empty"
    empty.mkdir()
    one_line_error(run("quantize", "-w", weights_file, "--calib", empty, "--out", tmp_path / "x.safetensors"), "no images or videos found")
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.jpg").write_bytes(b"not a jpeg at all")
    (junk / "b.png").write_bytes(b"")
    one_line_error(run("quantize", "-w", weights_file, "--calib", junk, "--out", tmp_path / "x.safetensors"), "none of the 2 calibration images could be read")
    # unreadable images are skipped and reported, the good ones used
    shutil.copy(calib_dir / "c0.png", junk / "good.png")
    r = run("quantize", "-w", weights_file, "--calib", junk, "--out", tmp_path / "ok.safetensors")
    assert r.exit_code == 0, r.output
    assert "skipped" in r.stderr and "calibrated on 1 images" in r.stdout and "2 skipped" in r.stdout
    # a quantized file is not float weights
    one_line_error(run("quantize", "-w", qfile, "--calib", calib_dir, "--out", tmp_path / "y.safetensors"), "already a quantized model")
    # nothing overwritten without --force, and never the input
    out = tmp_path / "exists.safetensors"
    out.write_bytes(b"keep")
    one_line_error(run("quantize", "-w", weights_file, "--calib", calib_dir, "--out", out), "already exists")
    assert out.read_bytes() == b"keep"
    copy = tmp_path / "w.safetensors"
    shutil.copy(weights_file, copy)
    one_line_error(run("quantize", "-w", copy, "--calib", calib_dir, "--out", copy, "--force"), "is the input weights file")
    one_line_error(run("quantize", "-w", weights_file, "--calib", calib_dir, "--out", tmp_path / "z", "--requant", "pow3"), "--requant must be one of")


def _rewrite_metadata(src: Path, dst: Path, **changes) -> None:
    """Copy a safetensors file with some header metadata entries replaced."""
    raw = src.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8 : 8 + n])
    header["__metadata__"].update(changes)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    dst.write_bytes(struct.pack("<Q", len(text)) + text + raw[8 + n :])


def test_tampered_and_foreign_quantized_files(qfile, tmp_path, weights_file):
    image = DATA / "camera.jpg"
    body = bytearray(qfile.read_bytes())
    body[-100] ^= 0x01  # one bit of one weight
    bad = tmp_path / "tampered.safetensors"
    bad.write_bytes(bytes(body))
    one_line_error(run("detect", image, "--weights", bad), "fails its checksum")
    v2 = tmp_path / "v2.safetensors"
    _rewrite_metadata(qfile, v2, format_version="2")
    one_line_error(run("detect", image, "--weights", v2), "quantized format version '2'")
    prog = tmp_path / "prog.safetensors"
    _rewrite_metadata(qfile, prog, program=json.loads(json.dumps(load_program(qfile)[1]["program"])).replace('"conv2d"', '"conv9d"', 1))
    one_line_error(run("detect", image, "--weights", prog), "fails its checksum")
    # --int8 with float weights, and float-only uses of a quantized file
    one_line_error(run("detect", image, "--int8", "--weights", weights_file), "holds float weights")
    one_line_error(run("detect", image, "--weights", qfile, "--arch", "qvga"), "quantized 'm4' model")
    from facedet.errors import FacedetError
    from facedet.weights import load_weights

    with pytest.raises(FacedetError, match="is a quantized .integer. model; this needs float weights"):
        load_weights(qfile)  # what train --finetune and quantize --weights read


def test_saturation_is_measured_and_warned(qfile):
    """A deliberately narrowed range saturates, and the summary says which layer and how much."""
    from facedet.quant.pipeline import layer_summary
    from facedet.quant.quantize import Range, quantize_program

    program, _ = load_program(qfile)
    det = Detector.load(qfile)
    graph = Detector.load(None).model.lower()
    ranges = {op.name: Range(-1.0, 1.0) for op in program.ops if op.kind not in ("pad_replicate", "maxout")}
    ranges["features.2.project"] = Range(-0.01, 0.01)
    narrowed = quantize_program(graph, "m4", program.qparams["input"], ranges)
    sat = interpreter.Saturation(narrowed.qparams)
    x, _, _ = det.prepare(cv2.imread(str(DATA / "grace_hopper.jpg")))
    interpreter.run(narrowed, interpreter.quantize_frame(x[0].numpy(), 1.0, -11), saturation=sat)
    rows, warnings = layer_summary(narrowed, ranges, sat)
    frac = {r["name"]: r["saturated"] for r in rows}
    assert frac["features.2.project"] > 0.5
    assert any(w.startswith("features.2.project:") and "% of values saturate" in w for w in warnings)

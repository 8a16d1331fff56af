"""Backends (torch, onnxruntime, the integer interpreter): same detections, no torch where none is
needed, --backend and --threads on every command that detects, the export cache."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from facedet.backends import cache_dir, program_structure, resolve_backend
from facedet.boxes import box_iou, nms
from facedet.detector import build_model
from facedet.detector.postprocess import detect_boxes
from facedet.detector.priors import make_priors, prior_boxes
from facedet.errors import FacedetError, UsageError
from facedet.graph import Graph
from facedet.inference import Detector
from facedet.weights import default_weights_path
from tests.clitools import one_line_error, run

REPO = Path(__file__).resolve().parent.parent
PHOTO = REPO / "tests" / "data" / "astronaut.jpg"


def _ort():
    return pytest.importorskip("onnxruntime")


# --------------------------------------------------------------------------- no torch where none is needed


def _run_python(code: str, cache: Path) -> dict:
    env = dict(os.environ, FACEDET_CACHE_DIR=str(cache))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


_DETECT = """
import json, sys
from facedet.cli import app
try:
    app({args!r}, prog_name="facedet")
except SystemExit as e:
    code = e.code
print(json.dumps({{"code": code, "torch": "torch" in sys.modules, "onnx": "onnx" in sys.modules}}))
"""


def test_cli_imports_without_torch(tmp_path):
    got = _run_python('import json, sys\nimport facedet.cli, facedet.inference, facedet.boxes, facedet.detector.postprocess\nprint(json.dumps({"torch": "torch" in sys.modules}))', tmp_path)
    assert got == {"torch": False}


def test_int8_detect_never_imports_torch(tmp_path):
    got = _run_python(_DETECT.format(args=["detect", str(PHOTO), "--int8", "-q"]), tmp_path)
    assert got == {"code": 0, "torch": False, "onnx": False}


def test_onnxruntime_detect_imports_torch_only_to_export(tmp_path):
    _ort()
    pytest.importorskip("onnx")
    args = ["detect", str(PHOTO), "--backend", "onnxruntime", "-q"]
    first = _run_python(_DETECT.format(args=args), tmp_path)
    assert first["code"] == 0 and first["torch"]  # the first run exports (torch reads the weights)
    digest = __import__("hashlib").sha256(default_weights_path("m4").read_bytes()).hexdigest()
    assert list((tmp_path / "onnx").glob(f"{digest}-v*.onnx"))
    second = _run_python(_DETECT.format(args=args), tmp_path)
    assert second == {"code": 0, "torch": False, "onnx": False}


# --------------------------------------------------------------------------- same detections on every backend


def _detections(det, image, **kw):
    d = det.detect(image, **kw)
    return d.boxes, d.scores


@pytest.mark.parametrize("kw", [{}, {"pyramid": True}, {"pyramid": True, "threshold": 0.05}])
def test_onnxruntime_backend_detects_what_torch_detects(kw):
    _ort()
    from facedet.imageio import read_image

    image = read_image(PHOTO)
    a = _detections(Detector.load(None, backend="torch"), image, **kw)
    b = _detections(Detector.load(None, backend="onnxruntime"), image, **kw)
    assert a[0].shape == b[0].shape
    assert np.abs(a[0] - b[0]).max() < 1e-2 and np.abs(a[1] - b[1]).max() < 1e-4


def test_int8_detector_is_torch_free_and_matches_the_architecture():
    det = Detector.load(None, quantized=True)
    model = build_model("m4")
    assert det.backend_name == "int8" and det._model is None
    for h, w in ((240, 320), (97, 131), (15, 15)):
        assert det.structure.head_sizes(h, w) == model.head_sizes(h, w)
        np.testing.assert_array_equal(det.priors(h, w), model.priors(h, w).numpy())
    assert det.structure.min_input_side() == model.min_input_side()


def test_structure_round_trip_and_program_structure():
    model = build_model("quant")
    structure = Graph.from_structure(json.loads(json.dumps(model.structure.structure())))
    assert structure.shapes(101, 77) == model.structure.shapes(101, 77)
    det = Detector.load(None, quantized=True)
    assert program_structure(det.program).shapes(240, 320) == build_model("m4").structure.shapes(240, 320)
    with pytest.raises(ValueError):
        Graph.from_structure({"input": "x", "in_channels": 1, "ops": [{"kind": "nope"}], "heads": []})


def test_priors_numpy_and_torch_are_the_same_numbers():
    sizes, steps, anchors = [(3, 5), (2, 2)], [8, 16], [16, 32]
    p = prior_boxes(sizes, steps, anchors)
    assert p.dtype == np.float32 and p.shape == (19, 4)
    assert torch.equal(make_priors(sizes, steps, anchors), torch.from_numpy(p))
    assert p[6].tolist() == [12.0, 12.0, 16.0, 16.0]  # head 0, row 1, column 1


def test_post_processing_takes_tensors_and_arrays_alike():
    rng = np.random.default_rng(3)
    priors = prior_boxes([(30, 40)], [8], [16])
    conf = rng.normal(0, 2, (len(priors), 2)).astype(np.float32)
    loc = rng.normal(0, 1, (len(priors), 4)).astype(np.float32)
    kw = dict(threshold=0.6, nms_threshold=0.3, max_faces=50)
    bt, st = detect_boxes(torch.from_numpy(conf), torch.from_numpy(loc), torch.from_numpy(priors), **kw)
    bn, sn = detect_boxes(conf, loc, priors, **kw)
    assert isinstance(bt, torch.Tensor) and isinstance(bn, np.ndarray) and bn.dtype == np.float32
    assert bn.shape == tuple(bt.shape) and len(sn) == 50
    np.testing.assert_allclose(bn, bt.numpy(), atol=1e-4)
    np.testing.assert_allclose(sn, st.numpy(), atol=1e-6)
    empty = detect_boxes(conf, loc, priors, threshold=0.999999, nms_threshold=0.3, max_faces=5)
    assert empty[0].shape == (0, 4) and isinstance(empty[0], np.ndarray)


def _greedy_in_torch(boxes, scores, thr):
    """The classic greedy loop on torch's own float32 IoUs: what NMS computed before it ran in NumPy."""
    order = torch.sort(scores, descending=True, stable=True).indices
    iou = box_iou(boxes[order], boxes[order])
    suppressed = torch.zeros(len(order), dtype=torch.bool)
    keep = []
    for i in range(len(order)):
        if not suppressed[i]:
            keep.append(int(order[i]))
            suppressed |= iou[i] > thr
    return keep


@pytest.mark.parametrize("seed", range(6))
def test_nms_on_float32_tensors_equals_torch_float32_greedy(seed):
    """Grid boxes whose IoUs land exactly on or next to the threshold, tied scores: float32 decides."""
    rng = np.random.default_rng(seed)
    n = 400
    xy = np.round(rng.uniform(0, 40, (n, 2))) * 3 + rng.choice([0.0, 1e-3, 0.1], (n, 2))
    boxes = torch.from_numpy(np.hstack([xy, xy + 12 * rng.integers(1, 3, (n, 1))]).astype(np.float32))
    scores = torch.from_numpy(np.round(rng.uniform(0, 1, n), 2).astype(np.float32))
    for thr in (1 / 3, 0.3, 0.5):
        keep = nms(boxes, scores, thr)
        assert keep.dtype == torch.int64 and keep.tolist() == _greedy_in_torch(boxes, scores, thr)


# --------------------------------------------------------------------------- --backend and --threads


def test_resolve_backend():
    assert resolve_backend(None, False) == "torch" and resolve_backend(None, True) == "int8"
    assert resolve_backend("auto", True) == "int8"
    with pytest.raises(UsageError):
        resolve_backend("onnxruntime", True)
    with pytest.raises(UsageError):
        resolve_backend("tensorflow", False)


def test_backend_onnxruntime_without_onnxruntime(monkeypatch, weights_file):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    r = run("detect", PHOTO, "--weights", weights_file, "--backend", "onnxruntime")
    errs = one_line_error(r, "pip install 'facedet[onnx]'")
    assert r.exit_code == 1 and len(errs) == 1
    assert resolve_backend("auto", False) == "torch"  # auto falls back to torch


@pytest.mark.parametrize("command", [["detect", str(PHOTO)], ["webcam"], ["evaluate", "folder", "--images", ".", "--annotations", "x.json"], ["evaluate", "wider", "--pred-dir", "."]])
def test_backend_and_threads_are_checked_on_every_detecting_command(command):
    r = run(*command, "--threads", "0")
    one_line_error(r, "--threads")
    assert r.exit_code == 2
    if command[0] == "detect":
        r = run(*command, "--backend", "tensorflow")
        one_line_error(r, "--backend must be one of auto, torch, onnxruntime")
        assert r.exit_code == 2
        r = run(*command, "--int8", "--backend", "torch")
        one_line_error(r, "integer model runs in the integer interpreter")
        assert r.exit_code == 2


def _blas_threads():
    import ctypes

    try:
        libs = {p[5] for p in map(str.split, open("/proc/self/maps")) if len(p) >= 6 and "openblas" in p[5].lower()}
    except OSError:
        return None
    for path in libs:
        for name in ("scipy_openblas_get_num_threads64_", "openblas_get_num_threads64_", "openblas_get_num_threads"):
            getter = getattr(ctypes.CDLL(path), name, None)
            if getter is not None:
                return getter()
    return None


def test_threads_reach_every_backend():
    from facedet.quant import interpreter

    before = torch.get_num_threads()
    try:
        Detector.load(None, backend="torch", threads=1)
        assert torch.get_num_threads() == 1
        Detector.load(None, quantized=True, threads=2)
        assert interpreter._threads == 2
        assert _blas_threads() in (None, 2)  # NumPy's OpenBLAS, where it is one (Linux wheels)
        _ort()
        det = Detector.load(None, backend="onnxruntime", threads=2)
        assert det.backend.session.get_session_options().intra_op_num_threads == 2
    finally:
        torch.set_num_threads(before)
        interpreter.set_threads(min(2, os.cpu_count() or 1))


def test_detect_backends_write_the_same_json(tmp_path):
    # the shipped weights: an untrained model scores hundreds of boxes within float rounding of
    # each other, whose order may then differ between backends
    _ort()
    outs = {}
    for backend in ("torch", "onnxruntime"):
        r = run("detect", PHOTO, "--backend", backend, "--threads", "1", "-t", "0.2", "--json", "-")
        assert r.exit_code == 0, r.output
        outs[backend] = json.loads(r.stdout)[0]["faces"]
    assert len(outs["torch"]) == len(outs["onnxruntime"]) >= 5
    for a, b in zip(outs["torch"], outs["onnxruntime"]):
        assert max(abs(p - q) for p, q in zip(a["box"], b["box"])) <= 0.011 and abs(a["score"] - b["score"]) <= 1.1e-4


def test_export_cache_is_keyed_by_the_weights_bytes(tmp_path, monkeypatch, weights_file):
    _ort()
    pytest.importorskip("onnx")
    monkeypatch.setenv("FACEDET_CACHE_DIR", str(tmp_path / "cache"))
    assert cache_dir() == tmp_path / "cache"
    Detector.load(weights_file, backend="onnxruntime")
    exports = sorted((tmp_path / "cache" / "onnx").glob("*.onnx"))
    assert len(exports) == 1
    # other weights (one parameter changed) get their own export; the same bytes elsewhere reuse it
    other = tmp_path / "other.safetensors"
    from facedet.weights import load_weights, save_weights

    model, _ = load_weights(weights_file)
    with torch.no_grad():
        model.heads[0].conf.bias.add_(1.0)
    save_weights(other, model)
    d_other = Detector.load(other, backend="onnxruntime")
    assert len(sorted((tmp_path / "cache" / "onnx").glob("*.onnx"))) == 2
    copy = tmp_path / "copy.safetensors"
    copy.write_bytes(Path(weights_file).read_bytes())
    Detector.load(copy, backend="onnxruntime")
    assert len(sorted((tmp_path / "cache" / "onnx").glob("*.onnx"))) == 2
    x = np.random.default_rng(0).normal(0, 60, (1, 1, 64, 80)).astype(np.float32)
    with torch.inference_mode():
        want = model(torch.from_numpy(x))[0][0].numpy()
    assert np.abs(d_other.forward_array(x)[0] - want).max() < 1e-4


def test_unwritable_cache_warns_and_still_runs(tmp_path, monkeypatch, weights_file):
    _ort()
    pytest.importorskip("onnx")
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv("FACEDET_CACHE_DIR", str(blocker))
    r = run("detect", PHOTO, "--weights", weights_file, "--backend", "onnxruntime", "-q")
    assert r.exit_code == 0, r.output
    warnings = [line for line in r.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "cannot cache the ONNX export" in warnings[0]


def test_detector_needs_a_model_or_a_backend():
    with pytest.raises(TypeError):
        Detector()
    with pytest.raises(FacedetError):
        Detector.load(None, arch="nope")

"""ONNX export (facedet export-onnx): equal to torch in onnxruntime and OpenCV's DNN module, every op
kind, opsets, fixed and dynamic shapes, and the command's checks."""

import json

import cv2
import numpy as np
import pytest
import torch

from facedet.detector import ARCHS, build_model
from facedet.fileutil import sha256_file
from facedet.onnx_export import DEFAULT_OPSET, META_FORMAT, graph_to_onnx
from facedet.weights import default_weights_path, load_weights
from tests.clitools import one_line_error, run

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

TOL = 1e-4


def _session(model_proto):
    return ort.InferenceSession(model_proto.SerializeToString(), providers=["CPUExecutionProvider"])


def _input(c, h, w, batch=1, seed=0):
    return np.random.default_rng(seed).normal(0.0, 60.0, (batch, c, h, w)).astype(np.float32)


def _torch(model, x):
    with torch.inference_mode():
        return [t.numpy() for t in model(torch.from_numpy(x))]


def _assert_close(got, want):
    for g, w in zip(got, want):
        assert g.shape == w.shape
        assert float(np.abs(g - w).max()) <= TOL


@pytest.fixture(scope="module")
def shipped():
    model, _ = load_weights(default_weights_path("m4"))
    return model


def _random_model(arch, seed, general_cells=False):
    torch.manual_seed(seed)
    model = build_model(arch).eval()
    with torch.no_grad():
        for m in model.modules():  # non-trivial batch-norm statistics, so folding is exercised
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
        if general_cells:  # sigmoid(zeta) != 1, sigmoid(nu) != 0: the general FastGRNN update
            for name, p in model.named_parameters():
                if name.endswith("zeta"):
                    p.fill_(1.5)
                elif name.endswith(".nu"):
                    p.fill_(-2.0)
    return model


def test_shipped_weights_static_and_dynamic_equal_torch(shipped):
    static = _session(graph_to_onnx(shipped.lower(), height=240, width=320))
    x = _input(1, 240, 320)
    _assert_close(static.run(None, {"input": x}), _torch(shipped, x))
    dynamic = _session(graph_to_onnx(shipped.lower(), height=None, width=None, batch=None))
    for h, w, batch in ((240, 320, 1), (123, 77, 1), (15, 15, 1), (97, 131, 2)):  # 15: the smallest input
        x = _input(1, h, w, batch, seed=h)
        _assert_close(dynamic.run(None, {"input": x}), _torch(shipped, x))


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_every_architecture_and_op_kind(arch):
    """All four architectures: RGB input, RNNPool first, max-out with tower heads, 1x1 and 5x5 heads."""
    model = _random_model(arch, seed=len(arch), general_cells=arch in ("qvga", "c"))
    side = model.min_input_side()
    h, w = side + 21, side + 38
    x = _input(model.spec.in_channels, h, w)
    _assert_close(_session(graph_to_onnx(model.lower(), height=None, width=None)).run(None, {"input": x}), _torch(model, x))


@pytest.mark.parametrize("opset", [11, 13, 17, 18])
def test_opsets(opset, shipped):
    proto = graph_to_onnx(shipped.lower(), height=None, width=None, opset=opset)
    assert proto.opset_import[0].version == opset
    x = _input(1, 96, 128)
    _assert_close(_session(proto).run(None, {"input": x}), _torch(shipped, x))


def test_opencv_reads_the_static_export(tmp_path, shipped):
    path = tmp_path / "m4.onnx"
    path.write_bytes(graph_to_onnx(shipped.lower(), height=240, width=320).SerializeToString())
    net = cv2.dnn.readNetFromONNX(str(path))
    x = _input(1, 240, 320)
    net.setInput(x, "input")
    _assert_close(net.forward(["conf", "loc"]), _torch(shipped, x))


@pytest.mark.skipif(int(cv2.__version__.split(".")[0]) < 5, reason="OpenCV 4.x reads fixed input sizes only (docs/onnx.md)")
def test_opencv5_reads_the_dynamic_export(tmp_path, shipped):
    path = tmp_path / "m4_dynamic.onnx"
    path.write_bytes(graph_to_onnx(shipped.lower(), height=None, width=None).SerializeToString())
    for h, w in ((240, 320), (120, 200)):
        net = cv2.dnn.readNetFromONNX(str(path))
        x = _input(1, h, w, seed=h)
        net.setInput(x, "input")
        _assert_close(net.forward(["conf", "loc"]), _torch(shipped, x))


# --------------------------------------------------------------------------- the command


def test_export_command(tmp_path, weights_file):
    out = tmp_path / "m.onnx"
    r = run("export-onnx", "--weights", weights_file, "--out", out)
    assert r.exit_code == 0, r.output
    assert "240x320" in r.stdout and "onnxruntime vs torch" in r.stdout
    proto = onnx.load(str(out))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["format"] == META_FORMAT and meta["arch"] == "m4" and meta["weights_sha256"] == sha256_file(weights_file)
    assert meta["shape"] == "240x320" and json.loads(meta["structure"])["heads"]
    dims = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 1, 240, 320] and proto.opset_import[0].version == DEFAULT_OPSET
    # no overwrite without --force: one line, exit 1, the file untouched
    before = out.read_bytes()
    one_line_error(r := run("export-onnx", "--weights", weights_file, "--out", out, "--dynamic"), "already exists (use --force")
    assert r.exit_code == 1 and out.read_bytes() == before
    r = run("export-onnx", "--weights", weights_file, "--out", out, "--dynamic", "--opset", "13", "--force")
    assert r.exit_code == 0, r.output
    proto = onnx.load(str(out))
    assert [d.dim_param for d in proto.graph.input[0].type.tensor_type.shape.dim] == ["batch", "", "height", "width"]
    assert proto.opset_import[0].version == 13


@pytest.mark.parametrize("args, code, needle", [
    (["--height", "240"], 2, "--height and --width go together"),
    (["--dynamic", "--height", "240", "--width", "320"], 2, "either --dynamic or --height/--width"),
    (["--height", "8", "--width", "320"], 2, "at least 15"),
    (["--opset", "9"], 2, "--opset must be in"),
])
def test_export_command_usage_errors(tmp_path, weights_file, args, code, needle):
    r = run("export-onnx", "--weights", weights_file, "--out", tmp_path / "m.onnx", *args)
    one_line_error(r, needle)
    assert r.exit_code == code and not (tmp_path / "m.onnx").exists()


def test_export_refuses_quantized_weights_and_its_own_input(tmp_path, weights_file):
    one_line_error(run("export-onnx", "--weights", default_weights_path("m4", quantized=True), "--out", tmp_path / "q.onnx"), "quantized")
    one_line_error(run("export-onnx", "--weights", weights_file, "--out", weights_file, "--force"), "is the input weights file")


def test_export_without_the_onnx_package(tmp_path, weights_file, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "onnx", None)
    r = run("export-onnx", "--weights", weights_file, "--out", tmp_path / "m.onnx")
    one_line_error(r, "pip install 'facedet[onnx]'")
    assert r.exit_code == 1

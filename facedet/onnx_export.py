"""The float model as an ONNX graph of standard operators (``facedet export-onnx``).

The graph is written from the model's lowered :class:`facedet.graph.Graph`
(batch norm folded), op by op, not traced from torch: every op maps to a few
standard ONNX operators, and RNNPool's two recurrences are unrolled over the
patch side (8 steps each):

* RNN1's input projection ``x W`` is one MatMul over the whole map (channels
  last), shared by the rows and columns of all overlapping patches;
* step ``t`` of the row pass reads the projected pixels ``t, t + stride, ...``
  of every image row (a strided Slice), the column pass the same down the
  columns -- RNN1 runs once per (image row, patch column) and once per (image
  column, patch row), as in :meth:`facedet.rnnpool.rnnpool.RNNPool.forward_map`;
* RNN2 runs the four directions (rows forward and backward, columns forward
  and backward) as one batch of ``4 x`` patches;
* every tensor is 4-D and every operator one that ONNX Runtime and OpenCV's
  DNN module both read (docs/onnx.md has the tested matrix).

The Slice bounds do not depend on the input size, so one graph serves a fixed
input (``--height/--width``) or any input (``--dynamic``).  Inputs and outputs
are the torch model's: ``input float32[N, C, H, W]`` (the normalised image,
:func:`facedet.preprocess.normalize`) -> ``conf float32[N, P, 2]`` (background,
face logits) and ``loc float32[N, P, 4]`` (SSD offsets), priors in the order of
:meth:`facedet.detector.RNNPoolFace.priors`.  The file's metadata
(:data:`META_FORMAT`) carries the architecture, the normalisation, the SHA-256
of the source weights and the graph structure, which is what
``facedet detect --backend onnxruntime`` needs to compute priors without torch.

Writing needs the ``onnx`` package and torch (to read the weights); running the
file needs only onnxruntime (or OpenCV's DNN module, see docs).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facedet import __version__
from facedet import graph as g
from facedet.errors import FacedetError
from facedet.fileutil import sha256_file

META_FORMAT = "facedet-onnx"
META_VERSION = "1"  # bump when the written graph changes: cached exports are keyed by it
DEFAULT_OPSET = 17
MIN_OPSET = 11  # Slice with steps, Pad and Clip with tensor inputs
INPUT_NAME = "input"
OUTPUT_NAMES = ("conf", "loc")
INSTALL_HINT = "pip install 'facedet[onnx]'"
_INT64_MAX = np.iinfo(np.int64).max


def _onnx():
    try:
        import onnx
    except ImportError:
        raise FacedetError(f"writing ONNX needs the onnx package: {INSTALL_HINT}") from None
    return onnx


class _Writer:
    """Accumulates ONNX nodes and initializers with unique names."""

    def __init__(self, opset: int) -> None:
        self.onnx = _onnx()
        self.opset = opset
        self.nodes: list = []
        self.inits: list = []
        self._names: set[str] = set()
        self._consts: dict[tuple, str] = {}

    def name(self, base: str) -> str:
        n, i = base, 1
        while n in self._names:
            n, i = f"{base}_{i}", i + 1
        self._names.add(n)
        return n

    def const(self, value, base: str = "const", dtype=np.float32) -> str:
        arr = np.ascontiguousarray(np.asarray(value, dtype=dtype))
        key = (arr.dtype.str, arr.shape, arr.tobytes())
        if key not in self._consts:
            name = self.name(base)
            self.inits.append(self.onnx.numpy_helper.from_array(arr, name))
            self._consts[key] = name
        return self._consts[key]

    def ints(self, values, base: str = "idx") -> str:
        return self.const(values, base, np.int64)

    def node(self, op: str, inputs: list[str], base: str, out: str | None = None, **attrs) -> str:
        out = out or self.name(base)
        self.nodes.append(self.onnx.helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    # -------------------------------------------------------------- operators whose form depends on the opset

    def slice(self, x: str, start: int, end: int, axis: int, step: int = 1, base: str = "slice") -> str:
        return self.node("Slice", [x, self.ints([start]), self.ints([end]), self.ints([axis]), self.ints([step])], base)

    def split_equal(self, x: str, axis: int, n: int, base: str) -> list[str]:
        outs = [self.name(f"{base}{i}") for i in range(n)]
        attrs = {"num_outputs": n} if self.opset >= 18 else {}
        self.nodes.append(self.onnx.helper.make_node("Split", [x], outs, name=outs[0], axis=axis, **attrs))
        return outs


# --------------------------------------------------------------------------- ops


def _conv(w: _Writer, op: g.Conv2d, x: str) -> str:
    weight = op.weight.transpose(0, 3, 1, 2)  # OHWI -> OIHW
    k, s, p = op.kernel, op.stride, op.padding
    y = w.node(
        "Conv", [x, w.const(weight, f"{op.name}.weight"), w.const(op.bias, f"{op.name}.bias")], op.name + (".conv" if op.relu6 else ""),
        out=None if op.relu6 else op.name, kernel_shape=[k, k], strides=[s, s], pads=[p, p, p, p], group=op.groups, dilations=[1, 1],
    )
    if op.relu6:
        y = w.node("Clip", [y, w.const(0.0, "zero"), w.const(6.0, "six")], op.name, out=op.name)
    return y


def _replicate_pad(w: _Writer, op: g.ReplicatePad, x: str) -> str:
    # Copies of the last row / column, concatenated (Pad's "edge" mode is not read by every runtime).
    y = x
    for axis, n in ((2, op.bottom), (3, op.right)):
        if n > 0:
            last = w.slice(y, -1, _INT64_MAX, axis, base=f"{op.name}.last{axis}")
            y = w.node("Concat", [y] + [last] * n, f"{op.name}.cat{axis}", axis=axis)
    return w.node("Identity", [y], op.name, out=op.name)


def _l2norm(w: _Writer, op: g.L2Norm, x: str) -> str:
    # The channel sum is a 1x1 convolution with ones: OpenCV 4.x's DNN module computes ReduceSum and
    # ReduceMax over channels wrongly (4.8), and a variadic Max wrongly (4.12).
    c = op.weight.shape[0]
    sq = w.node("Mul", [x, x], f"{op.name}.sq")
    total = w.node("Conv", [sq, w.const(np.ones((1, c, 1, 1), np.float32), f"{op.name}.ones")], f"{op.name}.sum", kernel_shape=[1, 1])
    norm = w.node("Add", [w.node("Sqrt", [total], f"{op.name}.norm"), w.const(op.eps, f"{op.name}.eps")], f"{op.name}.norm_eps")
    y = w.node("Div", [x, norm], f"{op.name}.div")
    return w.node("Mul", [y, w.const(op.weight.reshape(1, -1, 1, 1), f"{op.name}.weight")], op.name, out=op.name)


def _maxout(w: _Writer, op: g.MaxOut, x: str, channels: int) -> str:
    parts = [w.slice(x, c, c + 1, 1, base=f"{op.name}.c{c}") for c in range(channels)]
    background = parts[0]
    for part in parts[1:-1]:  # two inputs at a time (see _l2norm)
        background = w.node("Max", [background, part], f"{op.name}.max")
    return w.node("Concat", [background, parts[-1]], op.name, out=op.name, axis=1)


def _cell_step(w: _Writer, p: g.CellParams, u: str, xg: str, xh: str, h: str | None, base: str) -> str:
    """One FastGRNN step from the projected inputs ``xg = xW + b_g``, ``xh = xW + b_h`` (``h`` None: zero state)."""
    sz, sn = np.float32(p.sigmoid_zeta), np.float32(p.sigmoid_nu)
    if h is None:
        gate, cand = xg, xh
    else:
        hu = w.node("MatMul", [h, u], f"{base}.hU")
        gate = w.node("Add", [hu, xg], f"{base}.gate_in")
        cand = w.node("Add", [hu, xh], f"{base}.cand_in")
    z = w.node("Sigmoid", [gate], f"{base}.z")
    c = w.node("Tanh", [cand], f"{base}.c")
    # h' = z*h + (sz*(1 - z) + sn)*c = z*(h - sz*c) + (sz + sn)*c, torch's regrouping
    if sz == 1 and sz + sn == 1:  # the trained cells: sigmoid(zeta) = 1, sigmoid(nu) vanishes beside it (float32)
        if h is None:
            return w.node("Sub", [c, w.node("Mul", [z, c], f"{base}.zc")], f"{base}.h")
        return w.node("Add", [w.node("Mul", [z, w.node("Sub", [h, c], f"{base}.inner")], f"{base}.z_inner"), c], f"{base}.h")
    scaled = w.node("Mul", [c, w.const(sz + sn, "sz_plus_sn")], f"{base}.c_s")
    if h is None:
        return w.node("Sub", [scaled, w.node("Mul", [z, w.node("Mul", [c, w.const(sz, "sz")], f"{base}.c_z")], f"{base}.zc")], f"{base}.h")
    inner = w.node("Sub", [h, w.node("Mul", [c, w.const(sz, "sz")], f"{base}.c_z")], f"{base}.inner")
    return w.node("Add", [w.node("Mul", [z, inner], f"{base}.z_inner"), scaled], f"{base}.h")


def _projected(w: _Writer, x: str, p: g.CellParams, base: str) -> tuple[str, str]:
    """``(x W + b_gate, x W + b_update)`` over the last axis."""
    proj = w.node("MatMul", [x, w.const(p.W, f"{base}.W")], f"{base}.xW")
    return w.node("Add", [proj, w.const(p.bias_gate, f"{base}.bias_gate")], f"{base}.xg"), w.node("Add", [proj, w.const(p.bias_update, f"{base}.bias_update")], f"{base}.xh")


def _window_end(t: int, patch: int) -> int:
    """Slice end that leaves exactly ``(L - patch)//stride + 1`` elements ``t, t + stride, ...`` of a length-L axis."""
    return -(patch - 1 - t) if t < patch - 1 else _INT64_MAX


def _rnnpool(w: _Writer, op: g.RNNPool, x: str) -> str:
    P, s, n = op.patch, op.stride, op.name
    r1, r2 = op.rnn1, op.rnn2
    u1, u2 = w.const(r1.U, f"{n}.rnn1.U"), w.const(r2.U, f"{n}.rnn2.U")
    xt = w.node("Transpose", [x], f"{n}.nhwc", perm=[0, 2, 3, 1])  # [N, H, W, k]
    xg, xh = _projected(w, xt, r1, f"{n}.rnn1")  # [N, H, W, h1]
    # RNN1 along every image row (patch columns: axis 2) and down every image column (patch rows: axis 1).
    finals = []
    for axis, tag in ((2, "rows"), (1, "cols")):
        h = None
        for t in range(P):
            end = _window_end(t, P)
            gt = w.slice(xg, t, end, axis, s, f"{n}.{tag}.xg{t}")
            ht = w.slice(xh, t, end, axis, s, f"{n}.{tag}.xh{t}")
            h = _cell_step(w, r1, u1, gt, ht, h, f"{n}.{tag}.t{t}")
        finals.append(h)
    rows, cols = finals  # [N, H, ow, h1], [N, oh, W, h1]
    # RNN2 over each patch's P row states (axis 1) and P column states (axis 2), both directions:
    # the four sequences of every patch run as one batch of 4N (direction-major), split at the end.
    steps = {}
    for src, axis, tag in ((rows, 1, "rows"), (cols, 2, "cols")):
        pg, ph = _projected(w, src, r2, f"{n}.rnn2.{tag}")
        steps[tag] = [(w.slice(pg, t, _window_end(t, P), axis, s, f"{n}.rnn2.{tag}.g{t}"), w.slice(ph, t, _window_end(t, P), axis, s, f"{n}.rnn2.{tag}.h{t}")) for t in range(P)]
    h = None
    for t in range(P):
        seq = [steps["rows"][t], steps["rows"][P - 1 - t], steps["cols"][t], steps["cols"][P - 1 - t]]  # [N, oh, ow, h2] each
        gt = w.node("Concat", [a for a, _ in seq], f"{n}.rnn2.xg{t}", axis=0)
        ht = w.node("Concat", [b for _, b in seq], f"{n}.rnn2.xh{t}", axis=0)
        h = _cell_step(w, r2, u2, gt, ht, h, f"{n}.rnn2.t{t}")  # [4N, oh, ow, h2]
    q = w.node("Concat", w.split_equal(h, 0, 4, f"{n}.q"), f"{n}.q_cat", axis=3)  # [N, oh, ow, 4*h2]
    return w.node("Transpose", [q], n, out=n, perm=[0, 3, 1, 2])


# --------------------------------------------------------------------------- the model


def graph_to_onnx(graph: g.Graph, *, height: int | None, width: int | None, opset: int = DEFAULT_OPSET, metadata: dict[str, str] | None = None, batch: int | None = 1):
    """An ``onnx.ModelProto`` computing ``graph`` (which must carry weights).

    Args:
        graph: the lowered model (:meth:`facedet.detector.RNNPoolFace.lower`).
        height, width: fixed input size, or None for a symbolic dimension.
        opset: ONNX opset of the default domain (at least :data:`MIN_OPSET`).
        metadata: string pairs stored as the model's ``metadata_props``.
        batch: fixed batch size, or None for a symbolic one.
    """
    onnx = _onnx()
    if not graph.weights:
        raise ValueError("graph_to_onnx needs a graph with weights")
    if opset < MIN_OPSET:
        raise FacedetError(f"opset {opset} is not supported; use {MIN_OPSET} or newer")
    w = _Writer(opset)
    side = graph.min_input_side()
    shapes = graph.shapes(side, side)  # channel counts
    env = {graph.input: INPUT_NAME}
    w._names.add(INPUT_NAME)
    for op in graph.ops:
        x = env[op.inputs[0]]
        if isinstance(op, g.Conv2d):
            y = _conv(w, op, x)
        elif isinstance(op, g.RNNPool):
            y = _rnnpool(w, op, x)
        elif isinstance(op, g.ReplicatePad):
            y = _replicate_pad(w, op, x)
        elif isinstance(op, g.Add):
            y = w.node("Add", [x, env[op.inputs[1]]], op.name, out=op.name)
        elif isinstance(op, g.L2Norm):
            y = _l2norm(w, op, x)
        elif isinstance(op, g.MaxOut):
            y = _maxout(w, op, x, shapes[op.inputs[0]][2])
        else:
            raise TypeError(f"no ONNX rule for {type(op).__name__}")
        w._names.add(op.name)
        env[op.output] = y
    outs = []
    for out_name, key, c in ((OUTPUT_NAMES[0], "conf", 2), (OUTPUT_NAMES[1], "loc", 4)):
        flat = []
        for k, head in enumerate(graph.heads):
            t = w.node("Transpose", [env[getattr(head, key)]], f"heads.{k}.{key}.nhwc", perm=[0, 2, 3, 1])
            flat.append(w.node("Reshape", [t, w.ints([0, -1, c])], f"heads.{k}.{key}.flat"))
        outs.append(w.node("Concat", flat, out_name, out=out_name, axis=1))
    dim = lambda v, sym: v if v is not None else sym  # noqa: E731
    inp = onnx.helper.make_tensor_value_info(INPUT_NAME, onnx.TensorProto.FLOAT, [dim(batch, "batch"), graph.in_channels, dim(height, "height"), dim(width, "width")])
    outputs = [onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, [dim(batch, "batch"), "priors", c]) for name, c in zip(OUTPUT_NAMES, (2, 4))]
    body = onnx.helper.make_graph(w.nodes, "facedet", [inp], outputs, initializer=w.inits)
    model = onnx.helper.make_model(body, producer_name="facedet", producer_version=__version__, opset_imports=[onnx.helper.make_opsetid("", opset)])
    model.ir_version = min(model.ir_version, _IR_FOR_OPSET.get(opset, model.ir_version))
    for k, v in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.checker.check_model(model)
    return model


# Oldest IR version that can carry each opset: older readers (OpenCV, older onnxruntime) refuse newer IR.
_IR_FOR_OPSET = {11: 6, 12: 7, 13: 7, 14: 7, 15: 8, 16: 8, 17: 8, 18: 8, 19: 9, 20: 9, 21: 10}


def onnx_metadata(meta: dict[str, str], graph: g.Graph, weights_sha256: str, *, opset: int, height: int | None, width: int | None) -> dict[str, str]:
    """What an exported file records: enough to run detection from it without torch."""
    return {
        "format": META_FORMAT,
        "format_version": META_VERSION,
        "arch": meta["arch"],
        "input_size": meta["input_size"],
        "in_channels": meta["in_channels"],
        "normalization": meta.get("normalization", ""),
        "weights_sha256": weights_sha256,
        "structure": json.dumps(graph.structure(), separators=(",", ":")),
        "opset": str(opset),
        "shape": "dynamic" if height is None else f"{height}x{width}",
        "facedet_version": __version__,
    }


@dataclass
class ExportReport:
    out: Path | None
    arch: str
    height: int | None
    width: int | None
    opset: int
    max_abs_diff: dict[str, float] | None = None  # against torch, measured with onnxruntime


def export_model(weights: str | Path, *, height: int | None, width: int | None, opset: int = DEFAULT_OPSET, batch: int | None = 1):
    """Read float weights and write their ONNX model; returns ``(onnx.ModelProto, torch model)``."""
    from facedet.weights import load_weights

    weights = Path(weights)
    model, meta = load_weights(weights)
    graph = model.lower()
    metadata = onnx_metadata(meta, graph, sha256_file(weights), opset=opset, height=height, width=width)
    return graph_to_onnx(graph, height=height, width=width, opset=opset, metadata=metadata, batch=batch), model


def compare_with_torch(onnx_bytes: bytes, model, height: int, width: int, seed: int = 0) -> dict[str, float] | None:
    """Max |ONNX Runtime - torch| of conf and loc on a random input; None without onnxruntime."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    import torch

    x = np.random.default_rng(seed).normal(0.0, 60.0, (1, model.spec.in_channels, height, width)).astype(np.float32)
    sess = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    got = sess.run(list(OUTPUT_NAMES), {INPUT_NAME: x})
    with torch.inference_mode():
        want = [t.numpy() for t in model(torch.from_numpy(x))]
    return {name: float(np.abs(a - b).max()) for name, a, b in zip(OUTPUT_NAMES, got, want)}


TOLERANCE = 1e-4  # max |ONNX Runtime - torch| an export must meet on its check


def export_onnx(weights: str | Path | None, out: str | Path, *, height: int | None = None, width: int | None = None, dynamic: bool = False, opset: int = DEFAULT_OPSET, force: bool = False) -> ExportReport:
    """``facedet export-onnx``: write the ONNX model of float weights to ``out`` and check it.

    Without ``height``/``width`` and without ``dynamic`` the input is fixed at
    the model's nominal size.  The file is checked against torch with
    onnxruntime when that is installed (at the fixed size, or at the nominal
    size and an odd one for a dynamic model); a difference above
    :data:`TOLERANCE` fails the export and no file is written.
    """
    from facedet.cli_common import check_output_file
    from facedet.errors import UsageError
    from facedet.fileutil import atomic_path
    from facedet.weights import default_weights_path, is_quantized, read_metadata

    onnx = _onnx()
    if (height is None) != (width is None):
        raise UsageError("--height and --width go together")
    if dynamic and height is not None:
        raise UsageError("give either --dynamic or --height/--width, not both")
    if not MIN_OPSET <= opset <= onnx.defs.onnx_opset_version():
        raise UsageError(f"--opset must be in [{MIN_OPSET}, {onnx.defs.onnx_opset_version()}] (this onnx package's newest), got {opset}")
    if weights is None:
        weights = default_weights_path("m4")
        if weights is None:
            raise FacedetError("no float weights are installed; pass --weights FILE")
    weights, out = Path(weights), Path(out)
    meta = read_metadata(weights)
    if is_quantized(meta):
        raise FacedetError(f"{weights} is a quantized (integer) model; export-onnx exports float weights")
    if out.exists() and out.resolve() == weights.resolve():
        raise FacedetError(f"--out {out} is the input weights file")
    check_output_file(out, force)
    from facedet.detector import ARCHS

    nominal = ARCHS[meta["arch"]].input_size
    if not dynamic and height is None:
        height, width = nominal
    if height is not None:
        from facedet.detector import build_model

        side = build_model(meta["arch"]).min_input_side()
        for name, v in (("--height", height), ("--width", width)):
            if v < side:
                raise UsageError(f"{name} must be at least {side} for '{meta['arch']}' (its smallest input side), got {v}")
    model, torch_model = export_model(weights, height=height, width=width, opset=opset, batch=None if dynamic else 1)
    data = model.SerializeToString()
    checks = [(height, width)] if height is not None else [nominal, (nominal[0] // 2 + 3, nominal[1] // 2 + 7)]
    diffs = None
    for h, w in checks:
        d = compare_with_torch(data, torch_model, h, w)
        if d is None:
            break
        diffs = {k: max(v, (diffs or {}).get(k, 0.0)) for k, v in d.items()}
    if diffs is not None and max(diffs.values()) > TOLERANCE:
        raise FacedetError(f"the ONNX model differs from torch by {max(diffs.values()):.3g} (> {TOLERANCE:g}); not written")
    with atomic_path(out) as tmp:
        tmp.write_bytes(data)
    return ExportReport(out, meta["arch"], height, width, opset, diffs)

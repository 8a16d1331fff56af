"""The model as a flat graph of primitive operations: what every tool walks.

A detector is a list of blocks (:mod:`facedet.detector.layers`,
:mod:`facedet.rnnpool`) whose ``forward`` serves training.  Every block also
answers the :class:`Block` protocol, whose :meth:`Block.lower`
which appends the block's *primitive ops* to a :class:`Graph`: convolutions
with batch-norm folded into weight and bias, the RNNPool operator, the
replicate pad, the residual add, L2Norm and the S3FD max-out.  The model's
walker (:meth:`facedet.detector.RNNPoolFace.lower`) adds the head taps and
stops after the last tapped layer.  Nothing a tool needs lives only inside a
``forward``:

* the profiler counts MACs and activation bytes per op
  (:func:`facedet.profile.profile`),
* the quantizer turns each op into one integer op (:mod:`facedet.quant`),
* the firmware exporter schedules the same ops in C (:mod:`facedet.firmware`),
* the ONNX writer spells them as standard ONNX operators (:mod:`facedet.onnx_export`).

The graph module itself imports no torch: a structure-only graph (no
parameters, :meth:`Graph.structure` / :meth:`Graph.from_structure`) gives
shapes and priors to the backends that run without torch.

Tensor layout inside the graph is ``[H, W, C]`` (one image, channels last, as
the integer program and the C code store it); convolution weights are
``[C_out, k_h, k_w, C_in / groups]`` (OHWI).  :func:`run_float` executes a
graph in float32 with torch and equals the model's ``forward`` to float
rounding (tested), which is how calibration observes every op's output.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Callable, Iterator

import numpy as np

Shape = tuple[int, int, int]  # (H, W, C)


def __getattr__(name: str):
    # Block is a torch module (facedet.block); this module itself imports without torch, so that
    # shapes, priors and the ONNX writer work where torch is not loaded.
    if name == "Block":
        from facedet.block import Block

        return Block
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output length of a convolution along one axis."""
    return (size + 2 * padding - kernel) // stride + 1


# --------------------------------------------------------------------------- ops


@dataclass
class Op:
    """One primitive op: ``inputs`` (tensor names) -> ``output`` (tensor name).

    ``name`` is the op's path in the model (``features.2.expand``), also the
    name of its output tensor; :attr:`block` is the top-level block that emitted
    it (``features.2``).
    """

    name: str
    inputs: list[str]

    @property
    def output(self) -> str:
        return self.name

    @property
    def block(self) -> str:
        return ".".join(self.name.split(".")[:2])

    kind = "op"

    def out_shape(self, shapes: list[Shape]) -> Shape | None:
        """Output shape for the given input shapes, or None if the input is too small."""
        raise NotImplementedError

    def macs(self, shapes: list[Shape]) -> int:
        """Multiply-accumulates (convolutions and matrix-vector products only)."""
        return 0


@dataclass
class Conv2d(Op):
    """2-D convolution, batch norm folded: ``y = act(conv(x, weight) + bias)``.

    ``weight`` is ``float32[C_out, k, k, C_in/groups]``, ``bias`` ``float32[C_out]``;
    zero padding ``padding`` on every side; ``relu6`` clamps to [0, 6].
    """

    in_channels: int = 0
    out_channels: int = 0
    kernel: int = 1
    stride: int = 1
    padding: int = 0
    groups: int = 1
    relu6: bool = False
    weight: np.ndarray | None = None
    bias: np.ndarray | None = None
    kind = "conv2d"

    def out_shape(self, shapes):
        h, w, _ = shapes[0]
        oh = conv_output_size(h, self.kernel, self.stride, self.padding)
        ow = conv_output_size(w, self.kernel, self.stride, self.padding)
        return (oh, ow, self.out_channels) if oh > 0 and ow > 0 else None

    def macs(self, shapes):
        oh, ow, _ = self.out_shape(shapes)
        return oh * ow * self.out_channels * self.kernel * self.kernel * (self.in_channels // self.groups)


@dataclass
class CellParams:
    """FastGRNN parameters as the equations use them (float32).

    ``W [in, hidden]``, ``U [hidden, hidden]``, ``bias_gate``, ``bias_update``
    ``[hidden]``, and the raw scalars ``zeta`` and ``nu`` (the cell uses their
    sigmoids).
    """

    W: np.ndarray
    U: np.ndarray
    bias_gate: np.ndarray
    bias_update: np.ndarray
    zeta: float
    nu: float

    @property
    def sigmoid_zeta(self) -> float:
        return _sigmoid(self.zeta)

    @property
    def sigmoid_nu(self) -> float:
        return _sigmoid(self.nu)


@dataclass
class RNNPool(Op):
    """RNNPool over every ``patch x patch`` window taken with ``stride`` (no padding).

    Output ``[oh, ow, 4*hidden2]``, ``oh = (H - patch)//stride + 1``; channel
    order rows-forward, rows-backward, columns-forward, columns-backward.
    """

    in_channels: int = 0
    hidden1: int = 0
    hidden2: int = 0
    patch: int = 8
    stride: int = 4
    rnn1: CellParams | None = None
    rnn2: CellParams | None = None
    kind = "rnnpool"

    def out_shape(self, shapes):
        h, w, _ = shapes[0]
        if h < self.patch or w < self.patch:
            return None
        return (h - self.patch) // self.stride + 1, (w - self.patch) // self.stride + 1, 4 * self.hidden2

    def macs(self, shapes):
        oh, ow, _ = self.out_shape(shapes)
        p, k, h1, h2 = self.patch, self.in_channels, self.hidden1, self.hidden2
        return oh * ow * (2 * p * p * (k * h1 + h1 * h1) + 4 * p * (h1 * h2 + h2 * h2))


@dataclass
class ReplicatePad(Op):
    """Copy the last row ``bottom`` times below and the last column ``right`` times to the right."""

    bottom: int = 1
    right: int = 1
    kind = "pad_replicate"

    def out_shape(self, shapes):
        h, w, c = shapes[0]
        return h + self.bottom, w + self.right, c


@dataclass
class Add(Op):
    """Element-wise sum of two tensors of the same shape (the residual connection)."""

    kind = "add"

    def out_shape(self, shapes):
        if shapes[0] != shapes[1]:
            raise ValueError(f"{self.name}: add of {shapes[0]} and {shapes[1]}")
        return shapes[0]


@dataclass
class L2Norm(Op):
    """``y_c = weight_c * x_c / (sqrt(sum_c x_c^2) + eps)`` at every pixel."""

    weight: np.ndarray | None = None
    eps: float = 1e-10
    kind = "l2norm"

    def out_shape(self, shapes):
        return shapes[0]


@dataclass
class MaxOut(Op):
    """S3FD max-out: ``[max(x_0 .. x_{n-2}), x_{n-1}]`` (background, face)."""

    kind = "maxout"

    def out_shape(self, shapes):
        h, w, _ = shapes[0]
        return h, w, 2


@dataclass
class HeadOutput:
    """One detection source: its confidence (2 channels) and box (4 channels) tensors."""

    conf: str
    loc: str


# --------------------------------------------------------------------------- graph


@dataclass
class Graph:
    """A detector as ops in execution order, plus which tensors are its outputs.

    ``input`` is the name of the network input tensor (``[H, W, in_channels]``).
    ``weights`` tells whether the ops carry parameters (a structure-only graph
    is enough for shapes and costs).
    """

    input: str
    in_channels: int
    ops: list[Op] = field(default_factory=list)
    heads: list[HeadOutput] = field(default_factory=list)
    weights: bool = True

    def op(self, name: str) -> Op:
        for op in self.ops:
            if op.name == name:
                return op
        raise KeyError(name)

    def shapes(self, height: int, width: int) -> dict[str, Shape] | None:
        """Shape of every tensor for an input of ``height x width``; None if some op gets no pixels."""
        shapes: dict[str, Shape] = {self.input: (height, width, self.in_channels)}
        if height <= 0 or width <= 0:
            return None
        for op in self.ops:
            out = op.out_shape([shapes[i] for i in op.inputs])
            if out is None or out[0] <= 0 or out[1] <= 0:
                return None
            shapes[op.output] = out
        return shapes

    def consumers(self) -> dict[str, list[Op]]:
        """For each tensor, the ops that read it (in order)."""
        out: dict[str, list[Op]] = {self.input: []}
        for op in self.ops:
            out.setdefault(op.output, [])
            for i in op.inputs:
                out[i].append(op)
        return out

    def outputs(self) -> list[str]:
        return [n for h in self.heads for n in (h.conf, h.loc)]

    def head_sizes(self, height: int, width: int) -> list[tuple[int, int]] | None:
        """Spatial size ``(fh, fw)`` of each head's output map; None if the input is too small."""
        shapes = self.shapes(height, width)
        return None if shapes is None else [shapes[h.conf][:2] for h in self.heads]

    def min_input_side(self) -> int:
        """Smallest ``s`` such that an ``s x s`` input gives every op a non-empty map."""
        return next(s for s in range(1, 4096) if self.shapes(s, s) is not None)

    # ------------------------------------------------------------ structure as JSON

    def structure(self) -> dict:
        """The graph without its parameters, as JSON-able data (:meth:`from_structure` reads it back).

        Enough for shapes, priors and costs; this is how a graph travels with
        an exported model (the ONNX file's metadata).
        """
        ops = [op_structure(op) for op in self.ops]
        return {"input": self.input, "in_channels": self.in_channels, "ops": ops, "heads": [[h.conf, h.loc] for h in self.heads]}

    @classmethod
    def from_structure(cls, doc: dict) -> "Graph":
        """A structure-only graph (``weights=False``) from :meth:`structure`'s data; ValueError if malformed."""
        try:
            ops = []
            for entry in doc["ops"]:
                kind = entry["kind"]
                if kind not in OP_KINDS:
                    raise ValueError(f"unknown op kind {kind!r}")
                ops.append(OP_KINDS[kind](**{k: v for k, v in entry.items() if k != "kind"}))
            heads = [HeadOutput(str(c), str(loc)) for c, loc in doc["heads"]]
            return cls(str(doc["input"]), int(doc["in_channels"]), ops, heads, weights=False)
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed graph structure ({type(exc).__name__}: {exc})") from None


OP_KINDS: dict[str, type[Op]] = {cls.kind: cls for cls in (Conv2d, RNNPool, ReplicatePad, Add, L2Norm, MaxOut)}
PARAMETER_FIELDS = ("weight", "bias", "rnn1", "rnn2")  # what a structure-only graph leaves out


def op_structure(op) -> dict:
    """One entry of :meth:`Graph.structure`: the op's kind and its non-parameter fields.

    ``op`` is a graph op or any object with the same ``kind`` and field names
    (an integer op of :mod:`facedet.quant.program`, whose ops are this graph's one for one).
    """
    entry = {"kind": op.kind}
    for f in fields(OP_KINDS[op.kind]):
        if f.name not in PARAMETER_FIELDS and hasattr(op, f.name):
            value = getattr(op, f.name)
            entry[f.name] = bool(value) if f.name == "relu6" else value
    return entry


class GraphBuilder:
    """What :meth:`Block.lower` writes into: the graph plus whether to copy weights."""

    def __init__(self, input_name: str, in_channels: int, weights: bool = True) -> None:
        self.graph = Graph(input_name, in_channels, weights=weights)

    @property
    def weights(self) -> bool:
        return self.graph.weights

    def emit(self, op: Op) -> str:
        if any(o.name == op.name for o in self.graph.ops):
            raise ValueError(f"duplicate op name {op.name}")
        self.graph.ops.append(op)
        return op.output


# --------------------------------------------------------------------------- float execution


def iter_ops(graph: Graph, x, run_op: Callable) -> Iterator[tuple[Op, object]]:
    """Run ``run_op(op, inputs)`` over the graph, yielding ``(op, output)``.

    Tensors are dropped as soon as their last consumer ran (outputs are kept).
    """
    consumers = graph.consumers()
    remaining = {k: len(v) for k, v in consumers.items()}
    keep = set(graph.outputs())
    env = {graph.input: x}
    for op in graph.ops:
        out = run_op(op, [env[i] for i in op.inputs])
        env[op.output] = out
        for i in op.inputs:
            remaining[i] -= 1
            if remaining[i] == 0 and i not in keep:
                del env[i]
        yield op, out


def run_float(graph: Graph, x, observe: Callable[[Op, object], None] | None = None):
    """Execute a graph in float32 with torch.

    Args:
        graph: a graph lowered with weights.
        x: ``Tensor[B, C, H, W]`` normalised network input (the model's layout).
        observe: called with ``(op, output Tensor[B, C, h, w])`` after each op.
    Returns:
        ``(conf Tensor[B, P, 2], loc Tensor[B, P, 4])`` exactly as the model's
        ``forward`` lays them out.
    """
    import torch

    env = {}
    for op, out in iter_ops(graph, x, _torch_op):
        env[op.output] = out
        if observe is not None:
            observe(op, out)
    b = x.shape[0]
    confs = [env[h.conf].permute(0, 2, 3, 1).reshape(b, -1, 2) for h in graph.heads]
    locs = [env[h.loc].permute(0, 2, 3, 1).reshape(b, -1, 4) for h in graph.heads]
    return torch.cat(confs, 1), torch.cat(locs, 1)


def _torch_op(op: Op, inputs):
    import torch
    import torch.nn.functional as F

    x = inputs[0]
    if isinstance(op, Conv2d):
        w = torch.from_numpy(np.ascontiguousarray(op.weight.transpose(0, 3, 1, 2)))
        y = F.conv2d(x, w, torch.from_numpy(op.bias), op.stride, op.padding, 1, op.groups)
        return y.clamp_(0.0, 6.0) if op.relu6 else y
    if isinstance(op, RNNPool):
        return _torch_rnnpool(op)(x)
    if isinstance(op, ReplicatePad):
        return F.pad(x, (0, op.right, 0, op.bottom), mode="replicate")
    if isinstance(op, Add):
        return x + inputs[1]
    if isinstance(op, L2Norm):
        norm = x.pow(2).sum(dim=1, keepdim=True).sqrt() + op.eps
        return x / norm * torch.from_numpy(op.weight).view(1, -1, 1, 1)
    if isinstance(op, MaxOut):
        return torch.cat([x[:, :-1].amax(dim=1, keepdim=True), x[:, -1:]], 1)
    raise TypeError(f"no float rule for {type(op).__name__}")


def _torch_rnnpool(op: RNNPool):
    """The op as a function of the input map (inference only)."""
    pool = _torch_rnnpool_module(op)
    return lambda x: pool.forward_map(x, op.patch, op.stride)


def _torch_rnnpool_module(op: RNNPool):
    """A torch RNNPool module carrying the op's parameters (inference only: no gradients)."""
    import torch

    from facedet.rnnpool.rnnpool import RNNPool as TorchRNNPool

    pool = TorchRNNPool(op.in_channels, op.hidden1, op.hidden2)
    with torch.no_grad():
        for cell, p in ((pool.rnn1, op.rnn1), (pool.rnn2, op.rnn2)):
            cell.W.copy_(torch.from_numpy(p.W))
            cell.U.copy_(torch.from_numpy(p.U))
            cell.bias_gate.copy_(torch.from_numpy(p.bias_gate))
            cell.bias_update.copy_(torch.from_numpy(p.bias_update))
            cell.zeta.fill_(p.zeta)
            cell.nu.fill_(p.nu)
    pool.requires_grad_(False)
    return pool


def _sigmoid(v: float) -> float:
    import math

    return 1.0 / (1.0 + math.exp(-v)) if v >= 0 else math.exp(v) / (1.0 + math.exp(v))

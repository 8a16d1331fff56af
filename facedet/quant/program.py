"""The integer program: a flat, ordered list of integer ops (docs/quantization.md).

One op per op of the float graph (:mod:`facedet.graph`).  Every array is an
integer numpy array; every attribute an int.  The only floats are the tensor
scales in :class:`QParams`, used at the edges: to quantize the input frame
(host-side preprocessing) and to dequantize the head outputs, which then go
through the float decoder and NMS.

Activation tensors are int8 ``[H, W, C]`` with an affine map
``real = scale * (q - zero_point)``.  Inside RNNPool, states are Q15 int16 and
gate pre-activations Q12 (fixed formats, no scale needed).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import ClassVar

import numpy as np

PROGRAM_VERSION = 1


@dataclass(frozen=True)
class QParams:
    """Affine quantization of one int8 tensor: ``real = scale * (q - zero_point)``."""

    scale: float
    zero_point: int

    def to_json(self) -> dict:
        return {"scale": self.scale, "zero_point": self.zero_point}


@dataclass
class IOp:
    """Base of the integer ops: ``name`` (= output tensor) and ``inputs``."""

    name: str
    inputs: list[str]
    kind: ClassVar[str] = "op"
    arrays: ClassVar[tuple[str, ...]] = ()  # attributes holding integer arrays (stored as tensors)


@dataclass
class IConv2d(IOp):
    """``y[p, c] = sat(zp_out + requantize(bias[c] + sum_taps (x - zp_in) * w, M[c], n[c]), act_min, act_max)``.

    ``weight int8 [C_out, k, k, C_in/groups]``, ``bias int32 [C_out]``,
    ``multiplier int32 [C_out]``, ``shift int32 [C_out]``; taps outside the
    input read ``zp_in`` (zero padding in real terms); ``groups`` is 1 or
    ``C_in == C_out`` (depthwise).  ``relu6`` is 1 when ``act_min``/``act_max``
    are the bounds of a ReLU6 (real 0 and 6, cut to int8), 0 when they are the
    int8 limits; the arithmetic only uses ``act_min``/``act_max``.
    """

    in_channels: int = 0
    out_channels: int = 0
    kernel: int = 1
    stride: int = 1
    padding: int = 0
    groups: int = 1
    zp_in: int = 0
    zp_out: int = 0
    act_min: int = -128
    act_max: int = 127
    relu6: int = 0
    weight: np.ndarray | None = None
    bias: np.ndarray | None = None
    multiplier: np.ndarray | None = None
    shift: np.ndarray | None = None
    kind = "conv2d"
    arrays = ("weight", "bias", "multiplier", "shift")


@dataclass
class ICell:
    """One integer FastGRNN cell (see :func:`facedet.quant.interpreter.cell_step`).

    ``W int16 [in, hidden]``, ``U int16 [hidden, hidden]``, ``bias_gate`` and
    ``bias_update`` int32 Q12 ``[hidden]``; ``acc = (sum (x - zp_x) W) << x_shift
    + (sum h U) << h_shift``; pre-activation ``rshift_round(acc, pre_shift)``;
    ``zeta``/``nu`` are the sigmoided scalars in Q15.
    """

    W: np.ndarray
    U: np.ndarray
    bias_gate: np.ndarray
    bias_update: np.ndarray
    x_shift: int
    h_shift: int
    pre_shift: int
    zeta: int
    nu: int
    zp_x: int = 0

    arrays = ("W", "U", "bias_gate", "bias_update")
    scalars = ("x_shift", "h_shift", "pre_shift", "zeta", "nu", "zp_x")


@dataclass
class IRNNPool(IOp):
    """RNNPool with integer cells; output ``sat8(zp_out + requantize(q15, out_multiplier, out_shift))``."""

    in_channels: int = 0
    hidden1: int = 0
    hidden2: int = 0
    patch: int = 8
    stride: int = 4
    rnn1: ICell | None = None
    rnn2: ICell | None = None
    out_multiplier: int = 0
    out_shift: int = 1
    zp_out: int = 0
    kind = "rnnpool"


@dataclass
class IReplicatePad(IOp):
    bottom: int = 1
    right: int = 1
    kind = "pad_replicate"


@dataclass
class IAdd(IOp):
    """``y = sat8(zp_out + rshift_round((a - zp_a) * mult_a + (b - zp_b) * mult_b, shift))`` (64-bit sum)."""

    zp_a: int = 0
    zp_b: int = 0
    mult_a: int = 0
    mult_b: int = 0
    shift: int = 1
    zp_out: int = 0
    kind = "add"


@dataclass
class IL2Norm(IOp):
    """Per pixel: ``d = x - zp_in``, ``r = rsqrt_q31(sum d^2)``, ``y_c = sat8(zp_out + rshift_round(d_c * r * gain[c], shift))``."""

    zp_in: int = 0
    zp_out: int = 0
    shift: int = 31
    gain: np.ndarray | None = None  # int32 [C]
    kind = "l2norm"
    arrays = ("gain",)


@dataclass
class IMaxOut(IOp):
    """``[max(x_0 .. x_{n-2}), x_{n-1}]`` per pixel (int8, same quantization as the input)."""

    kind = "maxout"


OP_TYPES = {cls.kind: cls for cls in (IConv2d, IRNNPool, IReplicatePad, IAdd, IL2Norm, IMaxOut)}


@dataclass
class Program:
    """An integer program and what is needed to feed and read it.

    Attributes:
        arch: model architecture name (priors, strides and anchors come from it).
        input_name: name of the int8 input frame tensor.
        in_channels: frame channels.
        ops: integer ops in execution order.
        qparams: quantization of every int8 tensor (the frame, every op output).
        heads: ``(conf tensor, loc tensor)`` per detection source, in prior order.
    """

    arch: str
    input_name: str
    in_channels: int
    ops: list[IOp] = field(default_factory=list)
    qparams: dict[str, QParams] = field(default_factory=dict)
    heads: list[tuple[str, str]] = field(default_factory=list)

    def op(self, name: str) -> IOp:
        for op in self.ops:
            if op.name == name:
                return op
        raise KeyError(name)

    def outputs(self) -> list[str]:
        return [n for pair in self.heads for n in pair]

    # ------------------------------------------------------------ serialisation

    def to_json_and_arrays(self) -> tuple[dict, dict[str, np.ndarray]]:
        """``(program JSON, {tensor key: integer array})`` for the weights file."""
        arrays: dict[str, np.ndarray] = {}
        ops = []
        for op in self.ops:
            entry: dict = {"kind": op.kind, "name": op.name, "inputs": list(op.inputs)}
            for f in fields(op):
                if f.name in ("name", "inputs"):
                    continue
                value = getattr(op, f.name)
                if f.name in op.arrays:
                    key = f"{op.name}/{f.name}"
                    arrays[key] = np.ascontiguousarray(value)
                    entry[f.name] = key
                elif isinstance(value, ICell):
                    cell = {s: int(getattr(value, s)) for s in ICell.scalars}
                    for a in ICell.arrays:
                        key = f"{op.name}/{f.name}.{a}"
                        arrays[key] = np.ascontiguousarray(getattr(value, a))
                        cell[a] = key
                    entry[f.name] = cell
                else:
                    entry[f.name] = int(value)
            ops.append(entry)
        program = {
            "version": PROGRAM_VERSION,
            "arch": self.arch,
            "input": self.input_name,
            "in_channels": self.in_channels,
            "qparams": {k: v.to_json() for k, v in self.qparams.items()},
            "heads": [list(h) for h in self.heads],
            "ops": ops,
        }
        return program, arrays

    @classmethod
    def from_json_and_arrays(cls, program: dict, arrays: dict[str, np.ndarray]) -> "Program":
        """Inverse of :meth:`to_json_and_arrays`; raises ValueError on anything malformed."""
        if program.get("version") != PROGRAM_VERSION:
            raise ValueError(f"integer program version {program.get('version')!r}; this facedet reads version {PROGRAM_VERSION}")
        ops = []
        for entry in program["ops"]:
            kind = entry.get("kind")
            if kind not in OP_TYPES:
                raise ValueError(f"unknown integer op {kind!r}")
            op_cls = OP_TYPES[kind]
            kwargs = {}
            for f in fields(op_cls):
                if f.name not in entry:
                    raise ValueError(f"op {entry.get('name')!r} lacks {f.name!r}")
                value = entry[f.name]
                if f.name in op_cls.arrays:
                    kwargs[f.name] = _array(arrays, value)
                elif f.name in ("rnn1", "rnn2"):
                    kwargs[f.name] = ICell(**{a: _array(arrays, value[a]) for a in ICell.arrays}, **{s: int(value[s]) for s in ICell.scalars})
                elif f.name == "inputs":
                    kwargs[f.name] = [str(v) for v in value]
                elif f.name == "name":
                    kwargs[f.name] = str(value)
                else:
                    kwargs[f.name] = int(value)
            ops.append(op_cls(**kwargs))
        qparams = {k: QParams(float(v["scale"]), int(v["zero_point"])) for k, v in program["qparams"].items()}
        heads = [(str(c), str(l)) for c, l in program["heads"]]
        return cls(str(program["arch"]), str(program["input"]), int(program["in_channels"]), ops, qparams, heads)


def _array(arrays: dict[str, np.ndarray], key) -> np.ndarray:
    if key not in arrays:
        raise ValueError(f"missing tensor {key!r}")
    a = arrays[key]
    if a.dtype.kind not in "iu":
        raise ValueError(f"tensor {key!r} is {a.dtype}, expected an integer type")
    return a

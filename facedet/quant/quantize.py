"""Float graph + calibration ranges -> integer program (docs/quantization.md).

Scale choices:

* the input frame: ``scale`` 1 (one luma level) and the zero point that maps
  the normalised input range onto int8 (``-11`` for luma);
* every other int8 tensor: affine, from its calibrated range ``[lo, hi]``
  (widened to contain 0): ``scale = (hi - lo) / 255``,
  ``zero_point = round(-128 - lo / scale)``;
* convolution weights: int8, symmetric, one scale per output channel
  (``max |w_c| / 127``); biases int32 at ``scale_in * scale_w[c]``;
* requantization: a per-channel int32 multiplier and shift
  (``requant="multiplier"``), or pure power-of-two shifts with power-of-two
  activation scales (``requant="pow2"``, kept for the measurement that chose
  the default: scripts/measure_quant.py);
* RNNPool: int16 weights with power-of-two scales, Q15 states, Q12
  pre-activations (no calibration needed inside).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from facedet import graph as g
from facedet.quant import arith
from facedet.quant.program import IAdd, ICell, IConv2d, IL2Norm, IMaxOut, IReplicatePad, IRNNPool, Program, QParams

REQUANT_MODES = ("multiplier", "pow2")


@dataclass
class Range:
    """Calibrated value range of one tensor."""

    lo: float
    hi: float


def input_qparams(mean_bgr, in_channels: int) -> QParams:
    """Frame quantization: the normalised input ``[-max(mean), 255 - min(mean)]`` onto int8.

    Luma (``in_channels == 1``): ``[-117.312, 137.688]``, scale 1, zero point
    -11: a uint8 luma ``Y`` becomes ``Y - 128`` exactly.
    """
    from facedet.preprocess import LUMA

    mean = np.asarray(mean_bgr, np.float64)
    if in_channels == 1:
        m = LUMA[0] * mean[2] + LUMA[1] * mean[1] + LUMA[2] * mean[0]
        lo, hi = -m, 255.0 - m
    else:
        lo, hi = float(-mean.max()), float(255.0 - mean.min())
    scale = max(1.0, (hi - lo) / 255.0)
    zp = int(math.floor(-128.0 - lo / scale + 0.5))
    zp = min(zp, 127 - int(math.floor(hi / scale + 0.5)))
    return QParams(scale, zp)


def affine_qparams(r: Range, pow2: bool = False) -> QParams:
    """int8 affine quantization covering ``r`` (and 0)."""
    lo, hi = min(r.lo, 0.0), max(r.hi, 0.0)
    if hi - lo < 1e-8:
        hi = lo + 1e-8
    scale = (hi - lo) / 255.0
    if pow2:
        scale = 2.0 ** math.ceil(math.log2(scale))
    zp = int(math.floor(-128.0 - lo / scale + 0.5))
    return QParams(scale, min(max(zp, -128), 127))


def _weight_scales(w: np.ndarray) -> np.ndarray:
    """Per output channel symmetric int8 scale ``max|w_c| / 127`` (1 for an all-zero channel)."""
    m = np.abs(w.reshape(w.shape[0], -1)).max(1).astype(np.float64)
    return np.where(m > 0, m / 127.0, 1.0)


def quantize_conv(op: g.Conv2d, qin: QParams, qout: QParams, requant: str, mean_in: np.ndarray | None = None) -> IConv2d:
    """One integer convolution.  With ``mean_in`` (the calibration mean of each
    input channel), the bias absorbs the mean output shift that rounding the
    weights causes (bias correction): ``b -= sum (w_q - w) * mean_in``."""
    w = op.weight.astype(np.float64)
    if requant == "pow2":  # the weight scale absorbs the ratio so the multiplier is a power of two
        m = _weight_scales(w) * qin.scale / qout.scale
        n = np.floor(-np.log2(m)).astype(np.int64)  # 2^-n >= m: weights fit in int8
        sw = 2.0 ** (-n) * qout.scale / qin.scale
        mults = [(1 << 30, int(k) + 30) for k in n]
    else:
        sw = _weight_scales(w)
        mults = [arith.quantize_multiplier(float(s * qin.scale / qout.scale)) for s in sw]
    wq = np.clip(np.floor(w / sw[:, None, None, None] + 0.5), -127, 127).astype(np.int8)
    bias = op.bias.astype(np.float64)
    if mean_in is not None:
        dw = wq * sw[:, None, None, None] - w  # [C_out, k, k, C_in/groups]
        cg = op.in_channels // op.groups
        per_out = op.out_channels // op.groups
        groups_of = np.arange(op.out_channels) // per_out
        means = np.stack([mean_in[gi * cg:(gi + 1) * cg] for gi in groups_of])  # [C_out, C_in/groups]
        bias = bias - (dw.sum(axis=(1, 2)) * means).sum(1)
    bq = np.floor(bias / (qin.scale * sw) + 0.5)
    if np.abs(bq).max(initial=0) >= 2**30:
        raise ValueError(f"{op.name}: bias does not fit the int32 accumulator at these scales")
    act_min, act_max = arith.INT8_MIN, arith.INT8_MAX
    if op.relu6:
        act_min = max(act_min, qout.zero_point)
        act_max = min(act_max, qout.zero_point + int(math.floor(6.0 / qout.scale + 0.5)))
    return IConv2d(
        op.name, list(op.inputs), in_channels=op.in_channels, out_channels=op.out_channels, kernel=op.kernel,
        stride=op.stride, padding=op.padding, groups=op.groups, zp_in=qin.zero_point, zp_out=qout.zero_point,
        act_min=act_min, act_max=act_max, relu6=int(op.relu6), weight=wq, bias=bq.astype(np.int32),
        multiplier=np.array([m for m, _ in mults], np.int32), shift=np.array([n for _, n in mults], np.int32),
    )


def _pow2_exponent(values: np.ndarray, limit: int = arith.INT16_MAX) -> int:
    """Largest ``e`` with ``max|values| * 2^e <= limit`` (values quantized as ``round(v * 2^e)``)."""
    m = float(np.abs(values).max(initial=0.0))
    if m == 0.0:
        return 0
    e = math.floor(math.log2(limit / m))
    while math.floor(m * 2.0**e + 0.5) > limit:
        e -= 1
    return e


def quantize_cell(p: g.CellParams, x_scale: float, zp_x: int) -> ICell:
    """An integer FastGRNN cell whose input is ``real = x_scale * (q - zp_x)`` and state Q15."""
    w = p.W.astype(np.float64) * x_scale  # acts on the integer input directly
    e_x = _pow2_exponent(w)
    e_u = _pow2_exponent(p.U.astype(np.float64))
    e_h = 15 + e_u  # h is Q15
    big = max(e_x, e_h)
    if big - arith.PRE_FRAC_BITS < 1:
        raise ValueError("RNN weights too large for a Q12 pre-activation")
    bias_gate = np.floor(p.bias_gate.astype(np.float64) * (1 << arith.PRE_FRAC_BITS) + 0.5)
    bias_update = np.floor(p.bias_update.astype(np.float64) * (1 << arith.PRE_FRAC_BITS) + 0.5)
    if max(np.abs(bias_gate).max(), np.abs(bias_update).max()) >= arith.PRE_LIMIT / 2:
        raise ValueError("RNN bias too large for the Q12 pre-activation clamp")
    return ICell(
        W=np.floor(w * 2.0**e_x + 0.5).astype(np.int16),
        U=np.floor(p.U.astype(np.float64) * 2.0**e_u + 0.5).astype(np.int16),
        bias_gate=bias_gate.astype(np.int32), bias_update=bias_update.astype(np.int32),
        x_shift=big - e_x, h_shift=big - e_h, pre_shift=big - arith.PRE_FRAC_BITS,
        zeta=int(math.floor(p.sigmoid_zeta * arith.Q15_ONE + 0.5)), nu=int(math.floor(p.sigmoid_nu * arith.Q15_ONE + 0.5)),
        zp_x=zp_x,
    )


def _common_shift(*ms: float) -> tuple[list[int], int]:
    """Integer multipliers ``M_i`` sharing one shift ``n``: ``M_i * 2^-n ~= m_i``, all ``M_i < 2^31``."""
    top = max(ms)
    e = math.frexp(top)[1]
    n = min(31 - e, 62)
    mults = [int(math.floor(m * 2.0**n + 0.5)) for m in ms]
    while max(mults) >= 2**31:
        n -= 1
        mults = [int(math.floor(m * 2.0**n + 0.5)) for m in ms]
    return mults, n


def quantize_program(graph: g.Graph, arch: str, qin: QParams, ranges: dict[str, Range], requant: str = "multiplier",
                     means: dict[str, np.ndarray] | None = None) -> Program:
    """Build the integer program of ``graph``.

    Args:
        graph: float graph with weights (:meth:`facedet.detector.RNNPoolFace.lower`).
        arch: architecture name.
        qin: frame quantization (:func:`input_qparams`).
        ranges: calibrated range of every op output that gets its own
            quantization (all but pads and max-out, which inherit theirs).
        requant: ``"multiplier"`` (default) or ``"pow2"``.
        means: calibration mean of each channel of each tensor, for bias
            correction (None: no correction).
    """
    if requant not in REQUANT_MODES:
        raise ValueError(f"requant must be one of {REQUANT_MODES}")
    pow2 = requant == "pow2"
    if pow2:
        qin = QParams(2.0 ** math.ceil(math.log2(qin.scale)), qin.zero_point)
    qp: dict[str, QParams] = {graph.input: qin}
    ops = []
    for op in graph.ops:
        qi = qp[op.inputs[0]]
        if isinstance(op, (g.ReplicatePad, g.MaxOut)):
            qp[op.output] = qi
            ops.append(IReplicatePad(op.name, list(op.inputs), bottom=op.bottom, right=op.right) if isinstance(op, g.ReplicatePad) else IMaxOut(op.name, list(op.inputs)))
            continue
        qo = affine_qparams(ranges[op.output], pow2)
        if isinstance(op, g.Conv2d) and op.relu6:
            qo = affine_qparams(Range(0.0, min(ranges[op.output].hi, 6.0)), pow2)
        qp[op.output] = qo
        if isinstance(op, g.Conv2d):
            ops.append(quantize_conv(op, qi, qo, requant, None if means is None else means.get(op.inputs[0])))
        elif isinstance(op, g.RNNPool):
            rnn1 = quantize_cell(op.rnn1, qi.scale, qi.zero_point)
            rnn2 = quantize_cell(op.rnn2, 2.0**-15, 0)
            m, n = arith.quantize_multiplier(2.0**-15 / qo.scale)
            ops.append(IRNNPool(op.name, list(op.inputs), in_channels=op.in_channels, hidden1=op.hidden1, hidden2=op.hidden2,
                                patch=op.patch, stride=op.stride, rnn1=rnn1, rnn2=rnn2, out_multiplier=m, out_shift=n, zp_out=qo.zero_point))
        elif isinstance(op, g.Add):
            qb = qp[op.inputs[1]]
            (ma, mb), n = _common_shift(qi.scale / qo.scale, qb.scale / qo.scale)
            ops.append(IAdd(op.name, list(op.inputs), zp_a=qi.zero_point, zp_b=qb.zero_point, mult_a=ma, mult_b=mb, shift=n, zp_out=qo.zero_point))
        elif isinstance(op, g.L2Norm):
            # d * r is (x / |x|) * 2^31; gain[c] = round(weight_c / scale_out * 2^k), shift k + 31
            ratio = op.weight.astype(np.float64) / qo.scale
            k = min(31, _pow2_exponent(ratio, arith.INT32_MAX))
            gain = np.floor(ratio * 2.0**k + 0.5)
            ops.append(IL2Norm(op.name, list(op.inputs), zp_in=qi.zero_point, zp_out=qo.zero_point, shift=k + 31, gain=gain.astype(np.int32)))
        else:
            raise TypeError(f"no quantization rule for {type(op).__name__}")
    heads = [(h.conf, h.loc) for h in graph.heads]
    return Program(arch, graph.input, graph.in_channels, ops, qp, heads)

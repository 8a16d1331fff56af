"""Run an integer program with numpy, exactly as the firmware does (docs/quantization.md).

Every op is vectorised over pixels, patches and sequences; the only Python
loops are over ops, kernel taps and RNN time steps.  The arithmetic is the one
of :mod:`facedet.quant.arith`; where a sum of integer products is computed
with a float BLAS matmul for speed (:func:`matmul_exact`), the operands'
magnitudes are checked first so that every partial sum is an integer that the
float type holds exactly -- the result is the integer sum, not an
approximation, and the tests compare it with plain-int oracles.

This module imports numpy only (no torch).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from facedet.quant import arith
from facedet.quant.program import IAdd, ICell, IConv2d, IL2Norm, IMaxOut, IReplicatePad, IRNNPool, Program

_F32_EXACT = 1 << 24
_F64_EXACT = 1 << 53
_PARALLEL_MIN = 2048  # sequences per RNN call before it is split over threads

_pool: ThreadPoolExecutor | None = None
_threads = min(2, os.cpu_count() or 1)


def set_threads(n: int) -> None:
    """Threads the interpreter may use (RNN sequences are split between them; results do not change)."""
    global _pool, _threads
    if n < 1:
        raise ValueError("threads must be >= 1")
    if _pool is not None:
        _pool.shutdown()
        _pool = None
    _threads = n


def _map_chunks(fn, xs: np.ndarray) -> np.ndarray:
    """``fn`` over chunks of ``xs`` along axis 0, in parallel threads (numpy releases the GIL)."""
    global _pool
    if _threads == 1 or len(xs) < _PARALLEL_MIN:
        return fn(xs)
    if _pool is None:
        _pool = ThreadPoolExecutor(_threads, thread_name_prefix="facedet-int")
    parts = np.array_split(xs, _threads)
    return np.concatenate(list(_pool.map(fn, parts)))


def matmul_exact(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` of integer matrices as int64, exactly.

    Uses float32 or float64 BLAS when ``K * max|a| * max|b|`` (a bound on every
    partial sum) is below 2^24 or 2^53, where those types represent every
    integer exactly; otherwise int64 matmul.
    """
    k = a.shape[-1]
    amax = int(np.abs(a).max(initial=0))
    bmax = int(np.abs(b).max(initial=0))
    bound = k * amax * bmax
    if bound < _F32_EXACT:
        return np.matmul(a.astype(np.float32), b.astype(np.float32)).astype(np.int64)
    if bound < _F64_EXACT:
        return np.matmul(a.astype(np.float64), b.astype(np.float64)).astype(np.int64)
    return np.matmul(a.astype(np.int64), b.astype(np.int64))


# --------------------------------------------------------------------------- ops


def _store8(y: np.ndarray, lo: int, hi: int, stats: "Saturation | None", op) -> np.ndarray:
    """The narrowing store: clamp to ``[lo, hi]`` and convert to int8; count int8 overflows in ``stats``."""
    if stats is not None:
        stats.record(op, y)
    return arith.saturate(y, lo, hi).astype(np.int8)


def conv2d(op: IConv2d, x: np.ndarray, stats: "Saturation | None" = None) -> np.ndarray:
    """Integer convolution, ``int8 [H, W, C_in] -> int8 [H', W', C_out]``."""
    h, w, cin = x.shape
    k, s, p = op.kernel, op.stride, op.padding
    oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    weight = op.weight.astype(np.int64)
    # Taps outside the image read zp_in; sum (x - zp_in) w = sum x w - zp_in sum w.
    bias = op.bias.astype(np.int64) - op.zp_in * weight.reshape(op.out_channels, -1).sum(1)
    xp = np.pad(x, ((p, p), (p, p), (0, 0)), constant_values=op.zp_in) if p else x
    if op.groups == 1:
        if k == 1 and s == 1:
            cols = xp.reshape(-1, cin)
        else:
            win = sliding_window_view(xp, (k, k), axis=(0, 1))[: (oh - 1) * s + 1 : s, : (ow - 1) * s + 1 : s]
            cols = win.transpose(0, 1, 3, 4, 2).reshape(oh * ow, k * k * cin)
        acc = matmul_exact(cols, weight.reshape(op.out_channels, -1).T)
    elif op.groups == cin == op.out_channels:
        # |x| <= 128, |w| <= 127: k*k products sum below 2^24, exact in float32
        xf = xp.astype(np.float32)
        wf = op.weight.astype(np.float32)
        acc = np.zeros((oh, ow, cin), np.float32)
        for dy in range(k):
            for dx in range(k):
                acc += xf[dy : dy + (oh - 1) * s + 1 : s, dx : dx + (ow - 1) * s + 1 : s] * wf[:, dy, dx, 0]
        acc = acc.reshape(oh * ow, cin).astype(np.int64)
    else:
        raise ValueError(f"{op.name}: groups={op.groups} is neither 1 nor depthwise")
    acc += bias
    y = arith.requantize(acc, op.multiplier.astype(np.int64), op.shift.astype(np.int64))
    y += op.zp_out
    return _store8(y, op.act_min, op.act_max, stats, op).reshape(oh, ow, op.out_channels)


def cell_run(cell: ICell, xs: np.ndarray) -> np.ndarray:
    """Final states (int16 Q15 ``[N, hidden]``) of an integer FastGRNN over ``xs [N, T, in]``.

    Sequences are independent: long batches are split over the interpreter's threads.

    Per step, with ``h`` starting at 0::

        acc = ((x_t - zp_x) . W) << x_shift + (h . U) << h_shift       (64-bit)
        p   = clamp(rshift_round(acc, pre_shift), -2^24, 2^24)          (Q12)
        z   = sigmoid_q15(p + bias_gate);  c = tanh_q15(p + bias_update)
        h   = fastgrnn_update(z, c, h, zeta, nu)
    """
    return _map_chunks(lambda part: _cell_run(cell, part), xs)


def _cell_run(cell: ICell, xs: np.ndarray) -> np.ndarray:
    n, t, _ = xs.shape
    hidden = cell.U.shape[0]
    xmax = 255 if xs.dtype == np.int8 else 1 << 15  # bound on |x - zp_x|
    bound = (xmax * int(np.abs(cell.W.astype(np.int64)).sum(0).max(initial=0)) << cell.x_shift) + (
        hidden * (1 << 15) * int(np.abs(cell.U.astype(np.int64)).max(initial=0)) << cell.h_shift)
    if bound + (1 << cell.pre_shift) >= _F64_EXACT or not (cell.zeta == arith.Q15_ONE and cell.nu == 0):
        return _cell_run_int(cell, xs)
    # Every value below is an integer (or a dyadic fraction) below 2^53, which
    # float64 holds exactly.  The pre-activation clamp to +-2^24 is left out:
    # with |bias| < 2^23 the clipped table index is the same with or without it.
    d = xs.transpose(1, 0, 2).astype(np.float64)  # time-major [T, N, in]
    d -= cell.zp_x
    axf = np.matmul(d, cell.W.astype(np.float64) * float(1 << cell.x_shift))
    axf += float(1 << (cell.pre_shift - 1))  # the rounding term, added once
    uf = cell.U.astype(np.float64) * float(1 << cell.h_shift)
    inv = 1.0 / float(1 << cell.pre_shift)
    bg = (cell.bias_gate.astype(np.int64) + arith.SIGMOID_SAT).astype(np.int32)
    bh = (cell.bias_update.astype(np.int64) + arith.TANH_SAT).astype(np.int32)
    h = np.zeros((n, hidden), np.int32)
    hf = np.zeros((n, hidden), np.float64)
    for i in range(t):
        acc = np.matmul(hf, uf)
        acc += axf[i]
        acc *= inv
        pre = np.floor(acc, out=acc).astype(np.int32)
        # index clip = the tables' constant tails
        z = np.take(arith.SIGMOID_FULL, pre + bg, mode="clip")
        c = np.take(arith.TANH_FULL, pre + bh, mode="clip")
        # zeta = 1, nu = 0: k = 32768 - z exactly, and z*h + k*c is a convex
        # combination of |h|, |c| <= 2^15, so it fits 32 bits and needs no saturation.
        h *= z
        z -= arith.Q15_ONE
        z *= c
        h -= z
        h += 1 << 14
        h >>= 15
        hf[...] = h
    return h.astype(np.int16)


def _cell_run_int(cell: ICell, xs: np.ndarray) -> np.ndarray:
    """:func:`cell_run` in plain int64 (used when magnitudes or ``zeta``/``nu`` rule out the fast path)."""
    n, t, _ = xs.shape
    hidden = cell.U.shape[0]
    ax = np.matmul(xs.astype(np.int64) - cell.zp_x, cell.W.astype(np.int64))
    h = np.zeros((n, hidden), np.int64)
    for i in range(t):
        acc = (ax[:, i] << cell.x_shift) + (np.matmul(h, cell.U.astype(np.int64)) << cell.h_shift)
        pre = np.clip(arith.rshift_round(acc, cell.pre_shift), -arith.PRE_LIMIT, arith.PRE_LIMIT)
        z = arith.sigmoid_q15(pre + cell.bias_gate)
        c = arith.tanh_q15(pre + cell.bias_update)
        h = arith.fastgrnn_update(z, c, h, cell.zeta, cell.nu)
    return h.astype(np.int16)


def rnnpool(op: IRNNPool, x: np.ndarray, stats: "Saturation | None" = None) -> np.ndarray:
    """Integer RNNPool, ``int8 [H, W, k] -> int8 [oh, ow, 4*h2]``.

    RNN1 runs once per (image row, patch column) and once per (patch row,
    image column) -- a row of a patch is also a row of the patch ``stride``
    pixels below -- which gives exactly the per-patch result.
    """
    h, w, k = x.shape
    p, s = op.patch, op.stride
    oh, ow = (h - p) // s + 1, (w - p) // s + 1
    hu, wu = (oh - 1) * s + p, (ow - 1) * s + p
    x = x[:hu, :wu]
    rows = sliding_window_view(x, p, axis=1)[:, ::s].transpose(0, 1, 3, 2).reshape(hu * ow, p, k)  # [y, c] left to right
    cols = sliding_window_view(x, p, axis=0)[::s].transpose(0, 1, 3, 2).reshape(oh * wu, p, k)  # [r, x] top to bottom
    states = cell_run(op.rnn1, np.concatenate([rows, cols]))
    h1 = op.hidden1
    row_states = states[: hu * ow].reshape(hu, ow, h1)
    col_states = states[hu * ow :].reshape(oh, wu, h1)
    pr = sliding_window_view(row_states, p, axis=0)[::s]  # [oh, ow, h1, p]: rows 4r..4r+p-1 of patch column c
    pc = sliding_window_view(col_states, p, axis=1)[:, ::s]  # [oh, ow, h1, p]: columns 4c..4c+p-1 of patch row r
    pr = pr.transpose(0, 1, 3, 2).reshape(oh * ow, p, h1)
    pc = pc.transpose(0, 1, 3, 2).reshape(oh * ow, p, h1)
    q = cell_run(op.rnn2, np.concatenate([pr, pr[:, ::-1], pc, pc[:, ::-1]]))  # [4N, h2]
    q = q.reshape(4, oh * ow, op.hidden2).transpose(1, 0, 2).reshape(oh, ow, 4 * op.hidden2)
    y = op.zp_out + arith.requantize(q.astype(np.int64), op.out_multiplier, op.out_shift)
    return _store8(y, arith.INT8_MIN, arith.INT8_MAX, stats, op)


def replicate_pad(op: IReplicatePad, x: np.ndarray) -> np.ndarray:
    return np.pad(x, ((0, op.bottom), (0, op.right), (0, 0)), mode="edge")


def add(op: IAdd, a: np.ndarray, b: np.ndarray, stats: "Saturation | None" = None) -> np.ndarray:
    acc = (a.astype(np.int64) - op.zp_a) * op.mult_a + (b.astype(np.int64) - op.zp_b) * op.mult_b
    return _store8(op.zp_out + arith.rshift_round(acc, op.shift), arith.INT8_MIN, arith.INT8_MAX, stats, op)


def l2norm(op: IL2Norm, x: np.ndarray, stats: "Saturation | None" = None) -> np.ndarray:
    d = x.astype(np.int64) - op.zp_in
    r = arith.rsqrt_q31((d * d).sum(-1))
    y = op.zp_out + arith.rshift_round(d * r[..., None] * op.gain.astype(np.int64), op.shift)
    return _store8(y, arith.INT8_MIN, arith.INT8_MAX, stats, op)


def maxout(op: IMaxOut, x: np.ndarray) -> np.ndarray:
    return np.concatenate([x[..., :-1].max(-1, keepdims=True), x[..., -1:]], -1)


def run_op(op, inputs: list[np.ndarray], stats: "Saturation | None" = None) -> np.ndarray:
    """Execute one integer op (``stats`` collects int8 overflows of its narrowing store)."""
    if isinstance(op, IConv2d):
        return conv2d(op, inputs[0], stats)
    if isinstance(op, IRNNPool):
        return rnnpool(op, inputs[0], stats)
    if isinstance(op, IReplicatePad):
        return replicate_pad(op, inputs[0])
    if isinstance(op, IAdd):
        return add(op, inputs[0], inputs[1], stats)
    if isinstance(op, IL2Norm):
        return l2norm(op, inputs[0], stats)
    if isinstance(op, IMaxOut):
        return maxout(op, inputs[0])
    raise TypeError(f"no integer rule for {type(op).__name__}")


@dataclass
class Saturation:
    """Per op: how many values overflowed the int8 range before their narrowing store clamped them.

    A ReLU6 clamp is the activation, not an overflow: for a ReLU6 convolution
    only values above 127 that are still below real 6 count (``qparams`` gives
    the op's scale).
    """

    qparams: dict = field(default_factory=dict)
    hits: dict[str, int] = field(default_factory=dict)
    total: dict[str, int] = field(default_factory=dict)

    def record(self, op, y: np.ndarray) -> None:
        if isinstance(op, IConv2d) and op.relu6:
            qp = self.qparams[op.name]
            six = qp.zero_point + int(np.floor(6.0 / qp.scale + 0.5))
            mask = (y > arith.INT8_MAX) & (y <= six)
        else:
            mask = (y < arith.INT8_MIN) | (y > arith.INT8_MAX)
        self.hits[op.name] = self.hits.get(op.name, 0) + int(np.count_nonzero(mask))
        self.total[op.name] = self.total.get(op.name, 0) + int(y.size)

    def fraction(self, name: str) -> float:
        return self.hits.get(name, 0) / max(self.total.get(name, 0), 1)


def run(program: Program, frame: np.ndarray, saturation: Saturation | None = None) -> dict[str, np.ndarray]:
    """Run the program on one int8 frame ``[H, W, C]``; returns every head output tensor (int8 ``[h, w, c]``)."""
    if frame.dtype != np.int8 or frame.ndim != 3 or frame.shape[2] != program.in_channels:
        raise ValueError(f"expected an int8 frame [H, W, {program.in_channels}], got {frame.dtype} {frame.shape}")
    keep = set(program.outputs())
    remaining: dict[str, int] = {}
    for op in program.ops:
        for i in op.inputs:
            remaining[i] = remaining.get(i, 0) + 1
    env = {program.input_name: frame}
    for op in program.ops:
        env[op.name] = run_op(op, [env[i] for i in op.inputs], saturation)
        for i in op.inputs:
            remaining[i] -= 1
            if remaining[i] == 0 and i not in keep:
                del env[i]
    return {name: env[name] for name in program.outputs()}


def quantize_frame(x: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Host-side preprocessing: float ``[C, H, W]`` network input -> int8 frame ``[H, W, C]``.

    ``q = sat8(floor(x / scale + 1/2) + zero_point)``, evaluated in float64.
    """
    q = np.floor(np.asarray(x, np.float64) / scale + 0.5) + zero_point
    return np.ascontiguousarray(np.clip(q, arith.INT8_MIN, arith.INT8_MAX).astype(np.int8).transpose(1, 2, 0))


def dequantize_outputs(program: Program, outputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Head outputs -> ``(conf float32 [P, 2], loc float32 [P, 4])`` in prior order."""
    confs, locs = [], []
    for conf, loc in program.heads:
        for name, dst, c in ((conf, confs, 2), (loc, locs, 4)):
            qp = program.qparams[name]
            dst.append(((outputs[name].astype(np.float32) - qp.zero_point) * np.float32(qp.scale)).reshape(-1, c))
    return np.concatenate(confs), np.concatenate(locs)

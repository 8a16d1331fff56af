"""Slow, obviously correct oracles of the integer arithmetic, in plain Python ints.

Written from docs/quantization.md, one statement per rule; the tests compare
the vectorised interpreter (and, in the firmware tests, the C kernels) with
these, value for value.
"""

from __future__ import annotations

import math

import numpy as np

from facedet.quant.arith import SIGMOID_TABLE, TANH_TABLE
from facedet.quant.program import IConv2d

I8 = (-128, 127)
I16 = (-32768, 32767)


def rshift_round(x: int, n: int) -> int:
    """Round half up: floor((x + 2^(n-1)) / 2^n), with Python's floor division."""
    return (x + 2 ** (n - 1)) // 2**n


def sat(x: int, lo: int, hi: int) -> int:
    return lo if x < lo else hi if x > hi else x


def requantize(acc: int, m: int, n: int) -> int:
    return rshift_round(acc * m, n)


def sigmoid(u: int) -> int:
    a = min(abs(u), 65536)
    i = min(a // 128, 511)
    f = a - 128 * i
    lo, hi = int(SIGMOID_TABLE[i]), int(SIGMOID_TABLE[i + 1])
    v = lo + (((hi - lo) * f + 64) // 128)
    return v if u >= 0 else 32768 - v


def tanh(u: int) -> int:
    a = min(abs(u), 32768)
    i = min(a // 64, 511)
    f = a - 64 * i
    lo, hi = int(TANH_TABLE[i]), int(TANH_TABLE[i + 1])
    v = lo + (((hi - lo) * f + 32) // 64)
    return v if u >= 0 else -v


def fastgrnn_update(z: int, c: int, h: int, zeta: int, nu: int) -> int:
    k = rshift_round(zeta * (32768 - z), 15) + nu
    return sat(rshift_round(z * h + k * c, 15), *I16)


def cell_final_state(cell, seq) -> list[int]:
    """One sequence (list of input vectors) through an ICell; returns the final Q15 state."""
    hidden = cell.U.shape[0]
    W = [[int(v) for v in row] for row in cell.W]
    U = [[int(v) for v in row] for row in cell.U]
    h = [0] * hidden
    for x in seq:
        new = []
        for j in range(hidden):
            ax = sum((int(x[i]) - cell.zp_x) * W[i][j] for i in range(len(x)))
            ah = sum(h[i] * U[i][j] for i in range(hidden))
            acc = ax * 2**cell.x_shift + ah * 2**cell.h_shift
            pre = sat(rshift_round(acc, cell.pre_shift), -(2**24), 2**24)
            z = sigmoid(pre + int(cell.bias_gate[j]))
            c = tanh(pre + int(cell.bias_update[j]))
            new.append(fastgrnn_update(z, c, h[j], cell.zeta, cell.nu))
        h = new
    return h


def conv2d(op, x):
    """x: nested lists [H][W][C] of ints -> [H'][W'][C_out]."""
    h, w, cin = len(x), len(x[0]), len(x[0][0])
    k, s, p = op.kernel, op.stride, op.padding
    oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    cg = cin // op.groups
    out_per_group = op.out_channels // op.groups
    y = [[[0] * op.out_channels for _ in range(ow)] for _ in range(oh)]
    for oy in range(oh):
        for ox in range(ow):
            for co in range(op.out_channels):
                g = co // out_per_group
                acc = int(op.bias[co])
                for ky in range(k):
                    for kx in range(k):
                        iy, ix = oy * s + ky - p, ox * s + kx - p
                        for ci in range(cg):
                            v = x[iy][ix][g * cg + ci] if 0 <= iy < h and 0 <= ix < w else op.zp_in
                            acc += (v - op.zp_in) * int(op.weight[co][ky][kx][ci])
                assert -(2**31) <= acc < 2**31, "accumulator must fit int32"
                v = op.zp_out + requantize(acc, int(op.multiplier[co]), int(op.shift[co]))
                y[oy][ox][co] = sat(v, op.act_min, op.act_max)
    return y


def rnnpool(op, x):
    """Patch by patch, straight from the definition: [H][W][k] -> [oh][ow][4*h2]."""
    h, w = len(x), len(x[0])
    p, s = op.patch, op.stride
    oh, ow = (h - p) // s + 1, (w - p) // s + 1
    y = []
    for r in range(oh):
        row = []
        for c in range(ow):
            patch = [[x[r * s + i][c * s + j] for j in range(p)] for i in range(p)]
            rows = [cell_final_state(op.rnn1, patch[i]) for i in range(p)]
            cols = [cell_final_state(op.rnn1, [patch[i][j] for i in range(p)]) for j in range(p)]
            q = (cell_final_state(op.rnn2, rows) + cell_final_state(op.rnn2, rows[::-1])
                 + cell_final_state(op.rnn2, cols) + cell_final_state(op.rnn2, cols[::-1]))
            row.append([sat(op.zp_out + requantize(v, op.out_multiplier, op.out_shift), *I8) for v in q])
        y.append(row)
    return y


def add(op, a: int, b: int) -> int:
    return sat(op.zp_out + rshift_round((a - op.zp_a) * op.mult_a + (b - op.zp_b) * op.mult_b, op.shift), *I8)


def l2norm_pixel(op, x: list[int]) -> list[int]:
    d = [v - op.zp_in for v in x]
    ss = sum(v * v for v in d)
    r = 0 if ss == 0 else math.isqrt(2**62 // ss)
    return [sat(op.zp_out + rshift_round(d[c] * r * int(op.gain[c]), op.shift), *I8) for c in range(len(x))]


def random_conv(rng, cin, cout, k, stride, groups, zp_in, zp_out, relu=False, extreme=False, pad=None) -> IConv2d:
    """A random integer convolution for kernel tests (``extreme``: weights at +-127)."""
    cg = cin // groups
    if extreme:
        weight = np.full((cout, k, k, cg), 127, np.int8)
        weight[::2] = -127
    else:
        weight = rng.integers(-127, 128, (cout, k, k, cg)).astype(np.int8)
    return IConv2d(
        "c", ["x"], in_channels=cin, out_channels=cout, kernel=k, stride=stride, padding=(k - 1) // 2 if pad is None else pad, groups=groups,
        zp_in=zp_in, zp_out=zp_out, act_min=max(-128, zp_out) if relu else -128, act_max=min(127, zp_out + 150) if relu else 127, relu6=int(relu),
        weight=weight, bias=rng.integers(-(2**20), 2**20, cout).astype(np.int32),
        multiplier=rng.integers(2**30, 2**31, cout).astype(np.int32), shift=rng.integers(20, 40, cout).astype(np.int32),
    )

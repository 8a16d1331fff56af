"""The vectorised interpreter against the plain-int oracles, op by op, value for value."""

import numpy as np
import pytest

from facedet.quant import interpreter as I
from facedet.quant.program import IAdd, ICell, IConv2d, IL2Norm, IMaxOut, IReplicatePad, IRNNPool
from tests import quant_oracles as O
from tests.quant_oracles import random_conv



@pytest.mark.parametrize("cin,cout,k,stride,groups", [(1, 4, 3, 2, 1), (8, 6, 1, 1, 1), (6, 6, 3, 1, 6), (6, 6, 3, 2, 6), (5, 4, 3, 1, 1), (4, 3, 5, 1, 1)])
def test_conv2d_matches_oracle(cin, cout, k, stride, groups):
    rng = np.random.default_rng(cin * 100 + cout + k + stride)
    x = rng.integers(-128, 128, (7, 9, cin)).astype(np.int8)
    for zp_in, zp_out, relu in ((0, 0, False), (-11, 5, False), (-128, -128, True)):
        op = random_conv(rng, cin, cout, k, stride, groups, zp_in, zp_out, relu)
        got = I.conv2d(op, x)
        assert got.dtype == np.int8
        assert got.tolist() == O.conv2d(op, x.tolist())


def test_conv2d_largest_accumulator():
    """All inputs at an int8 limit and all weights at +-127: the largest |sum| the int8 scales allow."""
    rng = np.random.default_rng(1)
    for value, zp in ((-128, 127), (127, -128)):
        x = np.full((5, 5, 64), value, np.int8)
        op = random_conv(rng, 64, 4, 3, 1, 1, zp, 0, extreme=True)
        op.bias[:] = 2**30 - 1 - 9 * 64 * 255 * 127  # together with the taps: just below 2^30
        got = I.conv2d(op, x)
        assert got.tolist() == O.conv2d(op, x.tolist())
        # every output saturates to an int8 limit (the accumulators are huge): no wrap-around
        assert set(np.unique(got)) <= {-128, 127}


def test_conv2d_rounding_ties():
    """A 1x1 conv whose requantized products land exactly on half an LSB."""
    op = IConv2d("c", ["x"], in_channels=1, out_channels=1, kernel=1, stride=1, padding=0, groups=1, zp_in=0, zp_out=0,
                 weight=np.array([[[[1]]]], np.int8), bias=np.array([0], np.int32),
                 multiplier=np.array([2**30], np.int32), shift=np.array([32], np.int32))  # y = round(x / 4)
    x = np.arange(-128, 128, dtype=np.int8).reshape(16, 16, 1)
    got = I.conv2d(op, x).ravel().tolist()
    assert got == [O.rshift_round(v, 2) for v in range(-128, 128)]
    assert got[128 + 2] == 1 and got[128 - 2] == 0 and got[128 + 6] == 2 and got[128 - 6] == -1  # 0.5->1, -0.5->0, 1.5->2, -1.5->-1


def _cell(rng, nin, hidden, zp_x=0, big=False, zeta=32768, nu=0):
    lim = 32767 if big else 6000
    return ICell(
        W=rng.integers(-lim, lim + 1, (nin, hidden)).astype(np.int16), U=rng.integers(-lim, lim + 1, (hidden, hidden)).astype(np.int16),
        bias_gate=rng.integers(-20000, 20000, hidden).astype(np.int32), bias_update=rng.integers(-20000, 20000, hidden).astype(np.int32),
        x_shift=int(rng.integers(0, 6)), h_shift=int(rng.integers(0, 3)), pre_shift=int(rng.integers(13, 20)), zeta=zeta, nu=nu, zp_x=zp_x,
    )


@pytest.mark.parametrize("big", [False, True])
@pytest.mark.parametrize("zeta,nu", [(32768, 0), (30000, 1200)])
def test_cell_run_matches_oracle(big, zeta, nu):
    rng = np.random.default_rng(7 + big)
    cell = _cell(rng, 4, 5, zp_x=-128, big=big, zeta=zeta, nu=nu)
    xs = rng.integers(-128, 128, (23, 6, 4)).astype(np.int8)
    got = I.cell_run(cell, xs)
    assert got.tolist() == [O.cell_final_state(cell, seq.tolist()) for seq in xs]
    # the float64 fast path and the plain int64 path agree
    assert np.array_equal(got, I._cell_run_int(cell, xs))


def test_cell_run_int16_inputs():
    rng = np.random.default_rng(3)
    cell = _cell(rng, 5, 4, big=True)
    xs = rng.integers(-32768, 32768, (17, 8, 5)).astype(np.int16)
    xs[0] = -32768  # the extreme state value
    xs[1] = 32767
    got = I.cell_run(cell, xs)
    assert got.tolist() == [O.cell_final_state(cell, seq.tolist()) for seq in xs]


def test_rnnpool_matches_patch_by_patch_oracle():
    rng = np.random.default_rng(11)
    op = IRNNPool("p", ["x"], in_channels=3, hidden1=4, hidden2=3, patch=8, stride=4,
                  rnn1=_cell(rng, 3, 4, zp_x=-100), rnn2=_cell(rng, 4, 3), out_multiplier=1518500250, out_shift=38, zp_out=-3)
    x = rng.integers(-128, 128, (17, 21, 3)).astype(np.int8)  # 3 x 4 patches, with leftover rows/columns
    got = I.rnnpool(op, x)
    assert got.shape == (3, 4, 12)
    assert got.tolist() == O.rnnpool(op, x.tolist())


def test_add_matches_oracle_and_saturates():
    rng = np.random.default_rng(5)
    op = IAdd("a", ["x", "y"], zp_a=-7, zp_b=12, mult_a=1700000000, mult_b=900000000, shift=31, zp_out=3)
    a = np.arange(-128, 128, dtype=np.int8).reshape(16, 16, 1)
    b = rng.integers(-128, 128, (16, 16, 1)).astype(np.int8)
    got = I.add(op, a, b)
    assert got.ravel().tolist() == [O.add(op, int(u), int(v)) for u, v in zip(a.ravel(), b.ravel())]
    assert got.min() == -128 and got.max() == 127  # both limits reached


def test_l2norm_matches_oracle_with_zero_and_extreme_pixels():
    rng = np.random.default_rng(9)
    op = IL2Norm("n", ["x"], zp_in=-3, zp_out=2, shift=31 + 24, gain=rng.integers(-(2**31) + 1, 2**31, 8).astype(np.int32))
    x = rng.integers(-128, 128, (4, 5, 8)).astype(np.int8)
    x[0, 0] = -3  # all-zero pixel (x == zp_in everywhere): output zp_out
    x[0, 1] = -128  # every channel at the limit
    x[0, 2] = -3
    x[0, 2, 5] = 127  # one non-zero channel: |d/|d|| = 1, the largest d * r
    x[0, 3] = -3
    x[0, 3, 1] = -2  # ss = 1, r = 2^31
    got = I.l2norm(op, x)
    assert got.tolist() == [[O.l2norm_pixel(op, px.tolist()) for px in row] for row in x]
    assert got[0, 0].tolist() == [2] * 8


def test_maxout_and_pad():
    x = np.array([[[1, 5, -3, 7], [-8, -9, -10, 2]]], np.int8)
    assert I.maxout(IMaxOut("m", ["x"]), x).tolist() == [[[5, 7], [-8, 2]]]
    y = I.replicate_pad(IReplicatePad("p", ["x"], bottom=1, right=1), np.arange(6, dtype=np.int8).reshape(2, 3, 1))
    assert y[..., 0].tolist() == [[0, 1, 2, 2], [3, 4, 5, 5], [3, 4, 5, 5]]


def test_matmul_exact_picks_an_exact_type():
    a = np.full((3, 5000), 32767, np.int64)
    b = np.full((5000, 2), 32767, np.int64)
    # 5000 * 32767^2 > 2^32: float32 would round; the result must be the exact integer
    assert I.matmul_exact(a, b)[0, 0] == 5000 * 32767 * 32767
    big = np.full((1, 4), 2**30, np.int64)
    assert I.matmul_exact(big, big.T)[0, 0] == 4 * 2**60  # beyond 2^53: int64 path

"""The integer primitives against plain-int oracles, on rounding ties and saturation limits."""

import math

import numpy as np
import pytest

from tests import quant_oracles as O
from facedet.quant import arith


def test_rshift_round_ties_round_half_up():
    # every x in a range, including every exact tie (x = k*2^n + 2^(n-1)), both signs
    for n in (1, 2, 3, 15, 31):
        xs = np.arange(-70, 71, dtype=np.int64) << max(n - 3, 0)
        got = arith.rshift_round(xs, n)
        assert got.tolist() == [O.rshift_round(int(x), n) for x in xs]
    assert arith.rshift_round(np.int64(-3), 1) == -1  # -1.5 -> -1 (half up, not away from zero)
    assert arith.rshift_round(np.int64(3), 1) == 2  # 1.5 -> 2
    assert arith.rshift_round(np.int64(-5), 2) == -1  # -1.25 -> -1
    assert arith.rshift_round(np.int64(-6), 2) == -1  # -1.5 -> -1


@pytest.mark.parametrize("acc", [2**31 - 1, -(2**31), 1, -1, 0, 123456789, -987654321])
@pytest.mark.parametrize("m,n", [(2**31 - 1, 62), (2**31 - 1, 31), (2**30, 1), (1, 62), (1518500250, 40)])
def test_requantize_at_int32_and_int64_limits(acc, m, n):
    got = arith.requantize(np.array([acc], np.int64), np.array([m], np.int64), np.array([n], np.int64))
    assert int(got[0]) == O.requantize(acc, m, n)
    assert int(arith.requantize(acc, m, n)) == O.requantize(acc, m, n)


def test_saturation_never_wraps():
    x = np.array([-(2**40), -129, -128, 0, 127, 128, 2**40], np.int64)
    assert arith.saturate(x, -128, 127).tolist() == [-128, -128, -128, 0, 127, 127, 127]


def test_quantize_multiplier():
    for m in (1e-9, 0.001, 0.0123, 0.5, 0.75, 0.999999999, 1.0, 3.7, 1000.0):
        M, n = arith.quantize_multiplier(m)
        assert 2**30 <= M < 2**31 and 1 <= n <= 62
        assert abs(M * 2.0**-n - m) <= m * 2**-31
    assert arith.quantize_multiplier(0.0) == (0, 1)
    assert arith.quantize_multiplier(1e-30) == (0, 1)  # below 2^-32: the product is zero anyway
    with pytest.raises(ValueError):
        arith.quantize_multiplier(-1.0)


# --------------------------------------------------------------------- sigmoid and tanh

EDGES = [0, 1, -1, 63, 64, 65, 127, 128, 129, 32767, 32768, 32769, 65535, 65536, 65537, -65536, -65537, 2**24, -(2**24), 2**31 - 1, -(2**31)]


def test_tables():
    assert len(arith.SIGMOID_TABLE) == len(arith.TANH_TABLE) == 513
    assert arith.SIGMOID_TABLE[0] == 16384 and arith.SIGMOID_TABLE[-1] == 32768
    assert arith.TANH_TABLE[0] == 0 and arith.TANH_TABLE[-1] == 32767
    for i in (0, 1, 100, 511, 512):
        assert arith.SIGMOID_TABLE[i] == math.floor(32768 / (1 + math.exp(-i / 32)) + 0.5)
        assert arith.TANH_TABLE[i] == min(32767, math.floor(32768 * math.tanh(i / 64) + 0.5))
    assert np.all(np.diff(arith.SIGMOID_TABLE) >= 0) and np.all(np.diff(arith.TANH_TABLE) >= 0)


def test_sigmoid_tanh_match_oracle_on_edges_and_knots():
    knots = [k * 64 + d for k in range(0, 1030, 7) for d in (-1, 0, 1, 32, 63)]
    us = EDGES + knots + [-u for u in knots]
    got_s = arith.sigmoid_q15(np.array(us, np.int64))
    got_t = arith.tanh_q15(np.array(us, np.int64))
    assert got_s.tolist() == [O.sigmoid(u) for u in us]
    assert got_t.tolist() == [O.tanh(u) for u in us]


def test_sigmoid_tanh_exhaustive_against_oracle_and_error_bound():
    """Every Q12 input where the functions are not constant; the stated maximum errors hold."""
    u = np.arange(-65537, 65538, dtype=np.int64)
    s = arith.sigmoid_q15(u)
    t = arith.tanh_q15(u)
    step = 97  # the oracle on a dense sample; the vectorised form everywhere
    assert s[::step].tolist() == [O.sigmoid(int(v)) for v in u[::step]]
    assert t[::step].tolist() == [O.tanh(int(v)) for v in u[::step]]
    real = u / 4096.0
    assert np.abs(s / 32768.0 - 1 / (1 + np.exp(-real))).max() <= 4.0e-5  # docs/quantization.md: 3.8e-5
    assert np.abs(t / 32768.0 - np.tanh(real)).max() <= 5.0e-5  # docs: 4.7e-5
    # odd symmetry by construction, and the lookup tables used for speed are the same function
    assert np.array_equal(s + s[::-1], np.full_like(s, 32768))
    assert np.array_equal(t, -t[::-1])
    assert np.array_equal(arith.SIGMOID_FULL, arith.sigmoid_q15(np.arange(-65536, 65537)))
    assert np.array_equal(arith.TANH_FULL, arith.tanh_q15(np.arange(-32768, 32769)))


@pytest.mark.parametrize("z", [0, 1, 16384, 32767, 32768])
@pytest.mark.parametrize("c", [-32767, -1, 0, 1, 32767])
@pytest.mark.parametrize("h", [-32768, -1, 0, 1, 32767])
def test_fastgrnn_update_limits(z, c, h):
    for zeta, nu in ((32768, 0), (32768, 32768), (0, 0), (12345, 678)):
        got = int(arith.fastgrnn_update(np.int64(z), np.int64(c), np.int64(h), zeta, nu))
        assert got == O.fastgrnn_update(z, c, h, zeta, nu)
        assert -32768 <= got <= 32767


def test_fastgrnn_update_saturates_instead_of_wrapping():
    # k = 65536 (zeta = nu = 1) and c = 32767: 2 * 32767 would wrap an int16
    assert int(arith.fastgrnn_update(np.int64(0), np.int64(32767), np.int64(0), 32768, 32768)) == 32767
    assert int(arith.fastgrnn_update(np.int64(0), np.int64(-32767), np.int64(0), 32768, 32768)) == -32768


def test_rsqrt_exact():
    ss = [0, 1, 2, 3, 4, 5, 15, 16, 17, 255**2, 2 * 128**2, 64 * 128**2, 2**31 - 1] + list(range(1000, 1100))
    got = arith.rsqrt_q31(np.array(ss, np.int64))
    assert got.tolist() == [0 if v == 0 else math.isqrt(2**62 // v) for v in ss]
    assert int(arith.rsqrt_q31(1)) == 2**31
    # the definition: the largest r with r^2 * ss <= 2^62
    for v, r in zip(ss[1:], got[1:].tolist()):
        assert r * r * v <= 2**62 < (r + 1) ** 2 * v


def test_isqrt_large():
    xs = np.array([0, 1, 2, 3, 2**62 - 1, 2**62, 2**62 + 1, (2**31 - 1) ** 2, (2**31) ** 2 - 1], np.int64)
    assert arith.isqrt_u64(xs).tolist() == [math.isqrt(int(x)) for x in xs]

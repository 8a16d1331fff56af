"""The integer arithmetic of facedet's integer program (docs/quantization.md).

Every function here is a *definition*: the interpreter is built from them, the
firmware's C kernels reproduce them bit for bit, and the tests check them
against slow oracles written with plain Python ints.  All functions take and
return numpy integer arrays (or Python ints) and never use floating point,
except :func:`make_sigmoid_table` and :func:`make_tanh_table`, which generate
two constant tables once (the C code embeds the same numbers).

Conventions:

* ``>>`` is an arithmetic shift (floor division by a power of two);
* :func:`rshift_round` is the only rounding rule: round half up,
  ``floor((x + 2^(n-1)) / 2^n)``;
* every narrowing store saturates (:func:`saturate`); nothing wraps.
"""

from __future__ import annotations

import math

import numpy as np

INT8_MIN, INT8_MAX = -128, 127
INT16_MIN, INT16_MAX = -32768, 32767
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1

Q15_ONE = 32768  # 1.0 in Q15 (held in 32 bits where it occurs)
PRE_FRAC_BITS = 12  # gate pre-activations are Q12
PRE_LIMIT = 1 << 24  # |pre-activation| is clamped here (both nonlinearities are constant far before it)
SIGMOID_STEP_BITS = 7  # sigmoid table step 2^-5 = 2^7 Q12 units
TANH_STEP_BITS = 6  # tanh table step 2^-6 = 2^6 Q12 units
TABLE_SIZE = 513  # entries 0..512
SIGMOID_SAT = (TABLE_SIZE - 1) << SIGMOID_STEP_BITS  # 65536 = 16.0 in Q12
TANH_SAT = (TABLE_SIZE - 1) << TANH_STEP_BITS  # 32768 = 8.0 in Q12


def rshift_round(x, n):
    """Round-half-up right shift: ``floor((x + 2^(n-1)) / 2^n)``, ``n >= 1`` (elementwise).

    ``x`` must be int64 (or a Python int); ``|x| + 2^(n-1) < 2^63``.
    """
    if isinstance(x, (int, np.integer)) and np.ndim(n) == 0:
        return (int(x) + (1 << (int(n) - 1))) >> int(n)
    x = np.asarray(x, dtype=np.int64)
    n = np.asarray(n, dtype=np.int64)
    return (x + (np.int64(1) << (n - 1))) >> n


def saturate(x, lo: int, hi: int):
    """Clamp to ``[lo, hi]`` (the narrowing store)."""
    if isinstance(x, (int, np.integer)):
        return min(max(int(x), lo), hi)
    return np.clip(x, lo, hi)


def requantize(acc, multiplier, shift):
    """``rshift_round(acc * multiplier, shift)`` in 64 bits.

    ``acc`` fits int32, ``0 <= multiplier < 2^31``, ``1 <= shift <= 62``; the
    product then fits int64 with room for the rounding term.  ``multiplier``
    and ``shift`` broadcast against ``acc`` (per output channel on the last axis).
    """
    if isinstance(acc, (int, np.integer)) and np.ndim(multiplier) == 0:
        return rshift_round(int(acc) * int(multiplier), int(shift))
    return rshift_round(np.asarray(acc, np.int64) * np.asarray(multiplier, np.int64), shift)


# --------------------------------------------------------------------------- sigmoid and tanh


def make_sigmoid_table() -> np.ndarray:
    """``T[i] = floor(32768 * sigmoid(i / 32) + 1/2)``, ``i = 0..512`` (uint16; T[512] = 32768)."""
    return np.array([math.floor(32768.0 / (1.0 + math.exp(-i / 32.0)) + 0.5) for i in range(TABLE_SIZE)], dtype=np.int64)


def make_tanh_table() -> np.ndarray:
    """``T[i] = min(32767, floor(32768 * tanh(i / 64) + 1/2))``, ``i = 0..512`` (int16)."""
    return np.array([min(INT16_MAX, math.floor(32768.0 * math.tanh(i / 64.0) + 0.5)) for i in range(TABLE_SIZE)], dtype=np.int64)


SIGMOID_TABLE = make_sigmoid_table()
TANH_TABLE = make_tanh_table()


def _interp(table: np.ndarray, a, step_bits: int, sat: int):
    """Linear interpolation in ``table`` at ``a >= 0`` (Q12), constant from ``sat`` on."""
    a = np.minimum(a, sat)
    i = np.minimum(a >> step_bits, TABLE_SIZE - 2)
    f = a - (i << step_bits)  # in [0, 2^step_bits]; equals 2^step_bits only at a == sat
    lo = table[i]
    d = table[i + 1] - lo
    return lo + ((d * f + (1 << (step_bits - 1))) >> step_bits)


def sigmoid_q15(u):
    """Sigmoid of a Q12 input, as Q15 in ``[0, 32768]`` (int64 array or int).

    ``a = min(|u|, 65536)``, ``i = min(a >> 7, 511)``, ``f = a - (i << 7)``
    (``f = 128`` only at ``a = 65536``), ``v = T[i] + ((T[i+1] - T[i]) * f + 64) >> 7``;
    the result is ``v`` for ``u >= 0`` and ``32768 - v`` otherwise.
    """
    scalar = isinstance(u, (int, np.integer))
    u = np.asarray(u, dtype=np.int64)
    v = _interp(SIGMOID_TABLE, np.abs(u), SIGMOID_STEP_BITS, SIGMOID_SAT)
    out = np.where(u >= 0, v, Q15_ONE - v)
    return int(out) if scalar else out


def tanh_q15(u):
    """Tanh of a Q12 input, as Q15 in ``[-32767, 32767]`` (int64 array or int).

    ``a = min(|u|, 32768)``, ``i = min(a >> 6, 511)``, ``f = a - (i << 6)``
    (``f = 64`` only at ``a = 32768``), ``v = T[i] + ((T[i+1] - T[i]) * f + 32) >> 6``; the
    result is ``v`` for ``u >= 0`` and ``-v`` otherwise.
    """
    scalar = isinstance(u, (int, np.integer))
    u = np.asarray(u, dtype=np.int64)
    v = _interp(TANH_TABLE, np.abs(u), TANH_STEP_BITS, TANH_SAT)
    out = np.where(u >= 0, v, -v)
    return int(out) if scalar else out


# Every value of the two functions over the inputs where they are not constant:
# the interpreter looks results up here (one gather instead of a dozen
# elementwise ops).  They are the functions above, evaluated once.
SIGMOID_FULL = sigmoid_q15(np.arange(-SIGMOID_SAT, SIGMOID_SAT + 1, dtype=np.int64)).astype(np.int32)
TANH_FULL = tanh_q15(np.arange(-TANH_SAT, TANH_SAT + 1, dtype=np.int64)).astype(np.int32)


# --------------------------------------------------------------------------- FastGRNN update


def fastgrnn_update(z, c, h, zeta_q15: int, nu_q15: int):
    """``h' = sat16(rshift_round(z*h + k*c, 15))`` with ``k = rshift_round(zeta*(32768 - z), 15) + nu``.

    ``z`` is the gate (Q15 in [0, 32768]), ``c`` the candidate (Q15), ``h`` the
    state (Q15), ``zeta_q15``/``nu_q15`` the sigmoided scalars in Q15 ``[0, 32768]``.
    Computed in 64 bits (``k`` reaches 65536).
    """
    z = np.asarray(z, np.int64)
    k = rshift_round(np.int64(zeta_q15) * (Q15_ONE - z), 15) + np.int64(nu_q15)
    return saturate(rshift_round(z * np.asarray(h, np.int64) + k * np.asarray(c, np.int64), 15), INT16_MIN, INT16_MAX)


# --------------------------------------------------------------------------- L2Norm


def isqrt_u64(x):
    """Exact ``floor(sqrt(x))`` for ``0 <= x < 2^63`` (int64 arrays or ints)."""
    if isinstance(x, (int, np.integer)):
        return math.isqrt(int(x))
    x = np.asarray(x, dtype=np.int64)
    r = np.floor(np.sqrt(x.astype(np.float64))).astype(np.int64)
    # the float estimate is within a few units; correct it exactly
    for _ in range(4):
        r = np.where(r * r > x, r - 1, r)
        r = np.where((r + 1) * (r + 1) <= x, r + 1, r)
    return r


def rsqrt_q31(ss):
    """``floor(2^31 / sqrt(ss))`` as ``isqrt(floor(2^62 / ss))``; 0 for ``ss == 0``.

    ``0 <= ss < 2^31``; the result is at most ``2^31``.
    """
    if isinstance(ss, (int, np.integer)):
        return 0 if ss == 0 else math.isqrt((1 << 62) // int(ss))
    ss = np.asarray(ss, dtype=np.int64)
    q = np.where(ss > 0, (np.int64(1) << 62) // np.maximum(ss, 1), 0)
    return np.where(ss > 0, isqrt_u64(q), 0)


# --------------------------------------------------------------------------- scales


def quantize_multiplier(m: float) -> tuple[int, int]:
    """A positive real multiplier as ``(M, n)`` with ``M * 2^-n ~= m``.

    ``M`` is in ``[2^30, 2^31)`` and ``1 <= n <= 62``; ``m == 0`` (or below
    ``2^-32``) gives ``(0, 1)``, i.e. a zero product.  Used at quantization
    time only (the integer program stores ``M`` and ``n``).
    """
    if not (m >= 0.0) or math.isinf(m):
        raise ValueError(f"multiplier must be finite and non-negative, got {m}")
    if m == 0.0:
        return 0, 1
    mant, e = math.frexp(m)  # m = mant * 2^e, mant in [0.5, 1)
    M = int(math.floor(mant * (1 << 31) + 0.5))
    if M == 1 << 31:
        M, e = 1 << 30, e + 1
    n = 31 - e
    if n > 62:
        return 0, 1
    if n < 1:
        raise ValueError(f"multiplier {m} is too large (>= 2^30)")
    return M, n

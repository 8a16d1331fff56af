"""The firmware's C99 kernels (facedet/firmware/c/src) against the Python interpreter, value for value.

Every kernel is compiled twice into a shared library with the system C compiler: the plain-C path,
and with -DFD_EMULATE_DSP, which compiles the Cortex-M4 DSP branches (SXTB16/SMLAD/SMLALD/SSAT)
against plain-C definitions of those intrinsics.  Each test runs on both and compares with
facedet.quant.interpreter (the reference) on random parameters and on edge fixtures; the stage
functions run the whole m4 network on a numpy arena placed exactly as facedet.quant.plan says.
"""

from __future__ import annotations

import ctypes as C
import importlib.util
import math
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from facedet.quant import arith
from facedet.quant import interpreter as I
from facedet.quant.program import IAdd, ICell, IConv2d, IL2Norm
from tests.quant_oracles import random_conv

ROOT = Path(__file__).resolve().parents[1]
CDIR = ROOT / "facedet" / "firmware" / "c"
SRC = CDIR / "src"
CFLAGS = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-pedantic", "-shared", "-fPIC"]

# Test-only entry points: whole-array loops over the scalar functions (fast in C), wrappers of
# fd_arith.h's static inline functions and of the (emulated) intrinsics, and the struct layout.
HARNESS = r"""
#include <stddef.h>
#include "fd_acle_emul.h"
#include "fd_kernels.h"

void fdt_sigmoid(const int32_t *u, int32_t n, int32_t *out) { int32_t i; for (i = 0; i < n; i++) out[i] = fd_sigmoid_q15(u[i]); }
void fdt_tanh(const int32_t *u, int32_t n, int32_t *out) { int32_t i; for (i = 0; i < n; i++) out[i] = fd_tanh_q15(u[i]); }
void fdt_isqrt(const uint64_t *x, int32_t n, uint32_t *out) { int32_t i; for (i = 0; i < n; i++) out[i] = fd_isqrt_u64(x[i]); }
void fdt_asr64(const int64_t *x, const int32_t *s, int32_t n, int64_t *out) { int32_t i; for (i = 0; i < n; i++) out[i] = fd_asr64(x[i], s[i]); }
void fdt_rshift_round(const int64_t *x, const int32_t *s, int32_t n, int64_t *out) { int32_t i; for (i = 0; i < n; i++) out[i] = fd_rshift_round(x[i], s[i]); }
void fdt_requantize(const int32_t *acc, const int32_t *m, const int32_t *s, int32_t n, int64_t *out)
{ int32_t i; for (i = 0; i < n; i++) out[i] = fd_requantize(acc[i], m[i], s[i]); }
void fdt_sat(const int64_t *x, int32_t lo, int32_t hi, int32_t n, int32_t *out) { int32_t i; for (i = 0; i < n; i++) out[i] = fd_sat(x[i], lo, hi); }
int32_t fdt_use_dsp(void) { return FD_USE_DSP; }
#if FD_USE_DSP
int32_t fdt_sxtb16(int32_t x) { return __sxtb16(x); }
int32_t fdt_ror8(int32_t x) { return fd_ror8(x); }
int32_t fdt_sxtb16_ror8(int32_t x) { return fd_sxtb16_ror8(x); }
int32_t fdt_smlad(int32_t x, int32_t y, int32_t acc) { return __smlad(x, y, acc); }
int64_t fdt_smlald(int32_t x, int32_t y, int64_t acc) { return __smlald(x, y, acc); }
int32_t fdt_ssat8(int32_t x) { return __ssat(x, 8); }
int32_t fdt_ssat16(int32_t x) { return __ssat(x, 16); }
int32_t fdt_smuad(int32_t x, int32_t y) { return __smuad(x, y); }
int32_t fdt_usat16(int32_t x) { return (int32_t)__usat(x, 16); }
int32_t fdt_usat15(int32_t x) { return (int32_t)__usat(x, 15); }
int32_t fdt_ssub16(int32_t x, int32_t y) { return __ssub16(x, y); }
#endif
void fdt_layout(int64_t *o)
{
    o[0] = sizeof(fd_conv_params); o[1] = offsetof(fd_conv_params, weight); o[2] = offsetof(fd_conv_params, shift);
    o[3] = sizeof(fd_add_params); o[4] = sizeof(fd_l2norm_params); o[5] = offsetof(fd_l2norm_params, gain);
    o[6] = sizeof(fd_cell_params); o[7] = offsetof(fd_cell_params, bias_update); o[8] = offsetof(fd_cell_params, zp_x);
    o[9] = sizeof(fd_stem_pool_params); o[10] = offsetof(fd_stem_pool_params, rnn2); o[11] = offsetof(fd_stem_pool_params, conv_scratch_off);
    o[12] = sizeof(fd_mbconv_params); o[13] = offsetof(fd_mbconv_params, add); o[14] = offsetof(fd_mbconv_params, scratch_off);
    o[15] = sizeof(fd_head_params); o[16] = offsetof(fd_head_params, loc); o[17] = offsetof(fd_head_params, patch_off);
}
"""

# --------------------------------------------------------------------------- ctypes mirrors of fd_kernels.h

i8p, i16p, i32p, i64p, u32p, u64p = (C.POINTER(t) for t in (C.c_int8, C.c_int16, C.c_int32, C.c_int64, C.c_uint32, C.c_uint64))
I32 = C.c_int32


class Conv(C.Structure):
    _fields_ = [(n, I32) for n in ("in_channels", "out_channels", "kernel", "stride", "padding", "zp_in", "zp_out", "act_min", "act_max")] + [
        ("weight", i8p), ("bias", i32p), ("multiplier", i32p), ("shift", i8p)]


class Add(C.Structure):
    _fields_ = [(n, I32) for n in ("zp_a", "zp_b", "mult_a", "mult_b", "shift", "zp_out")]


class L2(C.Structure):
    _fields_ = [(n, I32) for n in ("channels", "zp_in", "zp_out", "shift")] + [("gain", i32p)]


class Cell(C.Structure):
    _fields_ = [("in_", I32), ("hidden", I32), ("Wt", i16p), ("Ut", i16p), ("bias_gate", i32p), ("bias_update", i32p)] + [
        (n, I32) for n in ("x_shift", "h_shift", "pre_shift", "zeta", "nu", "zp_x")]


class StemPool(C.Structure):
    _fields_ = [("H", I32), ("W", I32), ("C_in", I32), ("stem", Conv), ("Hc", I32), ("Wc", I32), ("Cc", I32),
                ("patch", I32), ("stride", I32), ("oh", I32), ("ow", I32), ("rnn1", Cell), ("rnn2", Cell),
                ("out_multiplier", I32), ("out_shift", I32), ("zp_out", I32)] + [
        (n, C.c_uint32) for n in ("frame_off", "out_off", "stem_ring_off", "row_states_off", "col_states_off", "summary_off", "conv_scratch_off")]


class MBConv(C.Structure):
    _fields_ = [(n, I32) for n in ("H", "W", "C_in", "H_out", "W_out", "C_out", "hidden", "has_expand", "has_add")] + [
        ("expand", Conv), ("depthwise", Conv), ("project", Conv), ("add", Add)] + [
        (n, C.c_uint32) for n in ("in_off", "out_off", "ring_off", "vec_off", "scratch_off")]


class Head(C.Structure):
    _fields_ = [(n, I32) for n in ("H", "W", "C", "has_norm", "maxout")] + [("norm", L2), ("conf", Conv), ("loc", Conv)] + [
        (n, C.c_uint32) for n in ("in_off", "ring_off", "patch_off")]


def P(a: np.ndarray, t):
    """Pointer to a C-contiguous numpy array's data (the caller keeps ``a`` alive)."""
    assert a.flags.c_contiguous
    return a.ctypes.data_as(t)


_SIGS = {
    "fd_im2col_s8_s16": (I32, [C.c_void_p, C.c_void_p, I32, I32, i16p]),
    "fd_im2col_get_buffer_size": (I32, [C.c_void_p]),
    "fd_dot_s16_s8": (I32, [i16p, i8p, I32]),
    "fd_dot2_s16_s8": (None, [i16p, i8p, i8p, I32, i32p, i32p]),
    "fd_dot_s16_s16": (C.c_int64, [i16p, i16p, I32]),
    "fd_vector_s8_s16": (None, [i8p, I32, i16p]),
    "fd_requant_store_s8": (C.c_int8, [C.c_void_p, I32, I32]),
    "fd_conv_row_s8": (None, [C.c_void_p, C.c_void_p, I32, i8p, i16p]),
    "fd_conv1x1_s8": (None, [C.c_void_p, i8p, I32, i8p, i16p]),
    "fd_dwconv_pixel_s8": (None, [C.c_void_p, C.c_void_p, I32, I32, i8p]),
    "fd_add_s8": (None, [C.c_void_p, i8p, i8p, I32, i8p]),
    "fd_isqrt_u64": (C.c_uint32, [C.c_uint64]),
    "fd_l2norm_s8": (None, [C.c_void_p, i8p, I32, i8p]),
    "fd_sigmoid_q15": (I32, [I32]),
    "fd_tanh_q15": (I32, [I32]),
    "fd_fastgrnn_s8": (None, [C.c_void_p, i8p, I32, I32, i16p]),
    "fd_fastgrnn_s8_ptrs": (None, [C.c_void_p, C.c_void_p, I32, i16p]),
    "fd_fastgrnn_q15": (None, [C.c_void_p, C.c_void_p, I32, i16p]),
    "fd_stage_stem_pool": (None, [C.c_void_p, i8p]),
    "fd_stage_mbconv": (None, [C.c_void_p, i8p]),
    "fd_stage_head": (None, [C.c_void_p, i8p, i8p, i8p]),
    "fdt_sigmoid": (None, [i32p, I32, i32p]),
    "fdt_tanh": (None, [i32p, I32, i32p]),
    "fdt_isqrt": (None, [u64p, I32, u32p]),
    "fdt_asr64": (None, [i64p, i32p, I32, i64p]),
    "fdt_rshift_round": (None, [i64p, i32p, I32, i64p]),
    "fdt_requantize": (None, [i32p, i32p, i32p, I32, i64p]),
    "fdt_sat": (None, [i64p, I32, I32, I32, i32p]),
    "fdt_use_dsp": (I32, []),
    "fdt_layout": (None, [i64p]),
}
_DSP_SIGS = {
    "fdt_sxtb16": (I32, [I32]), "fdt_ror8": (I32, [I32]), "fdt_sxtb16_ror8": (I32, [I32]), "fdt_smlad": (I32, [I32, I32, I32]),
    "fdt_smlald": (C.c_int64, [I32, I32, C.c_int64]), "fdt_ssat8": (I32, [I32]), "fdt_ssat16": (I32, [I32]),
    "fdt_smuad": (I32, [I32, I32]), "fdt_usat16": (I32, [I32]), "fdt_usat15": (I32, [I32]), "fdt_ssub16": (I32, [I32, I32]),
}


def _build(out: Path, extra: list[str]) -> Path:
    harness = out.parent / "fd_test_harness.c"
    cmd = ["cc", *CFLAGS, *extra, f"-I{SRC}", *map(str, sorted(SRC.glob("*.c"))), str(harness), "-o", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, f"{' '.join(cmd)}\n{res.stderr}"
    return out


@pytest.fixture(scope="session")
def built_libs(tmp_path_factory) -> dict[str, Path]:
    assert shutil.which("cc"), "a C compiler (cc) is needed"
    d = tmp_path_factory.mktemp("fdkernels")
    (d / "fd_test_harness.c").write_text(HARNESS)
    variants = {"plain": [], "dsp": ["-DFD_EMULATE_DSP"]}
    with ThreadPoolExecutor(2) as ex:
        futs = {k: ex.submit(_build, d / f"libfd_{k}.so", v) for k, v in variants.items()}
        return {k: f.result() for k, f in futs.items()}


@pytest.fixture(scope="session", params=["plain", "dsp"])
def lib(request, built_libs):
    so = C.CDLL(str(built_libs[request.param]))
    sigs = dict(_SIGS, **(_DSP_SIGS if request.param == "dsp" else {}))
    for name, (res, args) in sigs.items():
        f = getattr(so, name)
        f.restype, f.argtypes = res, args
    so.variant = request.param
    return so


# --------------------------------------------------------------------------- parameter marshalling


class Keep(list):
    """Arrays whose memory a ctypes struct points at."""

    def arr(self, a, dtype):
        a = np.ascontiguousarray(a, dtype=dtype)
        self.append(a)
        return a


def conv_struct(op: IConv2d, keep: Keep) -> Conv:
    """fd_conv_params of an IConv2d: weights flat per output channel, zero point folded into the bias."""
    w = keep.arr(op.weight.reshape(op.out_channels, -1), np.int8)
    bias = op.bias.astype(np.int64) - op.zp_in * w.astype(np.int64).sum(1)
    assert np.abs(bias).max() < 2**31
    b = keep.arr(bias, np.int32)
    m = keep.arr(op.multiplier, np.int32)
    s = keep.arr(op.shift, np.int8)
    return Conv(op.in_channels, op.out_channels, op.kernel, op.stride, op.padding, op.zp_in, op.zp_out, op.act_min, op.act_max,
                P(w, i8p), P(b, i32p), P(m, i32p), P(s, i8p))


def cell_struct(cell: ICell, keep: Keep) -> Cell:
    nin, hidden = cell.W.shape
    wt = keep.arr(cell.W.T, np.int16)
    ut = keep.arr(cell.U.T, np.int16)
    bg = keep.arr(cell.bias_gate, np.int32)
    bu = keep.arr(cell.bias_update, np.int32)
    return Cell(nin, hidden, P(wt, i16p), P(ut, i16p), P(bg, i32p), P(bu, i32p),
                cell.x_shift, cell.h_shift, cell.pre_shift, cell.zeta, cell.nu, cell.zp_x)


def add_struct(op: IAdd) -> Add:
    return Add(op.zp_a, op.zp_b, op.mult_a, op.mult_b, op.shift, op.zp_out)


def l2_struct(op: IL2Norm, keep: Keep) -> L2:
    g = keep.arr(op.gain, np.int32)
    return L2(len(op.gain), op.zp_in, op.zp_out, op.shift, P(g, i32p))


def row_ptrs(x: np.ndarray, iys) -> C.Array:
    """rows[] for a kernel: row iy of x, or NULL outside."""
    return (i8p * len(iys))(*[P(x[iy], i8p) if 0 <= iy < x.shape[0] else None for iy in iys])


# --------------------------------------------------------------------------- drivers (the C kernels over whole tensors)


def c_conv2d(lib, op: IConv2d, x: np.ndarray) -> np.ndarray:
    """groups == 1 via fd_conv_row_s8 (1x1 stride 1 via fd_conv1x1_s8); depthwise via fd_dwconv_pixel_s8."""
    keep = Keep()
    cp = conv_struct(op, keep)
    x = np.ascontiguousarray(x)
    h, w, cin = x.shape
    k, s, p = op.kernel, op.stride, op.padding
    oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    out = np.zeros((oh, ow, op.out_channels), np.int8)
    if op.groups == 1:
        n = lib.fd_im2col_get_buffer_size(C.byref(cp))
        assert n == 2 * k * k * cin
        scratch = np.full(n // 2 + 8, 0x5A5A, np.int16)  # canaries after the buffer
        for oy in range(oh):
            lib.fd_conv_row_s8(C.byref(cp), row_ptrs(x, [oy * s - p + ky for ky in range(k)]), w, P(out[oy], i8p), P(scratch, i16p))
        assert (scratch[n // 2:] == 0x5A5A).all()
    else:
        for oy in range(oh):
            rows = row_ptrs(x, [oy * s - p + ky for ky in range(k)])
            for ox in range(ow):
                lib.fd_dwconv_pixel_s8(C.byref(cp), rows, w, ox, P(out[oy, ox], i8p))
    return out


def c_cell_s8(lib, cell: ICell, xs: np.ndarray, ptrs=False) -> np.ndarray:
    keep = Keep()
    cs = cell_struct(cell, keep)
    n, t, nin = xs.shape
    xs = np.ascontiguousarray(xs)
    h = np.full((n, cell.U.shape[0]), 0x7777, np.int16)
    for i in range(n):
        if ptrs:
            lib.fd_fastgrnn_s8_ptrs(C.byref(cs), (i8p * t)(*[P(xs[i, j], i8p) for j in range(t)]), t, P(h[i], i16p))
        else:
            lib.fd_fastgrnn_s8(C.byref(cs), P(xs[i], i8p), nin, t, P(h[i], i16p))
    return h


def c_cell_q15(lib, cell: ICell, xs: np.ndarray) -> np.ndarray:
    keep = Keep()
    cs = cell_struct(cell, keep)
    n, t, _ = xs.shape
    xs = np.ascontiguousarray(xs)
    h = np.full((n, cell.U.shape[0]), 0x7777, np.int16)
    for i in range(n):
        lib.fd_fastgrnn_q15(C.byref(cs), (i16p * t)(*[P(xs[i, j], i16p) for j in range(t)]), t, P(h[i], i16p))
    return h


def c_array(lib, name: str, x: np.ndarray, in_dtype, out_dtype, in_ptr, out_ptr) -> np.ndarray:
    x = np.ascontiguousarray(x, in_dtype)
    out = np.zeros(len(x), out_dtype)
    getattr(lib, name)(P(x, in_ptr), len(x), P(out, out_ptr))
    return out


# --------------------------------------------------------------------------- builds, layout, tables


def test_both_code_paths_are_built(lib):
    assert lib.fdt_use_dsp() == (1 if lib.variant == "dsp" else 0)


def test_struct_layout_matches_ctypes(lib):
    o = np.zeros(18, np.int64)
    lib.fdt_layout(P(o, i64p))
    want = [C.sizeof(Conv), Conv.weight.offset, Conv.shift.offset, C.sizeof(Add), C.sizeof(L2), L2.gain.offset,
            C.sizeof(Cell), Cell.bias_update.offset, Cell.zp_x.offset, C.sizeof(StemPool), StemPool.rnn2.offset,
            StemPool.conv_scratch_off.offset, C.sizeof(MBConv), MBConv.add.offset, MBConv.scratch_off.offset,
            C.sizeof(Head), Head.loc.offset, Head.patch_off.offset]
    assert o.tolist() == want


def test_nonlin_tables_header_is_current():
    spec = importlib.util.spec_from_file_location("fd_gen_tables", CDIR / "gen_tables.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    text = (SRC / "fd_nonlin_tables.h").read_text()
    assert mod.render() == text
    nums = [int(v) for v in text.split("FD_SIGMOID_TABLE[513] = {")[1].split("}")[0].replace("\n", " ").split(",")]
    assert nums == arith.SIGMOID_TABLE.tolist()


def test_emulated_intrinsics_follow_the_arm_arm(lib):
    if lib.variant != "dsp":
        return  # the plain library has no intrinsics; the dsp one is checked below (both run this test)
    rng = np.random.default_rng(0)
    words = [0, 1, -1, 0x7FFF7FFF, -0x7FFF8000, 0x80008000 - 2**32, 0x7F80FF01, -0x01020304] + rng.integers(-(2**31), 2**31, 200).tolist()

    def s16(v):
        return ((v & 0xFFFF) ^ 0x8000) - 0x8000

    def s8(v):
        return ((v & 0xFF) ^ 0x80) - 0x80

    def wrap(v, bits):
        v &= (1 << bits) - 1
        return v - (1 << bits) if v >> (bits - 1) else v

    for x in words:
        y = words[(x * 7) % len(words)]
        u = x & 0xFFFFFFFF
        assert lib.fdt_sxtb16(x) == wrap((s8(u) & 0xFFFF) | ((s8(u >> 16) & 0xFFFF) << 16), 32)
        assert lib.fdt_ror8(x) == wrap((u >> 8) | ((u << 24) & 0xFFFFFFFF), 32)
        assert lib.fdt_sxtb16_ror8(x) == wrap((s8(u >> 8) & 0xFFFF) | ((s8(u >> 24) & 0xFFFF) << 16), 32)
        for acc in (0, 2**31 - 1, -(2**31), 12345):
            assert lib.fdt_smlad(x, y, acc) == wrap(acc + s16(x) * s16(y) + s16(x >> 16) * s16(y >> 16), 32)
        for acc in (0, 2**62, -(2**63), 2**63 - 1):
            assert lib.fdt_smlald(x, y, acc) == wrap(acc + s16(x) * s16(y) + s16(x >> 16) * s16(y >> 16), 64)
        assert lib.fdt_ssat8(x) == min(max(x, -128), 127)
        assert lib.fdt_ssat16(x) == min(max(x, -32768), 32767)
        assert lib.fdt_smuad(x, y) == wrap(s16(x) * s16(y) + s16(x >> 16) * s16(y >> 16), 32)
        assert lib.fdt_usat16(x) == min(max(x, 0), 65535)
        assert lib.fdt_usat15(x) == min(max(x, 0), 32767)
        lo, hi = wrap(s16(x) - s16(y), 16), wrap(s16(x >> 16) - s16(y >> 16), 16)  # modular per halfword (SSUB16)
        assert lib.fdt_ssub16(x, y) == wrap((lo & 0xFFFF) | ((hi & 0xFFFF) << 16), 32)


# --------------------------------------------------------------------------- arithmetic


def test_shift_round_saturate(lib):
    rng = np.random.default_rng(1)
    xs = [0, 1, -1, 2, -2, 3, -3, 5, -5, 6, -6, 2**62, -(2**62), 2**63 - 1, -(2**63)] + rng.integers(-(2**62), 2**62, 300).tolist()
    for name, ref, lo_n in (("fdt_asr64", lambda x, n: x >> n, 0), ("fdt_rshift_round", lambda x, n: (x + (1 << (n - 1))) >> n, 1)):
        x, n = [], []
        for v in xs:
            for s in range(lo_n, 63):
                if name == "fdt_rshift_round" and not -(2**63) <= v + (1 << (s - 1)) < 2**63:
                    continue
                x.append(v)
                n.append(s)
        xa, na = np.array(x, np.int64), np.array(n, np.int32)
        out = np.zeros(len(x), np.int64)
        getattr(lib, name)(P(xa, i64p), P(na, i32p), len(x), P(out, i64p))
        assert out.tolist() == [ref(a, b) for a, b in zip(x, n)]
    # ties round up: 0.5 -> 1, -0.5 -> 0, 1.5 -> 2, -1.5 -> -1
    xa, na = np.array([1, -1, 3, -3], np.int64), np.ones(4, np.int32)
    out = np.zeros(4, np.int64)
    lib.fdt_rshift_round(P(xa, i64p), P(na, i32p), 4, P(out, i64p))
    assert out.tolist() == [1, 0, 2, -1]
    # requantize at the extremes the spec allows
    acc = np.array([2**31 - 1, -(2**31), 0, 1, -1, 12345, -54321] * 62, np.int32)
    m = np.array([2**31 - 1, 2**31 - 1, 2**31 - 1, 2**30, 2**30, 0, 1] * 62, np.int32)
    s = np.repeat(np.arange(1, 63), 7).astype(np.int32)
    out = np.zeros(len(acc), np.int64)
    lib.fdt_requantize(P(acc, i32p), P(m, i32p), P(s, i32p), len(acc), P(out, i64p))
    assert out.tolist() == arith.requantize(acc.astype(np.int64), m.astype(np.int64), s.astype(np.int64)).tolist()
    v = np.array([-(2**63), -(2**31) - 1, -129, -128, 0, 127, 128, 2**40, 2**63 - 1], np.int64)
    out32 = np.zeros(len(v), np.int32)
    lib.fdt_sat(P(v, i64p), -128, 127, len(v), P(out32, i32p))
    assert out32.tolist() == np.clip(v, -128, 127).tolist()


def test_sigmoid_tanh_every_q12_input(lib):
    u = np.arange(-65540, 65541, dtype=np.int32)
    u = np.concatenate([u, np.array([2**31 - 1, -(2**31), 2**24 + 2**23, -(2**24) - 2**23], np.int32)])
    assert np.array_equal(c_array(lib, "fdt_sigmoid", u, np.int32, np.int32, i32p, i32p), arith.sigmoid_q15(u.astype(np.int64)))
    assert np.array_equal(c_array(lib, "fdt_tanh", u, np.int32, np.int32, i32p, i32p), arith.tanh_q15(u.astype(np.int64)))
    # the exported scalar entry points are the same functions
    for v in (-65536, -1, 0, 1, 127, 128, 32768, 65536):
        assert lib.fd_sigmoid_q15(v) == arith.sigmoid_q15(v) and lib.fd_tanh_q15(v) == arith.tanh_q15(v)


def test_isqrt_u64(lib):
    rng = np.random.default_rng(2)
    edge = [0, 1, 2, 3, 4, 5, 8, 9, 15, 16, 17, 2**62, 2**62 - 1, 2**63 - 1, 2**63, 2**64 - 1, (2**32 - 1) ** 2, (2**32 - 1) ** 2 - 1, 2**64 - 2**33]
    for r in [2, 3, 1000, 2**16, 2**31, 2**31 + 1, 3037000499, 3037000500, 2**32 - 2]:
        edge += [r * r - 1, r * r, r * r + 1]
    rand = rng.integers(0, 2**63, 3000, dtype=np.int64).astype(np.uint64) * np.uint64(2) + rng.integers(0, 2, 3000).astype(np.uint64)
    small = rng.integers(0, 2**40, 1000).astype(np.uint64)
    x = np.concatenate([np.array(edge, np.uint64), rand, small])
    got = c_array(lib, "fdt_isqrt", x, np.uint64, np.uint32, u64p, u32p)
    assert got.tolist() == [math.isqrt(int(v)) for v in x]
    assert lib.fd_isqrt_u64(2**64 - 1) == 2**32 - 1
    # the L2Norm use: isqrt(floor(2^62 / ss)) against the interpreter's rsqrt_q31
    ss = np.concatenate([np.arange(1, 5000), rng.integers(1, 64 * 255 * 255, 3000)]).astype(np.int64)
    q = (np.uint64(1) << np.uint64(62)) // ss.astype(np.uint64)
    assert np.array_equal(c_array(lib, "fdt_isqrt", q, np.uint64, np.uint32, u64p, u32p).astype(np.int64), arith.rsqrt_q31(ss))


# --------------------------------------------------------------------------- im2col / dot products


def _perm(n: int) -> np.ndarray:
    """Flat index order of the DSP layout: complete groups of four as a0 a2 a1 a3, the tail in order."""
    idx = np.arange(n)
    n4 = n & ~3
    g = idx[:n4].reshape(-1, 4)[:, [0, 2, 1, 3]].ravel()
    return np.concatenate([g, idx[n4:]])


@pytest.mark.parametrize("cin,k,stride,pad", [(1, 3, 2, 1), (3, 3, 1, 1), (4, 3, 1, 1), (5, 5, 2, 2), (8, 1, 1, 0), (7, 3, 1, 0), (2, 5, 1, 2)])
def test_im2col_layout_and_dot(lib, cin, k, stride, pad):
    rng = np.random.default_rng(cin * 10 + k)
    h, w = 6, 9
    x = rng.integers(-128, 128, (h, w, cin)).astype(np.int8)
    zp = int(rng.integers(-128, 128))
    op = IConv2d("c", ["x"], in_channels=cin, out_channels=2, kernel=k, stride=stride, padding=pad, zp_in=zp,
                 weight=np.zeros((2, k, k, cin), np.int8), bias=np.zeros(2, np.int32), multiplier=np.zeros(2, np.int32), shift=np.ones(2, np.int32))
    keep = Keep()
    cp = conv_struct(op, keep)
    xp = np.pad(x, ((pad, pad), (pad, pad), (0, 0)), constant_values=zp)
    n = k * k * cin
    buf = np.zeros(n + 4, np.int16)
    order = _perm(n) if lib.variant == "dsp" else np.arange(n)
    ow = (w + 2 * pad - k) // stride + 1
    for oy in [0, 1, (h + 2 * pad - k) // stride]:
        rows = row_ptrs(x, [oy * stride - pad + ky for ky in range(k)])
        for ox in range(ow):
            buf[:] = 1234
            assert lib.fd_im2col_s8_s16(C.byref(cp), rows, w, ox, P(buf, i16p)) == n
            nb = xp[oy * stride: oy * stride + k, ox * stride: ox * stride + k].reshape(-1).astype(np.int16)
            assert buf[:n].tolist() == nb[order].tolist()
            assert (buf[n:] == 1234).all()
            wv = rng.integers(-127, 128, (2, n)).astype(np.int8)
            want = (nb.astype(np.int64) * wv.astype(np.int64)).sum(1).tolist()
            assert lib.fd_dot_s16_s8(P(buf, i16p), P(wv[0], i8p), n) == want[0]
            a0, a1 = C.c_int32(), C.c_int32()
            lib.fd_dot2_s16_s8(P(buf, i16p), P(wv[0], i8p), P(wv[1], i8p), n, C.byref(a0), C.byref(a1))
            assert [a0.value, a1.value] == want


@pytest.mark.parametrize("n", [1, 3, 4, 7, 8, 64, 129])
def test_vector_and_dots_extremes(lib, n):
    rng = np.random.default_rng(n)
    for x in (rng.integers(-128, 128, n), np.full(n, -128), np.full(n, 127)):
        x = x.astype(np.int8)
        buf = np.full(n + 3, 999, np.int16)
        lib.fd_vector_s8_s16(P(x, i8p), n, P(buf, i16p))
        order = _perm(n) if lib.variant == "dsp" else np.arange(n)
        assert buf[:n].tolist() == x.astype(np.int16)[order].tolist() and (buf[n:] == 999).all()
        for w in (rng.integers(-127, 128, n), np.full(n, -127), np.full(n, 127), np.full(n, -128)):
            w = w.astype(np.int8)
            assert lib.fd_dot_s16_s8(P(buf, i16p), P(w, i8p), n) == int((x.astype(np.int64) * w).sum())
    # the 64-bit int16 dot: every product at +-2^30 (beyond int32 after two terms)
    for a, b in ((np.full(n, -32768), np.full(n, -32768)), (np.full(n, -32768), np.full(n, 32767)),
                 (rng.integers(-32768, 32768, n), rng.integers(-32768, 32768, n))):
        a, b = a.astype(np.int16), b.astype(np.int16)
        assert lib.fd_dot_s16_s16(P(a, i16p), P(b, i16p), n) == int((a.astype(np.int64) * b).sum())


# --------------------------------------------------------------------------- convolutions



CONV_CASES = [(1, 4, 3, 2, 1), (3, 5, 3, 1, 1), (5, 4, 3, 1, 1), (4, 3, 5, 2, 1), (8, 6, 1, 1, 1), (7, 9, 1, 1, 1), (6, 6, 3, 1, 6),
              (6, 6, 3, 2, 6), (5, 5, 5, 1, 5), (9, 9, 3, 2, 9), (32, 4, 3, 1, 1), (13, 7, 1, 2, 1)]


@pytest.mark.parametrize("cin,cout,k,stride,groups", CONV_CASES)
def test_conv_matches_interpreter(lib, cin, cout, k, stride, groups):
    rng = np.random.default_rng(cin * 100 + cout + k + stride + groups)
    for h, w in ((7, 9), (5, 11)):
        x = rng.integers(-128, 128, (h, w, cin)).astype(np.int8)
        for zp_in, zp_out, relu in ((0, 0, False), (-11, 5, False), (-128, -128, True), (127, 127, False), (127, -20, True)):
            op = random_conv(rng, cin, cout, k, stride, groups, zp_in, zp_out, relu)
            assert c_conv2d(lib, op, x).tolist() == I.conv2d(op, x).tolist()
        # no padding, and small multipliers / shifts (saturation both ways)
        op = random_conv(rng, cin, cout, k, stride, groups, 3, 0, pad=0)
        op.shift[:] = rng.integers(1, 12, cout)
        assert c_conv2d(lib, op, x).tolist() == I.conv2d(op, x).tolist()


@pytest.mark.parametrize("cin,cout,k,stride,groups", CONV_CASES)
def test_conv_with_realistic_scales(lib, cin, cout, k, stride, groups):
    """Multipliers chosen so outputs spread over int8 instead of saturating: every tap's product shows."""
    from facedet.quant.arith import quantize_multiplier

    rng = np.random.default_rng(7 * cin + cout + k)
    x = rng.integers(-128, 128, (9, 13, cin)).astype(np.int8)
    for zp_in, zp_out, relu in ((0, 0, False), (-11, 3, False), (-128, -128, True)):
        op = random_conv(rng, cin, cout, k, stride, groups, zp_in, zp_out, relu)
        op.bias[:] = rng.integers(-2000, 2000, cout)
        acc_scale = np.sqrt(k * k * cin // groups) * 128 * 73  # typical |sum of products|
        mults = [quantize_multiplier(float(v)) for v in 40.0 / acc_scale * rng.uniform(0.5, 1.5, cout)]
        op.multiplier[:] = [m for m, _ in mults]
        op.shift[:] = [n for _, n in mults]
        want = I.conv2d(op, x)
        clipped = (want == 127) | ((want == -128) & (not relu))  # a ReLU's zeros are not saturation
        assert np.mean(clipped) < 0.1  # the case is not mostly saturated
        assert len(np.unique(want)) > 20
        assert c_conv2d(lib, op, x).tolist() == want.tolist()


@pytest.mark.parametrize("k,groups", [(3, 1), (3, 64), (1, 1)])
def test_conv_largest_accumulator(lib, k, groups):
    """All inputs at an int8 limit and all weights at +-127: the largest |sum| the int8 scales allow."""
    rng = np.random.default_rng(k + groups)
    for value, zp in ((-128, 127), (127, -128)):
        x = np.full((5, 6, 64), value, np.int8)
        op = random_conv(rng, 64, 64 if groups > 1 else 4, k, 1, groups, zp, 0, extreme=True)
        taps = k * k * (64 // groups) * 255 * 127
        op.bias[:] = 2**30 - 1 - taps
        op.bias[1::2] = -(2**30) + taps
        want = I.conv2d(op, x)
        assert c_conv2d(lib, op, x).tolist() == want.tolist()
        assert set(np.unique(want)) <= {-128, 127}


def test_conv_rounding_ties(lib):
    """Requantized values exactly on half an LSB round up: y = round(x / 4)."""
    op = IConv2d("c", ["x"], in_channels=1, out_channels=1, kernel=1, stride=1, padding=0, groups=1, zp_in=0, zp_out=0,
                 weight=np.array([[[[1]]]], np.int8), bias=np.array([0], np.int32),
                 multiplier=np.array([2**30], np.int32), shift=np.array([32], np.int32))
    x = np.arange(-128, 128, dtype=np.int8).reshape(16, 16, 1)
    got = c_conv2d(lib, op, x).ravel().tolist()
    assert got == I.conv2d(op, x).ravel().tolist()
    assert got[128 + 2] == 1 and got[128 - 2] == 0 and got[128 + 6] == 2 and got[128 - 6] == -1
    # the same through fd_conv1x1_s8 and fd_requant_store_s8
    out = np.zeros(256, np.int8)
    keep = Keep()
    cp = conv_struct(op, keep)
    xf = np.ascontiguousarray(x.reshape(-1))
    lib.fd_conv1x1_s8(C.byref(cp), P(xf, i8p), 256, P(out, i8p), P(np.zeros(2, np.int16), i16p))
    assert out.tolist() == got
    assert [lib.fd_requant_store_s8(C.byref(cp), 0, v) for v in (2, -2, 6, -6)] == [1, 0, 2, -1]


@pytest.mark.parametrize("cin,cout", [(8, 6), (6, 6), (5, 3), (4, 9), (64, 128), (128, 32), (3, 1)])
def test_conv1x1_pixels_and_in_place(lib, cin, cout):
    rng = np.random.default_rng(cin + cout)
    n = 13
    x = rng.integers(-128, 128, (1, n, cin)).astype(np.int8)
    for zp_in, zp_out, relu in ((-128, -128, True), (127, 3, False), (7, -7, False)):
        op = random_conv(rng, cin, cout, 1, 1, 1, zp_in, zp_out, relu)
        want = I.conv2d(op, x).reshape(n, cout)
        keep = Keep()
        cp = conv_struct(op, keep)
        scratch = np.full(cin + 4, 0x2222, np.int16)
        out = np.zeros((n, cout), np.int8)
        xf = np.ascontiguousarray(x.reshape(n, cin))
        lib.fd_conv1x1_s8(C.byref(cp), P(xf, i8p), n, P(out, i8p), P(scratch, i16p))
        assert out.tolist() == want.tolist()
        assert (scratch[cin:] == 0x2222).all()
        if cout <= cin:  # in place, one pixel (the documented aliasing)
            buf = xf[3].copy()
            lib.fd_conv1x1_s8(C.byref(cp), P(buf, i8p), 1, P(buf, i8p), P(scratch, i16p))
            assert buf[:cout].tolist() == want[3].tolist() and buf[cout:].tolist() == xf[3, cout:].tolist()


# --------------------------------------------------------------------------- add, l2norm


def test_add_matches_interpreter(lib):
    rng = np.random.default_rng(5)
    n = 1000
    a = rng.integers(-128, 128, n).astype(np.int8)
    b = rng.integers(-128, 128, n).astype(np.int8)
    a[:4] = [-128, 127, -128, 127]
    b[:4] = [-128, 127, 127, -128]
    ops = [IAdd("a", ["x", "y"], zp_a=int(rng.integers(-128, 128)), zp_b=int(rng.integers(-128, 128)), mult_a=int(rng.integers(0, 2**31)),
                mult_b=int(rng.integers(0, 2**31)), shift=int(rng.integers(28, 40)), zp_out=int(rng.integers(-128, 128))) for _ in range(10)]
    ops += [IAdd("a", ["x", "y"], zp_a=-128, zp_b=127, mult_a=2**31 - 1, mult_b=2**31 - 1, shift=s, zp_out=zo) for s in (1, 31, 39, 62) for zo in (-128, 127)]
    ops += [IAdd("a", ["x", "y"], zp_a=0, zp_b=0, mult_a=1, mult_b=0, shift=1, zp_out=0)]  # ties: round((a)/2) half up
    for op in ops:
        want = I.add(op, a, b)
        out = np.zeros(n, np.int8)
        lib.fd_add_s8(C.byref(add_struct(op)), P(a, i8p), P(b, i8p), n, P(out, i8p))
        assert out.tolist() == want.tolist()
        for alias in ("a", "b"):  # out == a or out == b
            a2, b2 = a.copy(), b.copy()
            dst = a2 if alias == "a" else b2
            lib.fd_add_s8(C.byref(add_struct(op)), P(a2, i8p), P(b2, i8p), n, P(dst, i8p))
            assert dst.tolist() == want.tolist()
    tie = I.add(ops[-1], np.array([1, -1, 3, -3], np.int8), np.zeros(4, np.int8))
    assert tie.tolist() == [1, 0, 2, -1]


@pytest.mark.parametrize("ch", [1, 2, 5, 32, 64])
def test_l2norm_matches_interpreter(lib, ch):
    rng = np.random.default_rng(ch)
    n = 60
    for zp_in, zp_out in ((-128, 0), (127, -128), (3, 127), (0, 0)):
        x = rng.integers(-128, 128, (n, ch)).astype(np.int8)
        x[0] = zp_in  # the all-zero pixel
        x[1] = -128
        x[2] = 127
        x[3] = zp_in
        x[3, 0] = max(-128, zp_in - 1) if zp_in > -128 else zp_in + 1  # |d| = 1: r = 2^31
        for k in (31, 0, 20):
            gain = rng.integers(-(2**31) + 1, 2**31, ch).astype(np.int32)
            if ch == 1:
                gain[:] = 2**31 - 1 if k != 20 else -(2**31) + 1
            op = IL2Norm("n", ["x"], zp_in=zp_in, zp_out=zp_out, shift=k + 31, gain=gain)
            want = I.l2norm(op, x)
            keep = Keep()
            lp = l2_struct(op, keep)
            out = np.zeros_like(x)
            lib.fd_l2norm_s8(C.byref(lp), P(x, i8p), n, P(out, i8p))
            assert out.tolist() == want.tolist()
            assert (want[0] == zp_out).all()
            xi = x.copy()  # in place
            lib.fd_l2norm_s8(C.byref(lp), P(xi, i8p), n, P(xi, i8p))
            assert xi.tolist() == want.tolist()


# --------------------------------------------------------------------------- FastGRNN


def _cell(rng, nin, hidden, zp_x=0, big=False, zeta=32768, nu=0, pre=(13, 20)):
    lim = 32767 if big else 6000
    return ICell(
        W=rng.integers(-lim, lim + 1, (nin, hidden)).astype(np.int16), U=rng.integers(-lim, lim + 1, (hidden, hidden)).astype(np.int16),
        bias_gate=rng.integers(-20000, 20000, hidden).astype(np.int32), bias_update=rng.integers(-20000, 20000, hidden).astype(np.int32),
        x_shift=int(rng.integers(0, 6)), h_shift=int(rng.integers(0, 3)), pre_shift=int(rng.integers(*pre)), zeta=zeta, nu=nu, zp_x=zp_x,
    )


ZETA_NU = [(32768, 0), (30000, 1200), (32768, 32768), (0, 0), (12345, 32768)]


@pytest.mark.parametrize("nin,hidden", [(4, 16), (1, 1), (3, 5), (7, 64), (64, 3)])
@pytest.mark.parametrize("zeta,nu", ZETA_NU)
def test_fastgrnn_s8(lib, nin, hidden, zeta, nu):
    rng = np.random.default_rng(nin * 1000 + hidden + zeta + nu)
    for zp_x, big in ((-128, False), (127, True), (-11, True)):
        cell = _cell(rng, nin, hidden, zp_x=zp_x, big=big, zeta=zeta, nu=nu)
        xs = rng.integers(-128, 128, (12, 8, nin)).astype(np.int8)
        xs[0] = -128
        xs[1] = 127
        xs[2, ::2] = -128
        xs[2, 1::2] = 127
        want = I.cell_run(cell, xs)
        assert np.array_equal(want, I._cell_run_int(cell, xs))
        assert c_cell_s8(lib, cell, xs).tolist() == want.tolist()
        assert c_cell_s8(lib, cell, xs, ptrs=True).tolist() == want.tolist()
    # one-step and empty sequences
    assert c_cell_s8(lib, cell, xs[:, :1]).tolist() == I.cell_run(cell, xs[:, :1]).tolist()
    assert c_cell_s8(lib, cell, xs[:, :0]).tolist() == np.zeros((12, hidden), np.int16).tolist()


@pytest.mark.parametrize("nin,hidden", [(16, 16), (1, 2), (5, 7), (64, 64)])
@pytest.mark.parametrize("zeta,nu", ZETA_NU)
def test_fastgrnn_q15(lib, nin, hidden, zeta, nu):
    rng = np.random.default_rng(nin * 100 + hidden + zeta + nu)
    for big, pre in ((False, (13, 20)), (True, (18, 30))):
        cell = _cell(rng, nin, hidden, big=big, zeta=zeta, nu=nu, pre=pre)
        xs = rng.integers(-32768, 32768, (10, 8, nin)).astype(np.int16)
        xs[0] = -32768  # extreme states
        xs[1] = 32767
        xs[2, :, ::2] = -32768
        xs[2, :, 1::2] = 32767
        want = I.cell_run(cell, xs)
        assert np.array_equal(want, I._cell_run_int(cell, xs))
        assert c_cell_q15(lib, cell, xs).tolist() == want.tolist()
    # a non-zero input zero point on int16 inputs (folded as zp * sum W)
    cell = _cell(rng, nin, hidden, zp_x=-300, zeta=zeta, nu=nu)
    xs = rng.integers(-20000, 20000, (6, 5, nin)).astype(np.int16)
    assert c_cell_q15(lib, cell, xs).tolist() == I._cell_run_int(cell, xs).tolist()


def test_fastgrnn_saturates_state(lib):
    """zeta = nu = 1.0 lets z*h + k*c exceed 2^30: the sat16 store (general path) must clamp, not wrap."""
    rng = np.random.default_rng(9)
    cell = _cell(rng, 4, 8, zp_x=0, big=True, zeta=32768, nu=32768)
    cell.bias_gate[:] = 0
    cell.bias_update[:] = 60000
    cell.bias_update[::2] = -60000
    xs = rng.integers(-128, 128, (20, 6, 4)).astype(np.int8)
    want = I.cell_run(cell, xs)
    assert set(np.unique(want)) & {-32768, 32767}
    assert c_cell_s8(lib, cell, xs).tolist() == want.tolist()


# --------------------------------------------------------------------------- stages on the m4 network


@pytest.fixture(scope="session")
def m4_program():
    """A random m4 model, lowered, calibrated on two random inputs and quantized with the real tools.

    Returns ``(graph, {"trained": program, "general": program})``: the first with the RNN scalars
    of every trained model (zeta = 1.0, nu = 0 after the sigmoid), the second with general ones.
    The stem weights are scaled down so that its ReLU6 output is not mostly clamped.
    """
    import copy

    import torch

    from facedet import graph as g
    from facedet.detector import build_model
    from facedet.quant.calibrate import RangeObserver, observe_float
    from facedet.quant.quantize import input_qparams, quantize_program

    torch.manual_seed(3)
    model = build_model("m4")
    with torch.no_grad():  # non-trivial batch-norm statistics
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    model.eval()
    graph = model.lower()
    stem = graph.ops[0]
    assert isinstance(stem, g.Conv2d) and stem.relu6
    stem.weight = (stem.weight * 0.02).astype(np.float32)
    general = copy.deepcopy(graph)
    pool = next(op for op in general.ops if isinstance(op, g.RNNPool))
    pool.rnn1.zeta, pool.rnn1.nu, pool.rnn2.zeta, pool.rnn2.nu = 1.0, -2.0, 2.5, -1.5
    qin = input_qparams(model.spec.mean_bgr, model.spec.in_channels)
    programs = {}
    for name, gr in (("trained", graph), ("general", general)):
        obs = RangeObserver()
        gen = torch.Generator().manual_seed(4)
        for _ in range(2):
            observe_float(gr, torch.rand(1, 1, 48, 64, generator=gen) * 255.0 - 117.312, obs)
        programs[name] = quantize_program(gr, "m4", qin, obs.ranges(), means=obs.channel_means())
    cells = programs["trained"].op(pool.name)
    assert (cells.rnn1.zeta, cells.rnn1.nu, cells.rnn2.zeta, cells.rnn2.nu) == (32768, 0, 32768, 0)
    cells = programs["general"].op(pool.name)
    assert cells.rnn1.zeta != 32768 and cells.rnn2.nu != 0
    # the shipped integer model: its cells are what every trained model gives (e.g. rnn2 x_shift = 0)
    from facedet.quant.qfile import load_program
    from facedet.weights import default_weights_path

    programs["shipped"], _ = load_program(default_weights_path("m4", quantized=True))
    return graph, programs


def _run_all(program, frame):
    env = {program.input_name: frame}
    for op in program.ops:
        env[op.name] = I.run_op(op, [env[i] for i in op.inputs])
    return env


def _stage_params(stage, program, shapes, keep: Keep, out_off=None):
    """The C parameter struct of one planned stage (offsets from the plan; ``out_off`` overrides the output's)."""
    ops = {name.rsplit(".", 1)[-1]: program.op(name) for name in stage.ops}
    in_buf = stage.buffers[0]
    if stage.kind == "stem_pool":
        conv, pool, pad = (program.op(n) for n in stage.ops)
        assert (pad.bottom, pad.right) == (1, 1)
        fh, fw, fc = shapes[stage.input]
        hc, wc, cc = shapes[conv.name]
        oh, ow, _ = shapes[pool.name]
        out = stage.buffer(pad.name).offset if out_off is None else out_off
        return StemPool(fh, fw, fc, conv_struct(conv, keep), hc, wc, cc, pool.patch, pool.stride, oh, ow,
                        cell_struct(pool.rnn1, keep), cell_struct(pool.rnn2, keep), pool.out_multiplier, pool.out_shift, pool.zp_out,
                        in_buf.offset, out, *(stage.buffer(b).offset for b in ("stem_ring", "row_states", "col_states", "summary", "conv_scratch")))
    if stage.kind == "mbconv":
        h, w, cin = shapes[stage.input]
        ho, wo, cout = shapes[stage.output]
        dw = ops["depthwise"]
        empty = Conv()
        out = stage.buffer(stage.output).offset if out_off is None else out_off
        return MBConv(h, w, cin, ho, wo, cout, dw.in_channels, int("expand" in ops), int("add" in ops),
                      conv_struct(ops["expand"], keep) if "expand" in ops else empty, conv_struct(dw, keep), conv_struct(ops["project"], keep),
                      add_struct(ops["add"]) if "add" in ops else Add(), in_buf.offset, out,
                      *(stage.buffer(b).offset for b in ("expand_ring", "dw_vector", "scratch")))
    assert stage.kind == "head"
    h, w, c = shapes[stage.input]
    conf, loc = ops["conf"], ops["loc"]
    assert conf.zp_in == loc.zp_in
    norm = ops.get("norm")
    return Head(h, w, c, int(norm is not None), int("maxout" in ops), l2_struct(norm, keep) if norm is not None else L2(),
                conv_struct(conf, keep), conv_struct(loc, keep), in_buf.offset,
                stage.buffer("l2norm_ring").offset if norm is not None else 0, stage.buffer("patch").offset)


def _run_stage(lib, stage, params, arena, env, program):
    """Run one stage; returns {tensor name: C result} for what it produces."""
    if stage.kind == "stem_pool":
        lib.fd_stage_stem_pool(C.byref(params), P(arena, i8p))
        return {stage.output: None}
    if stage.kind == "mbconv":
        lib.fd_stage_mbconv(C.byref(params), P(arena, i8p))
        return {stage.output: None}
    head = next(hd for hd in program.heads if hd[1] in stage.ops)
    h, w = env[head[1]].shape[:2]
    conf = np.full((h * w, 2), 99, np.int8)
    loc = np.full((h * w, 4), 99, np.int8)
    lib.fd_stage_head(C.byref(params), P(arena, i8p), P(conf, i8p), P(loc, i8p))
    return {head[0]: conf.reshape(h, w, 2), head[1]: loc.reshape(h, w, 4)}


@pytest.mark.parametrize("size,variant", [((48, 64), "trained"), ((38, 54), "general"), ((40, 56), "shipped")])
def test_stages_stream_the_whole_m4_network(lib, m4_program, size, variant):
    """Every stage in plan order on one arena placed exactly as the plan says (in-place outputs included):
    each stage's output equals the interpreter's, bytes beyond the stage's live extent stay untouched."""
    from facedet.quant.plan import plan_graph

    graph, programs = m4_program
    program = programs[variant]
    hgt, wid = size
    plan = plan_graph(graph, hgt, wid)
    shapes = plan.shapes
    rng = np.random.default_rng(hgt)
    frame = rng.integers(-128, 128, (hgt, wid, 1)).astype(np.int8)
    frame[:4] = -128  # a dark band and a bright one: saturating inputs
    frame[-3:] = 127
    env = _run_all(program, frame)
    guard = 64
    arena = rng.integers(-128, 128, plan.arena_bytes + guard).astype(np.int8)  # garbage everywhere else
    arena[: frame.size] = frame.ravel()
    kinds, in_place, heads_seen = [], 0, set()
    for stage in plan.stages:
        if stage.kind == "postprocess":
            continue
        keep = Keep()
        params = _stage_params(stage, program, shapes, keep)
        src = stage.buffers[0]
        assert arena[src.offset: src.end].tolist() == env[stage.input].ravel().tolist(), f"{stage.name}: input not in place"
        before = arena.copy()
        got = _run_stage(lib, stage, params, arena, env, program)
        assert np.array_equal(arena[stage.live_bytes:], before[stage.live_bytes:]), f"{stage.name} wrote beyond its buffers"
        for name, value in got.items():
            if value is None:
                buf = stage.buffer(name)
                value = arena[buf.offset: buf.end].reshape(env[name].shape)
            assert np.array_equal(value, env[name]), f"{stage.name}: {name} differs from the interpreter"
            heads_seen.add(name)
        kinds.append(stage.kind)
        in_place += stage.in_place
    # the whole network: stem + pool, four mbconv blocks (two residual, one stride 2), four heads
    assert kinds.count("stem_pool") == 1 and kinds.count("mbconv") == 4 and kinds.count("head") == 4
    assert set(program.outputs()) <= heads_seen
    assert in_place >= 5


def test_stages_out_of_place(lib, m4_program):
    """Each stage alone, its output at a fresh offset past every planned buffer (the not-in-place placement)."""
    from facedet.quant.plan import plan_graph

    graph, programs = m4_program
    program = programs["general"]
    plan = plan_graph(graph, 40, 56)
    rng = np.random.default_rng(11)
    frame = rng.integers(-128, 128, (40, 56, 1)).astype(np.int8)
    env = _run_all(program, frame)
    for stage in plan.stages:
        if stage.kind not in ("stem_pool", "mbconv"):
            continue
        out_off = (stage.live_bytes + 3) // 4 * 4 + 4
        size = env[stage.output].size
        arena = rng.integers(-128, 128, out_off + size + 16).astype(np.int8)
        src = stage.buffers[0]
        arena[src.offset: src.end] = env[stage.input].ravel()
        keep = Keep()
        params = _stage_params(stage, program, plan.shapes, keep, out_off=out_off)
        tail = arena[out_off + size:].copy()
        _run_stage(lib, stage, params, arena, env, program)
        assert np.array_equal(arena[out_off: out_off + size].reshape(env[stage.output].shape), env[stage.output]), stage.name
        assert np.array_equal(arena[out_off + size:], tail)
        assert np.array_equal(arena[src.offset: src.end], env[stage.input].ravel()), f"{stage.name} changed its input"


def _mb_ops(rng, cin, hidden, cout, k, stride, expand, residual):
    ops = []
    zp = int(rng.integers(-128, 128))
    if expand:
        ops.append(random_conv(rng, cin, hidden, 1, 1, 1, zp, -128, relu=True))
    dw_in = ops[-1].zp_out if expand else zp
    ops.append(random_conv(rng, hidden, hidden, k, stride, hidden, dw_in, -128, relu=True))
    ops.append(random_conv(rng, hidden, cout, 1, 1, 1, -128, int(rng.integers(-128, 128))))
    add = IAdd("add", ["x", "p"], zp_a=zp, zp_b=ops[-1].zp_out, mult_a=int(rng.integers(2**29, 2**30)), mult_b=int(rng.integers(2**29, 2**30)),
               shift=31, zp_out=int(rng.integers(-20, 20))) if residual else None
    return zp, ops, add


@pytest.mark.parametrize("cin,hidden,cout,k,stride,expand,residual,in_place", [
    (5, 5, 7, 3, 2, False, False, False),   # no expand, more outputs than the vector: channel by channel
    (6, 3, 6, 3, 1, True, True, True),     # hidden < C_in == C_out, residual, in place: channel by channel
    (6, 3, 6, 3, 1, True, True, False),
    (7, 14, 7, 5, 1, True, True, True),    # k = 5, odd channels
    (4, 4, 4, 3, 1, False, True, True),    # residual without expand (the ring holds copies)
    (8, 16, 3, 3, 2, True, False, False),  # stride 2, projection into the vector
])
def test_mbconv_synthetic(lib, cin, hidden, cout, k, stride, expand, residual, in_place):
    from facedet.quant.plan import mbconv_rows_ok

    rng = np.random.default_rng(cin * hidden + cout * k + stride)
    h, w = 7, 9
    zp, ops, add = _mb_ops(rng, cin, hidden, cout, k, stride, expand, residual)
    x = rng.integers(-128, 128, (h, w, cin)).astype(np.int8)
    y = x
    for op in ops:
        y = I.conv2d(op, y)
    if residual:
        y = I.add(add, x, y)
    ho, wo = y.shape[:2]
    assert not in_place or mbconv_rows_ok(x.shape, y.shape, k, stride, (k - 1) // 2, residual)
    keep = Keep()
    in_off = 0
    out_off = 0 if in_place else x.size + 8
    ring_off = (max(x.size, out_off + y.size) + 3) // 4 * 4
    vec_off = ring_off + (k * w * hidden + 3) // 4 * 4
    scratch_off = vec_off + (hidden + 3) // 4 * 4
    end = scratch_off + 2 * max(cin, hidden)
    params = MBConv(h, w, cin, ho, wo, cout, hidden, int(expand), int(residual),
                    conv_struct(ops[0], keep) if expand else Conv(), conv_struct(ops[-2], keep), conv_struct(ops[-1], keep),
                    add_struct(add) if residual else Add(), in_off, out_off, ring_off, vec_off, scratch_off)
    arena = rng.integers(-128, 128, end + 32).astype(np.int8)
    arena[: x.size] = x.ravel()
    tail = arena[end:].copy()
    lib.fd_stage_mbconv(C.byref(params), P(arena, i8p))
    assert np.array_equal(arena[out_off: out_off + y.size].reshape(y.shape), y)
    assert np.array_equal(arena[end:], tail)

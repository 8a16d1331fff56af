/*
 * facedet firmware: sigmoid_q15 / tanh_q15 (docs/quantization.md section 5) as static inline
 * functions, for the FastGRNN cell (fd_fastgrnn_fast.c) and the exported fd_sigmoid_q15 /
 * fd_tanh_q15 (fd_nonlin_q15.c).  The 513-entry tables (fd_nonlin_tables.h) live in
 * fd_nonlin_q15.c only, which exports their addresses (fd_nonlin_sigmoid_table,
 * fd_nonlin_tanh_table); the functions take them as parameters.
 *
 * fd_sigmoid_q15_in / fd_tanh_q15_in take u with |u| < 2^31 (u != INT32_MIN):
 *   sigmoid: a = min(|u|, 65535), i = a >> 7, f = a & 127, v = T[i] + (((T[i+1] - T[i]) * f + 64) >> 7)
 *   tanh:    a = min(|u|, 32767), i = a >> 6, f = a & 63,  v = T[i] + (((T[i+1] - T[i]) * f + 32) >> 6)
 * The specification clamps a to 65536 (32768) and i to 511: the same values, because both
 * tables end flat (SIGMOID[511] == SIGMOID[512] == 32768, TANH[511] == TANH[512] == 32767), so
 * every a in [511*128, 65536] gives T[511] either way.  Clamping to 2^16 - 1 (2^15 - 1) is one
 * USAT on the M4, and i stays below 512 without a second clamp.  Both tables are
 * non-decreasing, so T[i+1] - T[i] >= 0 and the interpolation is unsigned.  The DSP build
 * interpolates with one SMLAD (fd_sigmoid_abs, fd_tanh_abs).
 * tests/test_firmware_kernels.py checks every Q12 input of the exported functions, which are
 * these functions after a value-preserving clamp of u.
 */
#ifndef FD_NONLIN_H
#define FD_NONLIN_H

#include <stdint.h>

#include "fd_acle_emul.h"

/* FD_SIGMOID_TABLE and FD_TANH_TABLE (fd_nonlin_q15.c) */
extern const uint16_t *const fd_nonlin_sigmoid_table;
extern const int16_t *const fd_nonlin_tanh_table;

/* |u| as uint32 for u != INT32_MIN */
static inline uint32_t fd_abs_small(int32_t u)
{
    return u >= 0 ? (uint32_t)u : (uint32_t)-u;
}

#if FD_USE_DSP
/*
 * The interpolation as one SMLAD: T[i] + (((T[i+1] - T[i]) * f + r) >> b) ==
 * (T[i] * (2^b - f) + T[i+1] * f + r) >> b (T[i] * 2^b is a multiple of 2^b), with (T[i], T[i+1])
 * one (unaligned) word load and (2^b - f, f) the other operand.  SIGMOID entries reach 32768,
 * beyond int16: both lanes are taken 16384 lower (no borrow, every entry is >= 16384) and
 * 16384 * 2^7 goes into the accumulator.
 */
#define FD_SIGMOID_K (64 + 16384 * 128) /* the accumulator of fd_sigmoid_abs */
#define FD_TANH_K 32                     /* the accumulator of fd_tanh_abs */

/* k == FD_SIGMOID_K (a parameter, so that a caller can keep it in a register) */
static inline int32_t fd_sigmoid_abs(uint32_t a, int32_t k, const uint16_t *tab) /* a in [0, 65535] */
{
    const uint32_t f = a & 127u;
    const int32_t w = (int32_t)((uint32_t)fd_ld32(tab + (a >> 7)) - 0x40004000u);
    return __smlad(w, (int32_t)((f << 16) + 128u - f), k) >> 7;
}

/* k == FD_TANH_K */
static inline int32_t fd_tanh_abs(uint32_t a, int32_t k, const int16_t *tab) /* a in [0, 32767] */
{
    const uint32_t f = a & 63u;
    return __smlad(fd_ld32(tab + (a >> 6)), (int32_t)((f << 16) + 64u - f), k) >> 6;
}

/* fd_sigmoid_q15_in / fd_tanh_q15_in with the accumulators passed in */
static inline int32_t fd_sigmoid_q15_k(int32_t u, int32_t k, const uint16_t *tab)
{
    const int32_t v = fd_sigmoid_abs(__usat((int32_t)fd_abs_small(u), 16), k, tab);
    return u >= 0 ? v : 32768 - v;
}

static inline int32_t fd_tanh_q15_k(int32_t u, int32_t k, const int16_t *tab)
{
    const int32_t v = fd_tanh_abs(__usat((int32_t)fd_abs_small(u), 15), k, tab);
    return u >= 0 ? v : -v;
}
#endif

/* sigmoid_q15(u) for |u| < 2^31, in [0, 32768]; tab: FD_SIGMOID_TABLE */
static inline int32_t fd_sigmoid_q15_in(int32_t u, const uint16_t *tab)
{
#if FD_USE_DSP
    return fd_sigmoid_q15_k(u, FD_SIGMOID_K, tab);
#else
    const uint32_t a0 = fd_abs_small(u), a = a0 > 65535u ? 65535u : a0;
    const uint16_t *t = tab + (a >> 7);
    const uint32_t lo = t[0];
    const int32_t v = (int32_t)(lo + (((t[1] - lo) * (a & 127u) + 64u) >> 7));
    return u >= 0 ? v : 32768 - v;
#endif
}

/* tanh_q15(u) for |u| < 2^31, in [-32767, 32767]; tab: FD_TANH_TABLE */
static inline int32_t fd_tanh_q15_in(int32_t u, const int16_t *tab)
{
#if FD_USE_DSP
    return fd_tanh_q15_k(u, FD_TANH_K, tab);
#else
    const uint32_t a0 = fd_abs_small(u), a = a0 > 32767u ? 32767u : a0;
    const int16_t *t = tab + (a >> 6);
    const uint32_t lo = (uint32_t)t[0];
    const int32_t v = (int32_t)(lo + ((((uint32_t)t[1] - lo) * (a & 63u) + 32u) >> 6));
    return u >= 0 ? v : -v;
#endif
}

#endif /* FD_NONLIN_H */

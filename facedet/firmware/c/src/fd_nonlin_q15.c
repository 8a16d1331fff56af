/*
 * fd_sigmoid_q15 / fd_tanh_q15: Q12 int32 in, Q15 out (docs/quantization.md section 5).
 *
 * 513-entry tables (fd_nonlin_tables.h) with linear interpolation and odd symmetry:
 *   sigmoid: a = min(|u|, 65536), i = min(a >> 7, 511), f = a - (i << 7),
 *            v = T[i] + (((T[i+1] - T[i]) * f + 64) >> 7); u >= 0 ? v : 32768 - v  -> [0, 32768]
 *   tanh:    a = min(|u|, 32768), i = min(a >> 6, 511), f = a - (i << 6),
 *            v = T[i] + (((T[i+1] - T[i]) * f + 32) >> 6); u >= 0 ? v : -v          -> [-32767, 32767]
 * Defined for every int32 u (|u| is taken in uint32).
 */
#include "fd_kernels.h"
#include "fd_nonlin_tables.h"

static inline uint32_t abs_u32(int32_t u)
{
    return u >= 0 ? (uint32_t)u : 0u - (uint32_t)u;
}

int32_t fd_sigmoid_q15(int32_t u)
{
    uint32_t a = abs_u32(u);
    uint32_t i;
    int32_t f, lo, v;
    if (a > 65536u)
        a = 65536u;
    i = a >> 7;
    if (i > 511u)
        i = 511u;
    f = (int32_t)(a - (i << 7));
    lo = FD_SIGMOID_TABLE[i];
    v = lo + fd_asr32(((int32_t)FD_SIGMOID_TABLE[i + 1] - lo) * f + 64, 7);
    return u >= 0 ? v : 32768 - v;
}

int32_t fd_tanh_q15(int32_t u)
{
    uint32_t a = abs_u32(u);
    uint32_t i;
    int32_t f, lo, v;
    if (a > 32768u)
        a = 32768u;
    i = a >> 6;
    if (i > 511u)
        i = 511u;
    f = (int32_t)(a - (i << 6));
    lo = FD_TANH_TABLE[i];
    v = lo + fd_asr32(((int32_t)FD_TANH_TABLE[i + 1] - lo) * f + 32, 6);
    return u >= 0 ? v : -v;
}

/*
 * fd_sigmoid_q15 / fd_tanh_q15: Q12 int32 in, Q15 out (docs/quantization.md section 5).
 *
 * 513-entry tables (fd_nonlin_tables.h) with linear interpolation and odd symmetry:
 *   sigmoid: a = min(|u|, 65536), i = min(a >> 7, 511), f = a - (i << 7),
 *            v = T[i] + (((T[i+1] - T[i]) * f + 64) >> 7); u >= 0 ? v : 32768 - v  -> [0, 32768]
 *   tanh:    a = min(|u|, 32768), i = min(a >> 6, 511), f = a - (i << 6),
 *            v = T[i] + (((T[i+1] - T[i]) * f + 32) >> 6); u >= 0 ? v : -v          -> [-32767, 32767]
 * Defined for every int32 u.  Both functions are constant for |u| >= 2^16, so u is first
 * clamped to [-2^24, 2^24] and then goes through the inline versions the FastGRNN cell uses
 * (fd_nonlin.h, which explains the equivalent clamp and index computation).
 */
#include "fd_kernels.h"
#include "fd_nonlin.h"
#include "fd_nonlin_tables.h"

const uint16_t *const fd_nonlin_sigmoid_table = FD_SIGMOID_TABLE;
const int16_t *const fd_nonlin_tanh_table = FD_TANH_TABLE;

static inline int32_t clamp_q12(int32_t u)
{
    return u > (1 << 24) ? (1 << 24) : (u < -(1 << 24) ? -(1 << 24) : u);
}

int32_t fd_sigmoid_q15(int32_t u)
{
    return fd_sigmoid_q15_in(clamp_q12(u), FD_SIGMOID_TABLE);
}

int32_t fd_tanh_q15(int32_t u)
{
    return fd_tanh_q15_in(clamp_q12(u), FD_TANH_TABLE);
}

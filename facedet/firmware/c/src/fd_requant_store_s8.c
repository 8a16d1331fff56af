/*
 * fd_requant_store_s8: out = sat(zp_out + requantize(acc, multiplier[co], shift[co]),
 * act_min, act_max) (docs/quantization.md 4.1).
 *
 * acc: int32 (bias included); multiplier in [0, 2^31), shift in [1, 62]; the result
 * is in [act_min, act_max] (int8 limits or the ReLU6 bounds).  The 64-bit product
 * is below 2^62 in magnitude, so the rounding term cannot overflow.  fd_rq_s8 (fd_conv_inner.h):
 * for shift >= 33 from the high word of the product alone.
 */
#include "fd_conv_inner.h"
#include "fd_kernels.h"

int32_t fd_rq_s8_slow(int32_t acc, int32_t m, int32_t s, int32_t zp, int32_t lo, int32_t hi)
{
    return fd_sat((int64_t)zp + fd_requantize(acc, m, s), lo, hi);
}

int8_t fd_requant_store_s8(const fd_conv_params *p, int32_t co, int32_t acc)
{
    return (int8_t)fd_rq_s8(acc, p->multiplier[co], p->shift[co], p->zp_out, p->act_min, p->act_max);
}

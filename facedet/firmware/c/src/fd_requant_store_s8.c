/*
 * fd_requant_store_s8: out = sat(zp_out + requantize(acc, multiplier[co], shift[co]),
 * act_min, act_max) (docs/quantization.md 4.1).
 *
 * acc: int32 (bias included); multiplier in [0, 2^31), shift in [1, 62]; the result
 * is in [act_min, act_max] (int8 limits or the ReLU6 bounds).  The 64-bit product
 * is below 2^62 in magnitude, so the rounding term cannot overflow.
 */
#include "fd_kernels.h"

int8_t fd_requant_store_s8(const fd_conv_params *p, int32_t co, int32_t acc)
{
    int64_t v = (int64_t)p->zp_out + fd_requantize(acc, p->multiplier[co], p->shift[co]);
    return (int8_t)fd_sat(v, p->act_min, p->act_max);
}

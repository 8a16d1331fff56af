/*
 * fd_add_s8: out[i] = sat8(zp_out + rshift_round((a[i]-zp_a)*mult_a + (b[i]-zp_b)*mult_b, shift))
 * (docs/quantization.md 4.5).
 *
 * a, b, out: n int8; mult_a, mult_b in [0, 2^31), shift in [1, 62].  The sum is
 * computed in 64 bits (|each product| < 255 * 2^31).  out may alias a or b
 * (element i is stored after a[i] and b[i] are read).
 */
#include "fd_kernels.h"

void fd_add_s8(const fd_add_params *p, const int8_t *a, const int8_t *b, int32_t n, int8_t *out)
{
    int32_t i;
    for (i = 0; i < n; i++) {
        const int64_t acc = (int64_t)(a[i] - p->zp_a) * p->mult_a + (int64_t)(b[i] - p->zp_b) * p->mult_b;
        out[i] = (int8_t)fd_sat((int64_t)p->zp_out + fd_rshift_round(acc, (int)p->shift), -128, 127);
    }
}

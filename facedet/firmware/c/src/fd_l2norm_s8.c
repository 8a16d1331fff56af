/*
 * fd_l2norm_s8: L2Norm of n pixels (docs/quantization.md 4.6).
 *
 * Per pixel [C] int8: d_c = in_c - zp_in, ss = sum d_c^2 (int32, <= C*255^2),
 * r = ss ? isqrt(floor(2^62 / ss)) : 0 (<= 2^31), out_c = sat8(zp_out +
 * rshift_round(d_c * r * gain[c], shift)), shift in [31, 62], |d_c * r * gain| < 2^62.
 * out may alias in (a pixel's ss is complete before any of its channels is stored).
 * Cost per pixel: one 64-bit division (__aeabi_uldivmod on the M4) and one isqrt.
 */
#include "fd_kernels.h"

void fd_l2norm_s8(const fd_l2norm_params *p, const int8_t *in, int32_t n, int8_t *out)
{
    const int32_t ch = p->channels;
    int32_t i, c;
    for (i = 0; i < n; i++, in += ch, out += ch) {
        int32_t ss = 0;
        int64_t r;
        for (c = 0; c < ch; c++) {
            const int32_t d = in[c] - p->zp_in;
            ss += d * d;
        }
        r = ss == 0 ? 0 : (int64_t)fd_isqrt_u64(((uint64_t)1 << 62) / (uint64_t)ss);
        for (c = 0; c < ch; c++) {
            const int64_t d = in[c] - p->zp_in;
            const int64_t v = fd_rshift_round(d * r * p->gain[c], (int)p->shift);
            out[c] = (int8_t)fd_sat((int64_t)p->zp_out + v, -128, 127);
        }
    }
}

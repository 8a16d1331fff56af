/*
 * fd_l2norm_s8: L2Norm of n pixels (docs/quantization.md 4.6).
 *
 * Per pixel [C] int8: d_c = in_c - zp_in, ss = sum d_c^2 (int32, <= C*255^2),
 * r = ss ? isqrt(floor(2^62 / ss)) : 0 (<= 2^31), out_c = sat8(zp_out +
 * rshift_round(d_c * r * gain[c], shift)), shift in [31, 62], |d_c * r * gain| < 2^62.
 * out may alias in (a pixel's ss is complete before any of its channels is stored).
 *
 * r: one 64-bit division for floor(2^62 / ss), then the exact integer square root by
 * bisection inside a bracket around a float estimate of 2^31 / sqrt(ss) (a reciprocal
 * square root by Newton steps, no libm); the bracket is checked, and fd_isqrt_u64 takes over
 * if the estimate were ever off (it is within a few hundred), so the float only saves time.
 * Channels: |d_c * r| <= 2^31, equal only when one channel holds all of ss and ss is a power
 * of two; otherwise q = d_c * r is an int32 and, for shift >= 33, rshift_round(q * gain, shift)
 * is fd_rq_hi (one SMULL and shifts).  Those pixels and shifts 31, 32 take the 64-bit formula.
 * DSP: ss four channels per word (SXTB16, SSUB16 by (zp, zp), SMLAD).
 */
#include <string.h>

#include "fd_acle_emul.h"
#include "fd_conv_inner.h"
#include "fd_kernels.h"

/* about 1/sqrt(v) for v >= 1: the classic bit estimate and three Newton steps (relative error ~1e-7) */
static float rsqrt_estimate(float v)
{
    uint32_t bits;
    float y;
    memcpy(&bits, &v, sizeof bits);
    bits = 0x5F3759DFu - (bits >> 1);
    memcpy(&y, &bits, sizeof y);
    y = y * (1.5f - 0.5f * v * y * y);
    y = y * (1.5f - 0.5f * v * y * y);
    y = y * (1.5f - 0.5f * v * y * y);
    return y;
}

/* isqrt(floor(2^62 / ss)) for ss >= 1 */
static uint32_t inv_sqrt_q31(uint32_t ss)
{
    const uint64_t x = ((uint64_t)1 << 62) / ss;
    const float est = rsqrt_estimate((float)ss) * 2147483648.0f;
    const uint32_t r0 = est >= 2.5e9f ? 2500000000u : (est <= 0.0f ? 0u : (uint32_t)est);
    uint32_t lo = r0 > 1024u ? r0 - 1024u : 0u, hi = r0 + 1024u;
    if ((uint64_t)lo * lo > x || (uint64_t)(hi + 1u) * (hi + 1u) <= x)
        return fd_isqrt_u64(x);
    while (lo < hi) { /* lo*lo <= x < (hi+1)*(hi+1) */
        const uint32_t mid = lo + ((hi - lo + 1u) >> 1);
        if ((uint64_t)mid * mid <= x)
            lo = mid;
        else
            hi = mid - 1u;
    }
    return lo;
}

static int32_t sum_squares(const int8_t *in, int32_t ch, int32_t zp)
{
    int32_t ss = 0, c = 0;
#if FD_USE_DSP
    const int32_t zz = fd_u32_to_s32(((uint32_t)zp & 0xFFFFu) * 0x10001u);
    for (; c + 4 <= ch; c += 4) {
        const int32_t w = fd_ld32(in + c);
        const int32_t d02 = __ssub16(__sxtb16(w), zz), d13 = __ssub16(fd_sxtb16_ror8(w), zz);
        ss = __smlad(d02, d02, __smlad(d13, d13, ss));
    }
#endif
    for (; c < ch; c++) {
        const int32_t d = in[c] - zp;
        ss += d * d;
    }
    return ss;
}

void fd_l2norm_s8(const fd_l2norm_params *p, const int8_t *in, int32_t n, int8_t *out)
{
    const int32_t ch = p->channels, zp_in = p->zp_in, zp_out = p->zp_out, shift = p->shift;
    const int32_t *const gain = p->gain;
    int32_t i, c;
    for (i = 0; i < n; i++, in += ch, out += ch) {
        const int32_t ss = sum_squares(in, ch, zp_in);
        const uint32_t r = ss == 0 ? 0u : inv_sqrt_q31((uint32_t)ss);
        if (shift >= 33 && (ss & (ss - 1)) != 0) {
            /* |d * r| < 2^31 */
            for (c = 0; c < ch; c++) {
                const int32_t q = (in[c] - zp_in) * (int32_t)r;
                const int32_t v = fd_rq_hi(q, gain[c], shift, zp_out);
                out[c] = (int8_t)(v < -128 ? -128 : (v > 127 ? 127 : v));
            }
        } else {
            for (c = 0; c < ch; c++) {
                const int64_t d = in[c] - zp_in;
                const int64_t v = fd_rshift_round(d * (int64_t)r * gain[c], (int)shift);
                out[c] = (int8_t)fd_sat((int64_t)zp_out + v, -128, 127);
            }
        }
    }
}

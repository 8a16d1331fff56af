/*
 * fd_dwconv_pixel_s8: depthwise k x k convolution of one output pixel (oy, ox).
 *
 * In:  rows[ky] = input row (oy*stride - padding + ky), [in_width][C] int8, or NULL
 *      outside the input (taps outside read zp_in); weights [C][k][k] int8; biases
 *      with zp_in folded in.
 * Out: out[C] int8 in [act_min, act_max].
 * |acc - bias| <= k*k*128*127, plain int32 multiply-accumulate (one MLA per tap on
 * the M4; the channel-strided taps give SIMD nothing to pair).
 * A 3x3 window inside the input (most pixels) runs a straight-line 9-tap loop over three
 * row pointers; other windows look up the k*k tap pointers once per pixel (NULL: zp_in).
 * Requantization: fd_rq_s8 / fd_rq_s8_full inline.
 */
#include "fd_conv_inner.h"
#include "fd_kernels.h"

FD_INLINE void dw3x3_inside(const fd_conv_params *p, const int8_t *r0, const int8_t *r1, const int8_t *r2, int8_t *out, int full)
{
    const int32_t ch = p->in_channels, ch2 = 2 * ch;
    const int8_t *w = p->weight;
    const int32_t *bias = p->bias, *mult = p->multiplier;
    const int8_t *shift = p->shift;
    const int32_t zp = p->zp_out, lo = p->act_min, hi = p->act_max;
    int32_t c;
    for (c = 0; c < ch; c++, w += 9) {
        int32_t acc = bias[c];
        acc += r0[c] * w[0] + r0[c + ch] * w[1] + r0[c + ch2] * w[2];
        acc += r1[c] * w[3] + r1[c + ch] * w[4] + r1[c + ch2] * w[5];
        acc += r2[c] * w[6] + r2[c + ch] * w[7] + r2[c + ch2] * w[8];
        out[c] = (int8_t)(full ? fd_rq_s8_full(acc, mult[c], shift[c], zp) : fd_rq_s8(acc, mult[c], shift[c], zp, lo, hi));
    }
}

void fd_dwconv_pixel_s8(const fd_conv_params *p, const int8_t *const *rows, int32_t in_width, int32_t ox, int8_t *out)
{
    const int32_t k = p->kernel, ch = p->in_channels, kk = k * k;
    const int32_t x0 = ox * p->stride - p->padding;
    int32_t c, ky, kx, t;
    /* the padded taps contribute zp_in * w: only when the window crosses an edge */
    int32_t inside = x0 >= 0 && x0 + k <= in_width;
    for (ky = 0; ky < k; ky++)
        inside = inside && rows[ky] != NULL;
    if (inside && k == 3) {
        const int8_t *r0 = rows[0] + x0 * ch, *r1 = rows[1] + x0 * ch, *r2 = rows[2] + x0 * ch;
        if (p->act_min == -128 && p->act_max == 127)
            dw3x3_inside(p, r0, r1, r2, out, 1);
        else
            dw3x3_inside(p, r0, r1, r2, out, 0);
        return;
    }
    {
        const int8_t *taps[FD_MAX_KERNEL * FD_MAX_KERNEL];
        for (ky = 0, t = 0; ky < k; ky++)
            for (kx = 0; kx < k; kx++, t++) {
                const int32_t ix = x0 + kx;
                taps[t] = (rows[ky] != NULL && ix >= 0 && ix < in_width) ? rows[ky] + ix * ch : NULL;
            }
        for (c = 0; c < ch; c++) {
            const int8_t *w = p->weight + c * kk;
            int32_t acc = 0;
            for (t = 0; t < kk; t++)
                acc += (taps[t] != NULL ? taps[t][c] : p->zp_in) * w[t];
            out[c] = fd_conv_out(p, c, acc);
        }
    }
}

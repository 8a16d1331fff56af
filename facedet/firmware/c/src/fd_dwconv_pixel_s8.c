/*
 * fd_dwconv_pixel_s8: depthwise k x k convolution of one output pixel (oy, ox).
 *
 * In:  rows[ky] = input row (oy*stride - padding + ky), [in_width][C] int8, or NULL
 *      outside the input (taps outside read zp_in); weights [C][k][k] int8; biases
 *      with zp_in folded in.
 * Out: out[C] int8 in [act_min, act_max].
 * |acc - bias| <= k*k*128*127, plain int32 multiply-accumulate (one MLA per tap on
 * the M4; the channel-strided taps give SIMD nothing to pair).
 */
#include "fd_kernels.h"

void fd_dwconv_pixel_s8(const fd_conv_params *p, const int8_t *const *rows, int32_t in_width, int32_t ox, int8_t *out)
{
    const int32_t k = p->kernel, ch = p->in_channels, kk = k * k;
    const int32_t x0 = ox * p->stride - p->padding;
    int32_t c, ky, kx;
    /* the padded taps contribute zp_in * w: only when the window crosses an edge */
    int32_t inside = x0 >= 0 && x0 + k <= in_width;
    for (ky = 0; ky < k; ky++)
        inside = inside && rows[ky] != NULL;
    for (c = 0; c < ch; c++) {
        const int8_t *w = p->weight + c * kk;
        int32_t acc = p->bias[c];
        if (inside) {
            for (ky = 0; ky < k; ky++) {
                const int8_t *src = rows[ky] + x0 * ch + c;
                for (kx = 0; kx < k; kx++)
                    acc += (int32_t)src[kx * ch] * w[ky * k + kx];
            }
        } else {
            for (ky = 0; ky < k; ky++) {
                const int8_t *row = rows[ky];
                for (kx = 0; kx < k; kx++) {
                    const int32_t ix = x0 + kx;
                    const int32_t v = (row != NULL && ix >= 0 && ix < in_width) ? row[ix * ch + c] : p->zp_in;
                    acc += v * w[ky * k + kx];
                }
            }
        }
        out[c] = fd_requant_store_s8(p, c, acc);
    }
}

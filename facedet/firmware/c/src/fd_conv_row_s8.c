/*
 * fd_conv_row_s8: one output row of a k x k convolution (groups == 1).
 *
 * In:  rows[ky] as for fd_im2col_s8_s16 ([in_width][C_in] int8 or NULL), weights OHWI
 *      [C_out][k][k][C_in] int8, biases with zp_in folded in.
 * Out: out [W_out][C_out] int8, W_out = (in_width + 2*padding - k) / stride + 1, each
 *      value in [act_min, act_max].
 * Scratch: fd_im2col_get_buffer_size(p) bytes (the gathered neighbourhood, int16).
 * Per output pixel: one im2col, then the output channels four at a time (fd_dot4_s16_s8),
 * then two (fd_dot2_s16_s8), then one; requantization inline (fd_rq_out).
 * A 3x3 convolution of one input channel (the stem) computes the pixels whose window lies
 * inside the input directly: the nine taps a0..a8 are packed once per pixel into (a0,a2)
 * (a1,a3) (a4,a6) (a5,a7), which pair with SXTB16 and SXTB16 ror 8 of each channel's
 * weight words 0..3 and 4..7 (four SMLAD), plus a8*w8.
 */
#include "fd_conv_inner.h"
#include "fd_kernels.h"

#if FD_USE_DSP
static inline int32_t pack16(int32_t lo, int32_t hi)
{
    return fd_u32_to_s32(((uint32_t)lo & 0xFFFFu) | ((uint32_t)hi << 16));
}
#endif

/* the pixel whose 3x3 window (C_in = 1) starts at r0, r1, r2 (all inside the input) */
static void pixel_c1k3(const fd_conv_params *p, const int8_t *r0, const int8_t *r1, const int8_t *r2, int8_t *out)
{
    const int32_t cout = p->out_channels;
    const int8_t *w = p->weight;
    const fd_rq rq = fd_rq_of(p);
    int32_t co;
#if FD_USE_DSP
    const int32_t q02 = pack16(r0[0], r0[2]), q13 = pack16(r0[1], r1[0]), q46 = pack16(r1[1], r2[0]), q57 = pack16(r1[2], r2[1]);
    const int32_t a8 = r2[2];
    for (co = 0; co < cout; co++, w += 9) {
        const int32_t w0 = fd_ld32(w), w1 = fd_ld32(w + 4);
        int32_t acc = a8 * w[8];
        acc = __smlad(__sxtb16(w0), q02, acc);
        acc = __smlad(fd_sxtb16_ror8(w0), q13, acc);
        acc = __smlad(__sxtb16(w1), q46, acc);
        acc = __smlad(fd_sxtb16_ror8(w1), q57, acc);
        out[co] = fd_rq_out(&rq, co, acc);
    }
#else
    const int32_t a[9] = {r0[0], r0[1], r0[2], r1[0], r1[1], r1[2], r2[0], r2[1], r2[2]};
    for (co = 0; co < cout; co++, w += 9) {
        int32_t acc = 0, t;
        for (t = 0; t < 9; t++)
            acc += a[t] * w[t];
        out[co] = fd_rq_out(&rq, co, acc);
    }
#endif
}

/* any pixel: im2col into scratch, then the channels */
static void pixel_im2col(const fd_conv_params *p, const int8_t *const *rows, int32_t in_width, int32_t ox, int8_t *out, int16_t *scratch)
{
    const int32_t cout = p->out_channels;
    const int32_t n = fd_im2col_s8_s16(p, rows, in_width, ox, scratch);
    const int8_t *w = p->weight;
    const fd_rq rq = fd_rq_of(p);
    int32_t co = 0;
    for (; co + 4 <= cout; co += 4, w += 4 * n) {
        int32_t acc[4] = {0, 0, 0, 0};
        fd_dot4_s16_s8(scratch, w, n, n, acc);
        out[co] = fd_rq_out(&rq, co, acc[0]);
        out[co + 1] = fd_rq_out(&rq, co + 1, acc[1]);
        out[co + 2] = fd_rq_out(&rq, co + 2, acc[2]);
        out[co + 3] = fd_rq_out(&rq, co + 3, acc[3]);
    }
    for (; co + 2 <= cout; co += 2, w += 2 * n) {
        int32_t a0, a1;
        fd_dot2_s16_s8(scratch, w, w + n, n, &a0, &a1);
        out[co] = fd_rq_out(&rq, co, a0);
        out[co + 1] = fd_rq_out(&rq, co + 1, a1);
    }
    if (co < cout)
        out[co] = fd_rq_out(&rq, co, fd_dot_s16_s8(scratch, w, n));
}

void fd_conv_row_s8(const fd_conv_params *p, const int8_t *const *rows, int32_t in_width, int8_t *out, int16_t *scratch)
{
    const int32_t cout = p->out_channels;
    const int32_t w_out = (in_width + 2 * p->padding - p->kernel) / p->stride + 1;
    const int32_t c1k3 = p->kernel == 3 && p->in_channels == 1 && rows[0] != NULL && rows[1] != NULL && rows[2] != NULL;
    int32_t ox;
    for (ox = 0; ox < w_out; ox++, out += cout) {
        const int32_t x0 = ox * p->stride - p->padding;
        if (c1k3 && x0 >= 0 && x0 + 3 <= in_width)
            pixel_c1k3(p, rows[0] + x0, rows[1] + x0, rows[2] + x0, out);
        else
            pixel_im2col(p, rows, in_width, ox, out, scratch);
    }
}

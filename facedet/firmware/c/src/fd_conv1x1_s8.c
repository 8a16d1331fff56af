/*
 * fd_conv1x1_s8: 1x1 convolution (stride 1, no padding) of n pixels.
 *
 * In:  in [n][C_in] int8; weights [C_out][C_in] int8; biases with zp_in folded in.
 * Out: out [n][C_out] int8 in [act_min, act_max].  out may be in only when
 *      C_out <= C_in: each pixel is converted to scratch before its outputs are stored.
 * Scratch: 2*C_in bytes (the pixel as int16, fd_vector_s8_s16 layout).
 * Output channels four at a time (fd_dot4_s16_s8), then two (fd_dot2_s16_s8), then one.
 *
 * fd_conv1x1_rows_s8 (fd_conv_inner.h) takes the scratch size: with 4*C_in bytes (and C_out
 * even) it converts two pixels and runs two output channels of both at a time
 * (fd_dot22_s16_s8: each weight word is sign-extended once for both pixels).  In place
 * (C_out <= C_in) stays safe: both pixels are converted before either is stored, and output
 * pixel i ends at (i+1)*C_out <= the start of input pixel i+1.
 * On the DSP path the C_in of the shipped networks (16, 32, 64, 128) get their own copies of
 * the pixel loops with the dot product inline (fd_dot4_body / fd_dot22_body: immediate
 * offsets, no call per channel group).
 * Requantization: fd_rq_out (one SMULL and shifts for the shifts >= 33 of every layer here).
 */
#include "fd_conv_inner.h"
#include "fd_kernels.h"

/* acc[0..3] = buf . rows co..co+3 (rows cin apart) */
FD_INLINE void dot4(const int16_t *buf, const int8_t *w, const int32_t cin, int32_t *acc)
{
#if FD_USE_DSP
    if (cin == 16 || cin == 32 || cin == 64 || cin == 128) {
        fd_dot4_body(buf, w, cin, cin, acc);
        return;
    }
#endif
    fd_dot4_s16_s8(buf, w, cin, cin, acc);
}

/* acc[0..3] = the 2 pixels at buf, buf + cin times the 2 rows at w, w + cin */
FD_INLINE void dot22(const int16_t *buf, const int8_t *w, const int32_t cin, int32_t *acc)
{
#if FD_USE_DSP
    if (cin == 16 || cin == 32 || cin == 64 || cin == 128) {
        fd_dot22_body(buf, w, cin, cin, acc);
        return;
    }
#endif
    fd_dot22_s16_s8(buf, w, cin, acc);
}

/* the channels of one pixel from its converted input buf */
FD_INLINE void pixel(const fd_conv_params *p, const int16_t *buf, int8_t *out, const int32_t cin)
{
    const int32_t cout = p->out_channels;
    const int8_t *w = p->weight;
    const fd_rq rq = fd_rq_of(p);
    int32_t co = 0;
    for (; co + 4 <= cout; co += 4, w += 4 * cin) {
        int32_t acc[4] = {0, 0, 0, 0};
        dot4(buf, w, cin, acc);
        out[co] = fd_rq_out(&rq, co, acc[0]);
        out[co + 1] = fd_rq_out(&rq, co + 1, acc[1]);
        out[co + 2] = fd_rq_out(&rq, co + 2, acc[2]);
        out[co + 3] = fd_rq_out(&rq, co + 3, acc[3]);
    }
    for (; co + 2 <= cout; co += 2, w += 2 * cin) {
        int32_t a0, a1;
        fd_dot2_s16_s8(buf, w, w + cin, cin, &a0, &a1);
        out[co] = fd_rq_out(&rq, co, a0);
        out[co + 1] = fd_rq_out(&rq, co + 1, a1);
    }
    if (co < cout)
        out[co] = fd_rq_out(&rq, co, fd_dot_s16_s8(buf, w, cin));
}

/* two pixels from buf[0..cin) and buf[cin..2cin) into out0, out1; C_out even */
FD_INLINE void pixel2(const fd_conv_params *p, const int16_t *buf, int8_t *out0, int8_t *out1, const int32_t cin)
{
    const int32_t cout = p->out_channels;
    const int8_t *w = p->weight;
    const fd_rq rq = fd_rq_of(p);
    int32_t co;
    for (co = 0; co < cout; co += 2, w += 2 * cin) {
        int32_t acc[4] = {0, 0, 0, 0};
        dot22(buf, w, cin, acc);
        out0[co] = fd_rq_out(&rq, co, acc[0]);
        out0[co + 1] = fd_rq_out(&rq, co + 1, acc[1]);
        out1[co] = fd_rq_out(&rq, co, acc[2]);
        out1[co + 1] = fd_rq_out(&rq, co + 1, acc[3]);
    }
}

FD_INLINE void rows(const fd_conv_params *p, const int8_t *in, int32_t n, int8_t *out, int16_t *scratch, int32_t scratch_bytes,
                    const int32_t cin)
{
    const int32_t cout = p->out_channels;
    int32_t i = 0;
    if (scratch_bytes >= 4 * cin && (cout & 1) == 0) {
        for (; i + 2 <= n; i += 2, in += 2 * cin, out += 2 * cout) {
            fd_vector_s8_s16(in, cin, scratch);
            fd_vector_s8_s16(in + cin, cin, scratch + cin);
            pixel2(p, scratch, out, out + cout, cin);
        }
    }
    for (; i < n; i++, in += cin, out += cout) {
        fd_vector_s8_s16(in, cin, scratch);
        pixel(p, scratch, out, cin);
    }
}

void fd_conv1x1_rows_s8(const fd_conv_params *p, const int8_t *in, int32_t n, int8_t *out, int16_t *scratch, int32_t scratch_bytes)
{
    switch (p->in_channels) {
#if FD_USE_DSP
    case 16:
        rows(p, in, n, out, scratch, scratch_bytes, 16);
        break;
    case 32:
        rows(p, in, n, out, scratch, scratch_bytes, 32);
        break;
    case 64:
        rows(p, in, n, out, scratch, scratch_bytes, 64);
        break;
    case 128:
        rows(p, in, n, out, scratch, scratch_bytes, 128);
        break;
#endif
    default:
        rows(p, in, n, out, scratch, scratch_bytes, p->in_channels);
        break;
    }
}

void fd_conv1x1_s8(const fd_conv_params *p, const int8_t *in, int32_t n, int8_t *out, int16_t *scratch)
{
    fd_conv1x1_rows_s8(p, in, n, out, scratch, 2 * p->in_channels);
}

/*
 * fd_dot4_s16_s8 / fd_dot22_s16_s8: the blocked dot products of the convolutions (fd_conv_inner.h).
 *
 * buf: int16 values in [-128, 127] in the build's layout (fd_im2col_s8_s16 / fd_vector_s8_s16:
 * on the DSP path every complete group of four stored a0 a2 a1 a3); w: int8 rows in plain order.
 * Sums are bounded as in fd_dot_s16_s8 (int32, no overflow).
 * DSP (fd_dot4_body / fd_dot22_body, fd_conv_inner.h): per group of four values, the two buf
 * words are loaded once and each weight word is sign-extended once (SXTB16 and SXTB16 ror 8),
 * then two SMLAD per (pixel, row):
 *   fd_dot4_s16_s8   1 pixel x 4 rows:  2 + 4*5 instructions per 16 MACs
 *   fd_dot22_s16_s8  2 pixels x 2 rows: 4 + 2*3 + 8 instructions per 16 MACs
 * with the row stride a compile-time constant, which keeps every address an immediate offset
 * and all accumulators in registers.  Here fd_dot4_s16_s8 instantiates the strides of the
 * shipped networks' k x k convolutions (3x3 with C_in 1, 32, 64: 9, 288, 576); the 1x1
 * convolutions inline the bodies themselves (fd_conv1x1_s8.c).  Other strides, and
 * fd_dot22_s16_s8, take two fd_dot2_s16_s8.
 */
#include "fd_acle_emul.h"
#include "fd_conv_inner.h"
#include "fd_kernels.h"

#if FD_USE_DSP
#define FD_DOT4_CASE(S)                                                                             \
    case S:                                                                                         \
        fd_dot4_body(buf, w, S, n4, acc);                                                           \
        break;
#endif

void fd_dot4_s16_s8(const int16_t *buf, const int8_t *w, int32_t stride, int32_t n, int32_t *acc)
{
    int32_t i = 0;
#if FD_USE_DSP
    const int32_t n4 = n & ~3;
    switch (stride) {
        FD_DOT4_CASE(9)
        FD_DOT4_CASE(288)
        FD_DOT4_CASE(576)
    default: {
        int32_t s0, s1, s2, s3;
        fd_dot2_s16_s8(buf, w, w + stride, n, &s0, &s1);
        fd_dot2_s16_s8(buf, w + 2 * stride, w + 3 * stride, n, &s2, &s3);
        acc[0] += s0;
        acc[1] += s1;
        acc[2] += s2;
        acc[3] += s3;
        return;
    }
    }
    i = n4; /* the tail is in plain order */
#endif
    for (; i < n; i++) {
        const int32_t b = buf[i];
        acc[0] += b * w[i];
        acc[1] += b * w[stride + i];
        acc[2] += b * w[2 * stride + i];
        acc[3] += b * w[3 * stride + i];
    }
}

void fd_dot22_s16_s8(const int16_t *buf, const int8_t *w, int32_t n, int32_t *acc)
{
    int32_t s0, s1, s2, s3;
    fd_dot2_s16_s8(buf, w, w + n, n, &s0, &s1);
    fd_dot2_s16_s8(buf + n, w, w + n, n, &s2, &s3);
    acc[0] += s0;
    acc[1] += s1;
    acc[2] += s2;
    acc[3] += s3;
}

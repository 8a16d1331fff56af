/*
 * fd_dot_s16_s8: sum_i buf[i] * w[i] over n values (int32).
 *
 * buf: int16 from fd_im2col_s8_s16 / fd_vector_s8_s16 (values in [-128, 127], in the
 *      build's layout); w: int8 weights in plain order (one output channel's row).
 * The sum is bounded by n * 128 * 127 (below 2^24 for every layer), so the int32
 * accumulator never overflows.
 * DSP: per four values one word load of w, __sxtb16(w) = (w0,w2) and
 * __sxtb16(ror8(w)) = (w1,w3), two word loads of buf ((a0,a2), (a1,a3)) and two
 * __smlad.  fd_dot2_s16_s8 does two weight rows against one buf (buf loads shared).
 */
#include <string.h>

#include "fd_acle_emul.h"
#include "fd_kernels.h"

int32_t fd_dot_s16_s8(const int16_t *buf, const int8_t *w, int32_t n)
{
    int32_t acc = 0, i = 0;
#if FD_USE_DSP
    for (; i + 4 <= n; i += 4) {
        int32_t ww, b02, b13;
        memcpy(&ww, w + i, 4);
        memcpy(&b02, buf + i, 4);
        memcpy(&b13, buf + i + 2, 4);
        acc = __smlad(__sxtb16(ww), b02, acc);
        acc = __smlad(fd_sxtb16_ror8(ww), b13, acc);
    }
#endif
    for (; i < n; i++)
        acc += (int32_t)buf[i] * w[i];
    return acc;
}

void fd_dot2_s16_s8(const int16_t *buf, const int8_t *w0, const int8_t *w1, int32_t n, int32_t *acc0, int32_t *acc1)
{
    int32_t a0 = 0, a1 = 0, i = 0;
#if FD_USE_DSP
    for (; i + 4 <= n; i += 4) {
        int32_t x0, x1, b02, b13;
        memcpy(&b02, buf + i, 4);
        memcpy(&b13, buf + i + 2, 4);
        memcpy(&x0, w0 + i, 4);
        memcpy(&x1, w1 + i, 4);
        a0 = __smlad(__sxtb16(x0), b02, a0);
        a0 = __smlad(fd_sxtb16_ror8(x0), b13, a0);
        a1 = __smlad(__sxtb16(x1), b02, a1);
        a1 = __smlad(fd_sxtb16_ror8(x1), b13, a1);
    }
#endif
    for (; i < n; i++) {
        a0 += (int32_t)buf[i] * w0[i];
        a1 += (int32_t)buf[i] * w1[i];
    }
    *acc0 = a0;
    *acc1 = a1;
}

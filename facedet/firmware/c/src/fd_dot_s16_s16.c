/*
 * fd_dot_s16_s16: sum_i a[i] * b[i] over n int16 pairs, 64-bit (the FastGRNN
 * matrix-vector rows: Q15 states or int8-minus-zero-point inputs times int16 weights;
 * |sum| <= n * 2^30, beyond int32 for n > 1).
 * DSP: two word loads and one __smlald (64-bit accumulator) per two pairs; both
 * operands are plain int16 arrays, whose halfword lanes already pair up.
 */
#include <string.h>

#include "fd_acle_emul.h"
#include "fd_kernels.h"

int64_t fd_dot_s16_s16(const int16_t *a, const int16_t *b, int32_t n)
{
    int64_t acc = 0;
    int32_t i = 0;
#if FD_USE_DSP
    for (; i + 4 <= n; i += 4) {
        int32_t a01, a23, b01, b23;
        memcpy(&a01, a + i, 4);
        memcpy(&a23, a + i + 2, 4);
        memcpy(&b01, b + i, 4);
        memcpy(&b23, b + i + 2, 4);
        acc = __smlald(a01, b01, acc);
        acc = __smlald(a23, b23, acc);
    }
    for (; i + 2 <= n; i += 2) {
        int32_t a01, b01;
        memcpy(&a01, a + i, 4);
        memcpy(&b01, b + i, 4);
        acc = __smlald(a01, b01, acc);
    }
#endif
    for (; i < n; i++)
        acc += (int32_t)a[i] * b[i];
    return acc;
}

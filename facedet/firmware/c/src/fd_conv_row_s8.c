/*
 * fd_conv_row_s8: one output row of a k x k convolution (groups == 1).
 *
 * In:  rows[ky] as for fd_im2col_s8_s16 ([in_width][C_in] int8 or NULL), weights OHWI
 *      [C_out][k][k][C_in] int8, biases with zp_in folded in.
 * Out: out [W_out][C_out] int8, W_out = (in_width + 2*padding - k) / stride + 1, each
 *      value in [act_min, act_max].
 * Scratch: fd_im2col_get_buffer_size(p) bytes (the gathered neighbourhood, int16).
 * Per output pixel: one im2col, then the output channels two at a time
 * (fd_dot2_s16_s8: SMLAD with the buffer loads shared on the DSP path).
 */
#include "fd_kernels.h"

void fd_conv_row_s8(const fd_conv_params *p, const int8_t *const *rows, int32_t in_width, int8_t *out, int16_t *scratch)
{
    const int32_t cout = p->out_channels;
    const int32_t w_out = (in_width + 2 * p->padding - p->kernel) / p->stride + 1;
    int32_t ox;
    for (ox = 0; ox < w_out; ox++, out += cout) {
        const int32_t n = fd_im2col_s8_s16(p, rows, in_width, ox, scratch);
        const int8_t *w = p->weight;
        int32_t co = 0;
        for (; co + 2 <= cout; co += 2, w += 2 * n) {
            int32_t a0, a1;
            fd_dot2_s16_s8(scratch, w, w + n, n, &a0, &a1);
            out[co] = fd_requant_store_s8(p, co, p->bias[co] + a0);
            out[co + 1] = fd_requant_store_s8(p, co + 1, p->bias[co + 1] + a1);
        }
        if (co < cout)
            out[co] = fd_requant_store_s8(p, co, p->bias[co] + fd_dot_s16_s8(scratch, w, n));
    }
}

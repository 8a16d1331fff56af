/*
 * fd_conv1x1_s8: 1x1 convolution (stride 1, no padding) of n pixels.
 *
 * In:  in [n][C_in] int8; weights [C_out][C_in] int8; biases with zp_in folded in.
 * Out: out [n][C_out] int8 in [act_min, act_max].  out may be in only when
 *      C_out <= C_in: each pixel is converted to scratch before its outputs are stored.
 * Scratch: 2*C_in bytes (the pixel as int16, fd_vector_s8_s16 layout).
 * Output channels two at a time (fd_dot2_s16_s8).
 */
#include "fd_kernels.h"

void fd_conv1x1_s8(const fd_conv_params *p, const int8_t *in, int32_t n, int8_t *out, int16_t *scratch)
{
    const int32_t cin = p->in_channels, cout = p->out_channels;
    int32_t i;
    for (i = 0; i < n; i++, in += cin, out += cout) {
        const int8_t *w = p->weight;
        int32_t co = 0;
        fd_vector_s8_s16(in, cin, scratch);
        for (; co + 2 <= cout; co += 2, w += 2 * cin) {
            int32_t a0, a1;
            fd_dot2_s16_s8(scratch, w, w + cin, cin, &a0, &a1);
            out[co] = fd_requant_store_s8(p, co, p->bias[co] + a0);
            out[co + 1] = fd_requant_store_s8(p, co + 1, p->bias[co + 1] + a1);
        }
        if (co < cout)
            out[co] = fd_requant_store_s8(p, co, p->bias[co] + fd_dot_s16_s8(scratch, w, cin));
    }
}

/*
 * fd_stage_mbconv: inverted residual block, streamed (plan stage "mbconv"):
 * expand 1x1 (optional) -> depthwise k x k -> project 1x1 (-> residual add).
 *
 * Arena buffers (plan offsets):
 *   in      [H][W][C_in] int8 at in_off
 *   out     [H_out][W_out][C_out] int8 at out_off (may be in_off when the plan allows)
 *   ring    k rows of [W][hidden] int8; input row iy (expanded, or copied without an
 *           expand) lives in slot iy % k
 *   vec     [hidden] int8: the depthwise output of one pixel, then (C_out <= hidden)
 *           its projection
 *   scratch max(2*C_in, 2*hidden) bytes of int16 (fd_conv1x1_s8's converted pixel)
 * Per output row y: expand input rows up to min(H, y*s - p + k) - 1 not yet expanded;
 * per output pixel x: depthwise -> vec, project, add the residual input pixel (y, x)
 * (read before the output pixel, which may lie over it, is stored), store.
 * Limit: kernel <= FD_MAX_KERNEL.
 */
#include <string.h>

#include "fd_conv_inner.h"
#include "fd_kernels.h"

void fd_stage_mbconv(const fd_mbconv_params *p, int8_t *arena)
{
    const int8_t *in = arena + p->in_off;
    int8_t *out = arena + p->out_off;
    int8_t *ring = arena + p->ring_off;
    int8_t *vec = arena + p->vec_off;
    int16_t *scratch = (int16_t *)(void *)(arena + p->scratch_off);
    const fd_conv_params *dw = &p->depthwise, *pj = &p->project;
    const int32_t k = dw->kernel, hidden = p->hidden, cout = p->C_out;
    const int32_t in_row = p->W * p->C_in, ring_row = p->W * hidden;
    const int32_t scratch_bytes = 2 * (p->C_in > hidden ? p->C_in : hidden);
    int32_t next = 0, y, x, co;
    for (y = 0; y < p->H_out; y++) {
        const int8_t *rows[FD_MAX_KERNEL];
        const int32_t y0 = y * dw->stride - dw->padding;
        const int32_t need = y0 + k < p->H ? y0 + k : p->H;
        int32_t ky;
        for (; next < need; next++) {
            int8_t *dst = ring + (next % k) * ring_row;
            if (p->has_expand)
                fd_conv1x1_rows_s8(&p->expand, in + next * in_row, p->W, dst, scratch, scratch_bytes);
            else
                memcpy(dst, in + next * in_row, (size_t)in_row);
        }
        for (ky = 0; ky < k; ky++) {
            const int32_t iy = y0 + ky;
            rows[ky] = (iy >= 0 && iy < p->H) ? ring + (iy % k) * ring_row : NULL;
        }
        for (x = 0; x < p->W_out; x++) {
            int8_t *o = out + (y * p->W_out + x) * cout;
            const int8_t *res = in + (y * p->W + x) * p->C_in; /* residual: same shape, stride 1 */
            fd_dwconv_pixel_s8(dw, rows, p->W, x, vec);
            if (cout <= hidden) {
                fd_conv1x1_s8(pj, vec, 1, vec, scratch);
                if (p->has_add)
                    fd_add_s8(&p->add, res, vec, cout, o);
                else
                    memcpy(o, vec, (size_t)cout);
            } else {
                /* more outputs than the vector holds: channel by channel */
                fd_vector_s8_s16(vec, hidden, scratch);
                for (co = 0; co < cout; co++) {
                    int8_t v = fd_requant_store_s8(pj, co, pj->bias[co] + fd_dot_s16_s8(scratch, pj->weight + co * hidden, hidden));
                    if (p->has_add)
                        fd_add_s8(&p->add, res + co, &v, 1, &v);
                    o[co] = v;
                }
            }
        }
    }
}

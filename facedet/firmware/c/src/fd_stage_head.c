/*
 * fd_stage_head: detection head, streamed (plan stage "head"): optional L2Norm, then
 * the k x k 'same' confidence and box convolutions (stride 1) and optional max-out.
 *
 * Arena buffers (plan offsets):
 *   in     [H][W][C] int8 at in_off (the source; read only)
 *   ring   (with L2Norm) k rows of [W][C] int8; normalised row iy in slot iy % k,
 *          made on demand
 *   patch  k*k*C int16 at patch_off: one output pixel's neighbourhood (fd_im2col_s8_s16),
 *          shared by every confidence and box channel
 * Outputs (caller's memory): conf_out [H*W][2] (max-out: [max(c_0..c_{n-2}), c_{n-1}];
 * otherwise the conv has 2 channels), loc_out [H*W][4].  conf and loc share zp_in,
 * kernel and padding.  Limit: kernel <= FD_MAX_KERNEL.
 */
#include "fd_conv_inner.h"
#include "fd_kernels.h"

/* channels co .. co+m-1 (m = 4, 2 or 1) of one pixel into v[0..m) */
static void channels(const fd_conv_params *cp, const int16_t *buf, int32_t n, int32_t co, int32_t m, int8_t *v)
{
    const fd_rq rq = fd_rq_of(cp);
    const int8_t *w = cp->weight + co * n;
    int32_t acc[4] = {0, 0, 0, 0}, k;
    if (m == 4) {
        fd_dot4_s16_s8(buf, w, n, n, acc);
    } else if (m == 2) {
        fd_dot2_s16_s8(buf, w, w + n, n, &acc[0], &acc[1]);
    } else {
        acc[0] = fd_dot_s16_s8(buf, w, n);
    }
    for (k = 0; k < m; k++)
        v[k] = fd_rq_out(&rq, co + k, acc[k]);
}

void fd_stage_head(const fd_head_params *p, int8_t *arena, int8_t *conf_out, int8_t *loc_out)
{
    const int8_t *src = arena + p->in_off;
    int8_t *ring = arena + p->ring_off;
    int16_t *patch = (int16_t *)(void *)(arena + p->patch_off);
    const fd_conv_params *cf = &p->conf, *lc = &p->loc;
    const int32_t k = cf->kernel, pad = cf->padding, row = p->W * p->C;
    const int32_t nconf = cf->out_channels;
    int32_t next = 0, y, x, co;
    for (y = 0; y < p->H; y++) {
        const int8_t *rows[FD_MAX_KERNEL];
        const int32_t y0 = y - pad;
        int32_t ky;
        if (p->has_norm) {
            const int32_t need = y0 + k < p->H ? y0 + k : p->H;
            for (; next < need; next++)
                fd_l2norm_s8(&p->norm, src + next * row, p->W, ring + (next % k) * row);
        }
        for (ky = 0; ky < k; ky++) {
            const int32_t iy = y0 + ky;
            rows[ky] = (iy < 0 || iy >= p->H) ? NULL : p->has_norm ? ring + (iy % k) * row : src + iy * row;
        }
        for (x = 0; x < p->W; x++) {
            const int32_t n = fd_im2col_s8_s16(cf, rows, p->W, x, patch);
            int8_t *oc = conf_out + (y * p->W + x) * 2, *ol = loc_out + (y * p->W + x) * 4;
            if (p->maxout) {
                int8_t v[4], best = -128;
                int32_t m;
                for (co = 0; co < nconf; co += m) {
                    int32_t i;
                    m = nconf - co >= 4 ? 4 : (nconf - co >= 2 ? 2 : 1);
                    channels(cf, patch, n, co, m, v);
                    for (i = 0; i < m; i++) {
                        if (co + i == nconf - 1)
                            oc[1] = v[i];
                        else if (v[i] > best)
                            best = v[i];
                    }
                }
                oc[0] = best;
            } else {
                channels(cf, patch, n, 0, 2, oc);
            }
            channels(lc, patch, n, 0, 4, ol);
        }
    }
}

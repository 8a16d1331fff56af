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
#include "fd_kernels.h"

/* channels co and co+1 (co+1 < out_channels) of one pixel */
static void two(const fd_conv_params *cp, const int16_t *buf, int32_t n, int32_t co, int8_t *v0, int8_t *v1)
{
    int32_t a0, a1;
    fd_dot2_s16_s8(buf, cp->weight + co * n, cp->weight + (co + 1) * n, n, &a0, &a1);
    *v0 = fd_requant_store_s8(cp, co, cp->bias[co] + a0);
    *v1 = fd_requant_store_s8(cp, co + 1, cp->bias[co + 1] + a1);
}

static int8_t one(const fd_conv_params *cp, const int16_t *buf, int32_t n, int32_t co)
{
    return fd_requant_store_s8(cp, co, cp->bias[co] + fd_dot_s16_s8(buf, cp->weight + co * n, n));
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
                int8_t v[2], best = -128;
                for (co = 0; co < nconf; co += 2) {
                    int32_t m = co + 2 <= nconf ? 2 : 1, i;
                    if (m == 2)
                        two(cf, patch, n, co, &v[0], &v[1]);
                    else
                        v[0] = one(cf, patch, n, co);
                    for (i = 0; i < m; i++) {
                        if (co + i == nconf - 1)
                            oc[1] = v[i];
                        else if (v[i] > best)
                            best = v[i];
                    }
                }
                oc[0] = best;
            } else {
                two(cf, patch, n, 0, &oc[0], &oc[1]);
            }
            two(lc, patch, n, 0, &ol[0], &ol[1]);
            two(lc, patch, n, 2, &ol[2], &ol[3]);
        }
    }
}

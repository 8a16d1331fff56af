/*
 * fd_stage_stem_pool: stem convolution + RNNPool + replicate pad, streamed (plan stage
 * "stem_pool"; the order of work is the one documented in fd_kernels.h).
 *
 * Arena buffers (offsets from the plan, all 4-byte aligned):
 *   frame       [H][W][C_in] int8 at frame_off
 *   out         [oh+1][ow+1][4*h2] int8 at out_off (may be frame_off: output row r is
 *               stored only after every stem row patch row r needs is made)
 *   stem ring   patch rows of [Wc][Cc] int8; stem row y lives in slot y % patch
 *   row_states  [patch][ow][h1] int16: rnn1 along stem row y, patch column c, in slot y % patch
 *   col_states  [patch][h1] int16: rnn1 down image column x of the current patch row, slot x % patch
 *   summary     [4*h2] int16 (q1 q2 q3 q4, Q15)
 *   conv_scratch fd_im2col_get_buffer_size(&stem) bytes
 * Every rnn1 state is computed once: a patch row is a row of the patch `stride` below,
 * a patch column a column of the patch to its right (docs/quantization.md 4.2).
 * Limits: stem kernel <= FD_MAX_KERNEL, patch <= FD_MAX_PATCH.
 */
#include <string.h>

#include "fd_cell.h"
#include "fd_kernels.h"

/* the cells through their fast path when it applies (prepared once per frame), else the general one */
static void rnn1_row(const fd_cell_params *c, fd_cell_fast *f, int fast, const int8_t *x, int32_t x_step, int32_t T, int16_t *h)
{
    if (fast)
        fd_cell_fast_s8(f, x, x_step, NULL, T, h);
    else
        fd_fastgrnn_s8(c, x, x_step, T, h);
}

static void rnn1_col(const fd_cell_params *c, fd_cell_fast *f, int fast, const int8_t *const *xs, int32_t T, int16_t *h)
{
    if (fast)
        fd_cell_fast_s8(f, NULL, 0, xs, T, h);
    else
        fd_fastgrnn_s8_ptrs(c, xs, T, h);
}

static void rnn2(const fd_cell_params *c, fd_cell_fast *f, int fast, const int16_t *const *xs, int32_t T, int16_t *h)
{
    if (fast)
        fd_cell_fast_q15(f, xs, T, h);
    else
        fd_fastgrnn_q15(c, xs, T, h);
}

void fd_stage_stem_pool(const fd_stem_pool_params *p, int8_t *arena)
{
    const int8_t *frame = arena + p->frame_off;
    int8_t *out = arena + p->out_off;
    int8_t *ring = arena + p->stem_ring_off;
    int16_t *row_states = (int16_t *)(void *)(arena + p->row_states_off);
    int16_t *col_states = (int16_t *)(void *)(arena + p->col_states_off);
    int16_t *summary = (int16_t *)(void *)(arena + p->summary_off);
    int16_t *scratch = (int16_t *)(void *)(arena + p->conv_scratch_off);
    const int32_t P = p->patch, S = p->stride, oh = p->oh, ow = p->ow;
    const int32_t h1 = p->rnn1.hidden, h2 = p->rnn2.hidden, cc = p->Cc;
    const int32_t ring_row = p->Wc * cc, frame_row = p->W * p->C_in;
    const int32_t pix = 4 * h2, out_row = (ow + 1) * pix;
    const int32_t ks = p->stem.kernel;
    int32_t next_row = 0, r, c, i, t;
    fd_cell_fast f1, f2;
    const int fast1 = fd_cell_fast_init(&p->rnn1, 0, &f1), fast2 = fd_cell_fast_init(&p->rnn2, 1, &f2);
    for (r = 0; r < oh; r++) {
        int32_t y = next_row > S * r ? next_row : S * r, next_col = 0;
        int8_t *orow = out + r * out_row;
        /* 1. the stem rows patch row r needs, and rnn1 along each per patch column */
        for (; y < S * r + P; y++) {
            const int8_t *rows[FD_MAX_KERNEL];
            int8_t *dst = ring + (y % P) * ring_row;
            int32_t ky;
            for (ky = 0; ky < ks; ky++) {
                const int32_t iy = y * p->stem.stride - p->stem.padding + ky;
                rows[ky] = (iy >= 0 && iy < p->H) ? frame + iy * frame_row : NULL;
            }
            fd_conv_row_s8(&p->stem, rows, p->W, dst, scratch);
            for (c = 0; c < ow; c++)
                rnn1_row(&p->rnn1, &f1, fast1, dst + S * c * cc, cc, P, row_states + ((y % P) * ow + c) * h1);
        }
        next_row = S * r + P;
        /* 2. per patch: rnn1 down the new columns, rnn2 over row and column states */
        for (c = 0; c < ow; c++) {
            const int8_t *xs[FD_MAX_PATCH];
            const int16_t *fw[FD_MAX_PATCH], *bw[FD_MAX_PATCH];
            int8_t *o = orow + c * pix;
            int32_t x = next_col > S * c ? next_col : S * c;
            for (; x < S * c + P; x++) {
                for (i = 0; i < P; i++)
                    xs[i] = ring + ((S * r + i) % P) * ring_row + x * cc;
                rnn1_col(&p->rnn1, &f1, fast1, xs, P, col_states + (x % P) * h1);
            }
            next_col = S * c + P;
            for (i = 0; i < P; i++) {
                fw[i] = row_states + (((S * r + i) % P) * ow + c) * h1;
                bw[P - 1 - i] = fw[i];
            }
            rnn2(&p->rnn2, &f2, fast2, fw, P, summary);
            rnn2(&p->rnn2, &f2, fast2, bw, P, summary + h2);
            for (i = 0; i < P; i++) {
                fw[i] = col_states + ((S * c + i) % P) * h1;
                bw[P - 1 - i] = fw[i];
            }
            rnn2(&p->rnn2, &f2, fast2, fw, P, summary + 2 * h2);
            rnn2(&p->rnn2, &f2, fast2, bw, P, summary + 3 * h2);
            for (t = 0; t < pix; t++)
                o[t] = (int8_t)fd_sat((int64_t)p->zp_out + fd_requantize(summary[t], p->out_multiplier, p->out_shift), -128, 127);
        }
        /* 3. replicate the last column */
        memcpy(orow + ow * pix, orow + (ow - 1) * pix, (size_t)pix);
    }
    /* replicate the last row */
    memcpy(out + oh * out_row, out + (oh - 1) * out_row, (size_t)out_row);
}

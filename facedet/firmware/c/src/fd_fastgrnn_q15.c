/*
 * fd_fastgrnn_q15: the FastGRNN cell over T int16 (Q15) input vectors from h = 0
 * (docs/quantization.md 4.3), and fd_fastgrnn_step, the one step both cell kernels use.
 *
 * Layouts: Wt [hidden][in], Ut [hidden][hidden] int16 (W and U transposed, so each
 * unit's weights are contiguous); bias_gate / bias_update [hidden] Q12 int32,
 * |bias| < 2^23.  States h [hidden] int16 Q15.  hidden <= FD_MAX_HIDDEN.
 * Per unit j:
 *   acc = (sum_i (x_i - zp) Wt[j][i]) * 2^x_shift + (sum_i h_i Ut[j][i]) * 2^h_shift   (int64)
 *   pre = sat(rshift_round(acc, pre_shift), -2^24, 2^24)                            (Q12)
 *   z = sigmoid_q15(pre + bias_gate[j]), c = tanh_q15(pre + bias_update[j])
 *   k = rshift_round(zeta * (32768 - z), 15) + nu
 *   h'_j = sat16(rshift_round(z * h_j + k * c, 15))
 * every unit from the old h (new states go to a stack buffer of hidden int16 first).
 * With zeta = 32768 and nu = 0 (every trained model), k = 32768 - z and z*h + k*c is
 * a convex combination bounded by 2^30: it is computed in int32 and stored with SSAT.
 * The two sums are fd_dot_s16_s16 (SMLALD on the M4); the step t == 0 skips U (h = 0).
 * This is the general path: when fd_cell_fast_init accepts the cell (every trained model),
 * fd_fastgrnn_q15 runs fd_cell_fast_q15 instead (fd_cell.h, fd_fastgrnn_fast.c).
 */
#include <string.h>

#include "fd_acle_emul.h"
#include "fd_cell.h"
#include "fd_kernels.h"

void fd_fastgrnn_step(const fd_cell_params *c, const int16_t *x, int32_t zp, int32_t first, int16_t *h)
{
    const int32_t nin = c->in, hidden = c->hidden;
    const int64_t xmul = (int64_t)1 << c->x_shift, hmul = (int64_t)1 << c->h_shift;
    const int32_t fast = c->zeta == 32768 && c->nu == 0;
    int16_t hn[FD_MAX_HIDDEN];
    int32_t j, i;
    for (j = 0; j < hidden; j++) {
        const int16_t *wj = c->Wt + j * nin;
        int64_t ax = fd_dot_s16_s16(x, wj, nin);
        int64_t acc;
        int32_t pre, z, cc, hj = h[j];
        if (zp != 0) {
            int32_t s = 0;
            for (i = 0; i < nin; i++)
                s += wj[i];
            ax -= (int64_t)zp * s;
        }
        acc = ax * xmul;
        if (!first)
            acc += fd_dot_s16_s16(h, c->Ut + j * hidden, hidden) * hmul;
        pre = fd_sat(fd_rshift_round(acc, (int)c->pre_shift), -(1 << 24), 1 << 24);
        z = fd_sigmoid_q15(pre + c->bias_gate[j]);
        cc = fd_tanh_q15(pre + c->bias_update[j]);
        if (fast) {
            const int32_t s = z * hj + (32768 - z) * cc; /* |s| <= 2^30 */
#if FD_USE_DSP
            hn[j] = (int16_t)__ssat(fd_asr32(s + (1 << 14), 15), 16);
#else
            hn[j] = (int16_t)fd_sat(fd_asr32(s + (1 << 14), 15), -32768, 32767);
#endif
        } else {
            const int64_t k = fd_rshift_round((int64_t)c->zeta * (32768 - z), 15) + c->nu;
            const int64_t s = (int64_t)z * hj + k * cc;
            hn[j] = (int16_t)fd_sat(fd_rshift_round(s, 15), -32768, 32767);
        }
    }
    memcpy(h, hn, (size_t)hidden * sizeof(int16_t));
}

void fd_fastgrnn_q15(const fd_cell_params *c, const int16_t *const *xs, int32_t T, int16_t *h)
{
    fd_cell_fast f;
    int32_t t;
    if (fd_cell_fast_init(c, 1, &f)) {
        fd_cell_fast_q15(&f, xs, T, h);
        return;
    }
    memset(h, 0, (size_t)c->hidden * sizeof(int16_t));
    for (t = 0; t < T; t++)
        fd_fastgrnn_step(c, xs[t], c->zp_x, t == 0, h);
}

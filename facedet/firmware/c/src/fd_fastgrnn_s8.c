/*
 * fd_fastgrnn_s8: the FastGRNN cell over T int8 input vectors from h = 0
 * (docs/quantization.md 4.3; layouts and arithmetic in fd_fastgrnn_q15.c).
 *
 * fd_fastgrnn_s8:      step t reads `in` int8 values at x + t*x_step (a run along a row).
 * fd_fastgrnn_s8_ptrs: step t reads them at xs[t] (a run down rows of a ring buffer).
 * Each step converts x - zp_x (in [-255, 255]) to int16 on the stack; in <= FD_MAX_HIDDEN.
 * The final state (int16 Q15) goes to h[hidden].
 * When fd_cell_fast_init accepts the cell (every trained model), fd_cell_fast_s8 runs the
 * sequence instead (fd_cell.h); otherwise the general step below.
 */
#include <string.h>

#include "fd_cell.h"
#include "fd_kernels.h"

static void run_s8(const fd_cell_params *c, const int8_t *x, int32_t x_step, const int8_t *const *xs, int32_t T, int16_t *h)
{
    int16_t xd[FD_MAX_HIDDEN];
    const int32_t nin = c->in, zp = c->zp_x;
    int32_t t, i;
    memset(h, 0, (size_t)c->hidden * sizeof(int16_t));
    for (t = 0; t < T; t++) {
        const int8_t *xt = xs != NULL ? xs[t] : x + t * x_step;
        for (i = 0; i < nin; i++)
            xd[i] = (int16_t)(xt[i] - zp);
        fd_fastgrnn_step(c, xd, 0, t == 0, h);
    }
}

void fd_fastgrnn_s8(const fd_cell_params *c, const int8_t *x, int32_t x_step, int32_t T, int16_t *h)
{
    fd_cell_fast f;
    if (fd_cell_fast_init(c, 0, &f))
        fd_cell_fast_s8(&f, x, x_step, NULL, T, h);
    else
        run_s8(c, x, x_step, NULL, T, h);
}

void fd_fastgrnn_s8_ptrs(const fd_cell_params *c, const int8_t *const *xs, int32_t T, int16_t *h)
{
    fd_cell_fast f;
    if (fd_cell_fast_init(c, 0, &f))
        fd_cell_fast_s8(&f, NULL, 0, xs, T, h);
    else
        run_s8(c, NULL, 0, xs, T, h);
}

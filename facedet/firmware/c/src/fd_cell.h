/*
 * facedet firmware: the FastGRNN cell's fast path (fd_fastgrnn_fast.c), internal to the kernels.
 *
 * fd_cell_fast_init checks once per cell whether the fast arithmetic below gives exactly the
 * result of docs/quantization.md 4.3 and prepares per-unit constants; the runners then do a
 * whole sequence.  fd_fastgrnn_s8 / _ptrs / _q15 use it per call, fd_stage_stem_pool once per
 * frame.  Conditions (otherwise the general path, fd_fastgrnn_step, runs):
 *   - zeta == 32768 and nu == 0 (every trained model): h' = (z*h + (32768 - z)*c + 2^14) >> 15
 *     in int32, never saturating;
 *   - hidden <= FD_CELL_FAST_HIDDEN, 1 <= in <= FD_MAX_HIDDEN, |bias| < 2^23 (the spec's bound);
 *   - with m = min(x_shift, h_shift): xs = x_shift - m <= 24, hs = h_shift - m <= 24 and
 *     n = pre_shift - m in [1, 31]; the sum (x*W << xs) + (h*U << hs), bounded with |W|, |U|
 *     <= 2^15 and the input range, stays below 2^(n+29); int8 inputs: also in*|x - zp|*2^15 < 2^31
 *     (that sum is int32);
 *   - int8 inputs: zp_x in [-128, 127]; int16 (Q15) inputs: zp_x == 0.
 * Then acc = 2^(n-1) + bias_gate*2^n + (x*W << xs) + (h*U << hs) (int64) and
 * ug = floor(acc / 2^n) = pre + bias_gate, exactly (the common 2^m cancels), with |ug| < 2^30.
 * The spec clamps pre to [-2^24, 2^24] before adding the biases; that changes no result,
 * because with |bias| < 2^23 both sides are then beyond 2^16, where sigmoid and tanh are
 * constant.  z = sigmoid(ug), c = tanh(ug + bias_update - bias_gate).
 */
#ifndef FD_CELL_H
#define FD_CELL_H

#include <stdint.h>

#include "fd_kernels.h"

#define FD_CELL_FAST_HIDDEN 16

typedef struct {
    int64_t r;   /* 2^(n-1) + bias_gate[j] * 2^n */
    int32_t bd;  /* bias_update[j] - bias_gate[j] */
    int32_t pre; /* scratch of a step: ug */
} fd_cell_unit;

typedef struct {
    const int16_t *Wt, *Ut;
    int32_t in, hidden, zp_x;
    int32_t xs, hs, n;  /* shifts after removing the common one */
    int32_t kernel;     /* step code: 0 any size, 1 int8 in 4 hidden 16, 2 int16 in 16 hidden 16 */
    fd_cell_unit unit[FD_CELL_FAST_HIDDEN];
} fd_cell_fast;

/* 1 and *f prepared when the fast path applies to c (q15: int16 inputs, else int8), else 0 */
int fd_cell_fast_init(const fd_cell_params *c, int q15, fd_cell_fast *f);

/* fd_fastgrnn_s8 (xs == NULL: step t at x + t*x_step) / fd_fastgrnn_s8_ptrs (step t at xs[t]);
 * the runners write the per-unit scratch in *f */
void fd_cell_fast_s8(fd_cell_fast *f, const int8_t *x, int32_t x_step, const int8_t *const *xs, int32_t T, int16_t *h);

/* fd_fastgrnn_q15 */
void fd_cell_fast_q15(fd_cell_fast *f, const int16_t *const *xs, int32_t T, int16_t *h);

#endif /* FD_CELL_H */

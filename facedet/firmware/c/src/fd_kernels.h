/*
 * facedet firmware kernels: the integer program of docs/quantization.md in C99.
 *
 * Every function here reproduces the Python interpreter (facedet/quant/interpreter.py)
 * bit for bit.  Conventions:
 *   - activations are int8, stored [H][W][C] (row-major, channels last);
 *   - conv weights are int8 OHWI [C_out][k][k][C_in] (groups == 1) or [C][k][k] (depthwise);
 *   - biases are int32 with the input zero point already folded in:
 *       bias[co] = bias_program[co] - zp_in * sum(weight[co])
 *     so a kernel sums x * w over every tap and reads zp_in for taps outside the input;
 *   - rounding is round-half-up (fd_rshift_round), every narrowing store saturates;
 *   - no malloc, no writable globals: buffers are passed in (arena pointers);
 *   - with __ARM_FEATURE_DSP (Cortex-M4) the hot loops use SMLAD/SMLALD/SXTB16/SSAT
 *     through ACLE intrinsics; otherwise the plain-C path runs (host build).  Both
 *     give identical results.
 */
#ifndef FD_KERNELS_H
#define FD_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#define FD_MAX_HIDDEN 64   /* largest RNN hidden size and rnn1 input size (per-step scratch lives on the stack) */
#define FD_MAX_KERNEL 7    /* largest convolution kernel in a stage (row-pointer arrays on the stack) */
#define FD_MAX_PATCH 16    /* largest RNNPool patch (sequence-pointer arrays on the stack) */

/* ------------------------------------------------------------------ arithmetic
 * fd_arith.h (static inline):
 *   int64_t fd_asr64(int64_t x, int n)             floor(x / 2^n), n >= 0, no implementation-defined >>
 *   int64_t fd_rshift_round(int64_t x, int n)      (x + 2^(n-1)) >> n, n >= 1 (round half up)
 *   int32_t fd_sat(int64_t x, int32_t lo, int32_t hi)
 *   int64_t fd_requantize(int32_t acc, int32_t m, int32_t n)   fd_rshift_round((int64_t)acc * m, n)
 */
#include "fd_arith.h"

/* ------------------------------------------------------------------ convolution */

typedef struct {
    int32_t in_channels, out_channels;  /* depthwise: in == out */
    int32_t kernel, stride, padding;
    int32_t zp_in, zp_out;
    int32_t act_min, act_max;           /* output clamp (int8 limits or ReLU6 bounds) */
    const int8_t *weight;               /* OHWI [C_out][k][k][C_in], depthwise [C][k][k] */
    const int32_t *bias;                /* [C_out], zero point folded (see above) */
    const int32_t *multiplier;          /* [C_out], in [0, 2^31) */
    const int8_t *shift;                /* [C_out], in [1, 62] */
} fd_conv_params;

/*
 * Gather the k x k x C_in neighbourhood of output pixel (oy, ox) into buf as int16,
 * in the tap order [ky][kx][ci] (the weight order of one output channel), with zp_in
 * for taps outside the input.  rows[ky] points at input row (oy*stride - padding + ky)
 * ([W][C_in] int8) or is NULL when that row is outside the input.  The DSP build may
 * store each group of four values permuted to match __sxtb16 lanes (a0 a2 a1 a3);
 * fd_dot_s16_s8 reads buf in the same layout.  Returns the element count
 * k*k*C_in (buf must hold fd_im2col_get_buffer_size(p) bytes).
 */
int32_t fd_im2col_s8_s16(const fd_conv_params *p, const int8_t *const *rows, int32_t in_width, int32_t ox, int16_t *buf);
int32_t fd_im2col_get_buffer_size(const fd_conv_params *p);

/* sum_i buf[i] * w[i] over n values (n as returned by fd_im2col_s8_s16 or fd_vector_s8_s16). */
int32_t fd_dot_s16_s8(const int16_t *buf, const int8_t *w, int32_t n);

/* Two output channels at once: *acc0 = sum buf[i]*w0[i], *acc1 = sum buf[i]*w1[i] (shared buf loads). */
void fd_dot2_s16_s8(const int16_t *buf, const int8_t *w0, const int8_t *w1, int32_t n, int32_t *acc0, int32_t *acc1);

/* An int8 vector to int16 in the layout fd_dot_s16_s8 expects (1x1 convolutions). */
void fd_vector_s8_s16(const int8_t *x, int32_t n, int16_t *buf);

/* out = sat(zp_out + requantize(acc, multiplier[co], shift[co]), act_min, act_max) */
int8_t fd_requant_store_s8(const fd_conv_params *p, int32_t co, int32_t acc);

/*
 * One output row of a k x k convolution (groups == 1): rows[] as for fd_im2col_s8_s16,
 * out is [W_out][C_out].  scratch: fd_im2col_get_buffer_size(p) bytes.
 */
void fd_conv_row_s8(const fd_conv_params *p, const int8_t *const *rows, int32_t in_width, int8_t *out, int16_t *scratch);

/*
 * 1x1 convolution of n pixels: in [n][C_in] -> out [n][C_out].  scratch: 2*C_in bytes.
 * in and out may be the same buffer only when C_out <= C_in (each pixel is converted
 * to scratch before its outputs are stored).
 */
void fd_conv1x1_s8(const fd_conv_params *p, const int8_t *in, int32_t n, int8_t *out, int16_t *scratch);

/*
 * Depthwise k x k convolution of one output pixel (oy, ox): rows[ky] as above ([W][C]
 * int8, NULL outside), out is [C] int8.
 */
void fd_dwconv_pixel_s8(const fd_conv_params *p, const int8_t *const *rows, int32_t in_width, int32_t ox, int8_t *out);

/* ------------------------------------------------------------------ add, l2norm, maxout */

typedef struct {
    int32_t zp_a, zp_b, mult_a, mult_b, shift, zp_out;
} fd_add_params;

/* out[i] = sat8(zp_out + rshift_round((a[i]-zp_a)*mult_a + (b[i]-zp_b)*mult_b, shift)); out may alias a or b */
void fd_add_s8(const fd_add_params *p, const int8_t *a, const int8_t *b, int32_t n, int8_t *out);

typedef struct {
    int32_t channels, zp_in, zp_out, shift;  /* shift in [31, 62] */
    const int32_t *gain;                     /* [C] */
} fd_l2norm_params;

/* floor(sqrt(x)) exactly, for any uint64 x */
uint32_t fd_isqrt_u64(uint64_t x);

/* L2Norm of n pixels [n][C] -> [n][C] (docs/quantization.md §4.6); out may alias in */
void fd_l2norm_s8(const fd_l2norm_params *p, const int8_t *in, int32_t n, int8_t *out);

/* ------------------------------------------------------------------ sigmoid, tanh, FastGRNN */

/* Q12 in, Q15 out: sigmoid in [0, 32768], tanh in [-32767, 32767] (docs §5) */
int32_t fd_sigmoid_q15(int32_t u);
int32_t fd_tanh_q15(int32_t u);

typedef struct {
    int32_t in, hidden;                      /* hidden <= FD_MAX_HIDDEN */
    const int16_t *Wt;                       /* [hidden][in]: W transposed */
    const int16_t *Ut;                       /* [hidden][hidden]: U transposed */
    const int32_t *bias_gate, *bias_update;  /* [hidden], Q12 */
    int32_t x_shift, h_shift, pre_shift;
    int32_t zeta, nu;                        /* Q15 in [0, 32768] */
    int32_t zp_x;
} fd_cell_params;

/*
 * The cell over T steps from h = 0 (docs §4.3): step t reads `in` int8 values at
 * x + t*x_step.  The final state (int16 Q15) goes to h[hidden].
 */
void fd_fastgrnn_s8(const fd_cell_params *c, const int8_t *x, int32_t x_step, int32_t T, int16_t *h);

/* The same with int16 inputs: step t reads `in` values at xs[t]. */
void fd_fastgrnn_q15(const fd_cell_params *c, const int16_t *const *xs, int32_t T, int16_t *h);

/* fd_fastgrnn_s8 with step t reading `in` int8 values at xs[t] (columns of a row ring). */
void fd_fastgrnn_s8_ptrs(const fd_cell_params *c, const int8_t *const *xs, int32_t T, int16_t *h);

/*
 * Helpers of the two cell kernels.  fd_fastgrnn_step: one step, h[hidden] updated in
 * place from the int16 input x[in] minus zp (x - zp is the cell's x - zp_x); first != 0
 * skips the U product (h == 0 at the first step).  fd_dot_s16_s16: sum a[i]*b[i], 64-bit.
 */
void fd_fastgrnn_step(const fd_cell_params *c, const int16_t *x, int32_t zp, int32_t first, int16_t *h);
int64_t fd_dot_s16_s16(const int16_t *a, const int16_t *b, int32_t n);

/* ------------------------------------------------------------------ streamed stages */

/*
 * Stem convolution + RNNPool + replicate pad (facedet/quant/plan.py, stage "stem_pool").
 * The frame [H][W][C_in] is at arena + frame_off; the output [oh+1][ow+1][4*h2] goes to
 * arena + out_off, which may be frame_off: output row r is written only after every
 * stem row patch row r needs is made, and the plan checked that no later stem row
 * reads the frame bytes it covers.  Order of work, for r = 0 .. oh-1:
 *   1. make the stem rows patch row r needs that are not in the ring yet (all `patch`
 *      rows for r = 0, then `stride` new rows), each into ring slot (row % patch); for
 *      each new stem row, run rnn1 along it once per patch column c (pixels
 *      stride*c .. stride*c+patch-1) into row_states[(row % patch)][c][h1];
 *   2. for c = 0 .. ow-1: run rnn1 down each image column of patch c not yet done for
 *      this patch row (all `patch` columns for c = 0, then `stride` new ones), over
 *      stem rows stride*r .. stride*r+patch-1, into col_states[(col % patch)][h1];
 *      then rnn2 forward and backward over the patch's row states (rows stride*r+i,
 *      i = 0..patch-1, column c) and over its column states (columns stride*c+j), into
 *      summary[4*h2] (Q15), and store out[r][c][:] = sat8(zp_out + requantize(summary,
 *      out_multiplier, out_shift));
 *   3. out[r][ow] = out[r][ow-1] (replicate column).
 * Finally out[oh] = out[oh-1] (replicate row).  Buffers (sizes as the plan gives them):
 * stem ring patch*Wc*Cc int8, row_states patch*ow*h1 int16, col_states patch*h1 int16,
 * summary 4*h2 int16, and conv_scratch (fd_im2col_get_buffer_size(&stem) bytes) for
 * fd_conv_row_s8, which makes the stem rows.
 */
typedef struct {
    int32_t H, W, C_in;                 /* frame */
    fd_conv_params stem;                /* stem convolution, groups == 1 */
    int32_t Hc, Wc, Cc;                 /* stem output size */
    int32_t patch, stride, oh, ow;      /* RNNPool grid (before the pad) */
    fd_cell_params rnn1, rnn2;
    int32_t out_multiplier, out_shift, zp_out;
    uint32_t frame_off, out_off, stem_ring_off, row_states_off, col_states_off, summary_off, conv_scratch_off;
} fd_stem_pool_params;
void fd_stage_stem_pool(const fd_stem_pool_params *p, int8_t *arena);

/*
 * Inverted residual block (stage "mbconv"): expand 1x1 (optional) -> depthwise k x k
 * -> project 1x1 (-> residual add).  Input [H][W][C_in] at in_off, output
 * [H_out][W_out][C_out] at out_off (may equal in_off when the plan allows it).  For each
 * output row y: expand every input row up to min(H, y*s - p + k) - 1 not yet expanded
 * into ring slot (row % k) ([W][hidden] int8; without expand the ring holds copies of
 * the input rows); then for each output pixel x: depthwise into vec[hidden], project to
 * the C_out outputs, add the residual input pixel (y, x) if has_add, and store.  A
 * residual block stores pixel (y, x) over input pixel (y, x) only after reading it.
 * Buffers: ring k*W*hidden int8 at ring_off, vec hidden int8 at vec_off, and
 * max(2*C_in, 2*hidden) bytes of int16 scratch at scratch_off.
 */
typedef struct {
    int32_t H, W, C_in, H_out, W_out, C_out, hidden;
    int32_t has_expand, has_add;
    fd_conv_params expand, depthwise, project;
    fd_add_params add;                  /* a = the block input, b = the projection */
    uint32_t in_off, out_off, ring_off, vec_off, scratch_off;
} fd_mbconv_params;
void fd_stage_mbconv(const fd_mbconv_params *p, int8_t *arena);

/*
 * Detection head (stage "head"): optional L2Norm, then k x k 'same' confidence and box
 * convolutions (stride 1) and optional max-out.  Source [H][W][C] at in_off.  L2Norm
 * rows are made on demand into a ring of k rows ([W][C] int8 at ring_off); each output
 * pixel gathers its neighbourhood once (fd_im2col_s8_s16, scratch at patch_off) and
 * computes every confidence and box channel.  conf_out gets [H*W][2] (after max-out:
 * [max(c_0..c_{n-2}), c_{n-1}]; without max-out the conv has 2 channels), loc_out
 * [H*W][4].  The conf and loc convolutions share zp_in (the source's zero point).
 */
typedef struct {
    int32_t H, W, C;
    int32_t has_norm, maxout;
    fd_l2norm_params norm;
    fd_conv_params conf, loc;
    uint32_t in_off, ring_off, patch_off;
} fd_head_params;
void fd_stage_head(const fd_head_params *p, int8_t *arena, int8_t *conf_out, int8_t *loc_out);

#endif /* FD_KERNELS_H */

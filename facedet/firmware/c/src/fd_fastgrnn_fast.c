/*
 * fd_fastgrnn_fast: the FastGRNN cell's fast path (conditions and arithmetic in fd_cell.h).
 *
 * Per unit j of a step: acc = unit[j].r + (x.Wt[j] << xs) + (h.Ut[j] << hs) (int64),
 * ug = floor(acc / 2^n) from the two words of acc (n <= 31, the result fits int32),
 * z = sigmoid(ug), c = tanh(ug + unit[j].bd), h'_j = (z*(h_j - c) + c*2^15 + 2^14) >> 15.
 * The states live in two aligned stack buffers (old, new) that swap every step; the first
 * step skips the U product (h = 0).
 *
 * Step code: any size (loops; DSP: SMLALD on word pairs), and on the DSP path two unrolled
 * ones for RNNPool's cells (Wt, Ut word aligned): int8 input 4 x hidden 16 (rnn1: the x sum
 * is SMUAD+SMLAD in int32, then SMLAL by 2^xs; needs hs == 0) and int16 input 16 x hidden 16
 * (rnn2: SMLALD chains over x and h; needs hs == 0; xs == 0 makes them one chain).  Their
 * word loads are LDRD (fd_ldrd_s16).
 */
#include <string.h>

#include "fd_acle_emul.h"
#include "fd_cell.h"
#include "fd_conv_inner.h"
#include "fd_kernels.h"
#include "fd_nonlin.h"

/* floor(acc / 2^n) for 1 <= n <= 31 when it fits int32: bits n .. n+31 of acc */
static inline int32_t floor_shift(int64_t acc, int32_t n)
{
    const uint64_t u = (uint64_t)acc;
    return fd_u32_to_s32(((uint32_t)u >> n) | ((uint32_t)(u >> 32) << (32 - n)));
}

/* the new state (z*h + (32768 - z)*c + 2^14) >> 15 with k14 == 2^14 (a parameter, so that a
 * caller can keep it in a register); |z*(h - c)| < 2^31 and the sum is at most 2^30 */
static inline int32_t update(int32_t z, int32_t hj, int32_t c, int32_t k14)
{
    return fd_asr32(z * (hj - c) + (c * 32768 + k14), 15);
}

/* sum a[i]*b[i], n >= 0 values, 64-bit */
static inline int64_t dot64(const int16_t *a, const int16_t *b, int32_t n)
{
    int64_t acc = 0;
    int32_t i = 0;
#if FD_USE_DSP
    for (; i + 2 <= n; i += 2)
        acc = __smlald(fd_ld32(a + i), fd_ld32(b + i), acc);
#endif
    for (; i < n; i++)
        acc += (int32_t)a[i] * b[i];
    return acc;
}

int fd_cell_fast_init(const fd_cell_params *c, int q15, fd_cell_fast *f)
{
    const int32_t nin = c->in, hid = c->hidden;
    int32_t m, j;
    uint64_t xmax, bx, bh;
    if (c->zeta != 32768 || c->nu != 0 || hid < 1 || hid > FD_CELL_FAST_HIDDEN || nin < 1 || nin > FD_MAX_HIDDEN)
        return 0;
    if (c->x_shift < 0 || c->h_shift < 0 || c->pre_shift < 1)
        return 0;
    m = c->x_shift < c->h_shift ? c->x_shift : c->h_shift;
    f->xs = c->x_shift - m;
    f->hs = c->h_shift - m;
    f->n = c->pre_shift - m;
    if (f->n < 1 || f->n > 31 || f->xs > 24 || f->hs > 24)
        return 0;
    if (q15) {
        if (c->zp_x != 0)
            return 0;
        xmax = 32768u;
    } else {
        if (c->zp_x < -128 || c->zp_x > 127) /* x - zp_x in [-255, 255], an int16 */
            return 0;
        xmax = (uint64_t)(c->zp_x < 0 ? 127 - c->zp_x : 128 + c->zp_x);
    }
    bx = (uint64_t)nin * xmax * 32768u;              /* < 2^37 */
    bh = (uint64_t)hid * 32768u * 32768u;            /* < 2^35 */
    if (!q15 && bx >= ((uint64_t)1 << 31))
        return 0;
    if (((bx << f->xs) + (bh << f->hs)) >> f->n >= ((uint64_t)1 << 29))
        return 0;
    for (j = 0; j < hid; j++) {
        const int32_t bg = c->bias_gate[j], bu = c->bias_update[j];
        if (bg <= -(1 << 23) || bg >= (1 << 23) || bu <= -(1 << 23) || bu >= (1 << 23))
            return 0;
        f->unit[j].r = ((int64_t)1 << (f->n - 1)) + (int64_t)bg * ((int64_t)1 << f->n);
        f->unit[j].bd = bu - bg;
        f->unit[j].pre = 0;
    }
    f->Wt = c->Wt;
    f->Ut = c->Ut;
    f->in = nin;
    f->hidden = hid;
    f->zp_x = c->zp_x;
    f->kernel = 0;
#if FD_USE_DSP
    if ((((uintptr_t)c->Wt | (uintptr_t)c->Ut) & 3u) == 0 && hid == 16) {
        if (!q15 && nin == 4 && f->hs == 0)
            f->kernel = 1;
        else if (q15 && nin == 16 && f->hs == 0)
            f->kernel = 2;
    }
#endif
    return 1;
}

/* ------------------------------------------------------------------ any size */

/* one step: x[in] (int8 inputs: x - zp_x), h[hidden] the old state (unused when first) */
FD_INLINE void step_any(const fd_cell_fast *f, const int16_t *x, const int16_t *h, int first, int16_t *hn)
{
    const int32_t nin = f->in, hid = f->hidden, n = f->n;
    const int64_t xmul = (int64_t)1 << f->xs, hmul = (int64_t)1 << f->hs;
    const int16_t *w = f->Wt, *u = f->Ut;
    const uint16_t *const sig = fd_nonlin_sigmoid_table;
    const int16_t *const tnh = fd_nonlin_tanh_table;
    int32_t j;
    for (j = 0; j < hid; j++, w += nin, u += hid) {
        int64_t acc = f->unit[j].r + dot64(x, w, nin) * xmul;
        int32_t ug, z, c;
        if (!first)
            acc += dot64(h, u, hid) * hmul;
        ug = floor_shift(acc, n);
        z = fd_sigmoid_q15_in(ug, sig);
        c = fd_tanh_q15_in(ug + f->unit[j].bd, tnh);
        hn[j] = (int16_t)update(z, first ? 0 : h[j], c, 16384);
    }
}

/* int8 inputs at x8 + t*x_step or xs8[t], or int16 inputs at xs16[t] */
static void run_any(const fd_cell_fast *f, const int8_t *x8, int32_t x_step, const int8_t *const *xs8,
                    const int16_t *const *xs16, int32_t T, int16_t *h)
{
    int16_t hb[2][FD_CELL_FAST_HIDDEN], xd[FD_MAX_HIDDEN];
    const int32_t nin = f->in, zp = f->zp_x;
    int32_t t, i;
    for (t = 0; t < T; t++) {
        const int16_t *xt;
        if (xs16 != NULL) {
            xt = xs16[t];
        } else {
            const int8_t *x = xs8 != NULL ? xs8[t] : x8 + t * x_step;
            for (i = 0; i < nin; i++)
                xd[i] = (int16_t)(x[i] - zp);
            xt = xd;
        }
        if (t == 0)
            step_any(f, xt, NULL, 1, hb[0]);
        else
            step_any(f, xt, hb[(t - 1) & 1], 0, hb[t & 1]);
    }
    if (T > 0)
        memcpy(h, hb[(T - 1) & 1], (size_t)f->hidden * sizeof(int16_t));
    else
        memset(h, 0, (size_t)f->hidden * sizeof(int16_t));
}

/* ------------------------------------------------------------------ RNNPool's two cells (DSP) */

#if FD_USE_DSP
/*
 * A step in passes over the 16 units, each straight-line code (every address an immediate
 * offset), so that no pass needs more registers than the M4 has (FD_SEQ, a compiler barrier,
 * keeps the scheduler from interleaving units, which would spill):
 *   pass_x4   (rnn1)  init[j] = unit[j].r + (x.W_j << xs)   (first step: unit[j].pre directly)
 *   pass_u16  (rnn1)  unit[j].pre = floor((init[j] + h.U_j) / 2^n)
 *   pass_q15  (rnn2)  unit[j].pre = floor((unit[j].r + x.W_j + h.U_j) / 2^n)
 *   nonlin16          h'_j from unit[j].pre, unit[j].bd and h_j (h == 0 on the first step)
 */
#if defined(__GNUC__)
#define FD_OPAQUE(x) __asm__("" : "+r"(x))
#else
#define FD_OPAQUE(x) ((void)0)
#endif

#define FD_REP16(M) M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7) M(8) M(9) M(10) M(11) M(12) M(13) M(14) M(15)

/* acc += the 16 products of hp[0..15] and the 16 values at byte offset uoff of up (both word aligned) */
#define DOT16(acc, hp, up, uoff)                                                                    \
    do {                                                                                            \
        int32_t a0_, a1_, b0_, b1_;                                                                 \
        fd_ldrd_s16(up, (uoff), a0_, a1_);                                                          \
        fd_ldrd_s16(hp, 0, b0_, b1_);                                                               \
        acc = __smlald(a0_, b0_, acc);                                                              \
        acc = __smlald(a1_, b1_, acc);                                                              \
        fd_ldrd_s16(up, (uoff) + 8, a0_, a1_);                                                      \
        fd_ldrd_s16(hp, 8, b0_, b1_);                                                               \
        acc = __smlald(a0_, b0_, acc);                                                              \
        acc = __smlald(a1_, b1_, acc);                                                              \
        fd_ldrd_s16(up, (uoff) + 16, a0_, a1_);                                                     \
        fd_ldrd_s16(hp, 16, b0_, b1_);                                                              \
        acc = __smlald(a0_, b0_, acc);                                                              \
        acc = __smlald(a1_, b1_, acc);                                                              \
        fd_ldrd_s16(up, (uoff) + 24, a0_, a1_);                                                     \
        fd_ldrd_s16(hp, 24, b0_, b1_);                                                              \
        acc = __smlald(a0_, b0_, acc);                                                              \
        acc = __smlald(a1_, b1_, acc);                                                              \
    } while (0)

/* rnn1's x part, x01 = (x0, x1), x23 = (x2, x3) (x - zp) */
#define X4_UNIT(j)                                                                                  \
    {                                                                                               \
        int32_t w01, w23;                                                                           \
        int64_t acc;                                                                                \
        fd_ldrd_s16(w, 8 * (j), w01, w23);                                                          \
        acc = pu[j].r + (int64_t)__smlad(x23, w23, __smuad(x01, w01)) * xmul;                       \
        if (first)                                                                                  \
            pu[j].pre = floor_shift(acc, n);                                                        \
        else                                                                                        \
            init[j] = acc;                                                                          \
    }

FD_INLINE void pass_x4(fd_cell_fast *f, int32_t x01, int32_t x23, int first, int64_t *init)
{
    const int16_t *const w = f->Wt;
    fd_cell_unit *const pu = f->unit;
    const int32_t n = f->n, xmul = (int32_t)1 << f->xs;
    FD_REP16(X4_UNIT)
}

#define U16_UNIT(j)                                                                                 \
    {                                                                                               \
        int64_t acc = init[j];                                                                      \
        DOT16(acc, h, u, 32 * (j));                                                                 \
        pu[j].pre = floor_shift(acc, n);                                                            \
        FD_SEQ();                                                                                   \
    }

/* h[16] word aligned */
FD_NOINLINE static void pass_u16(fd_cell_fast *f, const int64_t *init, const int16_t *h)
{
    const int16_t *const u = f->Ut;
    fd_cell_unit *const pu = f->unit;
    const int32_t n = f->n;
    FD_REP16(U16_UNIT)
}

/* shifted: the x product in its own accumulator, added as ax * 2^xs (UMLAL + MLA); else one chain */
#define Q15_UNIT(j)                                                                                 \
    {                                                                                               \
        int64_t acc = pu[j].r;                                                                      \
        if (shifted) {                                                                              \
            int64_t ax = 0;                                                                         \
            DOT16(ax, x, w, 32 * (j));                                                              \
            acc = add_scaled(acc, ax, xmul);                                                        \
        } else {                                                                                    \
            DOT16(acc, x, w, 32 * (j));                                                             \
        }                                                                                           \
        if (h != NULL)                                                                              \
            DOT16(acc, h, u, 32 * (j));                                                             \
        pu[j].pre = floor_shift(acc, n);                                                            \
        FD_SEQ();                                                                                   \
    }

/* acc + a * m for 0 < m <= 2^24: the low word unsigned (UMLAL), the high word's product mod 2^32 */
static inline int64_t add_scaled(int64_t acc, int64_t a, uint32_t m)
{
    const uint64_t ua = (uint64_t)a;
    const uint64_t r = (uint64_t)acc + (uint64_t)(uint32_t)ua * m + ((uint64_t)((uint32_t)(ua >> 32) * m) << 32);
    return r < 0x8000000000000000u ? (int64_t)r : -(int64_t)~r - 1; /* the int64 with r's bits */
}

/* rnn2: x[16], h[16] (NULL on the first step) word aligned; shifted: xs > 0 (hs == 0 always).
 * The m4 model has xs == 0 (one chain); the kernel tests' random m4 model has xs == 1. */
FD_INLINE void pass_q15(fd_cell_fast *f, const int16_t *x, const int16_t *h, int shifted)
{
    const int16_t *const w = f->Wt, *const u = f->Ut;
    fd_cell_unit *const pu = f->unit;
    const int32_t n = f->n;
    const uint32_t xmul = (uint32_t)1 << f->xs;
    FD_REP16(Q15_UNIT)
}

FD_NOINLINE static void pass_q15_first(fd_cell_fast *f, const int16_t *x)
{
    if (f->xs != 0)
        pass_q15(f, x, NULL, 1);
    else
        pass_q15(f, x, NULL, 0);
}

FD_NOINLINE static void pass_q15_next(fd_cell_fast *f, const int16_t *x, const int16_t *h)
{
    if (f->xs != 0)
        pass_q15(f, x, h, 1);
    else
        pass_q15(f, x, h, 0);
}

#define NL_UNIT(j)                                                                                  \
    {                                                                                               \
        const int32_t ug = pu[j].pre;                                                               \
        const int32_t z = fd_sigmoid_q15_k(ug, ks, sig), c = fd_tanh_q15_k(ug + pu[j].bd, kt, tnh);  \
        hn[j] = (int16_t)update(z, h != NULL ? h[j] : 0, c, k14);                                   \
    }

/* hn[j] = update(sigmoid(pre_j), h[j], tanh(pre_j + bd_j)); h == NULL: h = 0.  The constants
 * are opaque to the compiler so that they stay in registers (SMLAD/ADD register operands). */
FD_INLINE void nonlin16(const fd_cell_unit *pu, const int16_t *h, int16_t *hn)
{
    const uint16_t *const sig = fd_nonlin_sigmoid_table;
    const int16_t *const tnh = fd_nonlin_tanh_table;
    int32_t ks = FD_SIGMOID_K, kt = FD_TANH_K, k14 = 16384;
    FD_OPAQUE(ks);
    FD_OPAQUE(kt);
    FD_OPAQUE(k14);
    FD_REP16(NL_UNIT)
}

FD_NOINLINE static void nonlin16_first(const fd_cell_unit *pu, int16_t *hn)
{
    nonlin16(pu, NULL, hn);
}

FD_NOINLINE static void nonlin16_next(const fd_cell_unit *pu, const int16_t *h, int16_t *hn)
{
    nonlin16(pu, h, hn);
}

static inline void x4(const int8_t *x, int32_t zp, int32_t *x01, int32_t *x23)
{
    const uint32_t d0 = (uint16_t)(x[0] - zp), d1 = (uint16_t)(x[1] - zp), d2 = (uint16_t)(x[2] - zp), d3 = (uint16_t)(x[3] - zp);
    *x01 = fd_u32_to_s32(d0 | (d1 << 16));
    *x23 = fd_u32_to_s32(d2 | (d3 << 16));
}

static void run_s8_4x16(fd_cell_fast *f, const int8_t *x, int32_t x_step, const int8_t *const *xs, int32_t T, int16_t *h)
{
    union {
        int16_t v[2][16];
        int32_t align;
    } hb;
    int64_t init[16];
    const int32_t zp = f->zp_x;
    int32_t t, x01, x23;
    if (T <= 0) {
        memset(h, 0, 16 * sizeof(int16_t));
        return;
    }
    x4(xs != NULL ? xs[0] : x, zp, &x01, &x23);
    pass_x4(f, x01, x23, 1, init);
    nonlin16_first(f->unit, hb.v[0]);
    for (t = 1; t < T; t++) {
        x4(xs != NULL ? xs[t] : x + t * x_step, zp, &x01, &x23);
        pass_x4(f, x01, x23, 0, init);
        pass_u16(f, init, hb.v[(t - 1) & 1]);
        nonlin16_next(f->unit, hb.v[(t - 1) & 1], hb.v[t & 1]);
    }
    memcpy(h, hb.v[(T - 1) & 1], 16 * sizeof(int16_t));
}

static void run_q15_16x16(fd_cell_fast *f, const int16_t *const *xs, int32_t T, int16_t *h)
{
    union {
        int16_t v[2][16];
        int32_t align;
    } hb;
    union {
        int16_t v[16];
        int32_t align;
    } xb;
    int32_t t;
    if (T <= 0) {
        memset(h, 0, 16 * sizeof(int16_t));
        return;
    }
    for (t = 0; t < T; t++) {
        const int16_t *xt = xs[t];
        if (((uintptr_t)xt & 3u) != 0) {
            memcpy(xb.v, xt, sizeof(xb.v));
            xt = xb.v;
        }
        if (t == 0) {
            pass_q15_first(f, xt);
            nonlin16_first(f->unit, hb.v[0]);
        } else {
            pass_q15_next(f, xt, hb.v[(t - 1) & 1]);
            nonlin16_next(f->unit, hb.v[(t - 1) & 1], hb.v[t & 1]);
        }
    }
    memcpy(h, hb.v[(T - 1) & 1], 16 * sizeof(int16_t));
}
#endif

/* ------------------------------------------------------------------ entry points */

void fd_cell_fast_s8(fd_cell_fast *f, const int8_t *x, int32_t x_step, const int8_t *const *xs, int32_t T, int16_t *h)
{
#if FD_USE_DSP
    if (f->kernel == 1) {
        run_s8_4x16(f, x, x_step, xs, T, h);
        return;
    }
#endif
    run_any(f, x, x_step, xs, NULL, T, h);
}

void fd_cell_fast_q15(fd_cell_fast *f, const int16_t *const *xs, int32_t T, int16_t *h)
{
#if FD_USE_DSP
    if (f->kernel == 2) {
        run_q15_16x16(f, xs, T, h);
        return;
    }
#endif
    run_any(f, NULL, 0, NULL, xs, T, h);
}

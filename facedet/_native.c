/* facedet's native inference kernels (float32, CPU), built by setup.py as the optional extension
 * facedet._native and loaded by facedet/native.py:
 *
 *   rnnpool  the whole RNNPool operator over a map (RNN1 and RNN2 over every patch, plus the
 *            replicate pad of RNNPoolLayer), the arithmetic of facedet/rnnpool/rnnpool.py
 *            (RNNPool.forward_map, FastGRNNCell._forward_inference) regrouped;
 *   conv2d   direct convolution (groups 1 or depthwise) with folded bias and optional ReLU6;
 *   l2norm   facedet.graph.L2Norm.
 *
 * Arithmetic runs in GCC/Clang vector extensions, 8 float lanes; on x86 an AVX2+FMA variant is
 * compiled next to the baseline one and chosen at import from the CPU's flags (no -march needed).
 * The module links only libc, libm and pthreads and takes raw float32 pointers (integers) from the
 * Python wrappers (facedet/rnnpool/fused.py, facedet/detector/fast.py), which check shapes, dtypes
 * and contiguity.
 *
 * RNNPool layout of the work, per image (k input channels, patch ph x pw, stride sh x sw, grid
 * oh x ow, RNN1 of h1 units, RNN2 of h2 units):
 *
 *   A. input projections x W1, once per pixel (a pixel is in up to four RNN1 sequences when the
 *      stride is half the patch):  XC[y][u][x] (lanes along x), XR[x][u][y] (lanes along y);
 *   B. RNN1 down every column window of every patch row (XC, lanes over columns x) and along every
 *      row window of every patch column (XR, lanes over rows y).  The final states are projected by
 *      W2 at once (each feeds four RNN2 sequences) and stored split by stride phase,
 *          CP[i][v][x % sw][x / sw]  (column states of patch row i),
 *          RP[j][v][y % sh][y / sh]  (row states of patch column j),
 *      so that stage C reads the states of eight neighbouring patches as one contiguous vector;
 *   C. RNN2 forward and backward over the row states (RP, lanes over patch rows i) and the column
 *      states (CP, lanes over patch columns j) of every patch, written into the [4*h2, OH, OW]
 *      output: rows fwd, rows bwd, cols fwd, cols bwd.
 *
 * Eight sequences of one window run side by side, one per lane, and two such blocks at a time (two
 * independent recurrences for the core to overlap).  Every initial state is zero.  exp is Cephes'
 * expf (about 1 ulp); see gate() for how sigmoid and tanh are formed from it.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if !defined(_WIN32)
#include <pthread.h>
#define FD_THREADS 1
#endif

#define LANES 8
#define MAX_THREADS 64
typedef float v8 __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));

#define FD_INLINE static inline __attribute__((always_inline))

static int round_up(int n, int m) { return (n + m - 1) / m * m; }

FD_INLINE v8 vld(const float *p) {
    v8 v;
    memcpy(&v, p, sizeof v);
    return v;
}

FD_INLINE void vst(float *p, v8 v) { memcpy(p, &v, sizeof v); }

FD_INLINE v8 vset(float s) {
    /* -0 + s == s exactly, so the compiler folds the add away and keeps one broadcast */
    const v8 mz = {-0.0f, -0.0f, -0.0f, -0.0f, -0.0f, -0.0f, -0.0f, -0.0f};
    return mz + s;
}

FD_INLINE v8 vmin(v8 a, v8 b) {
    v8i m = a < b;
    return (v8)(((v8i)a & m) | ((v8i)b & ~m));
}

FD_INLINE v8 vmax(v8 a, v8 b) {
    v8i m = a > b;
    return (v8)(((v8i)a & m) | ((v8i)b & ~m));
}

/* exp(-x) for x in [-88, 87]: Cephes expf (range reduction by ln 2 in two parts, a degree-5
 * polynomial on [-ln2/2, ln2/2], odd coefficients' signs flipped for the negated argument), about
 * 1 ulp.  Adding 2^23 + 127 rounds -x log2(e) to an integer n and leaves n + 127 in the low mantissa
 * bits, which one shift turns into the float 2^n. */
FD_INLINE v8 vexp_neg(v8 x) {
    const v8 magic = vset(8388735.0f);
    v8 t = x * vset(-1.44269504088896341f) + magic; /* n + 127 + 2^23, n = round(-x log2 e) */
    v8 n = t - magic;
    v8 u = x + n * vset(0.693359375f); /* u = -r */
    u = u + n * vset(-2.12194440e-4f);
    v8 p = vset(-1.9875691500e-4f);
    p = p * u + vset(1.3981999507e-3f);
    p = p * u + vset(-8.3334519073e-3f);
    p = p * u + vset(4.1665795894e-2f);
    p = p * u + vset(-1.6666665459e-1f);
    p = p * u + vset(5.0000001201e-1f);
    p = p * (u * u) + (vset(1.0f) - u);
    return p * (v8)((v8i)t << 23);
}

/* ------------------------------------------------------------------------------------------------
 * FastGRNN cell */

#define ONE_EXP_CLAMP 20.0f
#define ONE_EXP_MAX_GAP 10.0f

typedef struct {
    const float *W, *U, *bg, *bh; /* W [in][hidden], U [hidden][hidden], biases [hidden] */
    float sz, sn;                 /* sigmoid(zeta), sigmoid(nu) */
    int one_exp;
    float M[256];   /* exp(2 (b_gate - b_update)) per unit, one-exp form */
    float bin[256]; /* added to the input projections: b_gate in the one-exp form, else 0 */
} Cell;

/* The new state of unit u from its pre-activation a = x W + h U and its previous state hp.
 *
 * One-exp form, when |b_gate - b_update| <= 10 for every unit (b_gate is then added to the input
 * projections once, Cell.bin): g = a + b_gate is clamped to
 * [-20, 20], where sigmoid is within 2e-9 of 0 or 1 and, the bias gap being bounded, the candidate's
 * argument is past +-10, where tanh is +-1 in float.  With E = exp(-g), Q = E^2 M = exp(-2 (a + b_update)),
 * d1 = 1 + E, d2 = 1 + Q and r = 1 / (d1 d2) (d1 d2 < e^80: no overflow):
 *     z = sigmoid(g) = 1 / d1 = d2 r,   h~ = tanh(a + b_update) = (1 - Q) / d2 = (1 - Q) d1 r,
 * one exp and one division per unit and step.  Two-exp form otherwise: each gate from its own exp,
 * arguments clamped to [-44, 44].  Both are within a few ulp of sigmoid and tanh (absolute error
 * below 3e-7 around tanh's zero). */
FD_INLINE v8 gate(const Cell *c, int one_exp, int u, v8 a, v8 hp) {
    const v8 one = vset(1.0f);
    v8 z, ht;
    if (one_exp) { /* a already holds + b_gate (folded into the input projections) */
        v8 g = vmin(vmax(a, vset(-ONE_EXP_CLAMP)), vset(ONE_EXP_CLAMP));
        v8 e = vexp_neg(g);
        v8 q = (e * e) * c->M[u];
        v8 d1 = one + e, d2 = one + q;
        v8 r = one / (d1 * d2);
        z = d2 * r;
        ht = (one - q) * (d1 * r);
    } else {
        v8 e1 = vexp_neg(vmin(vmax(a + c->bg[u], vset(-44.0f)), vset(44.0f)));
        v8 e2 = vexp_neg(vmin(vmax(2.0f * (a + c->bh[u]), vset(-44.0f)), vset(44.0f)));
        z = one / (one + e1);
        ht = (one - e2) / (one + e2);
    }
    /* z h + (sz (1 - z) + sn) h~  =  z (h - sz h~) + (sz + sn) h~   (as FastGRNNCell._forward_inference) */
    return z * (hp - c->sz * ht) + (c->sz + c->sn) * ht;
}

/* Two blocks of LANES sequences each, one window long (``steps``), side by side: the recurrences
 * are independent, which gives the core twice the work to overlap (each step waits for the
 * previous one), and each broadcast weight serves both.  xa, xb point at lane 0 of unit 0 of each
 * block's first time step; time step tt is at offset (tt % phases) * row + tt / phases (phases = steps:
 * plain rows, tt * row), unit u at u * ustride.  ha, hb receive the final states.  H and one_exp are
 * compile-time constants in the callers.  Units go in chunks of 4, so the chunk's 8 accumulators
 * stay in registers while the states (in memory) stream past. */
FD_INLINE void run_pair(const float *xa, const float *xb, ptrdiff_t row, int phases, ptrdiff_t ustride, int steps,
                        int reverse, int H, int one_exp, const Cell *c, v8 *ha, v8 *hb) {
    const float *U = c->U;
    v8 na[H], nb[H];
    for (int u = 0; u < H; u++) ha[u] = hb[u] = vset(0.0f);
    for (int t = 0; t < steps; t++) {
        const int tt = reverse ? steps - 1 - t : t;
        const ptrdiff_t off = (ptrdiff_t)(tt % phases) * row + tt / phases;
        for (int u0 = 0; u0 < H; u0 += 4) {
            const int n = H - u0 < 4 ? H - u0 : 4;
            v8 aa[4] = {{0}}, ab[4] = {{0}};
#pragma GCC unroll 4
            for (int i = 0; i < n; i++) {
                aa[i] = vld(xa + off + (u0 + i) * ustride);
                ab[i] = vld(xb + off + (u0 + i) * ustride);
            }
            if (t > 0) { /* + h U (h is zero at the first step) */
#pragma GCC unroll 16
                for (int j = 0; j < H; j++) {
                    const v8 hja = ha[j], hjb = hb[j];
                    const float *Uj = U + j * H + u0;
#pragma GCC unroll 4
                    for (int i = 0; i < n; i++) {
                        const v8 w = vset(Uj[i]);
                        aa[i] += hja * w;
                        ab[i] += hjb * w;
                    }
                }
            }
#pragma GCC unroll 4
            for (int i = 0; i < n; i++) {
                na[u0 + i] = gate(c, one_exp, u0 + i, aa[i], ha[u0 + i]);
                nb[u0 + i] = gate(c, one_exp, u0 + i, ab[i], hb[u0 + i]);
            }
        }
#pragma GCC unroll 16
        for (int u = 0; u < H; u++) ha[u] = na[u], hb[u] = nb[u];
    }
}

#define PAIR_PARAMS                                                                                   \
    const float *xa, const float *xb, ptrdiff_t row, int phases, ptrdiff_t ustride, int steps, int reverse, \
        const Cell *c, v8 *ha, v8 *hb
#define PAIR_ARGS xa, xb, row, phases, ustride, steps, reverse

/* ------------------------------------------------------------------------------------------------
 * RNNPool over one image */

typedef struct {
    int k, H, W;          /* input channels and size */
    int ph, pw, sh, sw;   /* patch and stride */
    int oh, ow;           /* patch grid */
    int hu, wu;           /* rows / columns some patch covers */
    int h1, h2;
    int OH, OW, pad;      /* output map size (oh + pad, ow + pad) */
    int HP, WP, OHP, OWP; /* hu, wu, oh, ow rounded up to LANES */
    int LC, LR;           /* phase-plane lengths of CP (along x) and RP (along y) */
    Cell c1, c2;
    const float *x;       /* [k][H][W] */
    float *out;           /* [4 h2][OH][OW] */
    float *XC, *XR, *CP, *RP;
    float *col;           /* per thread: one input column, k x HP */
} Job;

/* Stage A.  XC[y][u][x] = sum_c x[c][y][x] W1[c][u] for one image row y. */
FD_INLINE void proj_row(const Job *J, int y) {
    const int h1 = J->h1, k = J->k, n8 = J->wu / LANES * LANES;
    const float *W1 = J->c1.W;
    float *dst = J->XC + (ptrdiff_t)y * h1 * J->WP;
    for (int x0 = 0; x0 < n8; x0 += LANES) {
        for (int u = 0; u < h1; u++) {
            v8 s = vset(J->c1.bin[u]);
            for (int c = 0; c < k; c++) s += vld(J->x + ((ptrdiff_t)c * J->H + y) * J->W + x0) * W1[c * h1 + u];
            vst(dst + (ptrdiff_t)u * J->WP + x0, s);
        }
    }
    for (int u = 0; u < h1; u++) {
        float *d = dst + (ptrdiff_t)u * J->WP;
        for (int xx = n8; xx < J->wu; xx++) {
            float s = J->c1.bin[u];
            for (int c = 0; c < k; c++) s += J->x[((ptrdiff_t)c * J->H + y) * J->W + xx] * W1[c * h1 + u];
            d[xx] = s;
        }
        for (int xx = J->wu; xx < J->WP; xx++) d[xx] = 0.0f;
    }
}

/* Stage A.  XR[x][u][y] = sum_c x[c][y][x] W1[c][u] for one image column x (col: k x HP scratch). */
FD_INLINE void proj_col(const Job *J, int xx, float *col) {
    const int h1 = J->h1, k = J->k, HP = J->HP;
    const float *W1 = J->c1.W;
    for (int c = 0; c < k; c++) {
        const float *src = J->x + (ptrdiff_t)c * J->H * J->W + xx;
        float *d = col + (ptrdiff_t)c * HP;
        for (int y = 0; y < J->hu; y++) d[y] = src[(ptrdiff_t)y * J->W];
        for (int y = J->hu; y < HP; y++) d[y] = 0.0f;
    }
    float *dst = J->XR + (ptrdiff_t)xx * h1 * HP;
    for (int y0 = 0; y0 < HP; y0 += LANES) {
        for (int u = 0; u < h1; u++) {
            v8 s = vset(J->c1.bin[u]);
            for (int c = 0; c < k; c++) s += vld(col + (ptrdiff_t)c * HP + y0) * W1[c * h1 + u];
            vst(dst + (ptrdiff_t)u * HP + y0, s);
        }
    }
}

/* RNN1 final states h[h1] of LANES sequences -> RNN2 inputs q[v] = bin2[v] + sum_u h[u] W2[u][v],
 * stored at dst[v * vstride + phase(p) * LEN + p / s] for lane l's position p = p0 + l < pmax. */
FD_INLINE void project_store(int H1, int H2, const v8 *h, const Cell *c2, float *dst, ptrdiff_t vstride, int s, int len,
                             int p0, int pmax) {
    const float *W2 = c2->W;
    v8 q[H2];
    for (int v = 0; v < H2; v++) q[v] = vset(c2->bin[v]);
    for (int u = 0; u < H1; u++)
#pragma GCC unroll 16
        for (int v = 0; v < H2; v++) q[v] += h[u] * W2[u * H2 + v];
    int n = pmax - p0 < LANES ? pmax - p0 : LANES;
    ptrdiff_t pos[LANES];
    for (int l = 0; l < n; l++) pos[l] = (ptrdiff_t)((p0 + l) % s) * len + (p0 + l) / s;
    float tmp[LANES];
    for (int v = 0; v < H2; v++) {
        vst(tmp, q[v]);
        float *d = dst + v * vstride;
        for (int l = 0; l < n; l++) d[pos[l]] = tmp[l];
    }
}

/* Blocks of stage B and C, LANES sequences each, counted per group (same window length and
 * direction); pairs of consecutive blocks run together (the last one twice when a group is odd). */
static long nb_cols1(const Job *J) { return (long)J->oh * (J->WP / LANES); } /* (i, x block) */
static long nb_rows1(const Job *J) { return (long)J->ow * (J->HP / LANES); } /* (j, y block) */
static long nb_rows2(const Job *J) { return (long)J->ow * (J->OHP / LANES); } /* (j, i block) */
static long nb_cols2(const Job *J) { return (long)J->oh * (J->OWP / LANES); } /* (i, j block) */
static long pairs(long m) { return (m + 1) / 2; }

static long stage_items(const Job *J, int stage) {
    if (stage == 0) return (long)J->hu + J->wu;
    if (stage == 1) return pairs(nb_cols1(J)) + pairs(nb_rows1(J));
    return 2 * pairs(nb_rows2(J)) + 2 * pairs(nb_cols2(J));
}

typedef void (*pair_fn)(PAIR_PARAMS, int hidden);

/* Stage B, pair p of column windows: block b = (patch row i, columns x0..x0+7) reads XC rows
 * i*sh .. i*sh+ph-1; the states go to CP[i]. */
FD_INLINE void cols1_pair(const Job *J, long p, pair_fn run) {
    const int h1 = J->h1, h2 = J->h2, nbx = J->WP / LANES;
    const long m = nb_cols1(J), b0 = 2 * p, b1 = b0 + 1 < m ? b0 + 1 : b0;
    const float *xp[2];
    long bb[2] = {b0, b1};
    for (int q = 0; q < 2; q++) {
        int i = (int)(bb[q] / nbx), x0 = (int)(bb[q] % nbx) * LANES;
        xp[q] = J->XC + (ptrdiff_t)i * J->sh * h1 * J->WP + x0;
    }
    v8 h[2][h1];
    run(xp[0], xp[1], (ptrdiff_t)h1 * J->WP, J->ph, J->WP, J->ph, 0, &J->c1, h[0], h[1], h1); /* phases = steps: plain rows */
    for (int q = 0; q < (b1 != b0 ? 2 : 1); q++) {
        int i = (int)(bb[q] / nbx), x0 = (int)(bb[q] % nbx) * LANES;
        project_store(h1, h2, h[q], &J->c2, J->CP + (ptrdiff_t)i * h2 * J->sw * J->LC, (ptrdiff_t)J->sw * J->LC, J->sw,
                      J->LC, x0, J->wu);
    }
}

/* Stage B, row windows: block = (patch column j, rows y0..y0+7) reads XR columns j*sw ..; states to RP[j]. */
FD_INLINE void rows1_pair(const Job *J, long p, pair_fn run) {
    const int h1 = J->h1, h2 = J->h2, nby = J->HP / LANES;
    const long m = nb_rows1(J), b0 = 2 * p, b1 = b0 + 1 < m ? b0 + 1 : b0;
    const float *xp[2];
    long bb[2] = {b0, b1};
    for (int q = 0; q < 2; q++) {
        int j = (int)(bb[q] / nby), y0 = (int)(bb[q] % nby) * LANES;
        xp[q] = J->XR + (ptrdiff_t)j * J->sw * h1 * J->HP + y0;
    }
    v8 h[2][h1];
    run(xp[0], xp[1], (ptrdiff_t)h1 * J->HP, J->pw, J->HP, J->pw, 0, &J->c1, h[0], h[1], h1);
    for (int q = 0; q < (b1 != b0 ? 2 : 1); q++) {
        int j = (int)(bb[q] / nby), y0 = (int)(bb[q] % nby) * LANES;
        project_store(h1, h2, h[q], &J->c2, J->RP + (ptrdiff_t)j * h2 * J->sh * J->LR, (ptrdiff_t)J->sh * J->LR, J->sh,
                      J->LR, y0, J->hu);
    }
}

/* Stage C, RNN2 over the row states: block = (patch column j, patch rows i0..i0+7); the sequence of
 * patch (i, j) is RP[j][.][y] for y = i*sh + t, t < ph, i.e. phase t % sh, index i + t / sh. */
FD_INLINE void rows2_pair(const Job *J, long p, int dir, pair_fn run) {
    const int h2 = J->h2, nbi = J->OHP / LANES;
    const long m = nb_rows2(J), b0 = 2 * p, b1 = b0 + 1 < m ? b0 + 1 : b0;
    const float *xp[2];
    long bb[2] = {b0, b1};
    for (int q = 0; q < 2; q++) {
        int j = (int)(bb[q] / nbi), i0 = (int)(bb[q] % nbi) * LANES;
        xp[q] = J->RP + (ptrdiff_t)j * h2 * J->sh * J->LR + i0;
    }
    v8 h[2][h2];
    run(xp[0], xp[1], J->LR, J->sh, (ptrdiff_t)J->sh * J->LR, J->ph, dir, &J->c2, h[0], h[1], h2);
    float tmp[LANES];
    for (int q = 0; q < (b1 != b0 ? 2 : 1); q++) {
        int j = (int)(bb[q] / nbi), i0 = (int)(bb[q] % nbi) * LANES;
        int n = J->oh - i0 < LANES ? J->oh - i0 : LANES;
        for (int v = 0; v < h2; v++) {
            vst(tmp, h[q][v]);
            float *o = J->out + ((ptrdiff_t)(dir * h2 + v) * J->OH + i0) * J->OW + j;
            for (int l = 0; l < n; l++) o[(ptrdiff_t)l * J->OW] = tmp[l];
        }
    }
}

/* Stage C, RNN2 over the column states: block = (patch row i, patch columns j0..j0+7). */
FD_INLINE void cols2_pair(const Job *J, long p, int dir, pair_fn run) {
    const int h2 = J->h2, nbj = J->OWP / LANES;
    const long m = nb_cols2(J), b0 = 2 * p, b1 = b0 + 1 < m ? b0 + 1 : b0;
    const float *xp[2];
    long bb[2] = {b0, b1};
    for (int q = 0; q < 2; q++) {
        int i = (int)(bb[q] / nbj), j0 = (int)(bb[q] % nbj) * LANES;
        xp[q] = J->CP + (ptrdiff_t)i * h2 * J->sw * J->LC + j0;
    }
    v8 h[2][h2];
    run(xp[0], xp[1], J->LC, J->sw, (ptrdiff_t)J->sw * J->LC, J->pw, dir, &J->c2, h[0], h[1], h2);
    float tmp[LANES];
    for (int q = 0; q < (b1 != b0 ? 2 : 1); q++) {
        int i = (int)(bb[q] / nbj), j0 = (int)(bb[q] % nbj) * LANES;
        int n = J->ow - j0 < LANES ? J->ow - j0 : LANES;
        for (int v = 0; v < h2; v++) {
            vst(tmp, h[q][v]);
            memcpy(J->out + ((ptrdiff_t)((2 + dir) * h2 + v) * J->OH + i) * J->OW + j0, tmp, (size_t)n * sizeof(float));
        }
    }
}

/* Items begin..end of a stage; run1 / run2 are the recurrences compiled for the two cells. */
FD_INLINE void stage_range(const Job *J, int stage, long begin, long end, int tid, pair_fn run1, pair_fn run2) {
    if (stage == 0) {
        float *col = J->col + (size_t)tid * J->k * J->HP;
        for (long it = begin; it < end; it++) {
            if (it < J->hu) proj_row(J, (int)it);
            else proj_col(J, (int)(it - J->hu), col);
        }
    } else if (stage == 1) {
        const long pc = pairs(nb_cols1(J));
        for (long it = begin; it < end; it++) {
            if (it < pc) cols1_pair(J, it, run1);
            else rows1_pair(J, it - pc, run1);
        }
    } else {
        const long pr = pairs(nb_rows2(J)), pc = pairs(nb_cols2(J));
        for (long it = begin; it < end; it++) {
            if (it < 2 * pr) rows2_pair(J, it % pr, (int)(it / pr), run2);
            else cols2_pair(J, (it - 2 * pr) % pc, (int)((it - 2 * pr) / pc), run2);
        }
    }
}

/* ------------------------------------------------------------------------------------------------
 * Convolutions (NCHW, float32), batch norm already folded: y = act(conv(x, w) + b).
 * w is OHWI ([C_out][k][k][C_in/groups]), as facedet.graph.Conv2d stores it.  Lanes run along an output
 * row.  The input is first copied, zero-padded and split by stride phase, so that output lane x of
 * kernel column kx reads PS[r][kx % s][x + kx / s] -- contiguous for any stride:
 *     PS[c][r][q][m] = Xpad[c][r][m * s + q],  r < H + 2 pad,  q < s,  m < MW.
 */

typedef struct {
    int C, H, W, Co, k, s, pad, depthwise, relu6, OH, OW;
    int Hp, MW, OWP; /* padded rows, phase-plane width, output width rounded up to LANES */
    const float *w, *b;
} ConvGeo;

static void conv_geo(ConvGeo *g) {
    g->OH = (g->H + 2 * g->pad - g->k) / g->s + 1;
    g->OW = (g->W + 2 * g->pad - g->k) / g->s + 1;
    g->Hp = g->H + 2 * g->pad;
    g->OWP = round_up(g->OW, LANES);
    g->MW = g->OWP + (g->k - 1) / g->s + 1;
}

/* One input channel into its phase-split padded planes (ps: Hp * s * MW floats). */
FD_INLINE void split_pad(const ConvGeo *g, const float *in, float *ps) {
    const int s = g->s, MW = g->MW, pad = g->pad, W = g->W;
    for (int r = 0; r < g->Hp; r++) {
        int y = r - pad;
        float *d0 = ps + (ptrdiff_t)r * s * MW;
        if (y < 0 || y >= g->H) {
            memset(d0, 0, (size_t)s * MW * sizeof(float));
            continue;
        }
        const float *row = in + (ptrdiff_t)y * W;
        if (s == 1) {
            /* d[m] = row[m - pad] */
            int m = 0;
            for (; m < pad; m++) d0[m] = 0.0f;
            int end = pad + W < MW ? pad + W : MW;
            for (; m + LANES <= end; m += LANES) vst(d0 + m, vld(row + m - pad));
            for (; m < end; m++) d0[m] = row[m - pad];
            for (; m < MW; m++) d0[m] = 0.0f;
            continue;
        }
        for (int q = 0; q < s; q++) {
            float *d = d0 + (ptrdiff_t)q * MW;
            /* d[m] = row[m*s + q - pad] where that index is inside the row */
            int m0 = pad - q > 0 ? (pad - q + s - 1) / s : 0;
            int m1 = g->W - 1 + pad - q < 0 ? 0 : (g->W - 1 + pad - q) / s + 1;
            if (m1 > MW) m1 = MW;
            if (m0 > m1) m0 = m1;
            for (int m = 0; m < m0; m++) d[m] = 0.0f;
            const float *src = row + q - pad;
            if (s == 2)
                for (int m = m0; m < m1; m++) d[m] = src[2 * m];
            else
                for (int m = m0; m < m1; m++) d[m] = src[(ptrdiff_t)m * s];
            for (int m = m1; m < MW; m++) d[m] = 0.0f;
        }
    }
}

FD_INLINE v8 relu6v(v8 v) { return vmin(vmax(v, vset(0.0f)), vset(6.0f)); }

FD_INLINE void store_row(float *dst, v8 v, int n) {
    if (n >= LANES) vst(dst, v);
    else {
        float tmp[LANES];
        vst(tmp, v);
        memcpy(dst, tmp, (size_t)n * sizeof(float));
    }
}

/* Output channels o0..o0+n-1 (n <= 8, a compile-time constant in the callers) of one image, groups = 1.
 * ps holds all C input channels, channel c at ps + c * cstride. */
FD_INLINE void conv_chunk(const ConvGeo *g, const float *ps, ptrdiff_t cstride, float *out, int o0, int n) {
    const int k = g->k, s = g->s, C = g->C, MW = g->MW, kk = k * k;
    ptrdiff_t off[49]; /* tap (ky, kx) -> offset in the planes of one channel */
    for (int ky = 0; ky < k; ky++)
        for (int kx = 0; kx < k; kx++) off[ky * k + kx] = ((ptrdiff_t)ky * s + kx % s) * MW + kx / s;
    const ptrdiff_t ostride = (ptrdiff_t)kk * C; /* between output channels in w */
    for (int y = 0; y < g->OH; y++) {
        for (int x0 = 0; x0 < g->OW; x0 += LANES) {
            v8 acc[8] = {{0}};
#pragma GCC unroll 8
            for (int i = 0; i < n; i++) acc[i] = vset(g->b[o0 + i]);
            const float *prow = ps + (ptrdiff_t)y * s * s * MW + x0;
            for (int c = 0; c < C; c++) {
                const float *pc = prow + c * cstride;
                const float *wc = g->w + (ptrdiff_t)o0 * ostride + c;
                for (int t = 0; t < kk; t++) {
                    v8 v = vld(pc + off[t]);
                    const float *wp = wc + (ptrdiff_t)t * C;
#pragma GCC unroll 8
                    for (int i = 0; i < n; i++) acc[i] += v * wp[i * ostride];
                }
            }
            int nl = g->OW - x0 < LANES ? g->OW - x0 : LANES;
#pragma GCC unroll 8
            for (int i = 0; i < n; i++)
                store_row(out + ((ptrdiff_t)(o0 + i) * g->OH + y) * g->OW + x0, g->relu6 ? relu6v(acc[i]) : acc[i], nl);
        }
    }
}

/* Depthwise (C_out = C_in = groups): channel c of one image from its planes ps.  K and S are
 * compile-time constants in the common cases (3x3, stride 1 or 2). */
FD_INLINE void dw_channel(const ConvGeo *g, const float *ps, float *out, int c, int K, int S) {
    const int MW = g->MW;
    float wk[49];
    ptrdiff_t off[49];
    for (int ky = 0; ky < K; ky++)
        for (int kx = 0; kx < K; kx++) {
            wk[ky * K + kx] = g->w[(ptrdiff_t)c * K * K + ky * K + kx];
            off[ky * K + kx] = ((ptrdiff_t)ky * S + kx % S) * MW + kx / S;
        }
    const float bias = g->b[c];
    for (int y = 0; y < g->OH; y++) {
        const float *prow = ps + (ptrdiff_t)y * S * S * MW;
        float *orow = out + ((ptrdiff_t)c * g->OH + y) * g->OW;
        for (int x0 = 0; x0 < g->OW; x0 += LANES) {
            v8 acc = vset(bias);
#pragma GCC unroll 49
            for (int t = 0; t < K * K; t++) acc += vld(prow + x0 + off[t]) * wk[t];
            int nl = g->OW - x0 < LANES ? g->OW - x0 : LANES;
            store_row(orow + x0, g->relu6 ? relu6v(acc) : acc, nl);
        }
    }
}

/* 1x1, stride 1, no padding: a matrix product out[o][p] = b[o] + sum_c w[o][c] x[c][p] (+ res[o][p]),
 * in tiles of N output channels x V vectors of pixels (N V accumulators in registers; the 6 x 2 tile
 * needs 12 of the 16 AVX registers).  Pixel tiles are the outer loop, so a tile's inputs stay in L1
 * while every output channel passes over them. */
FD_INLINE void pw_tile(const ConvGeo *g, const float *x, float *out, const float *res, int P, int o0, int p0, int N, int V) {
    const int C = g->C;
    v8 acc[6][2] = {{{0}}};
#pragma GCC unroll 6
    for (int i = 0; i < N; i++)
#pragma GCC unroll 2
        for (int v = 0; v < V; v++) acc[i][v] = vset(g->b[o0 + i]);
    const float *w = g->w + (ptrdiff_t)o0 * C;
    for (int c = 0; c < C; c++) {
        v8 xv[2] = {{0}};
#pragma GCC unroll 2
        for (int v = 0; v < V; v++) xv[v] = vld(x + (ptrdiff_t)c * P + p0 + v * LANES);
#pragma GCC unroll 6
        for (int i = 0; i < N; i++) {
            const v8 wv = vset(w[(ptrdiff_t)i * C + c]);
#pragma GCC unroll 2
            for (int v = 0; v < V; v++) acc[i][v] += xv[v] * wv;
        }
    }
#pragma GCC unroll 6
    for (int i = 0; i < N; i++)
#pragma GCC unroll 2
        for (int v = 0; v < V; v++) {
            v8 y = g->relu6 ? relu6v(acc[i][v]) : acc[i][v];
            ptrdiff_t at = (ptrdiff_t)(o0 + i) * P + p0 + v * LANES;
            if (res) y += vld(res + at);
            vst(out + at, y);
        }
}

FD_INLINE void pointwise_image(const ConvGeo *g, const float *x, float *out, const float *res) {
    const int P = g->H * g->W, Co = g->Co;
    int p0 = 0;
    for (; p0 + 2 * LANES <= P; p0 += 2 * LANES) {
        int o0 = 0;
        for (; o0 + 6 <= Co; o0 += 6) pw_tile(g, x, out, res, P, o0, p0, 6, 2);
        for (; o0 < Co; o0++) pw_tile(g, x, out, res, P, o0, p0, 1, 2);
    }
    for (; p0 + LANES <= P; p0 += LANES) {
        int o0 = 0;
        for (; o0 + 6 <= Co; o0 += 6) pw_tile(g, x, out, res, P, o0, p0, 6, 1);
        for (; o0 < Co; o0++) pw_tile(g, x, out, res, P, o0, p0, 1, 1);
    }
    for (; p0 < P; p0++) /* the last pixels, one by one */
        for (int o = 0; o < Co; o++) {
            float a = g->b[o];
            for (int c = 0; c < g->C; c++) a += g->w[(ptrdiff_t)o * g->C + c] * x[(ptrdiff_t)c * P + p0];
            if (g->relu6) a = a < 0.0f ? 0.0f : (a > 6.0f ? 6.0f : a);
            if (res) a += res[(ptrdiff_t)o * P + p0];
            out[(ptrdiff_t)o * P + p0] = a;
        }
}

/* One image: x [C][H][W] -> out [Co][OH][OW].  scratch: (depthwise ? 1 : C) * Hp * s * MW floats. */
FD_INLINE void conv_image(const ConvGeo *g, const float *x, float *out, float *scratch, const float *res) {
    const ptrdiff_t cstride = (ptrdiff_t)g->Hp * g->s * g->MW;
    if (g->k == 1 && g->s == 1 && g->pad == 0 && !g->depthwise) {
        pointwise_image(g, x, out, res);
        return;
    }
    if (g->depthwise) {
        for (int c = 0; c < g->C; c++) {
            split_pad(g, x + (ptrdiff_t)c * g->H * g->W, scratch);
            if (g->k == 3 && g->s == 1) dw_channel(g, scratch, out, c, 3, 1);
            else if (g->k == 3 && g->s == 2) dw_channel(g, scratch, out, c, 3, 2);
            else dw_channel(g, scratch, out, c, g->k, g->s);
        }
        return;
    }
    for (int c = 0; c < g->C; c++) split_pad(g, x + (ptrdiff_t)c * g->H * g->W, scratch + c * cstride);
    int o0 = 0;
    for (; o0 + 8 <= g->Co; o0 += 8) conv_chunk(g, scratch, cstride, out, o0, 8);
    switch (g->Co - o0) {
    case 0: break;
    case 4: conv_chunk(g, scratch, cstride, out, o0, 4); break;
    case 6: conv_chunk(g, scratch, cstride, out, o0, 6); break;
    case 2: conv_chunk(g, scratch, cstride, out, o0, 2); break;
    default:
        for (; o0 < g->Co; o0++) conv_chunk(g, scratch, cstride, out, o0, 1);
    }
}

/* L2Norm over channels at every pixel: y_c = w_c x_c / (sqrt(sum_c x_c^2) + eps); x, y [C][HW]. */
FD_INLINE void l2norm_image(const float *x, float *y, int C, int HW, const float *w, float eps) {
    int p0 = 0;
    for (; p0 + LANES <= HW; p0 += LANES) {
        v8 ss = vset(0.0f);
        for (int c = 0; c < C; c++) {
            v8 v = vld(x + (ptrdiff_t)c * HW + p0);
            ss += v * v;
        }
        float t[LANES];
        vst(t, ss);
        for (int l = 0; l < LANES; l++) t[l] = sqrtf(t[l]) + eps;
        v8 d = vld(t);
        for (int c = 0; c < C; c++) vst(y + (ptrdiff_t)c * HW + p0, vld(x + (ptrdiff_t)c * HW + p0) / d * w[c]);
    }
    for (int p = p0; p < HW; p++) {
        float ss = 0.0f;
        for (int c = 0; c < C; c++) ss += x[(ptrdiff_t)c * HW + p] * x[(ptrdiff_t)c * HW + p];
        float d = sqrtf(ss) + eps;
        for (int c = 0; c < C; c++) y[(ptrdiff_t)c * HW + p] = x[(ptrdiff_t)c * HW + p] / d * w[c];
    }
}

/* ------------------------------------------------------------------------------------------------
 * Compiled variants.  One recurrence per (hidden size, gate form): 16 and 8 (the shipped models)
 * unrolled, any other size with H at run time. */

#define DEFINE_PAIR(suffix, attr, name, H, ONE)                                                   \
    attr __attribute__((noinline)) static void name##_##suffix(PAIR_PARAMS, int hidden) {         \
        (void)hidden;                                                                             \
        run_pair(PAIR_ARGS, H, ONE, c, ha, hb);                                                   \
    }

#define DEFINE_KERNELS(suffix, attr)                                                              \
    DEFINE_PAIR(suffix, attr, pair16a, 16, 1)                                                     \
    DEFINE_PAIR(suffix, attr, pair16b, 16, 0)                                                     \
    DEFINE_PAIR(suffix, attr, pair8a, 8, 1)                                                       \
    DEFINE_PAIR(suffix, attr, pair8b, 8, 0)                                                       \
    DEFINE_PAIR(suffix, attr, pairna, hidden, 1)                                                  \
    DEFINE_PAIR(suffix, attr, pairnb, hidden, 0)                                                  \
    static pair_fn pick_pair_##suffix(const Cell *c, int hidden) {                                \
        if (hidden == 16) return c->one_exp ? pair16a_##suffix : pair16b_##suffix;                \
        if (hidden == 8) return c->one_exp ? pair8a_##suffix : pair8b_##suffix;                   \
        return c->one_exp ? pairna_##suffix : pairnb_##suffix;                                    \
    }                                                                                             \
    attr static void range_##suffix(const Job *J, int stage, long begin, long end, int tid) {     \
        stage_range(J, stage, begin, end, tid, pick_pair_##suffix(&J->c1, J->h1),                 \
                    pick_pair_##suffix(&J->c2, J->h2));                                           \
    }                                                                                             \
    attr static void conv_##suffix(const ConvGeo *g, const float *x, float *out, float *scratch, const float *res) { \
        conv_image(g, x, out, scratch, res);                                                      \
    }                                                                                             \
    attr static void l2norm_##suffix(const float *x, float *y, int C, int HW, const float *w, float e) { \
        l2norm_image(x, y, C, HW, w, e);                                                          \
    }

DEFINE_KERNELS(generic, )

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define FD_X86_DISPATCH 1
DEFINE_KERNELS(avx2, __attribute__((target("avx2,fma"))))
#endif

typedef void (*range_fn)(const Job *, int, long, long, int);
typedef void (*conv_fn)(const ConvGeo *, const float *, float *, float *, const float *);
typedef void (*l2norm_fn)(const float *, float *, int, int, const float *, float);

static range_fn g_range = range_generic;
static conv_fn g_conv = conv_generic;
static l2norm_fn g_l2norm = l2norm_generic;
static const char *g_variant = "generic";

static int has_avx2(void) {
#ifdef FD_X86_DISPATCH
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

static void use_variant(int avx2) {
    g_range = range_generic, g_conv = conv_generic, g_l2norm = l2norm_generic, g_variant = "generic";
#ifdef FD_X86_DISPATCH
    if (avx2) g_range = range_avx2, g_conv = conv_avx2, g_l2norm = l2norm_avx2, g_variant = "avx2+fma";
#else
    (void)avx2;
#endif
}

static void pick_kernels(void) { use_variant(has_avx2()); }

/* ------------------------------------------------------------------------------------------------
 * Threads: the calling thread and nthreads - 1 helpers take chunks of a stage's items from a shared
 * counter, so a helper the OS does not schedule (a loaded machine) delays nobody but itself by more
 * than one chunk; they never spin. */

typedef struct {
    const Job *J;
    int stage, tid;
    long n, chunk;
    long *next;
} Worker;

static void work(Worker *w) {
    for (;;) {
        long b = __atomic_fetch_add(w->next, w->chunk, __ATOMIC_RELAXED);
        if (b >= w->n) return;
        long e = b + w->chunk < w->n ? b + w->chunk : w->n;
        g_range(w->J, w->stage, b, e, w->tid);
    }
}

#ifdef FD_THREADS
static void *worker_main(void *arg) {
    work((Worker *)arg);
    return NULL;
}
#endif

static void run_stage(const Job *J, int stage, int nthreads) {
    long n = stage_items(J, stage), next = 0;
    if (nthreads > n / 4) nthreads = (int)(n / 4) > 1 ? (int)(n / 4) : 1;
    Worker w[MAX_THREADS];
    long chunk = n / (nthreads * 8);
    if (chunk < 1) chunk = 1;
    for (int t = 0; t < nthreads; t++) w[t] = (Worker){J, stage, t, n, chunk, &next};
#ifdef FD_THREADS
    pthread_t tid[MAX_THREADS];
    int started = 0;
    for (int t = 1; t < nthreads; t++) {
        if (pthread_create(&tid[t], NULL, worker_main, &w[t]) != 0) break;
        started = t;
    }
    work(&w[0]);
    for (int t = 1; t <= started; t++) pthread_join(tid[t], NULL);
#else
    work(&w[0]);
#endif
}

/* ------------------------------------------------------------------------------------------------ Python */

static const char doc_rnnpool[] =
    "rnnpool(x, out, B, k, H, W, ph, pw, sh, sw, h1, h2, pad, cell1, cell2, threads)\n\n"
    "RNNPool over every ph x pw patch (stride sh x sw) of x: float32* [B, k, H, W] contiguous, into\n"
    "out: float32* [B, 4*h2, oh+pad, ow+pad] contiguous (pad = 1: replicate the last row and column);\n"
    "cellN = (W_ptr, U_ptr, bias_gate_ptr, bias_update_ptr, sigmoid(zeta), sigmoid(nu)).\n"
    "Pointers are integers (tensor.data_ptr()); the caller guarantees sizes, dtype and lifetime.";

static int parse_cell(PyObject *t, Cell *c, int hidden) {
    unsigned long long w, u, bg, bh;
    if (!PyArg_ParseTuple(t, "KKKKff", &w, &u, &bg, &bh, &c->sz, &c->sn)) return 0;
    c->W = (const float *)(uintptr_t)w;
    c->U = (const float *)(uintptr_t)u;
    c->bg = (const float *)(uintptr_t)bg;
    c->bh = (const float *)(uintptr_t)bh;
    c->one_exp = 1;
    for (int i = 0; i < hidden; i++) {
        double gap = (double)c->bg[i] - (double)c->bh[i];
        if (!(fabs(gap) <= ONE_EXP_MAX_GAP)) c->one_exp = 0;
        c->M[i] = (float)exp(2.0 * (fabs(gap) <= ONE_EXP_MAX_GAP ? gap : 0.0));
    }
    for (int i = 0; i < hidden; i++) c->bin[i] = c->one_exp ? c->bg[i] : 0.0f;
    return 1;
}

static PyObject *py_rnnpool(PyObject *self, PyObject *args) {
    (void)self;
    unsigned long long xptr, optr;
    int B, k, H, W, ph, pw, sh, sw, h1, h2, pad, threads;
    PyObject *t1, *t2;
    if (!PyArg_ParseTuple(args, "KKiiiiiiiiiiiO!O!i", &xptr, &optr, &B, &k, &H, &W, &ph, &pw, &sh, &sw, &h1, &h2, &pad,
                          &PyTuple_Type, &t1, &PyTuple_Type, &t2, &threads))
        return NULL;
    if (B < 0 || k < 1 || ph < 1 || pw < 1 || sh < 1 || sw < 1 || H < ph || W < pw || h1 < 1 || h2 < 1 || h1 > 256 ||
        h2 > 256 || (pad != 0 && pad != 1)) {
        PyErr_SetString(PyExc_ValueError, "rnnpool: bad sizes");
        return NULL;
    }
    Job J;
    memset(&J, 0, sizeof J);
    if (!parse_cell(t1, &J.c1, h1) || !parse_cell(t2, &J.c2, h2)) return NULL;
    J.k = k, J.H = H, J.W = W, J.ph = ph, J.pw = pw, J.sh = sh, J.sw = sw, J.h1 = h1, J.h2 = h2, J.pad = pad;
    J.oh = (H - ph) / sh + 1, J.ow = (W - pw) / sw + 1;
    J.hu = (J.oh - 1) * sh + ph, J.wu = (J.ow - 1) * sw + pw;
    J.OH = J.oh + pad, J.OW = J.ow + pad;
    J.HP = round_up(J.hu, LANES), J.WP = round_up(J.wu, LANES), J.OHP = round_up(J.oh, LANES), J.OWP = round_up(J.ow, LANES);
    J.LC = J.OWP + (pw - 1) / sw + 1, J.LR = J.OHP + (ph - 1) / sh + 1;
    if (threads < 1) threads = 1;
    if (threads > MAX_THREADS) threads = MAX_THREADS;
    size_t nXC = (size_t)J.hu * h1 * J.WP, nXR = (size_t)J.wu * h1 * J.HP;
    size_t nCP = (size_t)J.oh * h2 * sw * J.LC, nRP = (size_t)J.ow * h2 * sh * J.LR;
    size_t ncol = (size_t)threads * k * J.HP;
    float *buf = (float *)malloc((nXC + nXR + nCP + nRP + ncol) * sizeof(float));
    if (!buf) return PyErr_NoMemory();
    J.XC = buf, J.XR = J.XC + nXC, J.CP = J.XR + nXR, J.RP = J.CP + nCP, J.col = J.RP + nRP;
    const float *x = (const float *)(uintptr_t)xptr;
    float *out = (float *)(uintptr_t)optr;
    Py_BEGIN_ALLOW_THREADS
    /* stage C reads whole vectors: the lanes past the last patch must hold finite numbers */
    memset(J.CP, 0, (nCP + nRP) * sizeof(float));
    for (int b = 0; b < B; b++) {
        J.x = x + (size_t)b * k * H * W;
        J.out = out + (size_t)b * 4 * h2 * J.OH * J.OW;
        for (int stage = 0; stage < 3; stage++) run_stage(&J, stage, threads);
        if (pad) {
            for (int c = 0; c < 4 * h2; c++) {
                float *o = J.out + (size_t)c * J.OH * J.OW;
                for (int i = 0; i < J.oh; i++) o[(size_t)i * J.OW + J.ow] = o[(size_t)i * J.OW + J.ow - 1];
                memcpy(o + (size_t)J.oh * J.OW, o + (size_t)(J.oh - 1) * J.OW, (size_t)J.OW * sizeof(float));
            }
        }
    }
    Py_END_ALLOW_THREADS
    free(buf);
    Py_RETURN_NONE;
}

static const char doc_conv2d[] =
    "conv2d(x, out, B, C, H, W, w, b, Co, k, stride, pad, depthwise, relu6, res)\n\n"
    "x: float32* [B, C, H, W]; out: float32* [B, Co, OH, OW]; w: float32* OHWI [Co, k, k, C/groups];\n"
    "b: float32* [Co]; res: 0, or float32* [B, Co, OH, OW] added last (1x1 stride-1 convolutions only).\n"
    "groups is 1, or C (= Co) when depthwise.  Pointers as integers.";

static PyObject *py_conv2d(PyObject *self, PyObject *args) {
    (void)self;
    unsigned long long xptr, optr, wptr, bptr, rptr = 0;
    int B, depthwise, relu6;
    ConvGeo g;
    memset(&g, 0, sizeof g);
    if (!PyArg_ParseTuple(args, "KKiiiiKKiiiipp|K", &xptr, &optr, &B, &g.C, &g.H, &g.W, &wptr, &bptr, &g.Co, &g.k, &g.s, &g.pad,
                          &depthwise, &relu6, &rptr))
        return NULL;
    if (rptr && !(g.k == 1 && g.s == 1 && g.pad == 0 && !depthwise)) {
        PyErr_SetString(PyExc_ValueError, "conv2d: a residual only with 1x1 stride-1 convolutions");
        return NULL;
    }
    g.depthwise = depthwise, g.relu6 = relu6;
    if (B < 0 || g.C < 1 || g.Co < 1 || g.k < 1 || g.k > 7 || g.s < 1 || g.s > 4 || g.pad < 0 || g.pad >= g.k ||
        (depthwise && g.C != g.Co) || g.H + 2 * g.pad < g.k || g.W + 2 * g.pad < g.k) {
        PyErr_SetString(PyExc_ValueError, "conv2d: bad sizes");
        return NULL;
    }
    g.w = (const float *)(uintptr_t)wptr, g.b = (const float *)(uintptr_t)bptr;
    conv_geo(&g);
    const int pointwise = g.k == 1 && g.s == 1 && g.pad == 0 && !depthwise;
    size_t plane = (size_t)g.Hp * g.s * g.MW;
    float *scratch = (float *)malloc(pointwise ? sizeof(float) : (depthwise ? 1 : (size_t)g.C) * plane * sizeof(float));
    if (!scratch) return PyErr_NoMemory();
    const float *x = (const float *)(uintptr_t)xptr, *res = (const float *)(uintptr_t)rptr;
    float *out = (float *)(uintptr_t)optr;
    const size_t on = (size_t)g.Co * g.OH * g.OW;
    Py_BEGIN_ALLOW_THREADS
    for (int b = 0; b < B; b++) g_conv(&g, x + (size_t)b * g.C * g.H * g.W, out + b * on, scratch, res ? res + b * on : NULL);
    Py_END_ALLOW_THREADS
    free(scratch);
    Py_RETURN_NONE;
}

static PyObject *py_l2norm(PyObject *self, PyObject *args) {
    (void)self;
    unsigned long long xptr, yptr, wptr;
    int B, C, HW;
    float eps;
    if (!PyArg_ParseTuple(args, "KKiiiKf", &xptr, &yptr, &B, &C, &HW, &wptr, &eps)) return NULL;
    if (B < 0 || C < 1 || HW < 0) {
        PyErr_SetString(PyExc_ValueError, "l2norm: bad sizes");
        return NULL;
    }
    const float *x = (const float *)(uintptr_t)xptr, *w = (const float *)(uintptr_t)wptr;
    float *y = (float *)(uintptr_t)yptr;
    Py_BEGIN_ALLOW_THREADS
    for (int b = 0; b < B; b++) g_l2norm(x + (size_t)b * C * HW, y + (size_t)b * C * HW, C, HW, w, eps);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyObject *py_variant(PyObject *self, PyObject *args) {
    (void)self, (void)args;
    return PyUnicode_FromString(g_variant);
}

static PyObject *py_set_variant(PyObject *self, PyObject *args) {
    (void)self;
    const char *name;
    if (!PyArg_ParseTuple(args, "s", &name)) return NULL;
    if (strcmp(name, "generic") == 0) use_variant(0);
    else if (strcmp(name, "auto") == 0) pick_kernels();
    else {
        PyErr_SetString(PyExc_ValueError, "set_variant: 'generic' or 'auto'");
        return NULL;
    }
    return PyUnicode_FromString(g_variant);
}

static PyMethodDef methods[] = {
    {"rnnpool", py_rnnpool, METH_VARARGS, doc_rnnpool},
    {"conv2d", py_conv2d, METH_VARARGS, doc_conv2d},
    {"l2norm", py_l2norm, METH_VARARGS,
     "l2norm(x, y, B, C, HW, w, eps): facedet.graph.L2Norm on [B, C, HW] float32 (pointers as integers)."},
    {"variant", py_variant, METH_NOARGS, "Which compiled variant runs: 'avx2+fma' or 'generic'."},
    {"set_variant", py_set_variant, METH_VARARGS,
     "set_variant('generic' | 'auto'): force the baseline variant (tests), or the CPU's best; returns the variant."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "_native", "facedet's native inference kernels (fused RNNPool, direct convolutions, L2Norm).",
    -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__native(void) {
    pick_kernels();
    return PyModule_Create(&moduledef);
}

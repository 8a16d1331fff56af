/*
 * facedet firmware: helpers of the convolution kernels, internal to them.
 *
 *   fd_rq_s8, fd_rq_out requantize + clamp (docs/quantization.md 4.1), inline
 *   fd_dot4_s16_s8      one pixel, four output channels (fd_dot4_s16_s8.c; DSP body inline)
 *   fd_dot22_s16_s8     two pixels, two output channels (fd_dot4_s16_s8.c; DSP body inline)
 *   fd_conv1x1_rows_s8  fd_conv1x1_s8 with a scratch of any size (two pixels at a time when
 *                       it holds 4*C_in bytes)
 */
#ifndef FD_CONV_INNER_H
#define FD_CONV_INNER_H

#include <stdint.h>

#include "fd_acle_emul.h"
#include "fd_kernels.h"

#if defined(__GNUC__)
#define FD_INLINE static inline __attribute__((always_inline))
/* a compiler barrier: keeps the scheduler from hoisting the loads of unrolled iterations into
 * one another, which runs the M4 out of registers (spills) */
#define FD_SEQ() __asm__ volatile("" ::: "memory")
#define FD_NOINLINE __attribute__((noinline))
#else
#define FD_INLINE static inline
#define FD_SEQ() ((void)0)
#define FD_NOINLINE
#endif

/* the int32 whose two's complement bits are u */
static inline int32_t fd_u32_to_s32(uint32_t u)
{
    return u < 0x80000000u ? (int32_t)u : -(int32_t)~u - 1;
}

/* floor(a * b / 2^32): the high word of the 64-bit product (one SMULL) */
static inline int32_t fd_mulhi(int32_t a, int32_t b)
{
    return fd_u32_to_s32((uint32_t)((uint64_t)((int64_t)a * b) >> 32));
}

/*
 * zp + requantize(acc, m, s) for a shift s >= 33, as int32 (before the clamp):
 * rshift_round(P, s) = floor((P + 2^(s-1)) / 2^s) = floor((floor(P / 2^32) + 2^(s-33)) / 2^(s-32))
 * (the low word of P cannot carry into a multiple of 2^(s-32) above it) = (floor(hi / 2^(s-33)) + 1) >> 1,
 * and zp folds in as (... + 1 + 2*zp) >> 1.  |hi| < 2^30 because |P| < 2^62.
 */
static inline int32_t fd_rq_hi(int32_t acc, int32_t m, int32_t s, int32_t zp)
{
    return fd_asr32(fd_asr32(fd_mulhi(acc, m), s - 33) + 2 * zp + 1, 1);
}

/* sat(zp + requantize(acc, m, s), lo, hi) for any s in [1, 62]: the 64-bit formula, out of line
 * (fd_requant_store_s8.c) */
int32_t fd_rq_s8_slow(int32_t acc, int32_t m, int32_t s, int32_t zp, int32_t lo, int32_t hi);

/* sat(zp + requantize(acc, m, s), lo, hi) for any s in [1, 62] (zp an int8 zero point) */
FD_INLINE int32_t fd_rq_s8(int32_t acc, int32_t m, int32_t s, int32_t zp, int32_t lo, int32_t hi)
{
    if (s >= 33) {
        const int32_t v = fd_rq_hi(acc, m, s, zp);
        return v < lo ? lo : (v > hi ? hi : v);
    }
    return fd_rq_s8_slow(acc, m, s, zp, lo, hi);
}

/* the same with lo = -128, hi = 127 (SSAT on the M4) */
FD_INLINE int32_t fd_rq_s8_full(int32_t acc, int32_t m, int32_t s, int32_t zp)
{
    if (s >= 33) {
#if FD_USE_DSP
        return __ssat(fd_rq_hi(acc, m, s, zp), 8);
#else
        const int32_t v = fd_rq_hi(acc, m, s, zp);
        return v < -128 ? -128 : (v > 127 ? 127 : v);
#endif
    }
    return fd_rq_s8_slow(acc, m, s, zp, -128, 127);
}

/* out[co] for one channel of a conv: bias[co] + acc requantized and clamped */
FD_INLINE int8_t fd_conv_out(const fd_conv_params *p, int32_t co, int32_t acc)
{
    return (int8_t)fd_rq_s8(p->bias[co] + acc, p->multiplier[co], p->shift[co], p->zp_out, p->act_min, p->act_max);
}

/*
 * The output stage of a conv held in locals: int8 stores may alias anything, so a kernel
 * that reads these through its fd_conv_params pointer reloads them after every store.
 */
typedef struct {
    const int32_t *bias, *mult;
    const int8_t *shift;
    int32_t zp, lo, hi, full;
} fd_rq;

static inline fd_rq fd_rq_of(const fd_conv_params *p)
{
    fd_rq r;
    r.bias = p->bias;
    r.mult = p->multiplier;
    r.shift = p->shift;
    r.zp = p->zp_out;
    r.lo = p->act_min;
    r.hi = p->act_max;
    r.full = p->act_min == -128 && p->act_max == 127;
    return r;
}

/* fd_conv_out through an fd_rq */
FD_INLINE int8_t fd_rq_out(const fd_rq *r, int32_t co, int32_t acc)
{
    acc += r->bias[co];
    if (r->full)
        return (int8_t)fd_rq_s8_full(acc, r->mult[co], r->shift[co], r->zp);
    return (int8_t)fd_rq_s8(acc, r->mult[co], r->shift[co], r->zp, r->lo, r->hi);
}

#if FD_USE_DSP
/*
 * The DSP bodies of fd_dot4_s16_s8 / fd_dot22_s16_s8 over the complete groups (n4 values, a
 * multiple of 4), inline so that a caller with a compile-time stride gets immediate offsets
 * and no call; two groups per iteration, a compiler barrier between them (FD_SEQ).
 */

/* one group of four values (buf words b02, b13) into the four rows at w */
#define FD_DOT4_GROUP(buf, w)                                                                       \
    do {                                                                                            \
        const int32_t b02 = fd_ld32(buf), b13 = fd_ld32((buf) + 2);                                 \
        int32_t x;                                                                                  \
        x = fd_ld32(w);                                                                             \
        a0 = __smlad(__sxtb16(x), b02, a0);                                                         \
        a0 = __smlad(fd_sxtb16_ror8(x), b13, a0);                                                   \
        x = fd_ld32((w) + stride);                                                                  \
        a1 = __smlad(__sxtb16(x), b02, a1);                                                         \
        a1 = __smlad(fd_sxtb16_ror8(x), b13, a1);                                                   \
        x = fd_ld32((w) + 2 * stride);                                                              \
        a2 = __smlad(__sxtb16(x), b02, a2);                                                         \
        a2 = __smlad(fd_sxtb16_ror8(x), b13, a2);                                                   \
        x = fd_ld32((w) + 3 * stride);                                                              \
        a3 = __smlad(__sxtb16(x), b02, a3);                                                         \
        a3 = __smlad(fd_sxtb16_ror8(x), b13, a3);                                                   \
    } while (0)

/* n4 a multiple of 4; two groups per iteration */
FD_INLINE void fd_dot4_body(const int16_t *buf, const int8_t *w, const int32_t stride, int32_t n4, int32_t *acc)
{
    int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
    const int16_t *const end = buf + (n4 & ~7);
    while (buf < end) {
        FD_DOT4_GROUP(buf, w);
        FD_SEQ();
        FD_DOT4_GROUP(buf + 4, w + 4);
        FD_SEQ();
        buf += 8;
        w += 8;
    }
    if (n4 & 4)
        FD_DOT4_GROUP(buf, w);
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
}

#define FD_DOT22_GROUP(buf, w)                                                                      \
    do {                                                                                            \
        int32_t x0 = fd_ld32(w), x1 = fd_ld32((w) + n);                                             \
        int32_t e0 = __sxtb16(x0), e1 = __sxtb16(x1);                                               \
        int32_t b = fd_ld32(buf), c = fd_ld32((buf) + n);                                           \
        a00 = __smlad(e0, b, a00);                                                                  \
        a01 = __smlad(e1, b, a01);                                                                  \
        a10 = __smlad(e0, c, a10);                                                                  \
        a11 = __smlad(e1, c, a11);                                                                  \
        e0 = fd_sxtb16_ror8(x0);                                                                    \
        e1 = fd_sxtb16_ror8(x1);                                                                    \
        b = fd_ld32((buf) + 2);                                                                     \
        c = fd_ld32((buf) + n + 2);                                                                 \
        a00 = __smlad(e0, b, a00);                                                                  \
        a01 = __smlad(e1, b, a01);                                                                  \
        a10 = __smlad(e0, c, a10);                                                                  \
        a11 = __smlad(e1, c, a11);                                                                  \
    } while (0)

/* n4 a multiple of 4; two groups per iteration */
FD_INLINE void fd_dot22_body(const int16_t *buf, const int8_t *w, const int32_t n, int32_t n4, int32_t *acc)
{
    int32_t a00 = acc[0], a01 = acc[1], a10 = acc[2], a11 = acc[3];
    const int16_t *const end = buf + (n4 & ~7);
    while (buf < end) {
        FD_DOT22_GROUP(buf, w);
        FD_SEQ();
        FD_DOT22_GROUP(buf + 4, w + 4);
        FD_SEQ();
        buf += 8;
        w += 8;
    }
    if (n4 & 4)
        FD_DOT22_GROUP(buf, w);
    acc[0] = a00;
    acc[1] = a01;
    acc[2] = a10;
    acc[3] = a11;
}

#endif

/*
 * acc[k] += sum_i buf[i] * w[k*stride + i] for k = 0..3, i < n: buf as fd_im2col_s8_s16 /
 * fd_vector_s8_s16 lay it out (the build's layout), w plain int8 rows.
 */
void fd_dot4_s16_s8(const int16_t *buf, const int8_t *w, int32_t stride, int32_t n, int32_t *acc);

/*
 * Two pixels, buf and buf + n (each as above), times two rows, w and w + n:
 * acc[0] += buf.w, acc[1] += buf.(w+n), acc[2] += (buf+n).w, acc[3] += (buf+n).(w+n).
 */
void fd_dot22_s16_s8(const int16_t *buf, const int8_t *w, int32_t n, int32_t *acc);

/* fd_conv1x1_s8 with scratch_bytes >= 2*C_in of scratch; with 4*C_in, two pixels at a time */
void fd_conv1x1_rows_s8(const fd_conv_params *p, const int8_t *in, int32_t n, int8_t *out, int16_t *scratch, int32_t scratch_bytes);

#endif /* FD_CONV_INNER_H */

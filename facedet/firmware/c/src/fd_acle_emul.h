/*
 * facedet firmware: which DSP path the kernels compile.
 *
 *   __ARM_FEATURE_DSP (Cortex-M4/M7/M33 with DSP): the ACLE intrinsics of <arm_acle.h>.
 *   FD_EMULATE_DSP (host tests): plain-C definitions of exactly the intrinsics the
 *       kernels use, with the ARM ARM semantics (32-bit wrap for SMLAD, 64-bit for
 *       SMLALD, as the instructions do), so the DSP branches run on the host and the
 *       tests hold them to the plain-C path.  The kernels never rely on the wrap: every
 *       accumulator is bounded by docs/quantization.md.  Host byte order must be
 *       little-endian, like the Cortex-M4's.
 *   neither: FD_USE_DSP is 0 and the kernels compile their plain-C path only.
 *
 * Intrinsics used: __sxtb16, __smlad, __smuad, __smlald, __ssat, __usat, __ssub16.  (__ror is
 * missing from GCC 12's arm_acle.h: fd_ror8 below is a plain rotate, and fd_sxtb16_ror8
 * the rotated SXTB16.)  fd_ldrd_s16 loads two words in one LDRD (GCC does not pair the
 * loads itself); fd_ld32 is one (possibly unaligned) word load.
 */
#ifndef FD_ACLE_EMUL_H
#define FD_ACLE_EMUL_H

#include <stdint.h>
#include <string.h>

#if defined(__ARM_FEATURE_DSP)

#include <arm_acle.h>
#define FD_USE_DSP 1

#elif defined(FD_EMULATE_DSP)

#define FD_USE_DSP 1

typedef int32_t int8x4_t;   /* four int8 lanes, lane 0 in bits 0..7 */
typedef int32_t int16x2_t;  /* two int16 lanes, lane 0 in bits 0..15 */

static inline int32_t fd_emul_lo16(int32_t x) { return (int16_t)(uint16_t)((uint32_t)x & 0xFFFFu); }
static inline int32_t fd_emul_hi16(int32_t x) { return (int16_t)(uint16_t)((uint32_t)x >> 16); }

/* SXTB16: sign-extend bytes 0 and 2 into the two halfwords */
static inline int16x2_t __sxtb16(int8x4_t x)
{
    uint32_t u = (uint32_t)x;
    uint32_t lo = (uint32_t)(int32_t)(int8_t)(uint8_t)(u & 0xFFu) & 0xFFFFu;
    uint32_t hi = (uint32_t)(int32_t)(int8_t)(uint8_t)((u >> 16) & 0xFFu) & 0xFFFFu;
    return (int16x2_t)(lo | (hi << 16));
}

/* SSUB16: lo(x)-lo(y), hi(x)-hi(y), each modulo 2^16 */
static inline int16x2_t __ssub16(int16x2_t x, int16x2_t y)
{
    const uint32_t lo = (uint32_t)(fd_emul_lo16(x) - fd_emul_lo16(y)) & 0xFFFFu;
    const uint32_t hi = (uint32_t)(fd_emul_hi16(x) - fd_emul_hi16(y)) & 0xFFFFu;
    return (int16x2_t)(lo | (hi << 16));
}

/* SMLAD: acc + lo(x)*lo(y) + hi(x)*hi(y), wrapping modulo 2^32 */
static inline int32_t __smlad(int16x2_t x, int16x2_t y, int32_t acc)
{
    uint32_t r = (uint32_t)acc + (uint32_t)(fd_emul_lo16(x) * fd_emul_lo16(y)) + (uint32_t)(fd_emul_hi16(x) * fd_emul_hi16(y));
    return (int32_t)r;
}

/* SMUAD: lo(x)*lo(y) + hi(x)*hi(y), wrapping modulo 2^32 */
static inline int32_t __smuad(int16x2_t x, int16x2_t y)
{
    return __smlad(x, y, 0);
}

/* SMLALD: acc + lo(x)*lo(y) + hi(x)*hi(y), 64-bit, wrapping modulo 2^64 */
static inline int64_t __smlald(int16x2_t x, int16x2_t y, int64_t acc)
{
    uint64_t r = (uint64_t)acc + (uint64_t)(int64_t)(fd_emul_lo16(x) * fd_emul_lo16(y)) + (uint64_t)(int64_t)(fd_emul_hi16(x) * fd_emul_hi16(y));
    return (int64_t)r;
}

/* SSAT: saturate a signed value to n bits, 1 <= n <= 32 */
static inline int32_t __ssat(int32_t x, unsigned n)
{
    int64_t hi = ((int64_t)1 << (n - 1)) - 1, lo = -((int64_t)1 << (n - 1));
    return x < lo ? (int32_t)lo : (x > hi ? (int32_t)hi : x);
}

/* USAT: saturate a signed value to the unsigned range [0, 2^n - 1], 0 <= n <= 31 */
static inline uint32_t __usat(int32_t x, unsigned n)
{
    const int64_t hi = ((int64_t)1 << n) - 1;
    return x < 0 ? 0u : (x > hi ? (uint32_t)hi : (uint32_t)x);
}

#else

#define FD_USE_DSP 0

#endif

#if FD_USE_DSP
/* rotate right by 8 (ACLE's __ror is missing from GCC 12) */
static inline int8x4_t fd_ror8(int8x4_t x)
{
    uint32_t u = (uint32_t)x;
    return (int8x4_t)((u >> 8) | (u << 24));
}

/* __sxtb16(ror8(x)) = sign-extended bytes 1 and 3.  GCC 12 does not fold the rotate into
 * the builtin (it emits "mov r, r, ror #8" + "sxtb16"), so on the target this is the
 * one instruction "sxtb16 r, r, ror #8" in inline asm (as CMSIS-NN's __SXTB16_RORn). */
static inline int16x2_t fd_sxtb16_ror8(int8x4_t x)
{
#if defined(__ARM_FEATURE_DSP) && defined(__GNUC__)
    int16x2_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
#else
    return __sxtb16(fd_ror8(x));
#endif
}
#endif

/* One word (two int16 or four int8) from p, any alignment (LDR; the M4 allows unaligned LDR). */
static inline int32_t fd_ld32(const void *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

/*
 * fd_ldrd_s16(p, off, a, b): the two words at p + off (p 4-byte aligned, off a constant multiple
 * of 4 in [0, 1020]) into a and b.  On the target one "ldrd" in inline asm; its memory operand
 * (the int16 data from p, 1 KiB, covering every offset without needing a register for the
 * exact address) tells the compiler what is read, so int16 stores before it stay before it.
 * Elsewhere two fd_ld32.
 */
typedef struct {
    int16_t v[512];
} fd_s16x512;

#if defined(__ARM_FEATURE_DSP) && defined(__GNUC__)
#define fd_ldrd_s16(p, off, a, b)                                                                   \
    __asm__("ldrd %0, %1, [%2, #%c3]" : "=r"(a), "=r"(b) : "r"(p), "i"(off), "m"(*(const fd_s16x512 *)(const void *)(p)))
#else
#define fd_ldrd_s16(p, off, a, b)                                                                   \
    ((a) = fd_ld32((const char *)(p) + (off)), (b) = fd_ld32((const char *)(p) + (off) + 4))
#endif

#endif /* FD_ACLE_EMUL_H */

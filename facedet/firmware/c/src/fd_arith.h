/*
 * facedet firmware: the scalar arithmetic of docs/quantization.md section 1.
 *
 * All static inline, no implementation-defined behaviour: right shifts only ever
 * shift non-negative values, left shifts of signed values are multiplications.
 */
#ifndef FD_ARITH_H
#define FD_ARITH_H

#include <stdint.h>

/* floor(x / 2^n) for 0 <= n <= 63: x >= 0 ? x >> n : ~(~x >> n) */
static inline int64_t fd_asr64(int64_t x, int n)
{
    return x >= 0 ? (x >> n) : ~(~x >> n);
}

/* floor(x / 2^n), 32-bit, 0 <= n <= 31 */
static inline int32_t fd_asr32(int32_t x, int n)
{
    return x >= 0 ? (x >> n) : ~(~x >> n);
}

/* (x + 2^(n-1)) >> n for 1 <= n <= 62: round half up; |x| + 2^(n-1) < 2^63 */
static inline int64_t fd_rshift_round(int64_t x, int n)
{
    return fd_asr64(x + ((int64_t)1 << (n - 1)), n);
}

/* min(max(x, lo), hi) */
static inline int32_t fd_sat(int64_t x, int32_t lo, int32_t hi)
{
    return x < lo ? lo : (x > hi ? hi : (int32_t)x);
}

/* rshift_round((int64)acc * m, n): 0 <= m < 2^31, 1 <= n <= 62 (|product| < 2^62) */
static inline int64_t fd_requantize(int32_t acc, int32_t m, int32_t n)
{
    return fd_rshift_round((int64_t)acc * m, (int)n);
}

#endif /* FD_ARITH_H */

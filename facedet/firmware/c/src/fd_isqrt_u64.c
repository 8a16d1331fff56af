/*
 * fd_isqrt_u64: floor(sqrt(x)) exactly, for every uint64 x (result <= 2^32 - 1).
 *
 * Digit-by-digit (two bits per step, 32 steps), integer only: the M4's FPU is single
 * precision, and a float estimate would need the same correction anyway.
 */
#include "fd_kernels.h"

uint32_t fd_isqrt_u64(uint64_t x)
{
    uint64_t rem = x, root = 0, bit = (uint64_t)1 << 62;
    while (bit > rem)
        bit >>= 2;
    while (bit != 0) {
        if (rem >= root + bit) {
            rem -= root + bit;
            root = (root >> 1) + bit;
        } else {
            root >>= 1;
        }
        bit >>= 2;
    }
    return (uint32_t)root;
}

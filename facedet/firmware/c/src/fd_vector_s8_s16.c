/*
 * fd_vector_s8_s16: an int8 vector as int16 in the layout fd_dot_s16_s8 reads.
 *
 * In: x[n] int8.  Out: buf[n] int16, values in [-128, 127]; plain-C build in order,
 * DSP build with every complete group of four stored a0 a2 a1 a3 (SXTB16 of the
 * word and of the word rotated by 8), the n % 4 tail in order.
 */
#include <string.h>

#include "fd_acle_emul.h"
#include "fd_kernels.h"

void fd_vector_s8_s16(const int8_t *x, int32_t n, int16_t *buf)
{
    int32_t i = 0;
#if FD_USE_DSP
    for (; i + 4 <= n; i += 4) {
        int32_t w, lo, hi;
        memcpy(&w, x + i, 4);
        lo = __sxtb16(w);          /* x0 x2 */
        hi = fd_sxtb16_ror8(w); /* x1 x3 */
        memcpy(buf + i, &lo, 4);
        memcpy(buf + i + 2, &hi, 4);
    }
#endif
    for (; i < n; i++)
        buf[i] = x[i];
}

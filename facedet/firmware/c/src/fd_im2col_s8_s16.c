/*
 * fd_im2col_s8_s16: gather the k x k x C_in neighbourhood of one output pixel as int16.
 *
 * In:  rows[ky] = input row (oy*stride - padding + ky), [in_width][C_in] int8, or NULL
 *      when that row is outside the input; taps outside the input read zp_in.
 * Out: buf, n = k*k*C_in int16 in the tap order [ky][kx][ci] (one output channel's
 *      weight order), values in [-128, 127].
 *      Plain-C build: that order.  DSP build: every complete group of four (flat
 *      index 4g .. 4g+3 < n & ~3) is stored a0 a2 a1 a3, so the words (a0,a2) and
 *      (a1,a3) pair with __sxtb16(w) and __sxtb16(ror8(w)) of the weight word in
 *      fd_dot_s16_s8; the n % 4 tail stays in order.
 * Buffer: fd_im2col_get_buffer_size(p) = 2*k*k*C_in bytes (no padding in either build).
 * Windows inside the input take a fast path: C_in % 4 == 0, whole groups per tap (one word
 * load and two SXTB16 each); few channels (the stem's C_in = 1), the window's bytes gathered
 * on the stack and converted at once by fd_vector_s8_s16.
 */
#include <string.h>

#include "fd_acle_emul.h"
#include "fd_kernels.h"

int32_t fd_im2col_get_buffer_size(const fd_conv_params *p)
{
    return 2 * p->kernel * p->kernel * p->in_channels;
}

#if FD_USE_DSP
/* position of flat index i in the permuted layout (groups below n4 = n & ~3) */
static inline int32_t perm_pos(int32_t i, int32_t n4)
{
    return i < n4 ? ((i & ~3) | ((i & 1) << 1) | ((i >> 1) & 1)) : i;
}

/* buf[base .. base+len) <- src[0 .. len) in the permuted layout */
static void put_run(int16_t *buf, int32_t base, const int8_t *src, int32_t len, int32_t n4)
{
    int32_t i = 0;
    while (i < len) {
        int32_t idx = base + i;
        if ((idx & 3) == 0 && idx + 4 <= n4 && i + 4 <= len) {
            int32_t w;
            memcpy(&w, src + i, 4);
            {
                int32_t lo = __sxtb16(w);          /* a0 a2 */
                int32_t hi = fd_sxtb16_ror8(w); /* a1 a3 */
                memcpy(buf + idx, &lo, 4);
                memcpy(buf + idx + 2, &hi, 4);
            }
            i += 4;
        } else {
            buf[perm_pos(idx, n4)] = src[i];
            i++;
        }
    }
}

/* buf[base .. base+len) <- v (a whole group of a constant is its own permutation; a group
 * shared with a neighbouring tap is not, so those elements go through perm_pos) */
static void fill_run(int16_t *buf, int32_t base, int16_t v, int32_t len, int32_t n4)
{
    int32_t i = 0;
    while (i < len) {
        int32_t idx = base + i;
        if ((idx & 3) == 0 && idx + 4 <= n4 && i + 4 <= len) {
            buf[idx] = v;
            buf[idx + 1] = v;
            buf[idx + 2] = v;
            buf[idx + 3] = v;
            i += 4;
        } else {
            buf[perm_pos(idx, n4)] = v;
            i++;
        }
    }
}
#endif

/* the taps of a window that lies inside the input (every row non-NULL, x0 .. x0+k-1 in range)
 * with C_in % 4 == 0: whole groups of four per tap, LDR + two SXTB16 (DSP) */
static int32_t inside_c4(const int8_t *const *rows, int32_t k, int32_t cin, int32_t x0, int16_t *buf)
{
    int32_t ky, kx;
    int16_t *b = buf;
    for (ky = 0; ky < k; ky++) {
        const int8_t *src = rows[ky] + x0 * cin;
        for (kx = 0; kx < k * cin; kx += 4, b += 4) {
#if FD_USE_DSP
            const int32_t w = fd_ld32(src + kx);
            const int32_t lo = __sxtb16(w), hi = fd_sxtb16_ror8(w);
            memcpy(b, &lo, 4);
            memcpy(b + 2, &hi, 4);
#else
            b[0] = src[kx];
            b[1] = src[kx + 1];
            b[2] = src[kx + 2];
            b[3] = src[kx + 3];
#endif
        }
    }
    return k * k * cin;
}

int32_t fd_im2col_s8_s16(const fd_conv_params *p, const int8_t *const *rows, int32_t in_width, int32_t ox, int16_t *buf)
{
    const int32_t k = p->kernel, cin = p->in_channels;
    const int32_t x0 = ox * p->stride - p->padding;
    const int32_t n = k * k * cin;
    const int16_t zp = (int16_t)p->zp_in;
    int32_t ky, kx, base = 0;
#if FD_USE_DSP
    const int32_t n4 = n & ~3;
#endif
    if (x0 >= 0 && x0 + k <= in_width) {
        int32_t inside = 1;
        for (ky = 0; ky < k; ky++)
            inside = inside && rows[ky] != NULL;
        if (inside && (cin & 3) == 0)
            return inside_c4(rows, k, cin, x0, buf);
        if (inside && n <= 4 * FD_MAX_KERNEL * FD_MAX_KERNEL) {
            /* few channels (the stem): gather the window's bytes, then convert them at once */
            int8_t g[4 * FD_MAX_KERNEL * FD_MAX_KERNEL];
            int32_t i = 0;
            for (ky = 0; ky < k; ky++) {
                const int8_t *src = rows[ky] + x0 * cin;
                for (kx = 0; kx < k * cin; kx++)
                    g[i++] = src[kx];
            }
            fd_vector_s8_s16(g, n, buf);
            return n;
        }
    }
    for (ky = 0; ky < k; ky++) {
        const int8_t *row = rows[ky];
        for (kx = 0; kx < k; kx++, base += cin) {
            const int32_t ix = x0 + kx;
            const int8_t *src = (row != NULL && ix >= 0 && ix < in_width) ? row + ix * cin : NULL;
#if FD_USE_DSP
            if (src != NULL)
                put_run(buf, base, src, cin, n4);
            else
                fill_run(buf, base, zp, cin, n4);
#else
            int32_t ci;
            if (src != NULL)
                for (ci = 0; ci < cin; ci++)
                    buf[base + ci] = src[ci];
            else
                for (ci = 0; ci < cin; ci++)
                    buf[base + ci] = zp;
#endif
        }
    }
    return n;
}

/*
 * Post-processing of the raw int8 head outputs (float32, on the Cortex-M4F FPU):
 * dequantize, softmax, score threshold, SSD box decoding and greedy NMS -- the same
 * steps, in the same order and float32 arithmetic, as facedet/detector/postprocess.py.
 * The integer program ends before this; faces agree with the Python decoder to float
 * rounding, the raw outputs bit for bit.
 */
#ifndef FD_POSTPROCESS_H
#define FD_POSTPROCESS_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int32_t fh, fw;                 /* head map size; its priors are cells (i, j), row-major */
    float step, anchor;             /* prior centre ((j + 0.5) * step, (i + 0.5) * step), side anchor */
    float conf_scale, loc_scale;    /* dequantization: real = scale * (q - zero_point) */
    int32_t conf_zp, loc_zp;
} fd_head_decode;

typedef struct {
    int32_t n_heads;
    const fd_head_decode *heads;
    float var_xy, var_wh;           /* SSD variances (0.1, 0.2) */
} fd_decode_params;

/* Scratch bytes for `priors` candidates (index, score and decoded box of each). */
size_t fd_postprocess_get_buffer_size(int32_t priors);

/*
 * conf [P][2] and loc [P][4] int8, P = sum fh*fw.  Keeps priors whose face probability
 * is strictly above score_threshold, decodes their boxes, sorts them by decreasing
 * score (ties: lower prior index first) and keeps each box unless a kept one overlaps it
 * with IoU strictly above nms_threshold, up to max_faces.  Writes 5 floats per face
 * (x1, y1, x2, y2, score) to faces and returns the number of faces.  scratch must be
 * 4-byte aligned and fd_postprocess_get_buffer_size(P) bytes.
 */
int32_t fd_postprocess_f32(const fd_decode_params *p, const int8_t *conf, const int8_t *loc, float score_threshold,
                           float nms_threshold, int32_t max_faces, void *scratch, float *faces);

#endif /* FD_POSTPROCESS_H */

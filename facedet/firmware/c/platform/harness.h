/*
 * The harness protocol shared by m4_main.c (semihosting) and host_main.c (stdio).
 *
 *   PROGRAM FRAME_FILE RESULT_FILE [SCORE_PPM NMS_PPM MAX_FACES]
 *
 * Thresholds are millionths as decimal integers (score_threshold = SCORE_PPM / 1e6f); a missing
 * value, or "-", means the default (FACEDET_DEFAULT_*_THRESHOLD, FACEDET_MAX_FACES).
 * FRAME_FILE must hold exactly FACEDET_INPUT_BYTES bytes.  RESULT_FILE (little-endian):
 *
 *   char magic[4] = "FDR1"; int32 status (facedet_run's return value);
 *   uint32 instr_lo, instr_hi   instructions executed inside facedet_run (0 on the host)
 *   uint32 stack_bytes          main-stack high-water mark (0 on the host)
 *   uint32 n_marks; n_marks x { uint32 stage; uint32 instr_lo; uint32 instr_hi }
 *                               facedet_profile_mark calls, cumulative instructions (0 on the host)
 *   uint32 result_bytes; the raw bytes of facedet_result_t
 *
 * Exit status: 0 (the library's status is in the file), 1 harness error (one line on stderr),
 * 3 CPU fault (m4 only, one "fault: ..." line on stderr, see startup.c).
 */
#ifndef FACEDET_HARNESS_H
#define FACEDET_HARNESS_H

#include <stddef.h>
#include <stdint.h>

#include "facedet.h"

#define HARNESS_MAX_ARGS 8
/* facedet_run marks FACEDET_STAGES + 1 times; keep at most 64 */
#define HARNESS_MAX_MARKS (FACEDET_STAGES + 1 < 64 ? FACEDET_STAGES + 1 : 64)
#define HARNESS_USAGE "usage: facedet FRAME_FILE RESULT_FILE [SCORE_PPM NMS_PPM MAX_FACES]"

static void harness_put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

/* A decimal int32 ("-" keeps *out); returns 0, or -1 when malformed. */
static int harness_parse_int(const char *s, int32_t *out)
{
    int negative = 0;
    int64_t v = 0;
    if (s[0] == '-' && s[1] == '\0') return 0;
    if (*s == '-' || *s == '+') negative = *s++ == '-';
    if (*s == '\0') return -1;
    for (; *s != '\0'; s++) {
        if (*s < '0' || *s > '9') return -1;
        v = v * 10 + (*s - '0');
        if (v > 2147483648LL) return -1;
    }
    if (negative) v = -v;
    if (v > 2147483647LL) return -1;
    *out = (int32_t)v;
    return 0;
}

/* argv[0..argc): the program name, then the arguments.  NULL, or the error message. */
static const char *harness_config(int argc, char **argv, facedet_config_t *config)
{
    int32_t score = -1, nms = -1, max_faces = FACEDET_MAX_FACES;
    config->score_threshold = FACEDET_DEFAULT_SCORE_THRESHOLD;
    config->nms_threshold = FACEDET_DEFAULT_NMS_THRESHOLD;
    if (argc < 3 || argc > 6) return HARNESS_USAGE;
    if (argc > 3 && harness_parse_int(argv[3], &score) != 0) return "harness: SCORE_PPM is not a decimal integer";
    if (argc > 4 && harness_parse_int(argv[4], &nms) != 0) return "harness: NMS_PPM is not a decimal integer";
    if (argc > 5 && harness_parse_int(argv[5], &max_faces) != 0) return "harness: MAX_FACES is not a decimal integer";
    if (argc > 3 && !(argv[3][0] == '-' && argv[3][1] == '\0')) config->score_threshold = (float)score / 1000000.0f;
    if (argc > 4 && !(argv[4][0] == '-' && argv[4][1] == '\0')) config->nms_threshold = (float)nms / 1000000.0f;
    config->max_faces = max_faces;
    return NULL;
}

/* The fixed part of the result file, before the marks (24 bytes). */
static void harness_header(uint8_t *h, int status, uint64_t instructions, uint32_t stack_bytes, uint32_t n_marks)
{
    h[0] = 'F'; h[1] = 'D'; h[2] = 'R'; h[3] = '1';
    harness_put_u32(h + 4, (uint32_t)status);
    harness_put_u32(h + 8, (uint32_t)instructions);
    harness_put_u32(h + 12, (uint32_t)(instructions >> 32));
    harness_put_u32(h + 16, stack_bytes);
    harness_put_u32(h + 20, n_marks);
}

static void harness_mark(uint8_t *m, uint32_t stage, uint64_t instructions)
{
    harness_put_u32(m, stage);
    harness_put_u32(m + 4, (uint32_t)instructions);
    harness_put_u32(m + 8, (uint32_t)(instructions >> 32));
}

#endif /* FACEDET_HARNESS_H */

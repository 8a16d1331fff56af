/*
 * The firmware test harness on the host (stdio), protocol in harness.h.  Same files as the
 * Cortex-M4 harness; no instruction counter or stack measurement (both written as 0), but the
 * facedet_profile_mark stages are recorded.
 */
#include <stdio.h>
#include <stdlib.h>

#include "facedet.h"
#include "harness.h"

static uint8_t arena[FACEDET_ARENA_SIZE] __attribute__((aligned(8)));
static facedet_result_t result;
static uint32_t n_marks;
static uint32_t mark_stage[HARNESS_MAX_MARKS];

#ifdef FACEDET_PROFILE
void facedet_profile_mark(int stage)
{
    if (n_marks < HARNESS_MAX_MARKS) mark_stage[n_marks++] = (uint32_t)stage;
}
#endif

static void fail(const char *a, const char *b)
{
    fprintf(stderr, "%s%s\n", a, b != NULL ? b : "");
    exit(1);
}

int main(int argc, char **argv)
{
    facedet_config_t config;
    const char *err = harness_config(argc, argv, &config);
    uint8_t buf[24];
    size_t got;
    uint32_t i;
    FILE *f;
    int rc;

    if (err != NULL) fail(err, NULL);
    f = fopen(argv[1], "rb");
    if (f == NULL) fail("harness: cannot open FRAME_FILE ", argv[1]);
    if (fseek(f, 0, SEEK_END) != 0) fail("harness: cannot read FRAME_FILE ", argv[1]);
    {
        long length = ftell(f);
        if (length != (long)FACEDET_INPUT_BYTES) {
            fprintf(stderr, "harness: FRAME_FILE %s holds %ld bytes, expected %ld (FACEDET_INPUT_BYTES)\n", argv[1],
                    length, (long)FACEDET_INPUT_BYTES);
            exit(1);
        }
    }
    rewind(f);
    got = fread(facedet_input(arena), 1, FACEDET_INPUT_BYTES, f);
    fclose(f);
    if (got != (size_t)FACEDET_INPUT_BYTES) fail("harness: cannot read FRAME_FILE ", argv[1]);

    rc = facedet_run(arena, sizeof arena, &config, &result);

    f = fopen(argv[2], "wb");
    if (f == NULL) fail("harness: cannot create RESULT_FILE ", argv[2]);
    harness_header(buf, rc, 0, 0, n_marks);
    fwrite(buf, 1, 24, f);
    for (i = 0; i < n_marks; i++) {
        harness_mark(buf, mark_stage[i], 0);
        fwrite(buf, 1, 12, f);
    }
    harness_put_u32(buf, (uint32_t)sizeof result);
    fwrite(buf, 1, 4, f);
    fwrite(&result, 1, sizeof result, f);
    if (ferror(f) || fclose(f) != 0) fail("harness: cannot write RESULT_FILE ", argv[2]);
    return 0;
}

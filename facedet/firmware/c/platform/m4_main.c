/*
 * The firmware test harness on the emulated Cortex-M4 (QEMU mps2-an386), protocol in harness.h.
 * The command line comes from semihosting (SYS_GET_CMDLINE), files go through semihosting.
 *
 * Instruction count: QEMU runs with "-icount shift=FACEDET_ICOUNT_SHIFT", so virtual time advances
 * 2^shift ns per executed instruction; SysTick counts the 25 MHz CPU clock (40 ns per tick) with
 * its 24-bit wrap counted by SysTick_Handler.  instructions = ticks * 40 / 2^shift (rounded), to
 * within one instruction; the cost of reading the counter is measured once and subtracted.
 * runner.py passes the same shift (ICOUNT_SHIFT there): keep the two equal.
 * The count includes the SysTick interrupts taken inside facedet_run (~10 instructions every
 * 10 M) and the facedet_profile_mark calls (~40 instructions each).
 *
 * Stack: before the run, the free main stack (below the current SP) is painted; afterwards the
 * lowest overwritten word gives the high-water mark, counted from the top of the main stack
 * (so it includes main's own frame and the exception frames of interrupts taken meanwhile).
 */
#include <stddef.h>
#include <stdint.h>

#include "facedet.h"
#include "harness.h"
#include "platform.h"
#include "semihost.h"

#ifndef FACEDET_ICOUNT_SHIFT
#define FACEDET_ICOUNT_SHIFT 6
#endif
#define NS_PER_CPU_TICK 40u          /* mps2-an386 CPU (and SysTick) clock: 25 MHz */
#define STACK_PAINT 0xC5A5C5A5u
#define CMDLINE_SIZE 256

static uint8_t arena[FACEDET_ARENA_SIZE] __attribute__((aligned(8)));
static facedet_result_t result;

static volatile uint32_t systick_wraps;
static uint64_t run_start, tick_overhead;
static int counting;
static uint32_t n_marks;
static uint32_t mark_stage[HARNESS_MAX_MARKS];
static uint64_t mark_ticks[HARNESS_MAX_MARKS];

void SysTick_Handler(void)
{
    systick_wraps++;
}

/* CPU ticks since the counter started: 2^24 per wrap plus the down-counter. */
static __attribute__((noinline)) uint64_t ticks_now(void)
{
    uint32_t primask, wraps, value;
    __asm__ volatile("mrs %0, primask\n cpsid i" : "=r"(primask) :: "memory");
    wraps = systick_wraps;
    value = SYST_CVR;
    if (SCB_ICSR & ICSR_PENDSTSET) {  /* wrapped, interrupt not yet taken: count it here */
        value = SYST_CVR;
        wraps++;
    }
    __asm__ volatile("msr primask, %0" :: "r"(primask) : "memory");
    return ((uint64_t)wraps << 24) + (0xFFFFFFu - value);
}

static uint64_t ticks_to_instructions(uint64_t ticks)
{
    return (ticks * NS_PER_CPU_TICK + ((1u << FACEDET_ICOUNT_SHIFT) >> 1)) >> FACEDET_ICOUNT_SHIFT;
}

static uint64_t elapsed_ticks(uint64_t now)
{
    uint64_t t = now - run_start;
    return t > tick_overhead ? t - tick_overhead : 0;
}

static void counter_start(void)
{
    uint64_t a, b;
    SYST_RVR = 0xFFFFFFu;
    SYST_CVR = 0;
    SYST_CSR = 7u;                   /* CLKSOURCE = CPU clock, TICKINT, ENABLE */
    while (SYST_CVR == 0) {
    }
    a = ticks_now();                 /* the cost of one reading, from its sample to the next one's */
    b = ticks_now();
    tick_overhead = b - a;
}

#ifdef FACEDET_PROFILE
void facedet_profile_mark(int stage)
{
    uint64_t now = ticks_now();
    if (counting && n_marks < HARNESS_MAX_MARKS) {
        mark_stage[n_marks] = (uint32_t)stage;
        mark_ticks[n_marks] = elapsed_ticks(now);
        n_marks++;
    }
}
#endif

static void fail(const char *a, const char *b, const char *c)
{
    sh_line line;
    sh_line_init(&line);
    sh_line_str(&line, a);
    if (b != NULL) sh_line_str(&line, b);
    if (c != NULL) sh_line_str(&line, c);
    sh_line_emit(&line);
    sh_exit(1);
}

/* Command line, frame, result file: returns the result file's handle.  Its 256-byte command-line
 * buffer lives on the stack only until it returns, before the stack is painted. */
static __attribute__((noinline)) int setup(facedet_config_t *config)
{
    char cmdline[CMDLINE_SIZE];
    char *argv[HARNESS_MAX_ARGS];
    int argc = 0, handle;
    char *p = cmdline;
    const char *err;
    long length;

    if (sh_get_cmdline(cmdline, sizeof cmdline) != 0) fail("harness: command line longer than 255 bytes", NULL, NULL);
    for (;;) {
        while (*p == ' ') *p++ = '\0';
        if (*p == '\0') break;
        if (argc == HARNESS_MAX_ARGS) fail(HARNESS_USAGE, NULL, NULL);
        argv[argc++] = p;
        while (*p != ' ' && *p != '\0') p++;
    }
    err = harness_config(argc, argv, config);
    if (err != NULL) fail(err, NULL, NULL);

    handle = sh_open(argv[1], SH_MODE_RB);
    if (handle < 0) fail("harness: cannot open FRAME_FILE ", argv[1], NULL);
    length = sh_flen(handle);
    if (length != (long)FACEDET_INPUT_BYTES) {
        sh_line line;
        sh_line_init(&line);
        sh_line_str(&line, "harness: FRAME_FILE ");
        sh_line_str(&line, argv[1]);
        sh_line_str(&line, " holds ");
        sh_line_dec(&line, length);
        sh_line_str(&line, " bytes, expected ");
        sh_line_dec(&line, (long)FACEDET_INPUT_BYTES);
        sh_line_str(&line, " (FACEDET_INPUT_BYTES)");
        sh_line_emit(&line);
        sh_exit(1);
    }
    if (sh_read(handle, facedet_input(arena), FACEDET_INPUT_BYTES) != 0) fail("harness: cannot read FRAME_FILE ", argv[1], NULL);
    sh_close(handle);

    handle = sh_open(argv[2], SH_MODE_WB);
    if (handle < 0) fail("harness: cannot create RESULT_FILE ", argv[2], NULL);
    return handle;
}

/* Fill the unused main stack (below this function's frame) with STACK_PAINT. */
static __attribute__((noinline)) void paint_stack(void)
{
    uint32_t *sp, *p;
    __asm__ volatile("mov %0, sp" : "=r"(sp));
    for (p = __stack_main_start; p < sp - 2; p++) *p = STACK_PAINT;
}

static uint32_t stack_high_water(void)
{
    const uint32_t *p = __stack_main_start;
    while (p < __stack_main_end && *p == STACK_PAINT) p++;
    return (uint32_t)((uintptr_t)__stack_main_end - (uintptr_t)p);
}

static void write_all(int handle, const void *data, size_t size)
{
    if (sh_write(handle, data, size) != 0) fail("harness: cannot write RESULT_FILE", NULL, NULL);
}

int main(void)
{
    facedet_config_t config;
    uint8_t buf[24];
    uint64_t stop, instructions;
    uint32_t i, stack_bytes;
    int handle, rc;

    counter_start();
    handle = setup(&config);
    paint_stack();

    counting = 1;
    run_start = ticks_now();
    rc = facedet_run(arena, sizeof arena, &config, &result);
    stop = ticks_now();
    counting = 0;
    instructions = ticks_to_instructions(elapsed_ticks(stop));
    stack_bytes = stack_high_water();

    harness_header(buf, rc, instructions, stack_bytes, n_marks);
    write_all(handle, buf, 24);
    for (i = 0; i < n_marks; i++) {
        harness_mark(buf, mark_stage[i], ticks_to_instructions(mark_ticks[i]));
        write_all(handle, buf, 12);
    }
    harness_put_u32(buf, (uint32_t)sizeof result);
    write_all(handle, buf, 4);
    write_all(handle, &result, sizeof result);
    if (sh_close(handle) != 0) fail("harness: cannot close RESULT_FILE", NULL, NULL);
    return 0;
}

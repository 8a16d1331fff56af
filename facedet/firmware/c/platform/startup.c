/*
 * Cortex-M4F startup for the QEMU mps2-an386 board: vector table, reset, MPU, fault reports.
 *
 * Reset: enable the FPU (CPACR) before any floating-point instruction, copy .data from flash,
 * zero .bss, enable the MemManage/BusFault/UsageFault handlers and the divide-by-zero trap,
 * program the MPU, then run main() on PSP with the main stack at the bottom of RAM (m4.ld).
 * main's return value becomes the emulator's exit status (SYS_EXIT_EXTENDED).
 *
 * MPU (PMSAv7, PRIVDEFENA = 0: an address no region covers faults, even when privileged):
 *   - flash  [__flash_start, __flash_end)  read-only, executable
 *   - RAM    [__ram_start, __ram_end)      read-write, execute-never
 * mps2-an386 has 4 MiB of memory behind each of these, so the MPU is what enforces the budget.
 * A PMSAv7 region is a power of two (>= 32 bytes) aligned to its size, split into 8 subregions
 * that can be disabled one by one.  mpu_cover() tiles a range greedily: the smallest power of two
 * holding what is left, with as many of its eighths enabled as fit; the remainder (less than one
 * eighth) goes to the next region.  Any multiple of 1 KiB up to 4 MiB is covered EXACTLY in at
 * most 4 regions (each step leaves less than 1/8 of the previous region), so RAM_KIB need not be
 * a power of two: the byte at __ram_end faults whatever the budget (e.g. 100 KiB = 128 KiB region
 * with 6 of 8 16-KiB subregions + a 4 KiB region).  Sizes that are not multiples of 32 bytes would
 * be rounded up to 32 bytes; the linker script only produces whole KiB.
 * The System Control Space (SysTick, SCB, MPU registers) is always accessible (PPB), and
 * semihosting does not go through the MPU.
 *
 * Faults: one line "fault: <which> (<cause>) CFSR=0x.. HFSR=0x.. MMFAR=0x.. BFAR=0x.. PC=0x.."
 * on stderr, exit status 3.  PC is "n/a" when the CPU could not push the exception frame
 * (MSTKERR/STKERR: the stack overflowed while entering the handler) or the frame lies outside RAM.
 */
#include <stdint.h>

#include "platform.h"
#include "semihost.h"

int main(void);
void Reset_Handler(void);
void reset_c(void) __attribute__((noreturn, used));
void fault_report(const uint32_t *frame, uint32_t exc_return) __attribute__((noreturn, used));
void platform_start_main(void) __attribute__((noreturn, used));
void Fault_Handler(void);
void SysTick_Handler(void) __attribute__((weak, alias("Fault_Handler")));

typedef void (*vector_t)(void);

__attribute__((section(".vectors"), used)) static const vector_t vectors[16] = {
    (vector_t)__msp_top,  /* initial MSP: top of .stack_msp */
    Reset_Handler,
    Fault_Handler,        /* NMI */
    Fault_Handler,        /* HardFault */
    Fault_Handler,        /* MemManage */
    Fault_Handler,        /* BusFault */
    Fault_Handler,        /* UsageFault */
    0, 0, 0, 0,
    Fault_Handler,        /* SVCall */
    Fault_Handler,        /* DebugMonitor */
    0,
    Fault_Handler,        /* PendSV */
    SysTick_Handler,      /* SysTick: m4_main.c's instruction counter */
};

/* Enable CP10/CP11 (the FPU) before any C code can touch a floating-point register. */
__attribute__((naked)) void Reset_Handler(void)
{
    __asm__ volatile(
        "movw r0, #0xED88\n"
        "movt r0, #0xE000\n"
        "ldr r1, [r0]\n"
        "orr r1, r1, #0x00F00000\n"
        "str r1, [r0]\n"
        "dsb\n"
        "isb\n"
        "b reset_c\n");
}

/* Cover [base, base + size) with MPU regions from *region on; returns 0, or -1 when it runs out. */
static int mpu_cover(uint32_t *region, uint32_t nregions, uint32_t base, uint32_t size, uint32_t attr)
{
    while (size > 0) {
        uint32_t log2 = 5, rsize, sub, n, covered, srd = 0;
        while ((1u << log2) < size) log2++;
        rsize = 1u << log2;
        if (*region >= nregions || (base & (rsize - 1u)) != 0) return -1;
        if (rsize >= 256u) {
            sub = rsize / 8u;
            n = size / sub;                   /* >= 4: size > rsize / 2 */
            covered = n * sub;
            srd = (0xFFu << n) & 0xFFu;       /* disable the subregions above the budget */
        } else {
            covered = size;                   /* a 32..128-byte region: rounds up to rsize */
        }
        MPU_RNR = *region;
        MPU_RBAR = base;
        MPU_RASR = attr | (srd << 8) | ((log2 - 1u) << 1) | 1u;
        (*region)++;
        base += covered;
        size -= covered;
    }
    return 0;
}

#define RASR_XN (1u << 28)
#define RASR_AP_RW (3u << 24)          /* read-write, privileged and unprivileged */
#define RASR_AP_RO (6u << 24)          /* read-only, privileged and unprivileged */
#define RASR_NORMAL_WT (1u << 17)      /* TEX=0 C=1 B=0: normal memory, write-through */

static void mpu_setup(void)
{
    uint32_t nregions = (MPU_TYPE >> 8) & 0xFFu, region = 0;
    MPU_CTRL = 0;
    if (mpu_cover(&region, nregions, (uint32_t)(uintptr_t)__flash_start,
                  (uint32_t)((uintptr_t)__flash_end - (uintptr_t)__flash_start), RASR_AP_RO | RASR_NORMAL_WT) != 0
        || mpu_cover(&region, nregions, (uint32_t)(uintptr_t)__ram_start,
                     (uint32_t)((uintptr_t)__ram_end - (uintptr_t)__ram_start),
                     RASR_XN | RASR_AP_RW | RASR_NORMAL_WT) != 0)
        platform_fail("startup: the MPU cannot cover the memory budget", 2);
    for (; region < nregions; region++) {
        MPU_RNR = region;
        MPU_RASR = 0;
    }
    MPU_CTRL = 1u;                     /* ENABLE; PRIVDEFENA = 0, HFNMIENA = 0 */
    __asm__ volatile("dsb\n isb" ::: "memory");
}

void reset_c(void)
{
    const uint32_t *src = __data_load;
    uint32_t *dst;
    for (dst = __data_start; dst < __data_end; dst++) *dst = *src++;
    for (dst = __bss_start; dst < __bss_end; dst++) *dst = 0;

    SCB_SHCSR |= (1u << 16) | (1u << 17) | (1u << 18);  /* MemManage, BusFault, UsageFault */
    SCB_CCR |= 1u << 4;                                 /* DIV_0_TRP */
    mpu_setup();
    platform_start_main();
}

/* Switch thread mode to PSP at the top of .stack_main, run main, exit with its status. */
__attribute__((naked)) void platform_start_main(void)
{
    __asm__ volatile(
        "movw r0, #:lower16:__stack_main_end\n"
        "movt r0, #:upper16:__stack_main_end\n"
        "msr psp, r0\n"
        "movs r0, #2\n"                /* CONTROL.SPSEL = 1: thread mode uses PSP */
        "msr control, r0\n"
        "isb\n"
        "bl main\n"
        "bl sh_exit\n");
}

void platform_fail(const char *message, int status)
{
    sh_line line;
    sh_line_init(&line);
    sh_line_str(&line, message);
    sh_line_emit(&line);
    sh_exit(status);
}

/* Every fault and unexpected exception: pass the exception frame (MSP or PSP) to fault_report. */
__attribute__((naked)) void Fault_Handler(void)
{
    __asm__ volatile(
        "tst lr, #4\n"
        "ite eq\n"
        "mrseq r0, msp\n"
        "mrsne r0, psp\n"
        "mov r1, lr\n"
        "b fault_report\n");
}

static const char *fault_name(uint32_t exception)
{
    switch (exception) {
    case 2: return "NMI";
    case 3: return "HardFault";
    case 4: return "MemManage";
    case 5: return "BusFault";
    case 6: return "UsageFault";
    case 11: return "SVCall";
    case 12: return "DebugMonitor";
    case 14: return "PendSV";
    case 15: return "SysTick";
    default: return "exception";
    }
}

static const char *fault_cause(uint32_t cfsr, uint32_t hfsr, uint32_t mmfar, int stacking)
{
    uintptr_t ram = (uintptr_t)__ram_start;
    if ((cfsr & 0x82u) == 0x82u) {   /* DACCVIOL with a valid MMFAR */
        if (mmfar < ram && mmfar + 4096u >= ram) return "main stack overflow";
        if (mmfar >= (uintptr_t)__flash_start && mmfar < (uintptr_t)__flash_end) return "write to flash";
        if (!stacking) return "memory access outside the RAM budget";
    }
    if (stacking) return "stack overflow while entering the handler";
    if (cfsr & 0x01u) return "instruction fetch outside flash";
    if (cfsr & 0x8F00u) return "bus error";
    if (cfsr & (1u << 25)) return "divide by zero";
    if (cfsr & (1u << 24)) return "unaligned access";
    if (cfsr & (1u << 16)) return "undefined instruction";
    if (cfsr & (1u << 17)) return "invalid state";
    if (cfsr & (1u << 19)) return "coprocessor (FPU) disabled";
    if (hfsr & (1u << 1)) return "vector table read";
    if (hfsr & (1u << 30)) return "escalated";
    return "unexpected";
}

void fault_report(const uint32_t *frame, uint32_t exc_return)
{
    uint32_t ipsr, cfsr = SCB_CFSR, hfsr = SCB_HFSR, mmfar = SCB_MMFAR, bfar = SCB_BFAR;
    int stacking = (cfsr & ((1u << 4) | (1u << 12))) != 0;   /* MSTKERR, STKERR */
    uintptr_t f = (uintptr_t)frame;
    sh_line line;
    __asm__ volatile("mrs %0, ipsr" : "=r"(ipsr));
    ipsr &= 0x1FFu;
    (void)exc_return;   /* bit 2 told Fault_Handler which stack holds the frame */

    sh_line_init(&line);
    sh_line_str(&line, "fault: ");
    sh_line_str(&line, fault_name(ipsr));
    sh_line_str(&line, " (");
    sh_line_str(&line, fault_cause(cfsr, hfsr, mmfar, stacking));
    sh_line_str(&line, ") CFSR=");
    sh_line_hex(&line, cfsr);
    sh_line_str(&line, " HFSR=");
    sh_line_hex(&line, hfsr);
    sh_line_str(&line, " MMFAR=");
    sh_line_hex(&line, mmfar);
    sh_line_str(&line, " BFAR=");
    sh_line_hex(&line, bfar);
    sh_line_str(&line, " PC=");
    if (!stacking && f >= (uintptr_t)__ram_start && f + 32u <= (uintptr_t)__ram_end && (f & 3u) == 0)
        sh_line_hex(&line, frame[6]);
    else
        sh_line_str(&line, "n/a");
    sh_line_emit(&line);
    sh_exit(3);
}

/*
 * Cortex-M4 platform layer shared by startup.c and m4_main.c: system registers, linker symbols.
 */
#ifndef FACEDET_PLATFORM_H
#define FACEDET_PLATFORM_H

#include <stdint.h>

#define REG32(addr) (*(volatile uint32_t *)(uintptr_t)(addr))

/* System control block */
#define SCB_ICSR   REG32(0xE000ED04u)
#define SCB_CCR    REG32(0xE000ED14u)
#define SCB_SHCSR  REG32(0xE000ED24u)
#define SCB_CFSR   REG32(0xE000ED28u)
#define SCB_HFSR   REG32(0xE000ED2Cu)
#define SCB_MMFAR  REG32(0xE000ED34u)
#define SCB_BFAR   REG32(0xE000ED38u)
#define SCB_CPACR  REG32(0xE000ED88u)
#define ICSR_PENDSTSET (1u << 26)

/* SysTick */
#define SYST_CSR   REG32(0xE000E010u)
#define SYST_RVR   REG32(0xE000E014u)
#define SYST_CVR   REG32(0xE000E018u)

/* MPU (PMSAv7) */
#define MPU_TYPE   REG32(0xE000ED90u)
#define MPU_CTRL   REG32(0xE000ED94u)
#define MPU_RNR    REG32(0xE000ED98u)
#define MPU_RBAR   REG32(0xE000ED9Cu)
#define MPU_RASR   REG32(0xE000EDA0u)

/* Linker symbols (m4.ld) */
extern uint32_t __flash_start[], __flash_end[];
extern uint32_t __ram_start[], __ram_end[];
extern uint32_t __stack_main_start[], __stack_main_end[];
extern uint32_t __data_start[], __data_end[], __data_load[];
extern uint32_t __bss_start[], __bss_end[];
extern uint32_t __msp_top[];

/* Report an error line on stderr (semihosting) and exit with the status (startup.c). */
void platform_fail(const char *message, int status) __attribute__((noreturn));

#endif /* FACEDET_PLATFORM_H */

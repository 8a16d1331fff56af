/*
 * ARM semihosting for the Cortex-M4 harness (QEMU: -semihosting-config enable=on,target=native).
 * No libc, no heap.  Every call is a BKPT 0xAB trap handled by the emulator; on real hardware
 * without a debugger attached it would fault, so only the test harness uses this.
 */
#ifndef FACEDET_SEMIHOST_H
#define FACEDET_SEMIHOST_H

#include <stddef.h>
#include <stdint.h>

/* SYS_OPEN modes (ISO C fopen equivalents) */
#define SH_MODE_RB 1   /* "rb" */
#define SH_MODE_WB 5   /* "wb" */

int sh_open(const char *name, int mode);                  /* handle, or -1 */
int sh_close(int handle);                                  /* 0 on success */
long sh_flen(int handle);                                  /* file length, or -1 */
size_t sh_read(int handle, void *buf, size_t len);         /* bytes NOT read (0: all read) */
size_t sh_write(int handle, const void *buf, size_t len);  /* bytes NOT written (0: all written) */
void sh_write0(const char *text);                          /* to the emulator's stderr */
int sh_get_cmdline(char *buf, size_t size);                /* 0, or -1 when it does not fit */
void sh_exit(int status) __attribute__((noreturn));        /* SYS_EXIT_EXTENDED: any status */

/* A fixed-size line builder for messages (no printf). */
typedef struct {
    char text[200];
    size_t len;
} sh_line;

void sh_line_init(sh_line *line);
void sh_line_str(sh_line *line, const char *s);
void sh_line_hex(sh_line *line, uint32_t value);   /* 0x%08x */
void sh_line_dec(sh_line *line, long value);
void sh_line_emit(sh_line *line);                   /* appends "\n" and writes it */

#endif /* FACEDET_SEMIHOST_H */

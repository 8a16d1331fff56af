/* ARM semihosting calls (see semihost.h). */
#include "semihost.h"

enum {
    SYS_OPEN = 0x01,
    SYS_CLOSE = 0x02,
    SYS_WRITE0 = 0x04,
    SYS_WRITE = 0x05,
    SYS_READ = 0x06,
    SYS_FLEN = 0x0C,
    SYS_GET_CMDLINE = 0x15,
    SYS_EXIT_EXTENDED = 0x20
};

#define ADP_STOPPED_APPLICATION_EXIT 0x20026u

static uintptr_t sh_call(uintptr_t op, const void *arg)
{
    register uintptr_t r0 __asm__("r0") = op;
    register uintptr_t r1 __asm__("r1") = (uintptr_t)arg;
    __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

static size_t sh_strlen(const char *s)
{
    size_t n = 0;
    while (s[n] != '\0') n++;
    return n;
}

int sh_open(const char *name, int mode)
{
    uintptr_t args[3] = {(uintptr_t)name, (uintptr_t)mode, sh_strlen(name)};
    return (int)sh_call(SYS_OPEN, args);
}

int sh_close(int handle)
{
    uintptr_t args[1] = {(uintptr_t)handle};
    return (int)sh_call(SYS_CLOSE, args);
}

long sh_flen(int handle)
{
    uintptr_t args[1] = {(uintptr_t)handle};
    return (long)sh_call(SYS_FLEN, args);
}

size_t sh_read(int handle, void *buf, size_t len)
{
    uintptr_t args[3] = {(uintptr_t)handle, (uintptr_t)buf, len};
    return sh_call(SYS_READ, args);
}

size_t sh_write(int handle, const void *buf, size_t len)
{
    uintptr_t args[3] = {(uintptr_t)handle, (uintptr_t)buf, len};
    return sh_call(SYS_WRITE, args);
}

void sh_write0(const char *text)
{
    sh_call(SYS_WRITE0, text);
}

int sh_get_cmdline(char *buf, size_t size)
{
    uintptr_t args[2] = {(uintptr_t)buf, size};
    if (size == 0) return -1;
    if ((int)sh_call(SYS_GET_CMDLINE, args) != 0) return -1;
    if (args[1] >= size) return -1;
    buf[args[1]] = '\0';
    return 0;
}

void sh_exit(int status)
{
    uintptr_t args[2] = {ADP_STOPPED_APPLICATION_EXIT, (uintptr_t)status};
    for (;;) sh_call(SYS_EXIT_EXTENDED, args);
}

void sh_line_init(sh_line *line)
{
    line->len = 0;
    line->text[0] = '\0';
}

void sh_line_str(sh_line *line, const char *s)
{
    while (*s != '\0' && line->len + 2 < sizeof line->text) line->text[line->len++] = *s++;
    line->text[line->len] = '\0';
}

void sh_line_hex(sh_line *line, uint32_t value)
{
    char buf[11];
    int i;
    buf[0] = '0';
    buf[1] = 'x';
    for (i = 0; i < 8; i++) buf[2 + i] = "0123456789abcdef"[(value >> (28 - 4 * i)) & 0xFu];
    buf[10] = '\0';
    sh_line_str(line, buf);
}

void sh_line_dec(sh_line *line, long value)
{
    char buf[24];
    int i = 23;
    unsigned long v = value < 0 ? 0ul - (unsigned long)value : (unsigned long)value;
    buf[i] = '\0';
    do {
        buf[--i] = (char)('0' + v % 10u);
        v /= 10u;
    } while (v != 0);
    if (value < 0) buf[--i] = '-';
    sh_line_str(line, buf + i);
}

void sh_line_emit(sh_line *line)
{
    line->text[line->len] = '\n';
    line->text[line->len + 1] = '\0';
    sh_write0(line->text);
    sh_line_init(line);
}

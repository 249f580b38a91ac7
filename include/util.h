/*
 * util.h - small helpers shared by every module: monotonic time,
 * checked allocation, string copying that never overflows, and opening
 * regular files only.
 */
#ifndef LONC_UTIL_H
#define LONC_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LONC_VERSION "0.1.0"

#define WUR __attribute__((warn_unused_result))
#define PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))

/* Milliseconds on the monotonic clock (never jumps with the wall clock). */
int64_t now_ms(void);

/* Microseconds on the same clock. */
int64_t now_us(void);

/* The graceful shutdown's deadline (a now_ms() value), process-wide:
 * from the moment it is set no transaction may run past it, and what is
 * still queued then is answered con_lost.  INT64_MAX (the default) while
 * no shutdown is under way.  Read by every thread, set once. */
void stop_deadline_set(int64_t deadline);
int64_t stop_deadline(void);
bool stopping(void);

/* Allocation that aborts the process on exhaustion: lonc cannot make
 * progress without memory and a NULL check at every site hides bugs. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);

/* Copy src into dst of size n, always NUL-terminated; returns strlen(src)
 * so callers can detect truncation (result >= n). */
size_t str_copy(char *dst, const char *src, size_t n);

/* Name the calling thread (top -H, ps -L): "<role>:<host>", cut to the
 * kernel's 15 characters; host may be NULL. */
void thread_name(const char *role, const char *host);

/* Uniform random integer in [0, n) from a per-thread generator seeded
 * from the OS; for jitter only, not for keys. */
uint32_t rand_below(uint32_t n);

struct stat;

/* An O_PATH descriptor of `path` if it is a regular file (st: what it
 * is).  O_PATH opens nothing: a FIFO, a device or a terminal at the end
 * of someone's symlink is looked at, never opened.  -1 with errno
 * (EINVAL: not a regular file). */
int pin_regular(const char *path, struct stat *st) WUR;

/* The name through which the pinned file (and no other) is opened:
 * /proc/self/fd/N.  buf of at least 32 bytes. */
const char *pinned_name(int pin, char *buf, size_t n);

/* Open `path` for reading only if it is a regular file (pin_regular,
 * then opened through its pin, never blocking, O_NOCTTY).  -1 with
 * errno (EINVAL: not a regular file). */
int open_regular(const char *path, struct stat *st) WUR;

/* Read all of descriptor fd, at most `max` bytes, into a new buffer
 * (NUL-terminated; its length in *len).  NULL with errno (EFBIG: more
 * than max, however the file grew after it was looked at). */
char *read_all(int fd, size_t max, size_t *len) WUR;

#endif

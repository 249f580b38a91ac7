/*
 * util.c - monotonic time, checked allocation, safe string copy, a
 * cheap per-thread random generator for timing jitter, and opening
 * only regular files (looked at through O_PATH first).  No locks.
 * May call: nothing (the lowest).
 */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void thread_name(const char *role, const char *host)
{
	char name[16];   /* the kernel's limit, NUL included */

	snprintf(name, sizeof(name), "%s%s%s", role, host ? ":" : "", host ? host : "");
	pthread_setname_np(pthread_self(), name);
}

static _Atomic int64_t stop_by = INT64_MAX;

void stop_deadline_set(int64_t deadline)
{
	/* Workers blocked on lond read it at least every receive slice
	 * (worker.c), acceptors at every wake-up. */
	atomic_store(&stop_by, deadline);
}

int64_t stop_deadline(void)
{
	return atomic_load_explicit(&stop_by, memory_order_relaxed);
}

bool stopping(void)
{
	return stop_deadline() != INT64_MAX;
}

static void oom(size_t n)
{
	fprintf(stderr, "lonc: out of memory allocating %zu bytes\n", n);
	abort();
}

void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (!p)
		oom(n);
	return p;
}

void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);

	if (!p)
		oom(n * size);
	return p;
}

void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);

	if (!q)
		oom(n);
	return q;
}

char *xstrdup(const char *s)
{
	size_t n = strlen(s) + 1;
	char *p = xmalloc(n);

	memcpy(p, s, n);
	return p;
}

size_t str_copy(char *dst, const char *src, size_t n)
{
	size_t len = strlen(src);

	if (n) {
		size_t m = len < n - 1 ? len : n - 1;

		memcpy(dst, src, m);
		dst[m] = '\0';
	}
	return len;
}

uint32_t rand_below(uint32_t n)
{
	static _Thread_local uint64_t state;

	if (n == 0)
		return 0;
	if (state == 0) {
		if (getrandom(&state, sizeof(state), 0) != sizeof(state))
			state = (uint64_t)now_ms() ^ (uint64_t)(uintptr_t)&state;
		state |= 1;
	}
	/* xorshift64*: plenty for spreading timers apart. */
	state ^= state >> 12;
	state ^= state << 25;
	state ^= state >> 27;
	return (uint32_t)(((state * 2685821657736338717ULL) >> 32) % n);
}

int pin_regular(const char *path, struct stat *st)
{
	int pin = open(path, O_PATH | O_CLOEXEC);

	if (pin < 0)
		return -1;
	int err = fstat(pin, st) < 0 ? errno : S_ISREG(st->st_mode) ? 0 : EINVAL;

	if (err) {
		close(pin);
		errno = err;
		return -1;
	}
	return pin;
}

const char *pinned_name(int pin, char *buf, size_t n)
{
	snprintf(buf, n, "/proc/self/fd/%d", pin);
	return buf;
}

int open_regular(const char *path, struct stat *st)
{
	char name[32];
	int pin = pin_regular(path, st);

	if (pin < 0)
		return -1;
	/* Opening the pin's /proc name reopens the very inode looked at,
	 * whatever the path names by now. */
	int fd = open(pinned_name(pin, name, sizeof(name)),
		      O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	int err = errno;

	close(pin);
	errno = err;
	return fd;
}

char *read_all(int fd, size_t max, size_t *len)
{
	size_t cap = 4096, n = 0;
	char *buf = xmalloc(cap + 1);

	for (;;) {
		if (n == cap) {
			if (cap > max) {
				free(buf);
				errno = EFBIG;
				return NULL;
			}
			cap *= 2;
			buf = xrealloc(buf, cap + 1);
		}
		ssize_t r = read(fd, buf + n, cap - n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int err = errno;

			free(buf);
			errno = err;
			return NULL;
		}
		if (r == 0)
			break;
		n += (size_t)r;
		if (n > max) {
			free(buf);
			errno = EFBIG;
			return NULL;
		}
	}
	buf[n] = '\0';
	*len = n;
	return buf;
}

/*
 * tap.h - a tiny TAP producer for the unit tests.  Each check prints
 * "ok N - name" or "not ok N - name" with both values and file:line.
 */
#ifndef LONC_TAP_H
#define LONC_TAP_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int tap_n, tap_failed;

static inline void tap_result(int ok, const char *file, int line,
			      const char *name)
{
	tap_n++;
	printf("%sok %d - %s\n", ok ? "" : "not ", tap_n, name);
	if (!ok) {
		tap_failed++;
		printf("#   Failed test '%s'\n#   at %s line %d.\n", name, file, line);
	}
	fflush(stdout);
}

#define ok(cond, name) tap_result(!!(cond), __FILE__, __LINE__, (name))

#define is_int(got, want, name) do {                                     \
	long long g_ = (long long)(got), w_ = (long long)(want);          \
	tap_result(g_ == w_, __FILE__, __LINE__, (name));                 \
	if (g_ != w_)                                                     \
		printf("#          got: %lld\n#     expected: %lld\n", g_, w_); \
} while (0)

#define is_str(got, want, name) do {                                     \
	const char *g_ = (got), *w_ = (want);                             \
	int ok_ = g_ && w_ ? strcmp(g_, w_) == 0 : g_ == w_;              \
	tap_result(ok_, __FILE__, __LINE__, (name));                      \
	if (!ok_)                                                         \
		printf("#          got: '%s'\n#     expected: '%s'\n",         \
		       g_ ? g_ : "(null)", w_ ? w_ : "(null)");            \
} while (0)

/* n bytes as 2n lower-case hex digits and a NUL, for comparing keys
 * and cipher blocks with published vectors. */
static inline void to_hex(const unsigned char *p, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[p[i] >> 4];
		out[2 * i + 1] = digits[p[i] & 15];
	}
	out[2 * n] = '\0';
}

#define done_testing() do {                                              \
	printf("1..%d\n", tap_n);                                         \
	return tap_failed ? 1 : 0;                                        \
} while (0)

#endif

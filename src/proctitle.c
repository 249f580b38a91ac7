/*
 * proctitle.c - the process title (proctitle.h).  Linux keeps a
 * process's command line where its arguments and environment were: the
 * title is written there, after both were moved away.  Main thread
 * only.  May call: util.
 */
#include "proctitle.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern char **environ;

static char *area;        /* the command line's memory */
static size_t area_len;
static char **env_copy;   /* what environ points at now (kept for good) */
static char **argv_copy;  /* the copies argv[] points at */

void proctitle_init(int argc, char **argv)
{
	size_t n = 0;

	if (argc < 1 || !argv[0])
		return;
	char *start = argv[0], *end = argv[0];
	/* The area runs over the arguments and the environment, as long as
	 * their strings follow one another. */
	for (int i = 0; i < argc; i++)
		if (argv[i] == end)
			end = argv[i] + strlen(argv[i]) + 1;
	while (environ[n])
		n++;
	for (size_t i = 0; i < n; i++)
		if (environ[i] == end)
			end = environ[i] + strlen(environ[i]) + 1;
	env_copy = xcalloc(n + 1, sizeof(*env_copy));
	for (size_t i = 0; i < n; i++)
		env_copy[i] = xstrdup(environ[i]);
	environ = env_copy;
	argv_copy = xcalloc((size_t)argc + 1, sizeof(*argv_copy));
	for (int i = 0; i < argc; i++)
		argv[i] = argv_copy[i] = xstrdup(argv[i]);
	area = start;
	area_len = (size_t)(end - start);
}

void proctitle_set(const char *fmt, ...)
{
	char buf[256];
	va_list ap;

	if (!area || area_len < 2)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	size_t n = strlen(buf);
	if (n >= area_len)
		n = area_len - 1;
	memcpy(area, buf, n);
	memset(area + n, 0, area_len - n);
}

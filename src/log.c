/*
 * log.c - syslog/stderr logging.  A leaf module: the only state is the
 * destination and the level, both atomics, so any thread may log while
 * holding any lock.  Each line is written with one call so lines from
 * different threads never interleave.
 */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static atomic_int log_level = LOG_INFO;
static atomic_bool log_stderr = true;

void log_open(const char *ident, int facility, bool to_stderr, int level)
{
	atomic_store(&log_level, level);
	atomic_store(&log_stderr, to_stderr);
	if (!to_stderr)
		openlog(ident, LOG_PID | LOG_NDELAY, facility);
}

void log_close(void)
{
	if (!atomic_load(&log_stderr))
		closelog();
}

void log_set_level(int level)
{
	atomic_store(&log_level, level);
}

bool log_enabled(int level)
{
	return level <= atomic_load(&log_level);
}

static const char *const level_names[] = {
	[LOG_EMERG] = "emerg", [LOG_ALERT] = "alert", [LOG_CRIT] = "crit",
	[LOG_ERR] = "err", [LOG_WARNING] = "warning", [LOG_NOTICE] = "notice",
	[LOG_INFO] = "info", [LOG_DEBUG] = "debug",
};

static void log_write(int level, const char *fmt, va_list ap, int err) PRINTF_LIKE(2, 0);

static void log_write(int level, const char *fmt, va_list ap, int err)
{
	char line[2048];
	int n = vsnprintf(line, sizeof(line), fmt, ap);

	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line))
		n = sizeof(line) - 1;
	if (err)
		snprintf(line + n, sizeof(line) - (size_t)n, " error=\"%s\"",
			 strerror(err));
	if (atomic_load(&log_stderr)) {
		char out[2200];
		struct timespec ts;
		struct tm tm;

		clock_gettime(CLOCK_REALTIME, &ts);
		localtime_r(&ts.tv_sec, &tm);
		int m = snprintf(out, sizeof(out),
				 "%04d-%02d-%02d %02d:%02d:%02d.%03ld lonc[%d] %s: %s\n",
				 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
				 tm.tm_hour, tm.tm_min, tm.tm_sec,
				 ts.tv_nsec / 1000000, (int)getpid(),
				 level_names[level & 7], line);
		if (m > 0) {
			size_t len = (size_t)m < sizeof(out) ? (size_t)m : sizeof(out) - 1;
			ssize_t w = write(STDERR_FILENO, out, len);
			(void)w;
		}
	} else {
		syslog(level, "%s", line);
	}
}

void log_msg(int level, const char *fmt, ...)
{
	va_list ap;

	if (!log_enabled(level))
		return;
	va_start(ap, fmt);
	log_write(level, fmt, ap, 0);
	va_end(ap);
}

void log_errno(int level, const char *fmt, ...)
{
	int err = errno;
	va_list ap;

	if (!log_enabled(level))
		return;
	va_start(ap, fmt);
	log_write(level, fmt, ap, err);
	va_end(ap);
	errno = err;
}

int log_level_from_name(const char *name)
{
	for (int i = 0; i < 8; i++)
		if (strcasecmp(name, level_names[i]) == 0)
			return i;
	if (strcasecmp(name, "error") == 0)
		return LOG_ERR;
	if (strcasecmp(name, "warn") == 0)
		return LOG_WARNING;
	return -1;
}

int log_facility_from_name(const char *name)
{
	static const struct {
		const char *name;
		int facility;
	} tab[] = {
		{ "daemon", LOG_DAEMON }, { "user", LOG_USER },
		{ "local0", LOG_LOCAL0 }, { "local1", LOG_LOCAL1 },
		{ "local2", LOG_LOCAL2 }, { "local3", LOG_LOCAL3 },
		{ "local4", LOG_LOCAL4 }, { "local5", LOG_LOCAL5 },
		{ "local6", LOG_LOCAL6 }, { "local7", LOG_LOCAL7 },
	};

	for (size_t i = 0; i < sizeof(tab) / sizeof(tab[0]); i++)
		if (strcasecmp(name, tab[i].name) == 0)
			return tab[i].facility;
	return -1;
}

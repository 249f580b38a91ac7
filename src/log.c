/*
 * log.c - syslog/stderr logging, and optionally a lonc.log file shaped
 * like loncnew's (log_file) for LON-CAPA's own monitoring.  A leaf
 * module: the destination and the level are atomics; the log file has a
 * mutex of its own (file_mu), a leaf held for one write (and, once a
 * second at most, a stat to notice a rotation).  So any thread may log
 * while holding any lock.  Each line is written with one call so lines
 * from different threads never interleave.  May call: util.
 */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static atomic_int log_level = LOG_INFO;
static atomic_bool log_stderr = true;

/* The lonc.log file (log_file). */
static pthread_mutex_t file_mu = PTHREAD_MUTEX_INITIALIZER;
static char *file_path;          /* protected by file_mu; NULL: none */
static int file_fd = -1;         /* protected by file_mu */
static int64_t file_checked;     /* protected by file_mu: last rotation check */

void log_set_file(const char *path)
{
	pthread_mutex_lock(&file_mu);
	if (!path || !*path || !file_path || strcmp(path, file_path)) {
		if (file_fd >= 0)
			close(file_fd);
		file_fd = -1;
		free(file_path);
		file_path = path && *path ? xstrdup(path) : NULL;
	}
	pthread_mutex_unlock(&file_mu);
}

/* The file is still the one at its path?  Checked once a second: a
 * renamed or removed log (loncron rotates by renaming) is reopened,
 * without a signal.  file_mu held. */
static void file_check(void)
{
	struct stat a, b;
	int64_t now = now_ms();

	if (file_fd >= 0 && now - file_checked < 1000)
		return;
	file_checked = now;
	if (file_fd >= 0 && stat(file_path, &a) == 0 && fstat(file_fd, &b) == 0 &&
	    a.st_dev == b.st_dev && a.st_ino == b.st_ino)
		return;
	if (file_fd >= 0)
		close(file_fd);
	/* Opened by whoever runs now: after start-up, the daemon's user. */
	file_fd = open(file_path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW |
		       O_CLOEXEC | O_NONBLOCK, 0640);
}

/* The severity word of a loncnew log line. */
static const char *severity(int level, const char *msg)
{
	static const char *const good[] = {
		"event=ready", "event=host_alive", "event=connected", "event=reload ", NULL,
	};

	if (level <= LOG_ERR)
		return "CRITICAL";
	if (level == LOG_WARNING)
		return "WARNING";
	for (const char *const *g = good; *g; g++)
		if (strstr(msg, *g))
			return "SUCCESS";
	return "INFO";
}

/* "<local time> (<pid>) [<host>] <SEVERITY>: <message>" to the file. */
static void file_write(int level, const char *msg)
{
	char out[2400], when[64], host[128] = "-";
	time_t t = time(NULL);
	struct tm tm;
	const char *h = strstr(msg, "host=");

	if (h && (h == msg || h[-1] == ' ')) {
		size_t n = strcspn(h + 5, " ");
		snprintf(host, sizeof(host), "%.*s", (int)(n < sizeof(host) ? n : sizeof(host) - 1),
			 h + 5);
	}
	localtime_r(&t, &tm);
	strftime(when, sizeof(when), "%a %b %e %H:%M:%S %Y", &tm);
	int m = snprintf(out, sizeof(out), "%s (%d) [%s] %s: %s\n", when, (int)getpid(),
			 host, severity(level, msg), msg);
	if (m <= 0)
		return;
	size_t len = (size_t)m < sizeof(out) ? (size_t)m : sizeof(out) - 1;
	pthread_mutex_lock(&file_mu);
	if (file_path) {
		file_check();
		if (file_fd >= 0) {
			ssize_t w = write(file_fd, out, len);
			(void)w;
		}
	}
	pthread_mutex_unlock(&file_mu);
}

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
	log_set_file(NULL);
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
	file_write(level, line);
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

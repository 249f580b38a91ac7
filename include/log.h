/*
 * log.h - one-line event logging to syslog or, in the foreground, stderr.
 *
 * Lines are "key=value" style events ("host=x event=connect_failed ...").
 * The logger is a leaf: it takes no lock of any other module, so it can
 * be called with any lock held.
 */
#ifndef LONC_LOG_H
#define LONC_LOG_H

#include <stdbool.h>
#include <syslog.h>

#include "util.h"

/* Route output: to stderr when `to_stderr`, else to syslog with `ident`
 * and `facility` (a LOG_* facility).  Messages above `level` (a LOG_*
 * priority) are dropped.  May be called again to re-route. */
void log_open(const char *ident, int facility, bool to_stderr, int level);
void log_close(void);

/* Also write every line to `path` (NULL or "": stop), shaped like
 * loncnew's lonc.log: "<local time> (<pid>) [<host>] <SEVERITY>: <line>"
 * with INFO, WARNING, CRITICAL or SUCCESS.  Opened at the next line by
 * whoever runs then (call it after the privilege drop), reopened when
 * it was renamed or removed.  Thread-safe. */
void log_set_file(const char *path);

/* Change the level at run time (e.g. on reload); thread-safe. */
void log_set_level(int level);

/* True when a message at `level` would be written. */
bool log_enabled(int level);

/* Log a formatted line at `level`. */
void log_msg(int level, const char *fmt, ...) PRINTF_LIKE(2, 3);

/* Same, appending " error=<strerror(errno)>". */
void log_errno(int level, const char *fmt, ...) PRINTF_LIKE(2, 3);

/* Parse a level name ("err", "warning", "notice", "info", "debug");
 * returns -1 when unknown. */
int log_level_from_name(const char *name);

/* Parse a syslog facility name ("daemon", "local0".."local7", "user");
 * returns -1 when unknown. */
int log_facility_from_name(const char *name);

#endif

/*
 * notify.h - telling the service manager (systemd) how lonc is doing:
 * READY=1 once every socket is bound, RELOADING=1 ... READY=1 around a
 * reload, STOPPING=1 at shutdown, and WATCHDOG=1 while lonc makes
 * progress.  Through libsystemd's sd_notify (notify.c is the only file
 * that includes it); without NOTIFY_SOCKET in the environment every
 * call does nothing.  May call: log, util.
 */
#ifndef LONC_NOTIFY_H
#define LONC_NOTIFY_H

#include <stdbool.h>

#include "util.h"

/* The daemon's state changed: "READY=1", "RELOADING=1", "STOPPING=1",
 * or a STATUS=... line.  Nothing without a service manager. */
void notify(const char *state);

/* Start the watchdog thread when the service manager asked for one
 * (WATCHDOG_USEC): every half period it calls alive(arg) and sends
 * WATCHDOG=1 only when that says true, so that a stuck lonc is
 * restarted.  0, or -1 (logged) when the thread cannot start. */
int notify_watchdog_start(bool (*alive)(void *arg), void *arg) WUR;

/* Stop and join the watchdog thread (if any). */
void notify_watchdog_stop(void);

/* The watchdog's half period in ms (what alive() should allow for), or
 * 0 without a watchdog. */
long notify_watchdog_ms(void);

#endif

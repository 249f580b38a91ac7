/*
 * admin.h - the admin socket: a UNIX socket (mode 0600, owned by the
 * daemon's user) that answers one command per connection for lonc-ctl
 * and monitoring: status, status json, metrics, hosts, reset <host>,
 * reload.  One thread; it reads the broker under its read lock.
 */
#ifndef LONC_ADMIN_H
#define LONC_ADMIN_H

#include <sys/types.h>

#include "util.h"

struct broker;

/* Bind the admin socket at path (mode 0600).  0 or -1 (logged). */
int admin_open(struct broker *b, const char *path) WUR;

/* Give the socket to uid:gid (when started as root).  0 or -1. */
int admin_give(uid_t uid, gid_t gid) WUR;

/* Start the admin thread.  0 or -1 (logged). */
int admin_start(void) WUR;

/* Stop the thread, close and remove the socket.  Safe if never opened. */
void admin_stop(void);

/* Answer one command line (no '\n') into a malloc'd string (for tests
 * and the thread).  The caller frees it. */
char *admin_command(struct broker *b, const char *line);

#endif

/*
 * daemon.h - process-level duties: detaching from the terminal, the pid
 * file, and the signal mask.  Called from the main thread only.
 */
#ifndef LONC_DAEMON_H
#define LONC_DAEMON_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "util.h"

/* Fork into the background, start a new session, chdir to /, stdio to
 * /dev/null.  The parent waits until the child reports readiness (via
 * daemon_ready) and exits 0, or exits with the child's failure status.
 * 0 in the child, -1 on error (before forking). */
int daemon_detach(void) WUR;

/* Tell the waiting parent (if any) that start-up finished: status 0 =
 * ready, else the exit status it should report, with the reason given
 * to daemon_fail_reason (the parent prints it on its stderr). */
void daemon_ready(int status);

/* The first reason a start failed, for the parent's stderr. */
void daemon_fail_reason(const char *reason);

/* Create (or take over) and lock the pid file and write our pid; never
 * following a symlink, and refusing one that is not a plain file of its
 * own (a FIFO, a hard link, someone else's).  Refuses (message in err)
 * when another lonc holds its lock, or when it names a running lonc or
 * loncnew; a pid file naming any other process is stale (its pid was
 * reused) and taken over.  Returns the open fd (kept for the lock) or
 * -1. */
int pidfile_open(const char *path, char *err, size_t errlen) WUR;

/* Remove the pid file and close its fd; one lonc may no longer remove
 * (root's, in root's directory) is emptied instead, and logged. */
void pidfile_close(const char *path, int fd);

/* Raise the soft limit on open files to the hard one: every client and
 * every lond connection is a descriptor, and the usual soft default
 * (1024) is soon reached by idle clients of one host, which then starves
 * every other host's accept.  Returns the limit now in force (-1 when
 * unknown or unlimited). */
long daemon_raise_nofile(void);

/* Keep the allocator from holding on to memory after load: large
 * blocks in their own mappings, few heaps.  Before the first thread. */
void daemon_tune_malloc(void);

/* Give freed heap memory back to the system (now and then, when idle
 * memory should settle). */
void daemon_trim_memory(void);

/* Block the signals lonc handles (taken with sigtimedwait by the main
 * thread) and ignore SIGPIPE.  Call
 * before the first thread starts; fills *set with the handled set. */
void daemon_block_signals(sigset_t *set);

/* Look up `user` and `group` ("" = the user's primary group).  0, or
 * -1 with a message in err. */
int daemon_lookup_user(const char *user, const char *group, uid_t *uid,
		       gid_t *gid, char *err, size_t errlen) WUR;

/* Become uid:gid for good (supplementary groups of `user` too); fails if
 * root could be regained.  0, or -1 with a message in err. */
int daemon_drop_privileges(const char *user, uid_t uid, gid_t gid, char *err,
			   size_t errlen) WUR;

#endif

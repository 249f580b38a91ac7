/*
 * delayed.h - lonnet's delayed (critical) transactions: files in
 * <socket_dir>/delayed/ named <time>.<count>.<pid>.<cmd>.<hostid>, each
 * holding one request line, to be replayed to that host once lonc has
 * a working connection to it (doc/protocol.md, "Delayed transactions").
 *
 * Pure file handling; the replay itself is done by a worker.  One lock:
 * record_mu (delayed.c), a leaf held only to copy the log directory.
 */
#ifndef LONC_DELAYED_H
#define LONC_DELAYED_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "util.h"

struct delayed_item {
	char *path;      /* full path of the file */
	char *hostid;    /* the host ID it is addressed to */
	long long time;  /* from the name */
	long count;
	dev_t dev;       /* which file it was when scanned */
	ino_t ino;
};

/* The directory of a socket_dir's delayed files (malloc'd). */
char *delayed_dir(const char *socket_dir);

/* The files in dir addressed to one of ids (every file when n_ids is
 * 0), oldest first (time, then count, then name).  Unparsable names are
 * skipped, and so are files modified in the last 3 s (lonnet reads a new
 * file back 2 s after writing it) and files set aside (below).  0 or -1
 * (errno); a missing directory is an empty list. */
int delayed_scan(const char *dir, char *const *ids, size_t n_ids,
		 struct delayed_item **items, size_t *n) WUR;
void delayed_free(struct delayed_item *items, size_t n);

/*
 * Exactly once.  One replay at a time per host ID, process-wide: a claim
 * outlives the host object, so a host a reload retires and its successor
 * (or any two hosts serving an ID, across reloads) never send the same
 * file.  delayed_claim takes every ID or none (false: another replay
 * holds one; the periodic check comes back).  Thread-safe.
 */
bool delayed_claim(char *const *ids, size_t n) WUR;
void delayed_release(char *const *ids, size_t n);

/* A file lond has answered but that could not be deleted, or one that
 * must not be sent at all: remembered (by device, inode and name) and
 * never sent again; the scans skip it while it exists.  Thread-safe. */
void delayed_set_aside(const struct delayed_item *it);

/* Keep the files set aside in <socket_dir>/.lonc-delayed-set-aside, so
 * that a restart does not send them again either; reads what an earlier
 * run left there.  Called once, as the daemon's user, at start-up. */
void delayed_keep_state(const char *socket_dir);

/* Whether this process may delete files in dir (write and search
 * permission): a file is sent only if it can be removed afterwards.
 * Says so in the log when it changes (and at the first call). */
bool delayed_dir_usable(const char *dir);

/* The request line of a file, without its '\n' (malloc'd), or NULL when
 * unreadable, not a regular file, empty, longer than max, or holding
 * more than one line. */
char *delayed_read(const char *path, size_t max, size_t *len);

/* Where delayed_record writes: the configuration's log_dir, set at
 * start-up and again by every reload (log_dir is a live key, and a host
 * the reload keeps still holds the old configuration). */
void delayed_set_log_dir(const char *log_dir);

/* Append "<epoch>:S:<hostid>:<request>:<local time>" to
 * <log_dir>/lonnet.perm.log, whose path is left in path (pathlen bytes)
 * for a message.  The text of an encrypt: request is not written (it may
 * carry a password).  0 or -1 (errno). */
int delayed_record(const char *hostid, const char *request, size_t len,
		   char *path, size_t pathlen) WUR;

#endif

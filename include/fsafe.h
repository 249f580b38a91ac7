/*
 * fsafe.h - the file system work lonc does as root, done so that nothing
 * an unprivileged user could have planted is followed or trusted
 * (doc/security.md).
 *
 * Directories have a role.  A run directory (the pid file's, the admin
 * socket's) is root's own: only root may write it, nor any of its
 * ancestors (bar sticky ones such as /tmp).  lonc's own directories
 * (socket_dir, spool_dir, local_key_dir) belong to the daemon's user:
 * created or handed over through a descriptor opened without following
 * a symlink.  LON-CAPA's directories (log_dir, delayed/) must be
 * writable by the daemon's user.  A directory that is a symlink, owned
 * by a third user, or writable by others (without the sticky bit) is
 * refused, whatever its role.  Inside the user's directories root works
 * with the user's effective ids (fsafe_as_user), so that the kernel
 * itself refuses whatever only root could touch.
 *
 * Main thread only, at start-up (before the other threads) and for
 * lonc -t; no locks.  May call: util.
 */
#ifndef LONC_FSAFE_H
#define LONC_FSAFE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "util.h"

/* The daemon's user (or, when lonc does not run as root, itself). */
struct fsafe_user {
	const char *name;
	uid_t uid;
	gid_t gid;
};

enum fsafe_role {
	FSAFE_RUN,      /* root's own: nobody else may write it */
	FSAFE_OWN,      /* lonc's own, the daemon user's */
	FSAFE_SHARED,   /* LON-CAPA's: the daemon's user must write there */
};

/* Results of fsafe_dir and fsafe_file. */
enum fsafe_rc {
	FSAFE_OK,
	FSAFE_WARN,     /* usable, with a warning in msg */
	FSAFE_BAD,      /* refused: msg says why */
};

/* Check directory `path` for its role.  With `prepare` (start-up), a
 * missing one is created (its parents as root, mode 0755; the directory
 * itself the user's, with `mode`, for OWN and SHARED), and an OWN one is
 * handed to the user with `mode` (mode < 0: its mode is kept).  Without
 * (lonc -t) nothing is changed and a missing directory is fine.  `what`
 * names it in messages (a key, e.g. "socket_dir"). */
enum fsafe_rc fsafe_dir(const char *path, const char *what, enum fsafe_role role,
			int mode, const struct fsafe_user *u, bool prepare,
			char *msg, size_t n) WUR;

/* Where root may put a file (the pid file, the admin socket): FSAFE_RUN
 * when its directory is root's own (root makes the file), FSAFE_OWN when
 * it is the daemon user's (the user makes it, after or as the user);
 * -1 with a message when neither. */
int fsafe_place_of(const char *file, const char *what, const struct fsafe_user *u,
		   char *msg, size_t n) WUR;

/* A file lonc reads its configuration from, as fstat describes it (fd:
 * its descriptor, for its ACL; -1: by path, on root's way); key is NULL
 * for the YAML file, else the key that named it.  As root: one
 * that others can write is refused (as sshd does with its keys); the
 * YAML file and loncapa_conf must be root's, hosts_tab root's or the
 * daemon user's. */
enum fsafe_rc fsafe_config_file(const char *path, int fd, const char *key, const struct stat *st,
				const struct fsafe_user *u, char *msg, size_t n) WUR;

/* One lonc per directory: an exclusive flock on dir/name (made, mode
 * 0600, by whoever runs now), with this process's pid in it; the
 * descriptor, kept for the process's life, or -1 with a message
 * (another lonc holds it). */
int fsafe_lock_dir(const char *dir, const char *name, char *msg, size_t n) WUR;

/* Is the way to path root's alone (always true when not root)? */
bool fsafe_trusted_file(const char *path);

/* Is the way to the file at path root's alone, whoever owns the file
 * itself (judged later, with its own message)?  The directories up to
 * it, and the file if it is a symlink.  Always true when not root. */
bool fsafe_trusted_way(const char *path);

/* Whether unlinked files can be made in dir (O_TMPFILE), as whoever
 * runs now.  0 or -1 (errno). */
int fsafe_tmpfile_works(const char *dir) WUR;

/* Work in the user's directories with the user's effective ids and
 * only the user's group, and back to root's ids and groups (only when
 * running as root; else nothing).  0 or -1 (errno). */
int fsafe_as_user(const struct fsafe_user *u) WUR;
int fsafe_as_root(void) WUR;

#endif

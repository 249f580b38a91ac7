/*
 * fsafe.c - the file system work lonc does as root (fsafe.h): trusted
 * paths, directory roles, the configuration file's owner, and root
 * working as the daemon's user.  Main thread only; no locks.  May call:
 * util.
 */
#include "fsafe.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/xattr.h>
#include <unistd.h>

static enum fsafe_rc say(char *msg, size_t n, enum fsafe_rc rc, const char *fmt, ...)
	PRINTF_LIKE(4, 5);

static enum fsafe_rc say(char *msg, size_t n, enum fsafe_rc rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, n, fmt, ap);
	va_end(ap);
	return rc;
}

/* Root, or whoever runs lonc when it does not run as root. */
static bool trusted_owner(uid_t uid)
{
	return uid == 0 || uid == geteuid();
}

/* Writable by someone other than its owner (group or others), and not
 * sticky: anyone who may write it could swap what is in it. */
static bool open_to_others(const struct stat *st)
{
	return (st->st_mode & (S_IWGRP | S_IWOTH)) && !(st->st_mode & S_ISVTX);
}

/* Does the POSIX access ACL of the file (its descriptor fd, or when
 * fd < 0 `path`) let a named user or group other than root, ok_uid and
 * ok_gid write it?  With an ACL the mode's group
 * bits are only the mask, so the mode alone cannot tell. */
static bool acl_lets_others_write(int fd, const char *path, uid_t ok_uid, gid_t ok_gid)
{
	static const char name[] = "system.posix_acl_access";
	unsigned char acl[4 + 8 * 64];
	ssize_t len = fd >= 0 ? fgetxattr(fd, name, acl, sizeof(acl)) :
		      getxattr(path, name, acl, sizeof(acl));
	unsigned mask = 7;

	if (len < 0)
		return errno == ERANGE;     /* more entries than anyone needs */
	for (ssize_t o = 4; o + 8 <= len; o += 8)
		if ((acl[o] | acl[o + 1] << 8) == 0x10)     /* ACL_MASK */
			mask = acl[o + 2];
	for (ssize_t o = 4; o + 8 <= len; o += 8) {
		unsigned tag = acl[o] | acl[o + 1] << 8, perm = acl[o + 2];
		uint32_t id = (uint32_t)acl[o + 4] | (uint32_t)acl[o + 5] << 8 |
			      (uint32_t)acl[o + 6] << 16 | (uint32_t)acl[o + 7] << 24;

		if (!(perm & mask & 2))
			continue;
		if ((tag == 0x02 && id != 0 && id != ok_uid) ||     /* ACL_USER */
		    (tag == 0x08 && id != 0 && id != ok_gid))       /* ACL_GROUP */
			return true;
	}
	return false;
}

static char *dir_of(const char *path)
{
	char *copy = xstrdup(path);
	char *d = xstrdup(dirname(copy));

	free(copy);
	return d;
}

/* Is every step of the way to `path` (path included) something only
 * root (or we) can change?  Each directory on the way is owned by root
 * and writable by nobody else (a sticky one, such as /tmp, may be; the
 * next step must then be root's); a symlink on the way must be root's,
 * and so must the way to where it points.  A path with ".." is not
 * judged (false). */
static bool trusted_path(const char *path, int depth)
{
	char prefix[PATH_MAX];
	size_t len = strlen(path);

	if (path[0] != '/' || len >= sizeof(prefix) || depth > 8 || strstr(path, "/.."))
		return false;
	for (size_t i = 1; i <= len; i++) {
		if (i < len && path[i] != '/')
			continue;
		memcpy(prefix, path, i);
		prefix[i] = '\0';
		struct stat st;
		if (lstat(prefix, &st) < 0)
			return false;
		if (!trusted_owner(st.st_uid))
			return false;
		if (S_ISLNK(st.st_mode)) {
			char target[PATH_MAX], abs[2 * PATH_MAX + 2];
			ssize_t t = readlink(prefix, target, sizeof(target) - 1);

			if (t <= 0)
				return false;
			target[t] = '\0';
			if (target[0] == '/') {
				snprintf(abs, sizeof(abs), "%s", target);
			} else {
				char *d = dir_of(prefix);
				snprintf(abs, sizeof(abs), "%s/%s", d, target);
				free(d);
			}
			if (!trusted_path(abs, depth + 1))
				return false;
		} else if (!S_ISDIR(st.st_mode) && i < len) {
			return false;
		} else if (S_ISDIR(st.st_mode) && open_to_others(&st)) {
			return false;
		}
	}
	/* "/" itself. */
	struct stat root;
	return stat("/", &root) == 0 && trusted_owner(root.st_uid) && !open_to_others(&root);
}

static const char *owner_name(uid_t uid, char *buf, size_t n)
{
	snprintf(buf, n, "uid %ld", (long)uid);
	return buf;
}

/* Can user u write in (and search) a directory like st? */
static bool user_can_write(const struct stat *st, const struct fsafe_user *u)
{
	if (u->uid == 0)
		return true;
	if (st->st_uid == u->uid)
		return (st->st_mode & (S_IWUSR | S_IXUSR)) == (S_IWUSR | S_IXUSR);
	if (st->st_gid == u->gid)
		return (st->st_mode & (S_IWGRP | S_IXGRP)) == (S_IWGRP | S_IXGRP);
	return (st->st_mode & (S_IWOTH | S_IXOTH)) == (S_IWOTH | S_IXOTH);
}

/* The rules every role shares, on what the directory really is. */
static enum fsafe_rc judge(const char *path, int fd, const char *what, const struct stat *st,
			   enum fsafe_role role, const struct fsafe_user *u,
			   char *msg, size_t n)
{
	char who[32];

	if (!S_ISDIR(st->st_mode))
		return say(msg, n, FSAFE_BAD, "%s %s is not a directory", what, path);
	if (role == FSAFE_RUN) {
		if (!trusted_owner(st->st_uid) || (st->st_mode & (S_IWGRP | S_IWOTH)))
			return say(msg, n, FSAFE_BAD,
				   "%s %s must belong to root and be writable by root alone (it is %s, mode %04o)",
				   what, path, owner_name(st->st_uid, who, sizeof(who)),
				   (unsigned)(st->st_mode & 07777));
		return FSAFE_OK;
	}
	if (!trusted_owner(st->st_uid) && st->st_uid != u->uid)
		return say(msg, n, FSAFE_BAD, "%s %s belongs to %s, neither root nor %s",
			   what, path, owner_name(st->st_uid, who, sizeof(who)), u->name);
	if ((st->st_mode & S_IWOTH) && !(st->st_mode & S_ISVTX))
		return say(msg, n, FSAFE_BAD,
			   "%s %s is writable by every user (mode %04o): anyone could put a file or socket of theirs in lonc's place",
			   what, path, (unsigned)(st->st_mode & 07777));
	if ((st->st_mode & S_IWGRP) && !(st->st_mode & S_ISVTX) && st->st_gid != 0 &&
	    st->st_gid != u->gid)
		return say(msg, n, FSAFE_BAD, "%s %s is writable by group %ld, not %s's",
			   what, path, (long)st->st_gid, u->name);
	if (acl_lets_others_write(fd, path, u->uid, u->gid))
		return say(msg, n, FSAFE_BAD,
			   "%s %s may be written by another user or group (a POSIX ACL entry)",
			   what, path);
	if (role == FSAFE_SHARED && !user_can_write(st, u))
		return say(msg, n, FSAFE_WARN, "%s %s is not writable by %s", what, path, u->name);
	return FSAFE_OK;
}

/* Make `path` (0700) and its missing parents (0755), step by step
 * through directory descriptors from `top` (the nearest directory that
 * exists, a prefix of path) down, never following a symlink.  With
 * `roots_only` (root, working where the way to top is trusted), each
 * step must be a directory of root's that no one else may write before
 * root goes into it: one that another user put there first (in a
 * sticky directory, between root's look and its mkdir) is refused
 * (EPERM).  The descriptor of path, or -1 (errno). */
static int make_dirs(const char *top, const char *path, bool roots_only)
{
	size_t tl = strlen(top);
	if (strncmp(path, top, tl) != 0 || (path[tl] != '/' && strcmp(top, "/"))) {
		errno = EINVAL;
		return -1;
	}
	char *rest = xstrdup(path + tl), *name = rest;
	int fd = open(top, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	while (fd >= 0) {
		name += strspn(name, "/");
		if (!*name)
			break;
		char *end = name + strcspn(name, "/");
		bool last = end[strspn(end, "/")] == '\0';
		struct stat st;
		int next = -1;

		*end = '\0';
		if (mkdirat(fd, name, last ? 0700 : 0755) == 0 || (!last && errno == EEXIST))
			next = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		int err = errno;
		close(fd);
		fd = next;
		if (fd >= 0 && roots_only &&
		    (fstat(fd, &st) < 0 || !trusted_owner(st.st_uid) || open_to_others(&st))) {
			close(fd);
			fd = -1;
			err = EPERM;
		}
		errno = err;
		name = last ? end + strlen(end) : end + 1;
	}
	free(rest);
	return fd;
}

/* The nearest directory above path that exists (st: its lstat), or
 * "/". */
static char *nearest_existing(const char *path, struct stat *st)
{
	char *dir = dir_of(path);

	while (lstat(dir, st) < 0 && strcmp(dir, "/")) {
		char *up = dir_of(dir);

		free(dir);
		dir = up;
	}
	return dir;
}

/* Could create() make `path`?  (lonc -t: nothing is made.) */
static enum fsafe_rc could_create(const char *path, const char *what, enum fsafe_role role,
				  const struct fsafe_user *u, char *msg, size_t n)
{
	struct stat st;
	char *parent = nearest_existing(path, &st);
	enum fsafe_rc rc = FSAFE_OK;

	if (geteuid() == 0 && !trusted_path(parent, 0)) {
		/* Made by the user: it must be able to. */
		if (role == FSAFE_RUN)
			rc = say(msg, n, FSAFE_BAD,
				 "%s %s cannot be made: %s is not root's alone", what, path, parent);
		else if (!S_ISDIR(st.st_mode) || !user_can_write(&st, u))
			rc = say(msg, n, FSAFE_BAD,
				 "%s %s cannot be made: %s is not writable by %s", what, path,
				 parent, u->name);
	} else if (geteuid() != 0 && access(parent, W_OK | X_OK) < 0) {
		rc = say(msg, n, FSAFE_BAD, "%s %s cannot be made: %s: %s", what, path, parent,
			 strerror(errno));
	}
	free(parent);
	return rc;
}

/* Create `path` for its role: root does it where the way there is
 * trusted (and gives an OWN or SHARED one to the user), the user does
 * it elsewhere.  0 or -1 (errno). */
static int create(const char *path, enum fsafe_role role, int mode,
		  const struct fsafe_user *u)
{
	struct stat st;
	/* The way is judged up to the nearest directory that exists (root
	 * makes the missing ones, 0755, where that way is trusted). */
	char *parent = nearest_existing(path, &st);
	bool as_root = geteuid() != 0 || trusted_path(parent, 0);
	int rc = -1, fd;

	if (role == FSAFE_RUN && !as_root) {
		free(parent);
		errno = EPERM;
		return -1;
	}
	if (!as_root && fsafe_as_user(u) < 0) {
		free(parent);
		return -1;
	}
	fd = make_dirs(parent, path, as_root && geteuid() == 0);
	free(parent);
	if (fd >= 0) {
		rc = 0;
		if (role != FSAFE_RUN && geteuid() == 0 && fchown(fd, u->uid, u->gid) < 0)
			rc = -1;
		if (rc == 0 && fchmod(fd, (mode_t)(mode >= 0 ? mode : 0755)) < 0)
			rc = -1;
		close(fd);
	}
	int err = errno;
	if (!as_root && fsafe_as_root() < 0)
		rc = -1;
	errno = err;
	return rc;
}

/* An existing OWN directory (the user's: own_dir) gets `mode`, through
 * a descriptor, so that what is changed is what was checked. */
static enum fsafe_rc hand_over(const char *path, const char *what, int fd,
			       int mode, char *msg, size_t n)
{
	if (geteuid() != 0)
		return FSAFE_OK;
	if (mode >= 0 && fchmod(fd, (mode_t)mode) < 0)
		return say(msg, n, FSAFE_BAD, "%s %s: cannot set its mode: %s", what, path,
			   strerror(errno));
	return FSAFE_OK;
}

/* Absolute, without a trailing '/' and without '.', '..' or empty
 * steps: "dir/" would follow a last-step symlink that "dir" refuses,
 * and ".." would have root make steps it then walks out of. */
static bool plain_path(const char *path)
{
	if (path[0] != '/')
		return false;
	if (!strcmp(path, "/"))
		return true;
	for (const char *s = path; *s; ) {
		const char *step = s + 1;
		size_t len = strcspn(step, "/");

		if (len == 0 || (len == 1 && step[0] == '.') ||
		    (len == 2 && step[0] == '.' && step[1] == '.'))
			return false;
		s = step + len;
	}
	return true;
}

enum fsafe_rc fsafe_dir(const char *path, const char *what, enum fsafe_role role,
			int mode, const struct fsafe_user *u, bool prepare,
			char *msg, size_t n)
{
	struct stat st;

	*msg = '\0';
	if (!plain_path(path))
		return say(msg, n, FSAFE_BAD,
			   "%s %s: give a plain absolute path (no trailing '/', no '.', '..' or empty steps)",
			   what, path);
	if (lstat(path, &st) < 0) {
		if (errno != ENOENT)
			return say(msg, n, FSAFE_BAD, "%s %s: %s", what, path, strerror(errno));
		if (!prepare)      /* made at start-up, if it can be */
			return could_create(path, what, role, u, msg, n);
		if (create(path, role, mode, u) < 0)
			return say(msg, n, FSAFE_BAD, "%s %s cannot be created: %s", what, path,
				   strerror(errno));
	} else if (S_ISLNK(st.st_mode)) {
		return say(msg, n, FSAFE_BAD,
			   "%s %s is a symbolic link: give the real directory", what, path);
	}
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return say(msg, n, FSAFE_BAD, "%s %s: %s", what, path,
			   errno == ELOOP ? "is a symbolic link" : strerror(errno));
	enum fsafe_rc rc = fstat(fd, &st) < 0 ?
			   say(msg, n, FSAFE_BAD, "%s %s: %s", what, path, strerror(errno)) :
			   judge(path, fd, what, &st, role, u, msg, n);
	if (rc == FSAFE_OK && role == FSAFE_RUN && !trusted_path(path, 0))
		rc = say(msg, n, FSAFE_BAD,
			 "%s %s lies where users other than root can change the way to it",
			 what, path);
	/* lonc gives the user only directories it made itself: an existing
	 * one of root's may be anything (/etc, a sticky /tmp). */
	if (rc != FSAFE_BAD && role == FSAFE_OWN && geteuid() == 0 && st.st_uid != u->uid)
		rc = say(msg, n, FSAFE_BAD,
			 "%s %s belongs to %s, not %s: lonc hands over only directories it makes (give it to %s, or remove it)",
			 what, path, st.st_uid == 0 ? "root" : "another user", u->name, u->name);
	if (rc != FSAFE_BAD && prepare && role == FSAFE_OWN) {
		enum fsafe_rc h = hand_over(path, what, fd, mode, msg, n);

		if (h == FSAFE_BAD)
			rc = h;
	}
	close(fd);
	return rc;
}

int fsafe_place_of(const char *file, const char *what, const struct fsafe_user *u,
		   char *msg, size_t n)
{
	char *dir = dir_of(file);
	struct stat st;
	int where = -1;

	*msg = '\0';
	if (lstat(dir, &st) < 0) {
		/* Made at start-up, root's own, where the way is trusted. */
		char *parent = dir_of(dir);

		where = geteuid() != 0 || trusted_path(parent, 0) ? FSAFE_RUN : -1;
		free(parent);
		if (where < 0)
			say(msg, n, FSAFE_BAD, "%s %s: its directory %s does not exist", what,
			    file, dir);
	} else if (judge(dir, -1, what, &st, FSAFE_RUN, u, msg, n) == FSAFE_OK &&
		   !S_ISLNK(st.st_mode) && trusted_path(dir, 0)) {
		where = FSAFE_RUN;
	} else if (!S_ISLNK(st.st_mode) && st.st_uid == u->uid &&
		   judge(dir, -1, what, &st, FSAFE_OWN, u, msg, n) == FSAFE_OK) {
		where = FSAFE_OWN;
	} else if (!*msg || S_ISLNK(st.st_mode)) {
		say(msg, n, FSAFE_BAD,
		    "%s %s: its directory must be root's alone (or %s's): %s is not",
		    what, file, u->name, dir);
	} else {
		char why[512];

		snprintf(why, sizeof(why), "%s", msg);
		say(msg, n, FSAFE_BAD, "%s (it must be root's alone, or %s's)", why, u->name);
	}
	free(dir);
	return where;
}

enum fsafe_rc fsafe_config_file(const char *path, int fd, const char *key, const struct stat *st,
				const struct fsafe_user *u, char *msg, size_t n)
{
	char who[32];

	if (geteuid() != 0)
		return FSAFE_OK;
	/* The YAML file and loncapa.conf say where root works: root's
	 * alone.  hosts.tab only names hosts: it may be the user's. */
	bool roots = !key || strcmp(key, "hosts_tab");
	if (roots && st->st_uid != 0)
		return say(msg, n, FSAFE_BAD,
			   "%s belongs to %s, not root: lonc runs as root and takes %s from root alone",
			   path, owner_name(st->st_uid, who, sizeof(who)),
			   key ? key : "its configuration");
	/* The user's group may write hosts.tab, never root's own files. */
	gid_t ok_gid = roots ? 0 : u->gid;
	if ((st->st_mode & S_IWOTH) ||
	    ((st->st_mode & S_IWGRP) && st->st_gid != 0 && st->st_gid != ok_gid))
		return say(msg, n, FSAFE_BAD,
			   "%s is writable by others (mode %04o): lonc runs as root and will not read it",
			   path, (unsigned)(st->st_mode & 07777));
	if (acl_lets_others_write(fd, path, roots ? 0 : u->uid, ok_gid))
		return say(msg, n, FSAFE_BAD,
			   "%s may be written by another user or group (a POSIX ACL entry): lonc runs as root and will not read it",
			   path);
	if (st->st_uid != 0 && st->st_uid != u->uid)
		return say(msg, n, FSAFE_BAD,
			   "%s belongs to %s, neither root nor %s: lonc runs as root and will not read it",
			   path, owner_name(st->st_uid, who, sizeof(who)), u->name);
	return FSAFE_OK;
}

int fsafe_lock_dir(const char *dir, const char *name, char *msg, size_t n)
{
	size_t len = strlen(dir) + strlen(name) + 2;
	char *path = xmalloc(len);
	struct stat st;

	snprintf(path, len, "%s/%s", dir, name);
	int fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0600);
	if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_nlink != 1) {
		say(msg, n, FSAFE_BAD, "%s: %s", path,
		    fd < 0 ? strerror(errno) : "not a plain file of lonc's");
	} else if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		char other[32] = "";
		ssize_t r = pread(fd, other, sizeof(other) - 1, 0);

		other[r > 0 ? r : 0] = '\0';
		other[strcspn(other, "\n")] = '\0';
		say(msg, n, FSAFE_BAD, "another lonc (pid %s) already serves %s",
		    *other ? other : "unknown", dir);
	} else {
		char pid[32];
		int m = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());

		if (ftruncate(fd, 0) == 0 && pwrite(fd, pid, (size_t)m, 0) == m) {
			free(path);
			return fd;
		}
		say(msg, n, FSAFE_BAD, "%s: %s", path, strerror(errno));
	}
	if (fd >= 0)
		close(fd);
	free(path);
	return -1;
}

bool fsafe_trusted_file(const char *path)
{
	return !path || geteuid() != 0 || trusted_path(path, 0);
}

bool fsafe_trusted_way(const char *path)
{
	if (!path || geteuid() != 0)
		return true;
	struct stat st;
	char *dir = dir_of(path);
	bool ok = trusted_path(dir, 0) &&
		  (lstat(path, &st) < 0 || !S_ISLNK(st.st_mode) || trusted_path(path, 0));

	free(dir);
	return ok;
}

int fsafe_tmpfile_works(const char *dir)
{
	int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);

	if (fd < 0)
		return -1;
	close(fd);
	return 0;
}

/* Root's supplementary groups, kept while root acts as the user. */
static gid_t root_groups[NGROUPS_MAX];
static int n_root_groups = -1;

int fsafe_as_user(const struct fsafe_user *u)
{
	if (getuid() != 0 || u->uid == 0)
		return 0;
	/* Root's groups (0, say, from a login shell) would still open
	 * what the user cannot. */
	if (n_root_groups < 0 &&
	    (n_root_groups = getgroups(NGROUPS_MAX, root_groups)) < 0)
		return -1;
	if (setgroups(1, &u->gid) < 0 || setegid(u->gid) < 0)
		return -1;
	if (seteuid(u->uid) < 0) {
		int err = errno;

		/* Back to root's group and groups, as far as that goes; the
		 * error reported is seteuid's. */
		if (setegid(0) == 0)
			(void)setgroups((size_t)n_root_groups, root_groups);
		errno = err;
		return -1;
	}
	return 0;
}

int fsafe_as_root(void)
{
	if (getuid() != 0 || geteuid() == 0)
		return 0;
	if (seteuid(0) < 0 || setegid(0) < 0)
		return -1;
	if (n_root_groups >= 0 && setgroups((size_t)n_root_groups, root_groups) < 0)
		return -1;
	return 0;
}

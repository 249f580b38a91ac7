/*
 * delayed.c - scanning, reading and recording lonnet's delayed
 * transaction files, and what keeps each delivered once: the per-ID
 * replay claims and the files set aside.  Called by a worker replaying
 * a host's files (holding the claim of its IDs), and by the main
 * thread's check for files (broker_check_delayed).  Locks, all leaves
 * but one: record_mu (the log directory's name), claim_mu (claims and
 * the files set aside), state_mu (the file that keeps those across
 * restarts; taken before claim_mu).
 * May call: log, util.
 */
#include "delayed.h"

#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

char *delayed_dir(const char *socket_dir)
{
	size_t n = strlen(socket_dir) + sizeof("/delayed");
	char *p = xmalloc(n);

	snprintf(p, n, "%s/delayed", socket_dir);
	return p;
}

/* <time>.<count>.<pid>.<cmd>.<hostid>: the host ID is after the last dot. */
static int parse_name(const char *name, long long *t, long *count,
		      const char **hostid)
{
	char *end;
	const char *dot = strrchr(name, '.');

	if (!dot || !dot[1])
		return -1;
	errno = 0;
	*t = strtoll(name, &end, 10);
	if (errno || end == name || *end != '.')
		return -1;
	*count = strtol(end + 1, &end, 10);
	if (*end != '.')
		return -1;
	*hostid = dot + 1;
	return 0;
}

static int older(const void *a, const void *b)
{
	const struct delayed_item *x = a, *y = b;

	if (x->time != y->time)
		return x->time < y->time ? -1 : 1;
	if (x->count != y->count)
		return x->count < y->count ? -1 : 1;
	return strcmp(x->path, y->path);
}

/* lonnet's critical() writes a file, sleeps 2 s and reads it back: a file
 * gone by then (replayed and deleted) makes it log the transaction as
 * failed (F:) and answer con_failed, although lond got it.  So a file is
 * left alone until it is this old (by its modification time). */
#define DELAYED_MIN_AGE_S 3

/* ---- exactly once ---------------------------------------------------- */

static pthread_mutex_t claim_mu = PTHREAD_MUTEX_INITIALIZER;
static char **claims;            /* IDs being replayed; claim_mu */
static size_t n_claims, cap_claims;

struct aside {
	dev_t dev;
	ino_t ino;
	char name[NAME_MAX + 1];
};
static struct aside *asides;     /* delivered, undeletable; claim_mu */
static size_t n_asides, cap_asides;
static unsigned asides_changed;  /* claim_mu: bumped at every change */

/* The files set aside outlive the process (a restart must not send them
 * again): kept in a file of lonc's own in socket_dir, rewritten whole
 * (a new file renamed over it) under state_mu, which is taken before
 * claim_mu and held for that small local write. */
static pthread_mutex_t state_mu = PTHREAD_MUTEX_INITIALIZER;
static char *state_path;         /* state_mu; NULL: not kept */
static unsigned state_written;   /* state_mu: asides_changed written */

static void add_aside(dev_t dev, ino_t ino, const char *name)
{
	if (n_asides == cap_asides) {
		cap_asides = cap_asides ? 2 * cap_asides : 8;
		asides = xrealloc(asides, cap_asides * sizeof(*asides));
	}
	struct aside *a = &asides[n_asides++];
	a->dev = dev;
	a->ino = ino;
	str_copy(a->name, name, sizeof(a->name));
	asides_changed++;
}

/* Write the list as it is now, if it changed since the last write. */
static void save_asides(void)
{
	pthread_mutex_lock(&state_mu);
	if (!state_path) {
		pthread_mutex_unlock(&state_mu);
		return;
	}
	pthread_mutex_lock(&claim_mu);
	unsigned gen = asides_changed;
	size_t n = n_asides;
	struct aside *copy = n ? xmalloc(n * sizeof(*copy)) : NULL;
	if (n)
		memcpy(copy, asides, n * sizeof(*copy));
	pthread_mutex_unlock(&claim_mu);
	if (gen != state_written) {
		size_t len = strlen(state_path) + 5;
		char *tmp = xmalloc(len);
		snprintf(tmp, len, "%s.new", state_path);
		FILE *f = fopen(tmp, "we");
		bool ok = f != NULL;
		for (size_t i = 0; ok && i < n; i++)
			ok = fprintf(f, "%llu %llu %s\n", (unsigned long long)copy[i].dev,
				     (unsigned long long)copy[i].ino, copy[i].name) > 0;
		if (f && fclose(f) != 0)
			ok = false;
		if (ok && rename(tmp, state_path) == 0)
			state_written = gen;
		else
			log_errno(LOG_ERR, "event=delayed_state_failed file=%s action=\"files set aside may be sent again after a restart\"",
				  state_path);
		unlink(tmp);
		free(tmp);
	}
	pthread_mutex_unlock(&state_mu);
	free(copy);
}

void delayed_keep_state(const char *socket_dir)
{
	size_t len = strlen(socket_dir) + sizeof("/.lonc-delayed-set-aside");
	char *path = xmalloc(len);
	FILE *f;
	char line[NAME_MAX + 64], name[NAME_MAX + 1];
	unsigned long long dev, ino;

	snprintf(path, len, "%s/.lonc-delayed-set-aside", socket_dir);
	pthread_mutex_lock(&state_mu);
	free(state_path);
	state_path = path;
	/* O_NOFOLLOW: socket_dir is lonc's own, but be plain about it. */
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	f = fd >= 0 ? fdopen(fd, "r") : NULL;
	if (!f && fd >= 0)
		close(fd);
	pthread_mutex_lock(&claim_mu);
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "%llu %llu %255s", &dev, &ino, name) == 3)
			add_aside((dev_t)dev, (ino_t)ino, name);
	state_written = asides_changed;
	pthread_mutex_unlock(&claim_mu);
	if (f)
		fclose(f);
	pthread_mutex_unlock(&state_mu);
}

static bool claimed(const char *id)
{
	for (size_t i = 0; i < n_claims; i++)
		if (!strcmp(claims[i], id))
			return true;
	return false;
}

bool delayed_claim(char *const *ids, size_t n)
{
	bool ok = true;

	pthread_mutex_lock(&claim_mu);
	for (size_t i = 0; i < n && ok; i++)
		ok = !claimed(ids[i]);
	for (size_t i = 0; i < n && ok; i++) {
		if (n_claims == cap_claims) {
			cap_claims = cap_claims ? 2 * cap_claims : 8;
			claims = xrealloc(claims, cap_claims * sizeof(*claims));
		}
		claims[n_claims++] = xstrdup(ids[i]);
	}
	pthread_mutex_unlock(&claim_mu);
	return ok;
}

void delayed_release(char *const *ids, size_t n)
{
	pthread_mutex_lock(&claim_mu);
	for (size_t i = 0; i < n; i++) {
		for (size_t j = 0; j < n_claims; j++) {
			if (!strcmp(claims[j], ids[i])) {
				free(claims[j]);
				claims[j] = claims[--n_claims];
				break;
			}
		}
	}
	if (n_claims == 0) {
		free(claims);
		claims = NULL;
		cap_claims = 0;
	}
	pthread_mutex_unlock(&claim_mu);
}

void delayed_set_aside(const struct delayed_item *it)
{
	const char *slash = strrchr(it->path, '/');

	pthread_mutex_lock(&claim_mu);
	add_aside(it->dev, it->ino, slash ? slash + 1 : it->path);
	pthread_mutex_unlock(&claim_mu);
	save_asides();
}

static bool same(const struct aside *a, const struct stat *st, const char *name)
{
	return a->dev == st->st_dev && a->ino == st->st_ino && !strcmp(a->name, name);
}

static bool set_aside(const struct stat *st, const char *name)
{
	bool found = false;

	pthread_mutex_lock(&claim_mu);
	for (size_t i = 0; i < n_asides && !found; i++)
		found = same(&asides[i], st, name);
	pthread_mutex_unlock(&claim_mu);
	return found;
}

/* A file seen by a full scan. */
struct seen {
	struct stat st;
	char name[NAME_MAX + 1];
};

/* A full scan forgets the files set aside that are gone (an operator
 * removed them; their inodes may come back as new files). */
static void forget_gone(const struct seen *seen, size_t n)
{
	bool changed = false;

	pthread_mutex_lock(&claim_mu);
	for (size_t i = 0; i < n_asides;) {
		bool there = false;

		for (size_t j = 0; j < n && !there; j++)
			there = same(&asides[i], &seen[j].st, seen[j].name);
		if (there) {
			i++;
		} else {
			asides[i] = asides[--n_asides];
			asides_changed++;
			changed = true;
		}
	}
	pthread_mutex_unlock(&claim_mu);
	if (changed)
		save_asides();
}

bool delayed_dir_usable(const char *dir)
{
	static atomic_int last = -1;    /* 1 usable, 0 not, -1 never looked */
	int now = access(dir, W_OK | X_OK) == 0 || errno == ENOENT;

	if (atomic_exchange(&last, now) != now) {
		if (now)
			log_msg(LOG_INFO, "event=delayed_dir_usable dir=%s", dir);
		else
			log_errno(LOG_ERR, "event=delayed_dir_not_writable dir=%s action=\"delayed transactions are not replayed until lonc may delete them there\"",
				  dir);
	}
	return now;
}

static bool serves(char *const *ids, size_t n_ids, const char *hostid)
{
	if (n_ids == 0)
		return true;
	for (size_t i = 0; i < n_ids; i++)
		if (!strcmp(ids[i], hostid))
			return true;
	return false;
}

static void add_item(struct delayed_item **items, size_t *n, size_t *cap,
		     const char *dir, const char *name, const char *hostid,
		     const struct stat *st)
{
	size_t len = strlen(dir) + strlen(name) + 2;

	if (*n == *cap) {
		*cap = *cap ? 2 * *cap : 16;
		*items = xrealloc(*items, *cap * sizeof(**items));
	}
	struct delayed_item *it = &(*items)[(*n)++];
	it->path = xmalloc(len);
	snprintf(it->path, len, "%s/%s", dir, name);
	it->hostid = xstrdup(hostid);
	parse_name(name, &it->time, &it->count, &hostid);
	it->dev = st->st_dev;
	it->ino = st->st_ino;
}

int delayed_scan(const char *dir, char *const *ids, size_t n_ids,
		 struct delayed_item **items, size_t *n)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	struct seen *seen = NULL;
	size_t cap = 0, n_seen = 0, cap_seen = 0;
	time_t now = time(NULL);

	*items = NULL;
	*n = 0;
	if (!d)
		return errno == ENOENT ? 0 : -1;
	while ((e = readdir(d))) {
		const char *hostid;
		long long t;
		long count;
		struct stat st;

		if (e->d_name[0] == '.' || parse_name(e->d_name, &t, &count, &hostid) < 0 ||
		    !serves(ids, n_ids, hostid) ||
		    fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		if (n_ids == 0) {
			if (n_seen == cap_seen) {
				cap_seen = cap_seen ? 2 * cap_seen : 16;
				seen = xrealloc(seen, cap_seen * sizeof(*seen));
			}
			seen[n_seen].st = st;
			str_copy(seen[n_seen++].name, e->d_name, sizeof(seen->name));
		}
		/* Still young (lonnet reads it back), or delivered already. */
		if (st.st_mtime > now - DELAYED_MIN_AGE_S || set_aside(&st, e->d_name))
			continue;
		add_item(items, n, &cap, dir, e->d_name, hostid, &st);
	}
	closedir(d);
	if (n_ids == 0)
		forget_gone(seen, n_seen);
	free(seen);
	if (*n > 1)
		qsort(*items, *n, sizeof(**items), older);
	return 0;
}

void delayed_free(struct delayed_item *items, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(items[i].path);
		free(items[i].hostid);
	}
	free(items);
}

char *delayed_read(const char *path, size_t max, size_t *len)
{
	/* O_NONBLOCK: a FIFO put there must not block the worker in open(2)
	 * (waiting for a writer); only a regular file is read. */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	size_t have = 0, cap = 256;
	struct stat st;
	char *buf;

	if (fd < 0)
		return NULL;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return NULL;
	}
	buf = xmalloc(cap);
	for (;;) {
		if (have == cap) {
			if (cap > max + 1)
				goto fail;
			cap *= 2;
			buf = xrealloc(buf, cap);
		}
		ssize_t r = read(fd, buf + have, cap - have);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			goto fail;
		if (r == 0)
			break;
		have += (size_t)r;
	}
	close(fd);
	/* One line, as lonnet writes it.  A file with more after its first
	 * line is not one of lonnet's: sending the first line and deleting
	 * the file would lose the rest, so it is left as unreadable. */
	char *nl = memchr(buf, '\n', have);
	if (nl) {
		for (char *p = nl + 1; p < buf + have; p++) {
			if (*p != '\n' && *p != '\r') {
				free(buf);
				return NULL;
			}
		}
		have = (size_t)(nl - buf);
	}
	if (have && buf[have - 1] == '\r')
		have--;
	if (have == 0 || have > max) {
		free(buf);
		return NULL;
	}
	buf[have] = '\0';
	*len = have;
	return buf;
fail:
	close(fd);
	free(buf);
	return NULL;
}

static pthread_mutex_t record_mu = PTHREAD_MUTEX_INITIALIZER;
static char record_dir[PATH_MAX];   /* protected by record_mu */

void delayed_set_log_dir(const char *log_dir)
{
	pthread_mutex_lock(&record_mu);
	snprintf(record_dir, sizeof(record_dir), "%s", log_dir);
	pthread_mutex_unlock(&record_mu);
}

int delayed_record(const char *hostid, const char *request, size_t len,
		   char *path, size_t pathlen)
{
	char when[64];
	time_t now = time(NULL);
	struct tm tm;

	pthread_mutex_lock(&record_mu);
	int n = snprintf(path, pathlen, "%s/lonnet.perm.log", record_dir);
	pthread_mutex_unlock(&record_mu);
	if (n < 0 || (size_t)n >= pathlen) {
		errno = ENAMETOOLONG;
		return -1;
	}
	localtime_r(&now, &tm);
	strftime(when, sizeof(when), "%a %b %e %H:%M:%S %Y", &tm);
	FILE *f = fopen(path, "a");
	if (!f)
		return -1;
	if (len >= 8 && !memcmp(request, "encrypt:", 8)) {
		/* Keep the command word only. */
		const char *colon = memchr(request + 8, ':', len - 8);

		len = colon ? (size_t)(colon - request) : len;
	}
	fprintf(f, "%lld:S:%s:%.*s:%s\n", (long long)now, hostid, (int)len, request, when);
	return fclose(f) == 0 ? 0 : -1;
}

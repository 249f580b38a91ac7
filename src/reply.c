/*
 * reply.c - a reply line held until it is whole: memory up to a limit,
 * an unnamed spool file beyond it, sent to the client only complete.
 *
 * Called by one worker thread per struct reply (its own); no locks, no
 * shared state.  May call: lond (the reply reader), net (waiting for a
 * socket to take more), util; crypto only through lond.
 */
#include "reply.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <unistd.h>

#include "net.h"


void reply_init(struct reply *r, size_t base_cap, size_t limit,
		const char *spool_dir)
{
	memset(r, 0, sizeof(*r));
	r->base_cap = base_cap < limit ? base_cap : limit;
	r->limit = limit;
	r->cap = r->base_cap;
	r->buf = xmalloc(r->cap);
	r->spool_dir = spool_dir;
	r->spool_fd = -1;
}

/* Free the buffer, wiping what an enc: reply left in it. */
static void drop_buffer(struct reply *r)
{
	if (r->rd.enc)
		memset(r->buf, 0, r->cap);
	free(r->buf);
	r->buf = NULL;
}

void reply_destroy(struct reply *r)
{
	drop_buffer(r);
	if (r->spool_fd >= 0)
		close(r->spool_fd);
	r->spool_fd = -1;
}

void reply_begin(struct reply *r, struct crypto_idea *cipher, size_t max_line)
{
	r->len = r->raw = r->spooled = 0;
	r->extra = false;
	r->max_line = max_line;
	lond_reply_init(&r->rd, cipher);
}

/* A bigger buffer: allocated anew so that the old one can be wiped
 * (realloc would leave copies of an enc: reply's plain text behind). */
static void grow(struct reply *r)
{
	size_t cap = r->cap * 2 < r->limit ? r->cap * 2 : r->limit;
	char *nb = xmalloc(cap);

	memcpy(nb, r->buf, r->len + r->raw);
	drop_buffer(r);
	r->buf = nb;
	r->cap = cap;
}

/* Move the plain text in memory to the spool.  0 or -1 (errno). */
static int spill(struct reply *r)
{
	if (r->spool_fd < 0) {
		r->spool_fd = open(r->spool_dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
		if (r->spool_fd < 0)
			return -1;
	}
	for (size_t done = 0; done < r->len;) {
		ssize_t n = pwrite(r->spool_fd, r->buf + done, r->len - done,
				   (off_t)(r->spooled + done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0)
				errno = EIO;
			return -1;
		}
		done += (size_t)n;
	}
	r->spooled += r->len;
	memmove(r->buf, r->buf + r->len, r->raw);
	r->len = 0;
	return 0;
}

char *reply_space(struct reply *r, size_t *room)
{
	if (r->len + r->raw == r->cap) {
		if (r->cap < r->limit) {
			grow(r);
		} else if (!r->spool_dir) {
			errno = EMSGSIZE;
			return NULL;
		} else if (spill(r) < 0) {
			return NULL;
		}
	}
	*room = r->cap - r->len - r->raw;
	return r->buf + r->len + r->raw;
}

enum reply_rc reply_commit(struct reply *r, size_t n)
{
	size_t produced, consumed;
	enum lond_reply_rc rc;

	r->raw += n;
	rc = lond_reply_feed(&r->rd, r->buf + r->len, r->raw, &produced, &consumed);
	if (rc == LOND_REPLY_BAD)
		return REPLY_BAD;
	size_t left = r->raw - consumed;
	if (rc == LOND_REPLY_MORE && left)
		memmove(r->buf + r->len + produced, r->buf + r->len + consumed, left);
	r->len += produced;
	r->raw = rc == LOND_REPLY_MORE ? left : 0;
	if (r->rd.wire - (rc == LOND_REPLY_DONE) > r->max_line)
		return REPLY_TOO_LONG;
	if (rc == LOND_REPLY_MORE)
		return REPLY_MORE;
	/* The '\n' was at or after buf[len]: room for it there. */
	r->buf[r->len] = '\n';
	r->extra = left > 0;
	return REPLY_DONE;
}

size_t reply_size(const struct reply *r)
{
	return r->spooled + r->len;
}

const char *reply_text(const struct reply *r, size_t *len)
{
	if (r->spooled)
		return NULL;
	*len = r->len;
	return r->buf;
}

/* The spooled part, with sendfile: the kernel copies it from the page
 * cache to the socket. */
static int send_spool(struct reply *r, int fd, int idle_ms)
{
	off_t off = 0;

	while ((size_t)off < r->spooled) {
		ssize_t n = sendfile(fd, r->spool_fd, &off, r->spooled - (size_t)off);

		if (n > 0 || (n < 0 && errno == EINTR))
			continue;
		if (n < 0 && errno == EAGAIN) {
			if (net_wait_writable(fd, now_ms() + idle_ms) < 0)
				return -1;
			continue;
		}
		if (n == 0)
			errno = EIO;   /* the spool is shorter than we wrote */
		return -1;
	}
	return 0;
}

int reply_send(struct reply *r, int fd, int idle_ms)
{
	if (r->spooled && send_spool(r, fd, idle_ms) < 0)
		return -1;
	/* A client reading, however slowly, is never cut; one that stops
	 * is given up after idle_ms. */
	return net_write_steady(fd, r->buf, r->len + 1, idle_ms);
}

void reply_wipe(struct reply *r)
{
	size_t n = r->len + r->raw + 1;

	memset(r->buf, 0, n < r->cap ? n : r->cap);
}

void reply_end(struct reply *r)
{
	/* Pieces of an enc: reply's plain text may be anywhere in it. */
	if (r->rd.enc)
		memset(r->buf, 0, r->cap);
	if (r->spooled && ftruncate(r->spool_fd, 0) < 0) {
		/* An unnamed file: closing it frees it. */
		close(r->spool_fd);
		r->spool_fd = -1;
	}
	if (r->cap > r->base_cap) {
		drop_buffer(r);
		r->cap = r->base_cap;
		r->buf = xmalloc(r->cap);
	}
	r->len = r->raw = r->spooled = 0;
	r->rd.enc = false;
}

/*
 * linebuf.c - line assembly across partial reads.  The buffer starts
 * small and doubles up to max + 1 bytes, so an idle client costs little
 * and a long request costs only what it holds.  `scanned` remembers how
 * far the search for '\n' got, so a line that arrives in many pieces is
 * scanned once in total, not once per piece.
 * May call: util.
 */
#include "linebuf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LINEBUF_MIN 512

void linebuf_init(struct linebuf *lb, size_t max)
{
	lb->data = NULL;
	lb->len = lb->cap = lb->scanned = 0;
	lb->max = max;
}

void linebuf_free(struct linebuf *lb)
{
	free(lb->data);
	lb->data = NULL;
	lb->len = lb->cap = lb->scanned = 0;
}

char *linebuf_space(struct linebuf *lb, size_t *room)
{
	size_t limit = lb->max + 1;

	if (lb->len >= limit)
		return NULL;
	if (lb->len == lb->cap) {
		size_t cap = lb->cap ? lb->cap * 2 : LINEBUF_MIN;

		if (cap > limit && limit > lb->len)
			cap = limit;
		lb->data = xrealloc(lb->data, cap);
		lb->cap = cap;
	}
	*room = lb->cap - lb->len;
	if (*room > limit - lb->len)
		*room = limit - lb->len;
	return lb->data + lb->len;
}

void linebuf_commit(struct linebuf *lb, size_t n)
{
	lb->len += n;
}

ssize_t linebuf_fill(struct linebuf *lb, int fd)
{
	size_t room;
	char *p = linebuf_space(lb, &room);
	ssize_t n;

	if (!p)
		return LINEBUF_FULL;
	do
		n = read(fd, p, room);
	while (n < 0 && errno == EINTR);
	if (n > 0)
		linebuf_commit(lb, (size_t)n);
	return n;
}

void linebuf_append(struct linebuf *lb, const char *p, size_t n)
{
	if (lb->cap - lb->len < n) {
		size_t cap = lb->cap ? lb->cap : LINEBUF_MIN;

		while (cap - lb->len < n)
			cap *= 2;
		lb->data = xrealloc(lb->data, cap);
		lb->cap = cap;
	}
	memcpy(lb->data + lb->len, p, n);
	lb->len += n;
}

bool linebuf_has_line(struct linebuf *lb, size_t *len)
{
	if (lb->scanned < lb->len) {
		char *nl = memchr(lb->data + lb->scanned, '\n',
				  lb->len - lb->scanned);
		if (nl) {
			*len = (size_t)(nl - lb->data);
			lb->scanned = *len;
			return *len <= lb->max;
		}
		lb->scanned = lb->len;
	}
	return false;
}

bool linebuf_overflowed(const struct linebuf *lb)
{
	if (lb->scanned < lb->len &&
	    memchr(lb->data + lb->scanned, '\n', lb->len - lb->scanned))
		return lb->scanned > lb->max;
	return lb->len > lb->max;
}

void linebuf_consume(struct linebuf *lb, size_t n)
{
	if (n >= lb->len) {
		lb->len = 0;
	} else {
		memmove(lb->data, lb->data + n, lb->len - n);
		lb->len -= n;
	}
	lb->scanned = 0;
}

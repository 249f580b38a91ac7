/*
 * linebuf.h - a growable byte buffer that collects '\n'-terminated lines
 * from a non-blocking descriptor across partial reads.  Not thread-safe:
 * a linebuf belongs to whichever thread owns its connection.
 */
#ifndef LONC_LINEBUF_H
#define LONC_LINEBUF_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "util.h"

struct linebuf {
	char *data;
	size_t len;      /* bytes held */
	size_t cap;      /* bytes allocated */
	size_t scanned;  /* data[0..scanned) holds no '\n' */
	size_t max;      /* longest line accepted, without the '\n' */
};

#define LINEBUF_FULL (-2)

/* Empty buffer; lines longer than max bytes are refused. */
void linebuf_init(struct linebuf *lb, size_t max);
void linebuf_free(struct linebuf *lb);

/* One read() from fd into the buffer.  Returns bytes read (> 0), 0 at end
 * of file, -1 on error (errno; EAGAIN when nothing is there), or
 * LINEBUF_FULL when max + 1 bytes are already held: the caller must take
 * the lines it holds (or treat the overflow) before reading more. */
ssize_t linebuf_fill(struct linebuf *lb, int fd) WUR;

/* For callers that read by other means than read(2): where the next
 * bytes go and how many fit (*room > 0), or NULL when max + 1 bytes are
 * already held (as LINEBUF_FULL above); then linebuf_commit the count
 * actually stored there. */
char *linebuf_space(struct linebuf *lb, size_t *room) WUR;
void linebuf_commit(struct linebuf *lb, size_t n);

/* Append bytes as if they had been read. */
void linebuf_append(struct linebuf *lb, const char *p, size_t n);

/* True when a whole line is held; *len is its length without '\n'. */
bool linebuf_has_line(struct linebuf *lb, size_t *len);

/* True when more than max bytes are held and none of them is a '\n'. */
bool linebuf_overflowed(const struct linebuf *lb);

/* Drop the first n bytes (a line and its '\n'). */
void linebuf_consume(struct linebuf *lb, size_t n);

#endif

/*
 * reply.h - one reply line from lond on its way to a client, held until
 * it is whole: the promise that a client reads the complete reply or
 * con_lost, never a part of one.
 *
 * The line is read through lond.c's reply reader (framing, enc:
 * decoding).  Its plain text is kept in memory up to a limit
 * (reply_buffer); beyond that, the older part goes to a spool file, an
 * unnamed file (O_TMPFILE, mode 0600) in spool_dir that no other process
 * can open and that vanishes with its descriptor.  Only when the '\n'
 * has arrived is anything sent to the client (sendfile from the spool,
 * then the memory part).  After each reply the buffer shrinks back and
 * the spool is emptied.
 *
 * A struct reply belongs to one worker thread; no locks.
 */
#ifndef LONC_REPLY_H
#define LONC_REPLY_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "lond.h"
#include "util.h"

struct crypto_idea;

struct reply {
	/* buf[0..len): plain text not spooled; buf[len..len+raw): bytes
	 * read but not yet taken by the reader. */
	char *buf;
	size_t cap, len, raw;
	size_t base_cap;      /* the size it shrinks back to */
	size_t limit;         /* most plain bytes kept in memory */
	size_t max_line;      /* most bytes of one line on the wire */
	const char *spool_dir; /* NULL: no spooling */
	int spool_fd;         /* -1 until a reply first outgrows memory */
	size_t spooled;       /* plain bytes in the spool, before buf's */
	bool extra;           /* lond sent bytes after the '\n' */
	struct lond_reply rd;
};

/* Results of reply_commit (and reply_space's failures, as -1 + errno). */
enum reply_rc {
	REPLY_MORE,      /* the line goes on */
	REPLY_DONE,      /* whole: buf[len] is its '\n' */
	REPLY_BAD,       /* a malformed enc: line */
	REPLY_TOO_LONG,  /* over max_line */
};

/* Set up an empty reply: memory up to `limit` bytes (starting at
 * base_cap), spooling to spool_dir beyond it (NULL: never).  The
 * directory string must outlive the reply. */
void reply_init(struct reply *r, size_t base_cap, size_t limit,
		const char *spool_dir);

/* Free the buffer (wiped) and close the spool. */
void reply_destroy(struct reply *r);

/* Start a new line: enc: replies decrypted with cipher (NULL: none),
 * at most max_line bytes on the wire (without the '\n'). */
void reply_begin(struct reply *r, struct crypto_idea *cipher, size_t max_line);

/* Where the next bytes from lond go, and how many fit (> 0).  Makes
 * room by growing the buffer up to its limit, then by moving the plain
 * text to the spool.  NULL with errno when there is no room: EMSGSIZE
 * without a spool, or the spool's error (ENOSPC, EIO, ...). */
char *reply_space(struct reply *r, size_t *room) WUR;

/* n bytes were put at reply_space.  REPLY_DONE sets r->extra when more
 * bytes followed the '\n'. */
enum reply_rc reply_commit(struct reply *r, size_t n) WUR;

/* Plain bytes of the line so far (spool and memory). */
size_t reply_size(const struct reply *r);

/* The whole line when it is in memory only (handshake answers), with
 * its length; NULL when part of it was spooled. */
const char *reply_text(const struct reply *r, size_t *len);

/* Send the whole line and its '\n' to fd (a non-blocking socket).
 * `idle_ms` bounds each wait for the peer to take more: a peer that
 * stops reading fails the send (ETIMEDOUT).  0 or -1 with errno. */
int reply_send(struct reply *r, int fd, int idle_ms) WUR;

/* Overwrite the line's bytes in memory (a handshake answer that leads
 * to a key, the plain text of an enc: reply). */
void reply_wipe(struct reply *r);

/* Done with the line: the plain text of an enc: reply is wiped, the
 * spool emptied, a grown buffer shrunk back. */
void reply_end(struct reply *r);

#endif

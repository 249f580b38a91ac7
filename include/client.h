/*
 * client.h - one local client connection (a UNIX socket from Apache).
 *
 * A client is owned by exactly one thread at a time: its acceptor while
 * a request line is being read, then the worker that serves the request,
 * then the acceptor again.  Ownership passes through the host queue and
 * acceptor_return(), whose locks order the hand-over, so a client's
 * fields need no lock of their own.
 */
#ifndef LONC_CLIENT_H
#define LONC_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "linebuf.h"
#include "util.h"

struct acceptor;
struct reply;

struct client {
	int fd;
	struct linebuf in;         /* request bytes; a request is in[0..req_len] */
	size_t req_len;            /* length of the pending request, no '\n' */
	struct acceptor *acc;      /* where the client goes back to */
	int64_t deadline;          /* acceptor: read deadline */
	int64_t queued_at;         /* when the request entered the queue (ms) */
	int64_t start_us;          /* when the request was complete (us) */
	struct client *next;       /* acceptor's hand-back list */
	size_t slot;               /* acceptor: index in its reading set */
	int epfd;                  /* the epoll set the fd is registered in */
	size_t unread;             /* bytes of in[] still in the socket */
};

/* Wrap an accepted (non-blocking) fd; requests up to max_request bytes. */
struct client *client_new(int fd, struct acceptor *acc, size_t max_request);

/* Close the fd and free.  NULL is fine. */
void client_free(struct client *c);

/* Read what the client sent into c->in: bytes, 0 at end of file, -1
 * (errno; EAGAIN when nothing is there) or LINEBUF_FULL, as
 * linebuf_fill.  A request of up to 4 KiB that is already whole when
 * the buffer is empty is only peeked at: its bytes stay in the socket
 * (c->unread) until the first byte of its answer is sent.  Taking them
 * out earlier would wake the client: Linux wakes every reader of a UNIX socket
 * whose peer's send buffer drains, and the client is by then asleep in
 * read(2) for its reply.  Taken out right before the answer, that wake
 * and the one for the answer are one. */
ssize_t client_fill(struct client *c) WUR;

/* Take the bytes client_fill only peeked at out of the socket (they are
 * in c->in or already answered, so they are discarded); nothing to do
 * when there are none.  The functions
 * below that send an answer do it first; acceptor_return does it for a
 * client handed back unanswered, so that its request is not read twice. */
void client_settle(struct client *c);

/* Send n bytes of an answer before deadline.  0 or -1. */
int client_write(struct client *c, const void *p, size_t n, int64_t deadline) WUR;

/* Send a whole reply line (reply.h) to the client; a client that takes
 * nothing for idle_ms fails it.  0 or -1. */
int client_send_reply(struct client *c, struct reply *r, int idle_ms) WUR;

/* Send `text` and a '\n' to the client before deadline.  0 or -1. */
int client_send_line(struct client *c, const char *text, int64_t deadline) WUR;

/* Send a short lonc-generated answer without waiting (used by the
 * acceptor thread, which must never block on one client).  0 or -1. */
int client_send_now(struct client *c, const char *text) WUR;

#endif

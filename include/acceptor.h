/*
 * acceptor.h - the thread that owns a host's UNIX sockets (its hostname
 * and aliases) and reads request lines from local clients.
 *
 * One thread per host polls its listeners and every client it is reading
 * from, so a slow client never blocks the others.  Complete requests go
 * up to the owner (the host) through struct acceptor_ops; a worker hands
 * the client back with acceptor_return() after the reply.  Lock: a->mu
 * guards the hand-back list, the stopping flag and the successor (a
 * reload's hand-over); it is a leaf.  May call: client, net, linebuf,
 * log.
 */
#ifndef LONC_ACCEPTOR_H
#define LONC_ACCEPTOR_H

#include <stdbool.h>
#include <stddef.h>

#include "util.h"

struct client;

/* What an acceptor is told of its host (the strings must outlive it). */
struct acceptor_conf {
	const char *name;             /* the host's name, for logs */
	const char *socket_dir;
	const char *const *sockets;   /* socket names: hostname, then aliases */
	size_t n_sockets;
	int socket_mode;
	size_t max_request;           /* max_request_bytes */
	int client_timeout_ms;
};

/* How it reports up to its owner. */
struct acceptor_ops {
	/* A whole request line of c: c->in.data[0..len), without its
	 * '\n'.  Returns NULL when the owner took c (it comes back through
	 * acceptor_return or acceptor_answer), or the text to answer at
	 * once (the acceptor keeps c and reads on). */
	const char *(*request)(void *owner, struct client *c, size_t len);
	/* A line over max_request (the client is told and closed here). */
	void (*too_long)(void *owner);
};

/* Bind and listen on every socket name.  NULL (logged) on failure, with
 * nothing left behind. */
struct acceptor *acceptor_new(const struct acceptor_conf *conf,
			      const struct acceptor_ops *ops, void *owner);

/* For a host rebuilt by a reload: bind only the names `old` does not
 * listen on; the others are taken over by acceptor_handover.  NULL
 * (logged) on failure, with `old` untouched. */
struct acceptor *acceptor_new_successor(const struct acceptor_conf *conf,
					const struct acceptor_ops *ops, void *owner,
					const struct acceptor *old);

/* Stop old's thread and give succ its listeners (names succ does not
 * have are closed and removed), the clients it was reading and every
 * client returned to old from now on.  Start succ afterwards. */
void acceptor_handover(struct acceptor *old, struct acceptor *succ);

/* Socket path number i (0 = the hostname), or NULL. */
const char *acceptor_path(const struct acceptor *a, int i);

/* Start the thread.  0 or -1. */
int acceptor_start(struct acceptor *a) WUR;

/* The host is going away (removed by a reload, or a shutdown): its
 * socket files go and no new client can connect, but every client
 * already there is answered: those still in the listen backlog are
 * taken, every request line from now on is answered con_lost, clients
 * handed back are kept for their next line.  Returns at once. */
void acceptor_close(struct acceptor *a);

/* After acceptor_close, once no worker can call acceptor_return() any
 * more: wait until every remaining client has had its answer and left
 * or reached its read deadline (during a shutdown, idle ones are closed
 * at once and the rest by the shutdown's deadline), then end the
 * thread. */
void acceptor_finish(struct acceptor *a);

/* The watchdog's question (one caller): did the thread go round since
 * the previous ping?  Asks again and wakes it.  True for a thread that
 * is not running. */
bool acceptor_ping(struct acceptor *a);

/* Finish (if still running), close what is left, free. */
void acceptor_free(struct acceptor *a);

/* A served client back to its acceptor (from any thread): the request
 * line it was given for leaves its buffer, and its next one is read. */
void acceptor_return(struct client *c);

/* Answer c's request on lonc's behalf (con_lost) and give it back; a
 * client that hung up or cannot take the line within timeout_ms is
 * closed (false). */
bool acceptor_answer(struct client *c, const char *text, int timeout_ms);

#endif

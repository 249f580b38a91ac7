/*
 * acceptor.h - the thread that owns a host's UNIX sockets (its hostname
 * and aliases) and reads request lines from local clients.
 *
 * One thread per host polls its listeners and every client it is reading
 * from, so a slow client never blocks the others.  Complete requests go
 * into the host queue; a worker hands the client back with
 * acceptor_return() after the reply.  Lock: a->mu guards the hand-back
 * list, the stopping flag and the successor (a reload's hand-over); it
 * is a leaf.
 */
#ifndef LONC_ACCEPTOR_H
#define LONC_ACCEPTOR_H

#include "util.h"

struct host;
struct client;

/* Bind and listen on every socket name of the host.  NULL (logged) on
 * failure, with nothing left behind. */
struct acceptor *acceptor_new(struct host *h);

/* For a host rebuilt by a reload: bind only the names `old` does not
 * listen on; the others are taken over by acceptor_handover.  NULL
 * (logged) on failure, with `old` untouched. */
struct acceptor *acceptor_new_successor(struct host *h,
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

/* Finish (if still running), close what is left, free. */
void acceptor_free(struct acceptor *a);

/* Give a served client back (from a worker thread). */
void acceptor_return(struct acceptor *a, struct client *c);

#endif

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

/* Stop accepting and reading, close the listeners and remove their
 * socket files; wait for the thread.  Clients in flight are closed by
 * acceptor_return() from then on. */
void acceptor_stop(struct acceptor *a);

/* Remove the socket files and free.  Only after no worker can call
 * acceptor_return() any more. */
void acceptor_free(struct acceptor *a);

/* Give a served client back (from a worker thread). */
void acceptor_return(struct acceptor *a, struct client *c);

#endif

/*
 * worker.h - one thread, one lond connection; and the pool that a host's
 * manager and workers share.
 *
 * A worker connects and does the handshake, then serves requests from
 * its host queue one at a time until the connection breaks, sits idle
 * longer than idle_timeout, is told to close, or the queue closes.
 * Workers are started and joined by their host's manager.  A served
 * client goes straight back to its acceptor (acceptor_return).
 */
#ifndef LONC_WORKER_H
#define LONC_WORKER_H

#include <stdbool.h>

#include "conn.h"
#include "util.h"

struct config;
struct crypto_tls;
struct host_conf;
struct queue;
struct stats;
struct worker;

/* What the manager and the workers of one host work with.  Owned by the
 * host; every pointer outlives the pool's threads. */
struct pool {
	const struct config *cfg;      /* immutable */
	const struct host_conf *conf;  /* immutable, inside cfg */
	struct queue *queue;
	struct stats *stats;
	struct crypto_tls *tls;        /* shared TLS context, or NULL */
};

/* Start a worker thread for the pool, counted in the queue as
 * connecting.  NULL (logged, uncounted) if the thread could not be
 * created. */
struct worker *worker_start(const struct pool *p, unsigned id);

/* The first handshake is over (worker_result is valid). */
bool worker_handshaken(const struct worker *w);

/* The first handshake's outcome (valid once worker_handshaken). */
const struct conn_result *worker_result(const struct worker *w);

/* At most n handshakes under way in the whole process (max_handshakes):
 * a worker takes a slot before it connects and gives it back when its
 * handshake ended.  Set at start-up and by every reload. */
void worker_limit_handshakes(int n);

/* True once the thread has ended and can be joined without waiting. */
bool worker_finished(const struct worker *w);

/* True once the worker no longer counts in the pool (its connection is
 * lost and it is finishing); joining it waits only for that. */
bool worker_left(const struct worker *w);

/* Join the thread and free the worker. */
void worker_join(struct worker *w);

/* Answer every request still queued con_lost (and drop a queued replay:
 * its files stay for the next connection).  For a dead host, and for
 * what is left when a host shuts down. */
void pool_fail_queued(const struct pool *p);

#endif

/*
 * worker.h - one thread, one lond connection.
 *
 * A worker connects and does the handshake, then serves requests from
 * its host queue one at a time until the connection breaks, sits idle
 * longer than idle_timeout, is told to close, or the queue closes.
 * Workers are started and joined by their host's manager.
 */
#ifndef LONC_WORKER_H
#define LONC_WORKER_H

#include <stdbool.h>

#include "util.h"

struct host;
struct worker;

/* What the handshake came to; valid once the worker left the queue's
 * connecting state (queue_wait_connected). */
struct worker_result {
	bool ok;
	bool refused;        /* lond said refused, or the TCP connect was refused */
	bool timed_out;      /* connect or handshake timed out */
	char reason[160];
};

/* Start a worker thread for h, counted in the queue as connecting.
 * NULL (logged, uncounted) if the thread could not be created. */
struct worker *worker_start(struct host *h, unsigned id);

/* The handshake outcome (see struct worker_result). */
const struct worker_result *worker_result(const struct worker *w);

/* True once the thread has ended and can be joined without waiting. */
bool worker_finished(const struct worker *w);

/* True once the worker no longer counts in the pool (its connection is
 * lost and it is finishing); joining it waits only for that. */
bool worker_left(const struct worker *w);

/* Join the thread and free the worker. */
void worker_join(struct worker *w);

#endif

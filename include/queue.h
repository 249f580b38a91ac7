/*
 * queue.h - a host's bounded FIFO of pending requests, and the count of
 * worker threads consuming it.
 *
 * The manager's decision "start another worker?" is a predicate over the
 * queue length and the workers' states, so both live under one mutex
 * (q->mu).  Producers never block: a full or closed queue is an answer.
 */
#ifndef LONC_QUEUE_H
#define LONC_QUEUE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

enum queue_rc {
	QUEUE_OK = 0,
	QUEUE_FULL,     /* push: at capacity */
	QUEUE_CLOSED,   /* closed and (for pop) empty */
	QUEUE_TIMEOUT,  /* the deadline passed first */
	QUEUE_KICKED,   /* pop: the generation moved on (queue_kick) */
};

struct queue {
	pthread_mutex_t mu;
	pthread_cond_t nonempty;  /* workers wait here for an item */
	pthread_cond_t changed;   /* the manager waits here for demand */
	void **items;             /* ring; protected by mu */
	size_t cap, head, len;    /* protected by mu */
	bool closed;              /* protected by mu */
	unsigned generation;      /* protected by mu; bumped by queue_kick */
	bool attention;           /* protected by mu; set by queue_poke */
	int workers;              /* started and not yet exited; mu */
	int connecting;           /* started, not yet handshaken; mu */
	int idle;                 /* blocked in queue_pop; mu */
};

struct queue_stats {
	size_t len;
	int workers, connecting, idle;
	bool closed;
};

/* Set up an empty queue of capacity cap (>= 1). */
void queue_init(struct queue *q, size_t cap);
/* Free the ring; the queue must be empty of waiters. */
void queue_destroy(struct queue *q);

/* Append item.  QUEUE_OK, QUEUE_FULL or QUEUE_CLOSED; never blocks. */
enum queue_rc queue_push(struct queue *q, void *item) WUR;

/* Take the oldest item, waiting until deadline_ms (now_ms() clock; -1 =
 * forever).  A closed queue still hands out its items, then answers
 * QUEUE_CLOSED.  QUEUE_KICKED, before any item, when the queue's
 * generation is no longer `gen` (the caller's snapshot from
 * queue_generation), so no kick is ever missed between two pops. */
enum queue_rc queue_pop(struct queue *q, int64_t deadline_ms, unsigned gen,
			void **item) WUR;

/* The current generation (see queue_kick). */
unsigned queue_generation(struct queue *q);

/* Take the oldest item without waiting; false when empty. */
bool queue_take(struct queue *q, void **item) WUR;

/* Start a new generation: every worker that took its snapshot before
 * gets QUEUE_KICKED from its next (or current) queue_pop, and retires
 * its connection ("close your connection as soon as you are idle"). */
void queue_kick(struct queue *q);

/* Refuse further pushes and wake everyone. */
void queue_close(struct queue *q);

/* Manager side: wait until a new worker is wanted (more items than idle
 * workers, nobody connecting, fewer than max workers), the queue closes,
 * queue_poke() is called, or deadline_ms passes.  QUEUE_OK, QUEUE_CLOSED,
 * QUEUE_KICKED (poked; the poke is consumed) or QUEUE_TIMEOUT. */
enum queue_rc queue_wait_demand(struct queue *q, int max_workers,
				int64_t deadline_ms) WUR;

/* Wait until no worker is connecting, or deadline_ms passes. */
void queue_wait_connected(struct queue *q, int64_t deadline_ms);

/* Worker bookkeeping: a worker is counted from queue_worker_start (by the
 * manager, before the thread exists) to queue_worker_exit.  `connected`
 * ends the connecting phase; exit broadcasts so the manager re-checks. */
void queue_worker_start(struct queue *q);
void queue_worker_connected(struct queue *q);
void queue_worker_exit(struct queue *q, bool was_connecting);

/* Make the manager's queue_wait_demand return QUEUE_KICKED (now, or at
 * its next call), so it re-checks the host state. */
void queue_poke(struct queue *q);

void queue_get_stats(struct queue *q, struct queue_stats *st);

#endif

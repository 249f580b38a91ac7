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
#include <semaphore.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

struct client;

/* What waits in a host's queue: a client's request, or the order to
 * replay the host's delayed transactions (at most one queued). */
enum queue_item_kind { QUEUE_ITEM_CLIENT, QUEUE_ITEM_REPLAY };
struct queue_item {
	enum queue_item_kind kind;
	struct client *client;      /* QUEUE_ITEM_CLIENT */
};

enum queue_rc {
	QUEUE_OK = 0,
	QUEUE_FULL,     /* push: at capacity */
	QUEUE_CLOSED,   /* closed and (for pop) empty */
	QUEUE_TIMEOUT,  /* the deadline passed first */
	QUEUE_KICKED,   /* pop: the generation moved on (queue_kick) */
	QUEUE_SETTLED,  /* wait_demand: a handshake ended (judge it) */
};

/*
 * A consumer's parking place.  An idle worker waits on its own
 * semaphore; a push hands the item straight to the most recently parked
 * worker (LIFO: its cache is warm, and the pool's surplus stays asleep
 * long enough to be pruned as idle).  The woken worker finds the item in
 * its waiter and need not take q->mu again; a pthread condvar would make
 * it re-take the mutex on wake-up and, in glibc, issue one more futex
 * call at the unlock that follows (measured: doc/performance.md).
 * It must outlive every queue_pop it is passed to, and stay valid until
 * its owner has made one more locked queue call (e.g. queue_worker_exit)
 * after its last pop: a push posts its semaphore under q->mu.
 */
struct queue_waiter {
	sem_t sem;
	struct queue_waiter *next;  /* on q->parked; protected by q->mu */
	bool parked;                /* protected by q->mu */
	atomic_bool handed;         /* item below is set; cleared by the owner */
	struct queue_item item;     /* written under q->mu before `handed` */
};

void queue_waiter_init(struct queue_waiter *w);
void queue_waiter_destroy(struct queue_waiter *w);

struct queue {
	pthread_mutex_t mu;
	pthread_cond_t changed;   /* the manager waits here for demand */
	struct queue_waiter *parked; /* idle workers, last parked first; mu */
	struct queue_item *items; /* ring; protected by mu */
	size_t cap, head, len;    /* protected by mu */
	bool closed;              /* protected by mu */
	unsigned generation;      /* protected by mu; bumped by queue_kick */
	bool attention;           /* protected by mu; set by queue_poke */
	bool replay_queued;       /* protected by mu: a replay item waits */
	int workers;              /* started and not yet exited; mu */
	int connecting;           /* started, not yet handshaken; mu */
	int idle;                 /* parked in queue_pop; mu */
	int manager_limit;        /* max_workers of a waiting manager, or 0; mu */
	int manager_parallel;     /* its max_connecting, or 0; mu */
	unsigned settled;         /* handshakes ended (connected or failed); mu */
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

/* Append a client's request.  QUEUE_OK, QUEUE_FULL or QUEUE_CLOSED;
 * never blocks. */
enum queue_rc queue_push_client(struct queue *q, struct client *c) WUR;

/* Append a replay item unless one is queued already (or the queue is
 * full or closed).  True when this call queued one. */
bool queue_push_replay(struct queue *q);

/* Take the oldest item, waiting (parked on self) until deadline_ms
 * (now_ms() clock; -1 = forever).  A closed queue still hands out its
 * items, then answers QUEUE_CLOSED.  QUEUE_KICKED, before any item in the
 * ring, when the queue's generation is no longer `gen` (the caller's
 * snapshot from queue_generation), so no kick is ever missed between two
 * pops; an item already handed to this parked caller before the kick is
 * still returned (QUEUE_OK), and the kick comes at the next pop. */
enum queue_rc queue_pop(struct queue *q, struct queue_waiter *self,
			int64_t deadline_ms, unsigned gen,
			struct queue_item *item) WUR;

/* The current generation (see queue_kick). */
unsigned queue_generation(struct queue *q);

/* Take the oldest item without waiting; false when empty. */
bool queue_take(struct queue *q, struct queue_item *item) WUR;

/* Start a new generation: every worker that took its snapshot before
 * gets QUEUE_KICKED from its next (or current) queue_pop, and retires
 * its connection ("close your connection as soon as you are idle"). */
void queue_kick(struct queue *q);

/* Refuse further pushes and wake everyone. */
void queue_close(struct queue *q);

/* Was it closed (the host is shutting down, or a reload retired it)? */
bool queue_is_closed(struct queue *q);

/* Manager side: wait until a new worker is wanted (more items than idle
 * and connecting workers, fewer than max_workers, fewer than
 * max_connecting handshakes under way), a handshake ended since
 * *settled (QUEUE_SETTLED; *settled is brought up to date), the queue
 * closes, queue_poke() is called, or deadline_ms passes.  QUEUE_OK,
 * QUEUE_SETTLED, QUEUE_CLOSED, QUEUE_KICKED (poked; the poke is
 * consumed) or QUEUE_TIMEOUT. */
enum queue_rc queue_wait_demand(struct queue *q, int max_workers, int max_connecting,
				unsigned *settled, int64_t deadline_ms) WUR;

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

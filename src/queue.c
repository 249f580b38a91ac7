/*
 * queue.c - bounded FIFO ring of opaque items with worker accounting.
 *
 * Threads: acceptors push, workers pop, the manager waits for demand.
 * Lock: q->mu only, never held across anything but condvar waits.
 * Condvars: `nonempty` for workers (one item, one signal), `changed` for
 * the manager (broadcast whenever its predicate may have changed).
 */
#include "queue.h"

#include <errno.h>
#include <stdlib.h>
#include <time.h>

static void lock(struct queue *q)
{
	pthread_mutex_lock(&q->mu);
}

static void unlock(struct queue *q)
{
	pthread_mutex_unlock(&q->mu);
}

void queue_init(struct queue *q, size_t cap)
{
	pthread_condattr_t ca;

	pthread_mutex_init(&q->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&q->nonempty, &ca);
	pthread_cond_init(&q->changed, &ca);
	pthread_condattr_destroy(&ca);
	q->cap = cap ? cap : 1;
	q->items = xcalloc(q->cap, sizeof(void *));
	q->head = q->len = 0;
	q->closed = false;
	q->generation = 0;
	q->attention = false;
	q->workers = q->connecting = q->idle = 0;
}

void queue_destroy(struct queue *q)
{
	pthread_cond_destroy(&q->nonempty);
	pthread_cond_destroy(&q->changed);
	pthread_mutex_destroy(&q->mu);
	free(q->items);
	q->items = NULL;
}

/* Wait on cv until deadline (-1: forever).  Returns false on timeout. */
static bool wait_until(pthread_cond_t *cv, pthread_mutex_t *mu, int64_t deadline)
{
	if (deadline < 0) {
		pthread_cond_wait(cv, mu);
		return true;
	}
	struct timespec ts = {
		.tv_sec = deadline / 1000,
		.tv_nsec = (deadline % 1000) * 1000000,
	};
	return pthread_cond_timedwait(cv, mu, &ts) != ETIMEDOUT;
}

/* The manager's predicate; caller holds q->mu. */
static bool demand(const struct queue *q, int max_workers)
{
	return q->len > (size_t)q->idle && q->connecting == 0 &&
	       q->workers < max_workers;
}

enum queue_rc queue_push(struct queue *q, void *item)
{
	enum queue_rc rc = QUEUE_OK;
	bool wake_worker = false, wake_manager = false;

	lock(q);
	if (q->closed) {
		rc = QUEUE_CLOSED;
	} else if (q->len == q->cap) {
		rc = QUEUE_FULL;
	} else {
		q->items[(q->head + q->len) % q->cap] = item;
		q->len++;
		/* An idle worker takes it; else the manager may add one. */
		wake_worker = (size_t)q->idle >= q->len;
		wake_manager = !wake_worker && q->connecting == 0;
	}
	unlock(q);
	/* Signalled after the unlock, so that the woken thread does not
	 * block at once on the mutex we still hold.  Waiters re-check their
	 * predicate under the mutex, so no wake-up is lost. */
	if (wake_worker)
		pthread_cond_signal(&q->nonempty);
	else if (wake_manager)
		pthread_cond_broadcast(&q->changed);
	return rc;
}

static void *take_locked(struct queue *q)
{
	void *item = q->items[q->head];

	q->items[q->head] = NULL;
	q->head = (q->head + 1) % q->cap;
	q->len--;
	return item;
}

enum queue_rc queue_pop(struct queue *q, int64_t deadline_ms, unsigned gen,
			void **item)
{
	enum queue_rc rc = QUEUE_OK;

	lock(q);
	q->idle++;
	while (q->len == 0 && !q->closed && q->generation == gen) {
		if (!wait_until(&q->nonempty, &q->mu, deadline_ms) &&
		    q->len == 0) {
			rc = QUEUE_TIMEOUT;
			break;
		}
	}
	q->idle--;
	if (q->generation != gen)
		rc = QUEUE_KICKED;
	else if (q->len > 0)
		*item = take_locked(q), rc = QUEUE_OK;
	else if (q->closed)
		rc = QUEUE_CLOSED;
	unlock(q);
	return rc;
}

unsigned queue_generation(struct queue *q)
{
	unsigned gen;

	lock(q);
	gen = q->generation;
	unlock(q);
	return gen;
}

bool queue_take(struct queue *q, void **item)
{
	bool got = false;

	lock(q);
	if (q->len > 0) {
		*item = take_locked(q);
		got = true;
	}
	unlock(q);
	return got;
}

void queue_kick(struct queue *q)
{
	lock(q);
	q->generation++;
	pthread_cond_broadcast(&q->nonempty);
	unlock(q);
}

void queue_close(struct queue *q)
{
	lock(q);
	q->closed = true;
	pthread_cond_broadcast(&q->nonempty);
	pthread_cond_broadcast(&q->changed);
	unlock(q);
}

enum queue_rc queue_wait_demand(struct queue *q, int max_workers,
				int64_t deadline_ms)
{
	enum queue_rc rc = QUEUE_OK;

	lock(q);
	while (!q->closed && !q->attention && !demand(q, max_workers)) {
		if (!wait_until(&q->changed, &q->mu, deadline_ms)) {
			rc = QUEUE_TIMEOUT;
			break;
		}
	}
	if (q->closed) {
		rc = QUEUE_CLOSED;
	} else if (q->attention) {
		q->attention = false;
		rc = QUEUE_KICKED;
	} else if (demand(q, max_workers)) {
		rc = QUEUE_OK;
	}
	unlock(q);
	return rc;
}

void queue_wait_connected(struct queue *q, int64_t deadline_ms)
{
	lock(q);
	while (q->connecting > 0)
		if (!wait_until(&q->changed, &q->mu, deadline_ms))
			break;
	unlock(q);
}

void queue_worker_start(struct queue *q)
{
	lock(q);
	q->workers++;
	q->connecting++;
	unlock(q);
}

void queue_worker_connected(struct queue *q)
{
	lock(q);
	q->connecting--;
	pthread_cond_broadcast(&q->changed);
	unlock(q);
}

void queue_worker_exit(struct queue *q, bool was_connecting)
{
	lock(q);
	q->workers--;
	if (was_connecting)
		q->connecting--;
	pthread_cond_broadcast(&q->changed);
	unlock(q);
}

void queue_poke(struct queue *q)
{
	lock(q);
	q->attention = true;
	pthread_cond_broadcast(&q->changed);
	unlock(q);
}

void queue_get_stats(struct queue *q, struct queue_stats *st)
{
	lock(q);
	st->len = q->len;
	st->workers = q->workers;
	st->connecting = q->connecting;
	st->idle = q->idle;
	st->closed = q->closed;
	unlock(q);
}

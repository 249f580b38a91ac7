/*
 * queue.c - bounded FIFO ring of opaque items with worker accounting.
 *
 * Threads: acceptors push, workers pop, the manager waits for demand.
 * Lock: q->mu only, never held across anything but condvar waits and
 * sem_post.  Idle workers park on their own semaphore (queue.h: struct
 * queue_waiter); a push hands its item to the last one parked.  The
 * condvar `changed` is for the manager, broadcast when its predicate may
 * have become true.
 * May call: util.
 */
#include "queue.h"

#include <errno.h>
#include <stdlib.h>
#include <time.h>

void queue_waiter_init(struct queue_waiter *w)
{
	sem_init(&w->sem, 0, 0);
	w->next = NULL;
	w->parked = false;
	atomic_init(&w->handed, false);
	w->item = (struct queue_item){ QUEUE_ITEM_CLIENT, NULL };
}

void queue_waiter_destroy(struct queue_waiter *w)
{
	sem_destroy(&w->sem);
}

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
	pthread_cond_init(&q->changed, &ca);
	pthread_condattr_destroy(&ca);
	q->cap = cap ? cap : 1;
	q->items = xcalloc(q->cap, sizeof(*q->items));
	q->head = q->len = 0;
	q->closed = false;
	q->generation = 0;
	q->attention = false;
	q->replay_queued = false;
	q->workers = q->connecting = q->idle = 0;
	q->parked = NULL;
	q->manager_limit = q->manager_parallel = 0;
	q->settled = 0;
}

void queue_destroy(struct queue *q)
{
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

/* The manager's predicate: requests wait that neither an idle worker
 * nor one still connecting will take, and both limits leave room.
 * Caller holds q->mu. */
static bool demand(const struct queue *q, int max_workers, int max_connecting)
{
	return q->len > (size_t)(q->idle + q->connecting) &&
	       q->connecting < max_connecting && q->workers < max_workers;
}

/* Take w off the parked stack (caller holds q->mu). */
static void unpark(struct queue *q, struct queue_waiter *w)
{
	for (struct queue_waiter **pp = &q->parked; *pp; pp = &(*pp)->next) {
		if (*pp == w) {
			*pp = w->next;
			break;
		}
	}
	w->next = NULL;
	w->parked = false;
	q->idle--;
}

/* Wake every parked worker without an item: kick and close. */
static void unpark_all(struct queue *q)
{
	while (q->parked) {
		struct queue_waiter *w = q->parked;

		unpark(q, w);
		sem_post(&w->sem);
	}
}

/* An item leaves the queue (to a worker, or taken); q->mu held. */
static void taken(struct queue *q, const struct queue_item *item)
{
	if (item->kind == QUEUE_ITEM_REPLAY)
		q->replay_queued = false;
}

/* Hand item to a parked worker, or put it in the ring; q->mu held. */
static enum queue_rc push_locked(struct queue *q, struct queue_item item,
				 bool *wake_manager)
{
	enum queue_rc rc = QUEUE_OK;

	if (q->closed) {
		rc = QUEUE_CLOSED;
	} else if (q->parked) {
		/* A worker is idle, so the ring is empty: hand it over. */
		struct queue_waiter *w = q->parked;

		unpark(q, w);
		w->item = item;
		taken(q, &item);
		atomic_store_explicit(&w->handed, true, memory_order_release);
		/* Posted under mu: w's owner cannot be past its next locked
		 * queue call (and so gone) while we still touch w. */
		sem_post(&w->sem);
	} else if (q->len == q->cap) {
		rc = QUEUE_FULL;
	} else {
		q->items[(q->head + q->len) % q->cap] = item;
		q->len++;
		/* Nobody idle: the manager may add a worker, if it waits
		 * and the pool has room (at max_connections a wake-up per
		 * request would find nothing to do). */
		*wake_manager = q->connecting < q->manager_parallel &&
				q->workers < q->manager_limit;
	}
	return rc;
}

/* After the unlock, so that the manager does not block at once on the
 * mutex we held; it re-checks its predicate under the mutex. */
static void after_push(struct queue *q, bool wake_manager)
{
	if (wake_manager)
		pthread_cond_broadcast(&q->changed);
}

enum queue_rc queue_push_client(struct queue *q, struct client *c)
{
	bool wake_manager = false;

	lock(q);
	enum queue_rc rc = push_locked(q, (struct queue_item){ QUEUE_ITEM_CLIENT, c },
				       &wake_manager);
	unlock(q);
	after_push(q, wake_manager);
	return rc;
}

bool queue_push_replay(struct queue *q)
{
	bool wake_manager = false, pushed = false;

	lock(q);
	if (!q->replay_queued) {
		/* Set first: a parked worker handed the item clears it. */
		q->replay_queued = true;
		pushed = push_locked(q, (struct queue_item){ QUEUE_ITEM_REPLAY, NULL },
				     &wake_manager) == QUEUE_OK;
		if (!pushed)
			q->replay_queued = false;
	}
	unlock(q);
	after_push(q, wake_manager);
	return pushed;
}

static struct queue_item take_locked(struct queue *q)
{
	struct queue_item item = q->items[q->head];

	q->head = (q->head + 1) % q->cap;
	q->len--;
	taken(q, &item);
	return item;
}

/* Sleep on w's semaphore until posted or deadline_ms (-1: forever).
 * False when the deadline passed. */
static bool sleep_until(struct queue_waiter *w, int64_t deadline_ms)
{
	struct timespec ts = {
		.tv_sec = deadline_ms / 1000,
		.tv_nsec = (deadline_ms % 1000) * 1000000,
	};

	for (;;) {
		int rc = deadline_ms < 0 ? sem_wait(&w->sem) :
			 sem_clockwait(&w->sem, CLOCK_MONOTONIC, &ts);

		if (rc == 0)
			return true;
		if (errno != EINTR)
			return false;   /* ETIMEDOUT (or a broken semaphore) */
	}
}

/* An item handed to w by a push, if any. */
static bool take_handed(struct queue_waiter *w, struct queue_item *item)
{
	if (!atomic_exchange_explicit(&w->handed, false, memory_order_acquire))
		return false;
	*item = w->item;
	return true;
}

enum queue_rc queue_pop(struct queue *q, struct queue_waiter *self,
			int64_t deadline_ms, unsigned gen, struct queue_item *item)
{
	enum queue_rc rc;
	bool timed_out = false;

	lock(q);
	for (;;) {
		if (q->generation != gen) {
			rc = QUEUE_KICKED;
		} else if (q->len > 0) {
			*item = take_locked(q);
			rc = QUEUE_OK;
		} else if (q->closed) {
			rc = QUEUE_CLOSED;
		} else if (timed_out || (deadline_ms >= 0 && now_ms() >= deadline_ms)) {
			rc = QUEUE_TIMEOUT;
		} else {
			self->next = q->parked;
			q->parked = self;
			self->parked = true;
			q->idle++;
			unlock(q);
			timed_out = !sleep_until(self, deadline_ms);
			/* The common case: a push handed us an item and took
			 * us off the stack; no need for the mutex. */
			if (take_handed(self, item))
				return QUEUE_OK;
			lock(q);
			/* Timed out, kicked, closed, or a stale post from an
			 * earlier hand-over: off the stack, then look again. */
			if (self->parked)
				unpark(q, self);
			if (take_handed(self, item)) {
				rc = QUEUE_OK;
				break;
			}
			continue;
		}
		break;
	}
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

bool queue_take(struct queue *q, struct queue_item *item)
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
	unpark_all(q);
	unlock(q);
}

void queue_close(struct queue *q)
{
	lock(q);
	q->closed = true;
	unpark_all(q);
	pthread_cond_broadcast(&q->changed);
	unlock(q);
}

bool queue_is_closed(struct queue *q)
{
	lock(q);
	bool closed = q->closed;
	unlock(q);
	return closed;
}

enum queue_rc queue_wait_demand(struct queue *q, int max_workers, int max_connecting,
				unsigned *settled, int64_t deadline_ms)
{
	enum queue_rc rc = QUEUE_OK;

	lock(q);
	q->manager_limit = max_workers;
	q->manager_parallel = max_connecting;
	while (!q->closed && !q->attention && q->settled == *settled &&
	       !demand(q, max_workers, max_connecting)) {
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
	} else if (q->settled != *settled) {
		rc = QUEUE_SETTLED;
	} else if (demand(q, max_workers, max_connecting)) {
		rc = QUEUE_OK;
	}
	*settled = q->settled;
	q->manager_limit = q->manager_parallel = 0;
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
	q->settled++;
	pthread_cond_broadcast(&q->changed);
	unlock(q);
}

void queue_worker_exit(struct queue *q, bool was_connecting)
{
	lock(q);
	q->workers--;
	if (was_connecting) {
		q->connecting--;
		q->settled++;
	}
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

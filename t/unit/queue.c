/*
 * Unit test for queue.c: FIFO order and ring wrap-around, capacity,
 * close semantics, pop timeout and kick, hand-over to the last parked
 * worker first, the manager's demand predicate
 * (queue_wait_demand, poke, close), worker accounting, and a
 * multi-threaded stress run (4 producers x 10000 items, 4 consumers,
 * every item consumed exactly once, in order per producer).
 *
 * Timing: only return codes are asserted, never elapsed times.  The one
 * liveness bound is generous: a wake-up (push, kick, poke, close,
 * connected, exit) must end a blocked call within WAKE_MS (2 s), well
 * before that call's own safety deadline, or it counts as lost.  Every
 * wait has a deadline, so a broken queue fails instead of hanging.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include "queue.h"
#include "tap.h"

#define SHORT_MS 50      /* deadline for waits that must time out */

/* The parking place of the main thread's own pops. */
static struct queue_waiter self;

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* Test items are numbers dressed as client pointers (never followed). */
static struct client *item_of(uintptr_t v)
{
	return (struct client *)v;
}

static uintptr_t value_of(const struct client *p)
{
	return (uintptr_t)p;
}

static enum queue_rc queue_push(struct queue *q, struct client *c)
{
	return queue_push_client(q, c);
}

static struct queue_stats stats_of(struct queue *q)
{
	struct queue_stats st;

	queue_get_stats(q, &st);
	return st;
}

/* Poll until `idle` threads are blocked in queue_pop (bounded). */
static bool wait_for_idle(struct queue *q, int idle)
{
	for (int i = 0; i < 2000; i++) {
		if (stats_of(q).idle == idle)
			return true;
		sleep_ms(1);
	}
	return false;
}

static void check_fifo(void)
{
	struct queue q;
	struct queue_item item = { 0 };
	bool in_order = true;

	queue_init(&q, 8);
	for (uintptr_t i = 1; i <= 5; i++)
		is_int(queue_push(&q, item_of(i)), QUEUE_OK, "fifo: push");
	is_int(stats_of(&q).len, 5, "fifo: stats.len counts pushed items");
	for (uintptr_t i = 1; i <= 3; i++) {
		is_int(queue_pop(&q, &self, now_ms() + SHORT_MS, queue_generation(&q), &item), QUEUE_OK,
		       "fifo: pop");
		is_int(value_of(item.client), i, "fifo: pop gives the oldest item");
	}
	ok(queue_take(&q, &item) && value_of(item.client) == 4,
	   "fifo: take gives the oldest item");
	ok(queue_take(&q, &item) && value_of(item.client) == 5, "fifo: take again");
	ok(!queue_take(&q, &item), "fifo: take on empty queue is false");

	/* Push and pop across the ring's end many times. */
	uintptr_t next_in = 100, next_out = 100;
	for (int round = 0; round < 50; round++) {
		for (int k = 0; k < 5; k++)
			if (queue_push(&q, item_of(next_in++)) != QUEUE_OK)
				in_order = false;
		for (int k = 0; k < 5; k++)
			if (!queue_take(&q, &item) || value_of(item.client) != next_out++)
				in_order = false;
	}
	ok(in_order, "fifo: order kept across ring wrap-around");
	is_int(stats_of(&q).len, 0, "fifo: empty after wrap test");
	queue_destroy(&q);
}

static void check_capacity(void)
{
	struct queue q;
	struct queue_item item = { 0 };

	queue_init(&q, 3);
	is_int(queue_push(&q, item_of(1)), QUEUE_OK, "cap: push 1 of 3");
	is_int(queue_push(&q, item_of(2)), QUEUE_OK, "cap: push 2 of 3");
	is_int(queue_push(&q, item_of(3)), QUEUE_OK, "cap: push 3 of 3");
	is_int(queue_push(&q, item_of(4)), QUEUE_FULL, "cap: push on full queue");
	is_int(stats_of(&q).len, 3, "cap: a refused push adds nothing");
	ok(queue_take(&q, &item) && value_of(item.client) == 1, "cap: take 1");
	is_int(queue_push(&q, item_of(5)), QUEUE_OK, "cap: room again after take");
	is_int(queue_push(&q, item_of(6)), QUEUE_FULL, "cap: full again");
	ok(queue_take(&q, &item) && value_of(item.client) == 2, "cap: then 2");
	ok(queue_take(&q, &item) && value_of(item.client) == 3, "cap: then 3");
	ok(queue_take(&q, &item) && value_of(item.client) == 5, "cap: then 5 (4 was refused)");
	queue_destroy(&q);

	queue_init(&q, 1);
	is_int(queue_push(&q, item_of(1)), QUEUE_OK, "cap 1: push");
	is_int(queue_push(&q, item_of(2)), QUEUE_FULL, "cap 1: second push full");
	queue_destroy(&q);
}

static void check_close(void)
{
	struct queue q;
	struct queue_item item = { 0 };

	queue_init(&q, 4);
	is_int(queue_push(&q, item_of(1)), QUEUE_OK, "close: push before close");
	is_int(queue_push(&q, item_of(2)), QUEUE_OK, "close: push before close");
	ok(!stats_of(&q).closed, "close: stats.closed false before close");
	queue_close(&q);
	ok(stats_of(&q).closed, "close: stats.closed true after close");
	is_int(queue_push(&q, item_of(3)), QUEUE_CLOSED, "close: push after close");
	is_int(queue_pop(&q, &self, now_ms() + SHORT_MS, queue_generation(&q), &item), QUEUE_OK,
	       "close: pop still hands out the first item");
	is_int(value_of(item.client), 1, "close: first item");
	is_int(queue_pop(&q, &self, now_ms() + SHORT_MS, queue_generation(&q), &item), QUEUE_OK,
	       "close: pop still hands out the second item");
	is_int(value_of(item.client), 2, "close: second item");
	is_int(queue_pop(&q, &self, now_ms() + SHORT_MS, queue_generation(&q), &item), QUEUE_CLOSED,
	       "close: pop on closed empty queue");
	is_int(queue_pop(&q, &self, -1, queue_generation(&q), &item), QUEUE_CLOSED,
	       "close: pop without deadline does not block on closed queue");
	is_int(stats_of(&q).idle, 0, "close: no idle worker left counted");
	queue_destroy(&q);
}

static void check_timeout(void)
{
	struct queue q;
	struct queue_item item = { QUEUE_ITEM_CLIENT, item_of(77) };

	queue_init(&q, 4);
	is_int(queue_pop(&q, &self, now_ms() + SHORT_MS, queue_generation(&q), &item), QUEUE_TIMEOUT,
	       "timeout: pop on empty queue times out");
	is_int(value_of(item.client), 77, "timeout: item untouched on timeout");
	is_int(queue_pop(&q, &self, now_ms() - 1000, queue_generation(&q), &item), QUEUE_TIMEOUT,
	       "timeout: deadline in the past times out");
	is_int(stats_of(&q).idle, 0, "timeout: idle count restored");
	/* A kick before a worker took its snapshot does not affect it. */
	queue_kick(&q);
	is_int(queue_pop(&q, &self, now_ms() + SHORT_MS, queue_generation(&q), &item), QUEUE_TIMEOUT,
	       "timeout: a kick before the snapshot does not kick a later pop");
	/* A kick after the snapshot is never missed, even between pops,
	 * and it comes before any queued item. */
	unsigned gen = queue_generation(&q);
	queue_kick(&q);
	is_int(queue_push(&q, item_of(5)), QUEUE_OK, "timeout: push after the kick");
	is_int(queue_pop(&q, &self, now_ms() + SHORT_MS, gen, &item), QUEUE_KICKED,
	       "timeout: a kick between two pops is seen by the next pop");
	is_int(queue_pop(&q, &self, now_ms() + SHORT_MS, queue_generation(&q), &item), QUEUE_OK,
	       "timeout: the item is still there for a current worker");
	queue_destroy(&q);
}

/*
 * A thread blocked in one queue call.  Its own deadline (SAFETY_MS) only
 * keeps a broken queue from hanging the test; a wake-up must end the
 * call within WAKE_MS, or it was missed (the call would otherwise have
 * returned a plausible code at its deadline).
 */
#define WAKE_MS 2000
#define SAFETY_MS 5000

enum waiter_call { CALL_POP, CALL_WAIT_DEMAND, CALL_WAIT_CONNECTED };

struct waiter {
	pthread_t thread;
	struct queue *q;
	enum waiter_call call;
	int max_workers;
	enum queue_rc rc;
	struct queue_item item;
	struct queue_waiter qw;
	unsigned settled;          /* CALL_WAIT_DEMAND's handshakes seen */
	atomic_bool done;
};

static void *waiter_main(void *p)
{
	struct waiter *w = p;
	int64_t deadline = now_ms() + SAFETY_MS;

	switch (w->call) {
	case CALL_POP:
		w->rc = queue_pop(w->q, &w->qw, deadline, queue_generation(w->q), &w->item);
		break;
	case CALL_WAIT_DEMAND:
		w->rc = queue_wait_demand(w->q, w->max_workers, w->max_workers,
					  &w->settled, deadline);
		break;
	case CALL_WAIT_CONNECTED:
		queue_wait_connected(w->q, deadline);
		w->rc = QUEUE_OK;
		break;
	}
	atomic_store(&w->done, true);
	return NULL;
}

static void waiter_start(struct waiter *w, struct queue *q, enum waiter_call call,
			 int max_workers)
{
	w->q = q;
	w->call = call;
	w->max_workers = max_workers;
	w->rc = (enum queue_rc)-1;
	w->item = (struct queue_item){ 0 };
	w->settled = q->settled;   /* nothing ended before the wait starts */
	queue_waiter_init(&w->qw);
	atomic_init(&w->done, false);
	if (pthread_create(&w->thread, NULL, waiter_main, w) != 0) {
		perror("pthread_create");
		exit(2);
	}
}

/* True when the waiter's call returned within WAKE_MS; joins it. */
static bool waiter_finish(struct waiter *w)
{
	bool in_time = false;

	for (int i = 0; i < WAKE_MS && !in_time; i++) {
		in_time = atomic_load(&w->done);
		if (!in_time)
			sleep_ms(1);
	}
	pthread_join(w->thread, NULL);
	queue_waiter_destroy(&w->qw);
	return in_time;
}

/* A replay item is queued once until a worker takes it; it keeps its
 * place in the order, and a full or closed queue takes none. */
static void check_replay(void)
{
	struct queue q;
	struct queue_item item = { 0 };

	queue_init(&q, 4);
	is_int(queue_push(&q, item_of(1)), QUEUE_OK, "replay: a client first");
	ok(queue_push_replay(&q), "replay: queued");
	ok(!queue_push_replay(&q), "replay: not twice while one waits");
	is_int(stats_of(&q).len, 2, "replay: one client, one replay");
	ok(queue_take(&q, &item) && item.kind == QUEUE_ITEM_CLIENT && value_of(item.client) == 1,
	   "replay: the client comes first");
	ok(queue_take(&q, &item) && item.kind == QUEUE_ITEM_REPLAY, "replay: then the replay");
	ok(queue_push_replay(&q), "replay: queued again once taken");
	is_int(queue_pop(&q, &self, now_ms() + SHORT_MS, queue_generation(&q), &item), QUEUE_OK,
	       "replay: popped");
	is_int(item.kind, QUEUE_ITEM_REPLAY, "replay: a pop hands it out too");
	for (uintptr_t i = 2; i <= 5; i++)
		is_int(queue_push(&q, item_of(i)), QUEUE_OK, "replay: fill the queue");
	ok(!queue_push_replay(&q), "replay: a full queue takes none");
	while (queue_take(&q, &item))
		;
	/* Handed straight to a parked worker: it may be queued again. */
	struct waiter w;
	waiter_start(&w, &q, CALL_POP, 0);
	ok(wait_for_idle(&q, 1), "replay: a worker parks");
	ok(queue_push_replay(&q), "replay: handed to a parked worker");
	ok(waiter_finish(&w), "replay: the worker woke");
	is_int(w.item.kind, QUEUE_ITEM_REPLAY, "replay: the worker got it");
	ok(queue_push_replay(&q), "replay: and the next one is queued");
	while (queue_take(&q, &item))
		;
	queue_close(&q);
	ok(!queue_push_replay(&q), "replay: a closed queue takes none");
	queue_destroy(&q);
}

static void check_kick(void)
{
	struct queue q;
	struct waiter w[2];

	queue_init(&q, 4);
	waiter_start(&w[0], &q, CALL_POP, 0);
	waiter_start(&w[1], &q, CALL_POP, 0);
	ok(wait_for_idle(&q, 2), "kick: two workers wait in pop");
	queue_kick(&q);
	ok(waiter_finish(&w[0]), "kick: first waiter woken");
	ok(waiter_finish(&w[1]), "kick: second waiter woken");
	is_int(w[0].rc, QUEUE_KICKED, "kick: first waiter returns QUEUE_KICKED");
	is_int(w[1].rc, QUEUE_KICKED, "kick: second waiter returns QUEUE_KICKED");
	is_int(stats_of(&q).idle, 0, "kick: idle count restored");

	/* A waiting pop gets an item pushed later. */
	waiter_start(&w[0], &q, CALL_POP, 0);
	ok(wait_for_idle(&q, 1), "push wakes: worker waits in pop");
	is_int(queue_push(&q, item_of(9)), QUEUE_OK, "push wakes: push");
	ok(waiter_finish(&w[0]), "push wakes: waiter woken");
	is_int(w[0].rc, QUEUE_OK, "push wakes: waiting pop gets the item");
	is_int(value_of(w[0].item.client), 9, "push wakes: the pushed item");

	/* Two waiting pops, two pushes: both get an item. */
	waiter_start(&w[0], &q, CALL_POP, 0);
	waiter_start(&w[1], &q, CALL_POP, 0);
	ok(wait_for_idle(&q, 2), "two pushes: two workers wait in pop");
	is_int(queue_push(&q, item_of(10)), QUEUE_OK, "two pushes: first push");
	is_int(queue_push(&q, item_of(11)), QUEUE_OK, "two pushes: second push");
	ok(waiter_finish(&w[0]) && waiter_finish(&w[1]), "two pushes: both woken");
	ok(w[0].rc == QUEUE_OK && w[1].rc == QUEUE_OK &&
	   value_of(w[0].item.client) + value_of(w[1].item.client) == 21 &&
	   w[0].item.client != w[1].item.client, "two pushes: each waiter got one item");

	/* Hand-over order: the worker that parked last gets the next item
	 * (its cache is warm; the others may stay asleep and be pruned). */
	waiter_start(&w[0], &q, CALL_POP, 0);
	ok(wait_for_idle(&q, 1), "lifo: first worker parked");
	waiter_start(&w[1], &q, CALL_POP, 0);
	ok(wait_for_idle(&q, 2), "lifo: second worker parked");
	is_int(queue_push(&q, item_of(12)), QUEUE_OK, "lifo: push one item");
	ok(waiter_finish(&w[1]), "lifo: the last parked worker is woken");
	is_int(value_of(w[1].item.client), 12, "lifo: and gets the item");
	is_int(stats_of(&q).idle, 1, "lifo: the first worker still waits");
	is_int(queue_push(&q, item_of(13)), QUEUE_OK, "lifo: push another");
	ok(waiter_finish(&w[0]), "lifo: the first worker is woken");
	ok(w[0].rc == QUEUE_OK && value_of(w[0].item.client) == 13, "lifo: and gets the second item");
	is_int(stats_of(&q).len, 0, "lifo: nothing left in the ring");

	/* A waiting pop is released by close. */
	waiter_start(&w[0], &q, CALL_POP, 0);
	ok(wait_for_idle(&q, 1), "close wakes: worker waits in pop");
	queue_close(&q);
	ok(waiter_finish(&w[0]), "close wakes: waiter woken");
	is_int(w[0].rc, QUEUE_CLOSED, "close wakes: waiting pop returns CLOSED");
	queue_destroy(&q);
}

/* Simulate n workers blocked in queue_pop without real threads, so the
 * demand predicate can be checked with len > 0 and idle > 0 together
 * (a real waiting worker would take the item at once). */
static void set_idle(struct queue *q, int n)
{
	pthread_mutex_lock(&q->mu);
	q->idle = n;
	pthread_mutex_unlock(&q->mu);
}

static unsigned settled_seen;

/* The manager's wait, bounded by SHORT_MS; `par` handshakes at most. */
static enum queue_rc wd(struct queue *q, int max, int par)
{
	return queue_wait_demand(q, max, par, &settled_seen, now_ms() + SHORT_MS);
}

static void check_demand(void)
{
	struct queue q;
	struct queue_item item;

	queue_init(&q, 8);
	settled_seen = 0;
	is_int(wd(&q, 2, 2), QUEUE_TIMEOUT, "demand: empty queue, no demand");
	is_int(queue_push(&q, item_of(1)), QUEUE_OK, "demand: push");
	is_int(wd(&q, 2, 2), QUEUE_OK, "demand: 1 item, no workers -> demand");
	is_int(wd(&q, 0, 2), QUEUE_TIMEOUT, "demand: max_workers 0 -> no demand");
	is_int(wd(&q, 2, 0), QUEUE_TIMEOUT, "demand: no handshake allowed -> no demand");

	queue_worker_start(&q);
	is_int(wd(&q, 2, 2), QUEUE_TIMEOUT,
	       "demand: 1 item, 1 worker connecting for it -> no demand");
	is_int(queue_push(&q, item_of(2)), QUEUE_OK, "demand: second push");
	is_int(wd(&q, 3, 2), QUEUE_OK,
	       "demand: 2 items, 1 connecting, 2 handshakes allowed -> demand");
	is_int(wd(&q, 3, 1), QUEUE_TIMEOUT,
	       "demand: ... but only 1 handshake allowed -> no demand");
	queue_worker_connected(&q);
	is_int(wd(&q, 3, 1), QUEUE_SETTLED, "demand: a handshake ended -> SETTLED");
	is_int(wd(&q, 3, 1), QUEUE_OK, "demand: then demand again (2 items, none connecting)");
	is_int(wd(&q, 1, 1), QUEUE_TIMEOUT, "demand: workers == max -> no demand");

	set_idle(&q, 1);
	is_int(wd(&q, 3, 1), QUEUE_OK, "demand: len 2 > idle 1 -> demand");
	set_idle(&q, 2);
	is_int(wd(&q, 3, 1), QUEUE_TIMEOUT, "demand: len 2 == idle 2 -> no demand");
	set_idle(&q, 0);

	/* Poke: KICKED once, then the poke is consumed. */
	is_int(wd(&q, 1, 1), QUEUE_TIMEOUT, "poke: no demand before poke");
	queue_poke(&q);
	is_int(wd(&q, 1, 1), QUEUE_KICKED, "poke: wait_demand returns KICKED");
	is_int(wd(&q, 1, 1), QUEUE_TIMEOUT, "poke: consumed, next wait times out");
	queue_poke(&q);
	is_int(wd(&q, 2, 2), QUEUE_KICKED, "poke: KICKED even when there is demand");
	is_int(wd(&q, 2, 2), QUEUE_OK, "poke: consumed, demand answers OK again");

	/* Empty the queue, then check that changes wake a waiting manager.
	 * (The pause lets the manager block first; if it has not, the
	 * checks still hold, they just test less.) */
	while (queue_take(&q, &item))
		;
	struct waiter w;

	waiter_start(&w, &q, CALL_WAIT_DEMAND, 2);     /* workers 1 */
	sleep_ms(20);
	is_int(queue_push(&q, item_of(3)), QUEUE_OK, "demand wake: push");
	ok(waiter_finish(&w), "demand wake: a push wakes the manager");
	is_int(w.rc, QUEUE_OK, "demand wake: push -> demand");

	queue_worker_start(&q);   /* workers 2, connecting 1 */
	waiter_start(&w, &q, CALL_WAIT_DEMAND, 2);
	sleep_ms(20);
	queue_worker_exit(&q, true);   /* workers 1, connecting 0 */
	ok(waiter_finish(&w), "demand wake: a failed handshake wakes the manager");
	is_int(w.rc, QUEUE_SETTLED, "demand wake: failed handshake -> SETTLED");

	queue_worker_start(&q);   /* workers 2, connecting 1 */
	waiter_start(&w, &q, CALL_WAIT_DEMAND, 3);
	sleep_ms(20);
	queue_worker_connected(&q);   /* connecting 0, workers 2 < 3 */
	ok(waiter_finish(&w), "demand wake: worker_connected wakes the manager");
	is_int(w.rc, QUEUE_SETTLED, "demand wake: connected -> SETTLED");
	queue_worker_exit(&q, false);  /* workers 1 */
	waiter_start(&w, &q, CALL_WAIT_DEMAND, 2);
	ok(waiter_finish(&w), "demand wake: demand still there");
	is_int(w.rc, QUEUE_OK, "demand wake: then OK");

	waiter_start(&w, &q, CALL_WAIT_DEMAND, 1);     /* workers == max */
	sleep_ms(20);
	queue_poke(&q);
	ok(waiter_finish(&w), "demand wake: a poke wakes the manager");
	is_int(w.rc, QUEUE_KICKED, "demand wake: poke -> KICKED");

	waiter_start(&w, &q, CALL_WAIT_DEMAND, 1);
	sleep_ms(20);
	queue_close(&q);
	ok(waiter_finish(&w), "demand wake: close wakes the manager");
	is_int(w.rc, QUEUE_CLOSED, "demand wake: close -> CLOSED");
	is_int(wd(&q, 2, 2), QUEUE_CLOSED, "demand: closed queue answers CLOSED even with demand");
	queue_poke(&q);
	is_int(wd(&q, 2, 2), QUEUE_CLOSED, "demand: closed wins over a poke");
	queue_destroy(&q);
}

static void check_workers(void)
{
	struct queue q;
	struct queue_stats st;

	queue_init(&q, 4);
	st = stats_of(&q);
	ok(st.workers == 0 && st.connecting == 0 && st.idle == 0 && st.len == 0,
	   "workers: fresh queue has no workers");
	queue_worker_start(&q);
	queue_worker_start(&q);
	st = stats_of(&q);
	is_int(st.workers, 2, "workers: two started");
	is_int(st.connecting, 2, "workers: both connecting");
	queue_worker_connected(&q);
	st = stats_of(&q);
	is_int(st.workers, 2, "workers: still two after one connected");
	is_int(st.connecting, 1, "workers: one connecting");
	queue_worker_exit(&q, true);
	st = stats_of(&q);
	is_int(st.workers, 1, "workers: exit while connecting");
	is_int(st.connecting, 0, "workers: exit while connecting ends connecting");
	queue_worker_exit(&q, false);
	st = stats_of(&q);
	is_int(st.workers, 0, "workers: exit after connecting");
	is_int(st.connecting, 0, "workers: connecting stays 0");

	/* queue_wait_connected is woken by queue_worker_connected. */
	struct waiter w;

	queue_worker_start(&q);
	waiter_start(&w, &q, CALL_WAIT_CONNECTED, 0);
	sleep_ms(20);
	ok(!atomic_load(&w.done), "wait_connected: waits while a worker connects");
	queue_worker_connected(&q);
	ok(waiter_finish(&w), "wait_connected: woken by worker_connected");
	is_int(stats_of(&q).connecting, 0, "wait_connected: connecting 0");

	/* idle counts threads blocked in pop. */
	waiter_start(&w, &q, CALL_POP, 0);
	ok(wait_for_idle(&q, 1), "stats: a waiting pop counts as idle");
	is_int(queue_push(&q, item_of(5)), QUEUE_OK, "stats: push to idle worker");
	ok(waiter_finish(&w), "stats: idle worker woken");
	is_int(w.rc, QUEUE_OK, "stats: idle worker got the item");
	is_int(stats_of(&q).idle, 0, "stats: idle back to 0");
	queue_worker_exit(&q, false);
	is_int(stats_of(&q).workers, 0, "stats: workers back to 0");
	queue_destroy(&q);
}

/* Stress: producers push (retrying on FULL), consumers pop until the
 * queue is closed and drained. */
#define N_PRODUCERS 4
#define N_CONSUMERS 4
#define N_ITEMS 10000

/* A broken queue (lost wake-ups) must fail the run, not stall it: every
 * thread gives up at this absolute deadline. */
#define STRESS_LIMIT_MS 20000

struct stress {
	struct queue q;
	int64_t give_up;      /* now_ms() deadline for the whole run */
	atomic_int pushed;
	atomic_int bad_rc;
};

struct producer_arg {
	struct stress *s;
	int id;
};

struct consumer_arg {
	struct stress *s;
	unsigned char seen[N_PRODUCERS * N_ITEMS];
	int last[N_PRODUCERS];   /* per-producer order seen by this consumer */
	bool in_order;
	struct queue_waiter qw;
	int count;
	enum queue_rc final_rc;
};

static void *producer(void *p)
{
	struct producer_arg *a = p;

	for (int i = 0; i < N_ITEMS; i++) {
		uintptr_t v = (uintptr_t)(a->id * N_ITEMS + i) + 1;
		enum queue_rc rc;

		while ((rc = queue_push(&a->s->q, item_of(v))) == QUEUE_FULL &&
		       now_ms() < a->s->give_up)
			sched_yield();
		if (rc != QUEUE_OK) {
			atomic_fetch_add(&a->s->bad_rc, 1);
			return NULL;
		}
		atomic_fetch_add(&a->s->pushed, 1);
	}
	return NULL;
}

static void *consumer(void *p)
{
	struct consumer_arg *a = p;
	struct queue_item item;
	enum queue_rc rc;

	for (;;) {
		rc = queue_pop(&a->s->q, &a->qw, a->s->give_up, queue_generation(&a->s->q), &item);
		if (rc != QUEUE_OK)
			break;
		uintptr_t v = value_of(item.client) - 1;

		if (v >= N_PRODUCERS * N_ITEMS) {
			a->in_order = false;
			continue;
		}
		int prod = (int)(v / N_ITEMS), idx = (int)(v % N_ITEMS);

		if (idx <= a->last[prod])
			a->in_order = false;
		a->last[prod] = idx;
		if (a->seen[v] < 255)
			a->seen[v]++;
		a->count++;
	}
	a->final_rc = rc;
	return NULL;
}

static void check_stress(void)
{
	static struct stress s;
	static struct consumer_arg ca[N_CONSUMERS];
	struct producer_arg pa[N_PRODUCERS];
	pthread_t pt[N_PRODUCERS], ct[N_CONSUMERS];

	queue_init(&s.q, 64);
	s.give_up = now_ms() + STRESS_LIMIT_MS;
	atomic_init(&s.pushed, 0);
	atomic_init(&s.bad_rc, 0);
	for (int i = 0; i < N_CONSUMERS; i++) {
		memset(&ca[i], 0, sizeof(ca[i]));
		ca[i].s = &s;
		ca[i].in_order = true;
		queue_waiter_init(&ca[i].qw);
		for (int k = 0; k < N_PRODUCERS; k++)
			ca[i].last[k] = -1;
		pthread_create(&ct[i], NULL, consumer, &ca[i]);
	}
	for (int i = 0; i < N_PRODUCERS; i++) {
		pa[i] = (struct producer_arg){ .s = &s, .id = i };
		pthread_create(&pt[i], NULL, producer, &pa[i]);
	}
	for (int i = 0; i < N_PRODUCERS; i++)
		pthread_join(pt[i], NULL);
	queue_close(&s.q);
	for (int i = 0; i < N_CONSUMERS; i++)
		pthread_join(ct[i], NULL);

	is_int(atomic_load(&s.bad_rc), 0, "stress: no push failed");
	is_int(atomic_load(&s.pushed), N_PRODUCERS * N_ITEMS, "stress: all pushed");

	int total = 0, missing = 0, duplicated = 0;
	bool in_order = true, all_closed = true;

	for (int i = 0; i < N_CONSUMERS; i++) {
		total += ca[i].count;
		in_order = in_order && ca[i].in_order;
		all_closed = all_closed && ca[i].final_rc == QUEUE_CLOSED;
	}
	for (int v = 0; v < N_PRODUCERS * N_ITEMS; v++) {
		int n = 0;

		for (int i = 0; i < N_CONSUMERS; i++)
			n += ca[i].seen[v];
		if (n == 0)
			missing++;
		else if (n > 1)
			duplicated++;
	}
	is_int(total, N_PRODUCERS * N_ITEMS, "stress: all items consumed");
	is_int(missing, 0, "stress: no item lost");
	is_int(duplicated, 0, "stress: no item consumed twice");
	ok(in_order, "stress: each consumer sees each producer's items in order");
	ok(all_closed, "stress: every consumer ended with QUEUE_CLOSED");
	struct queue_stats st = stats_of(&s.q);
	ok(st.len == 0 && st.idle == 0, "stress: queue empty, nobody idle");
	queue_destroy(&s.q);
	for (int i = 0; i < N_CONSUMERS; i++)
		queue_waiter_destroy(&ca[i].qw);
}

int main(void)
{
	queue_waiter_init(&self);
	check_fifo();
	check_capacity();
	check_replay();
	check_close();
	check_timeout();
	check_kick();
	check_demand();
	check_workers();
	check_stress();
	queue_waiter_destroy(&self);
	done_testing();
}

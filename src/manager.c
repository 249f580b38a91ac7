/*
 * manager.c - one thread per host, started at the host's first request.
 *
 * It waits on the host queue's `changed` condvar and, while requests wait
 * that no idle or connecting worker will take, starts as many workers as
 * they need, up to the host's max_connections, their handshakes under
 * way together: a burst on a cold host (and over a link 50 ms long a
 * handshake takes a quarter of a second) is not served one connection
 * at a time.  Without storms: handshakes under way never exceed the
 * attempts left before the host counts as dead, the first attempt after
 * a failed one goes alone, and workers take a process-wide handshake
 * slot (max_handshakes) before they connect.  It counts consecutive
 * failed connection attempts; at retry_attempts the host is DEAD: queued
 * and new requests get con_lost at once, and a probe connection is made
 * after a backoff that doubles up to backoff_max (with jitter).  A
 * successful handshake, reset_retries or SIGUSR1 ends the dead state.
 *
 * The retry state below is owned by this thread alone; it publishes
 * `dead` and `retries_left` as atomics, `reset` comes in as one.  Locks:
 * only through other modules, one at a time: queue calls, stats_error,
 * outage_host_dead, and acceptor->mu when it fails queued clients
 * (pool_fail_queued).  May call: worker, queue, stats, outage, config,
 * log, util.
 */
#include "manager.h"

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "log.h"
#include "outage.h"
#include "queue.h"
#include "stats.h"
#include "worker.h"

struct manager {
	const struct pool *p;
	struct outage_entry *oe;
	pthread_t thread;
	pthread_mutex_t mu;        /* guards started/stopped (a leaf) */
	bool started, stopped;     /* protected by mu */
	atomic_bool dead;          /* written by the thread only */
	atomic_int retries_left;   /* for status output */
	atomic_bool reset;         /* reset_retries / SIGUSR1 */

	/* Owned by the thread. */
	struct worker **slots;     /* live or finished-but-unjoined workers */
	bool *judged;              /* slot i's handshake outcome was counted */
	int nslots;
	unsigned settled;          /* the queue's handshakes-ended count seen */
	unsigned next_id;
	int failures;              /* consecutive failed attempts */
	int dead_steps;            /* probes failed while dead */
	int64_t next_probe;        /* when dead: time of the next attempt */
	int64_t hold_until;        /* pool may not grow before this */
};

int64_t manager_backoff(int64_t initial, int64_t max, int step)
{
	int64_t d = initial;

	for (int i = 0; i < step && d < max; i++)
		d *= 2;
	if (d > max)
		d = max;
	/* +-20% */
	return d * (80 + (int64_t)rand_below(41)) / 100;
}

static void reap(struct manager *m, bool wait)
{
	for (int i = 0; i < m->nslots; i++) {
		struct worker *w = m->slots[i];

		/* A worker's handshake is judged before it is reaped. */
		if (w && (wait || (worker_finished(w) && m->judged[i]))) {
			worker_join(w);
			m->slots[i] = NULL;
		}
	}
}

static struct worker **free_slot(struct manager *m)
{
	for (int i = 0; i < m->nslots; i++)
		if (!m->slots[i])
			return &m->slots[i];
	return NULL;
}

static const char *hname(const struct manager *m)
{
	return m->p->conf->hostname;
}

static void clear_failures(struct manager *m)
{
	m->failures = 0;
	m->dead_steps = 0;
	m->hold_until = 0;
	atomic_store(&m->retries_left, m->p->cfg->retry_attempts);
	if (atomic_exchange(&m->dead, false)) {
		outage_host_alive(m->oe);
		log_msg(LOG_NOTICE, "host=%s event=host_alive", hname(m));
	}
}

static const char *kind_of(const struct conn_result *r)
{
	return r->refused ? "refused" : r->timed_out ? "timeout" : "error";
}

/* The failure count reached retry_attempts: the host is (still) dead,
 * and the next probe is due after a backoff. */
static void count_dead(struct manager *m, int64_t now)
{
	const struct config *cfg = m->p->cfg;
	int64_t delay = manager_backoff(cfg->backoff_initial_ms,
					cfg->backoff_max_ms, m->dead_steps++);

	m->next_probe = now + delay;
	if (atomic_load(&m->dead)) {
		log_msg(LOG_INFO, "host=%s event=probe_failed next_probe_ms=%lld",
			hname(m), (long long)delay);
		return;
	}
	bool own_alarm = outage_host_dead(m->oe);

	atomic_store(&m->dead, true);
	log_msg(own_alarm ? LOG_ERR : LOG_INFO,
		"host=%s event=host_dead attempts=%d next_probe_ms=%lld%s",
		hname(m), m->failures, (long long)delay,
		own_alarm ? "" : " part_of=local_network_problem");
}

static void attempt_failed(struct manager *m, const struct conn_result *r)
{
	const struct pool *p = m->p;
	const struct config *cfg = p->cfg;
	struct queue_stats qs;
	int64_t now = now_ms();

	if (r->local) {
		/* lonc itself ran short (descriptors, memory): the host is
		 * not to blame and loses no attempt.  Try again later. */
		stats_error(p->stats, "%s", r->reason);
		log_msg(LOG_ERR, "host=%s event=connect_failed_locally reason=\"%s\" action=\"not counted against the host; again in %lld ms\"",
			hname(m), r->reason, (long long)cfg->backoff_initial_ms);
		m->hold_until = now + cfg->backoff_initial_ms;
		return;
	}
	stats_add(p->stats, STAT_connect_failures, 1);
	if (r->refused)
		stats_add(p->stats, STAT_refusals, 1);
	stats_error(p->stats, "%s", r->reason);
	queue_get_stats(p->queue, &qs);
	if (qs.workers - qs.connecting > 0) {
		/* Others are connected: the host is up but will not take one
		 * more connection now.  Wait before trying to grow again. */
		log_msg(LOG_WARNING, "host=%s event=grow_failed kind=%s reason=\"%s\" connections=%d%s%s",
			hname(m), kind_of(r), r->reason, qs.workers - qs.connecting,
			r->hint ? " hint=" : "", r->hint ? r->hint : "");
		m->hold_until = now + cfg->backoff_initial_ms;
		return;
	}
	m->failures++;
	atomic_store(&m->retries_left, cfg->retry_attempts > m->failures ?
		     cfg->retry_attempts - m->failures : 0);
	log_msg(LOG_WARNING, "host=%s event=connect_failed kind=%s reason=\"%s\" attempt=%d/%d%s%s",
		hname(m), kind_of(r), r->reason, m->failures, cfg->retry_attempts,
		r->hint ? " hint=" : "", r->hint ? r->hint : "");
	if (m->failures >= cfg->retry_attempts)
		count_dead(m, now);
}

/* Count every handshake that ended since the last look.  When the last
 * attempt failed (the host's fault, or lonc's own shortage) and no
 * connection is left or coming, nobody can serve what waits: it is
 * answered now rather than later. */
static void judge(struct manager *m)
{
	bool failed = false, local = false;

	for (int i = 0; i < m->nslots; i++) {
		struct worker *w = m->slots[i];

		if (!w || m->judged[i] || !worker_handshaken(w))
			continue;
		m->judged[i] = true;
		const struct conn_result *r = worker_result(w);
		if (r->aborted)
			continue;
		if (r->ok) {
			stats_add(m->p->stats, STAT_connects, 1);
			clear_failures(m);
		} else {
			attempt_failed(m, r);
			failed = true;
			local = local || r->local;
		}
	}
	struct queue_stats qs;
	queue_get_stats(m->p->queue, &qs);
	if (failed && (m->failures > 0 || local) && qs.workers == 0)
		pool_fail_queued(m->p);
}

/* Handshakes that may be under way at once: a dead host is probed by
 * one, the first attempt after a failed one goes alone, and attempts
 * under way never exceed those left before the host counts as dead. */
static int parallel_limit(const struct manager *m)
{
	int left = m->p->cfg->retry_attempts - m->failures;

	if (atomic_load(&m->dead) || m->failures > 0)
		return 1;
	return left < m->nslots ? left : m->nslots;
}

/* A busy worker is often about to finish: its client got the reply and
 * sent its next request (on a new connection) before the worker was back
 * in queue_pop.  Give busy workers a millisecond before growing the
 * pool, so a sequential client does not end up with two connections. */
static bool demand_persists(struct manager *m)
{
	struct queue *q = m->p->queue;
	struct queue_stats qs;

	queue_get_stats(q, &qs);
	if (qs.workers - qs.connecting - qs.idle <= 0)
		return true;
	struct timespec ms = { 0, 1000000 };
	nanosleep(&ms, NULL);
	enum queue_rc rc = queue_wait_demand(q, m->p->conf->max_connections,
					     parallel_limit(m), &m->settled, now_ms());
	if (rc == QUEUE_KICKED)
		queue_poke(q);   /* keep the poke for the main loop */
	if (rc == QUEUE_SETTLED)
		judge(m);        /* the main loop will not hear of it again */
	return rc == QUEUE_OK;
}

/* A slot for a new worker: a free one, or one whose worker left the
 * pool and is finishing (answering its client): wait for it rather than
 * spin.  NULL when every slot holds a working worker. */
static struct worker **take_slot(struct manager *m)
{
	struct worker **slot = free_slot(m);

	for (int i = 0; i < m->nslots && !slot; i++) {
		if (m->slots[i] && worker_left(m->slots[i])) {
			worker_join(m->slots[i]);
			m->slots[i] = NULL;
			slot = &m->slots[i];
		}
	}
	return slot;
}

/* Start one worker in a free slot.  False when none could start. */
static bool start_one(struct manager *m)
{
	struct worker **slot = take_slot(m);

	if (!slot)
		return false;
	*slot = worker_start(m->p, ++m->next_id);
	m->judged[slot - m->slots] = false;
	if (!*slot) {
		/* No thread: pause before the next try, dead or not. */
		m->hold_until = now_ms() + m->p->cfg->backoff_initial_ms;
		if (m->next_probe < m->hold_until)
			m->next_probe = m->hold_until;
		return false;
	}
	return true;
}

/* Start the workers that waiting requests need (see parallel_limit);
 * their handshakes go on while the manager waits for the next event. */
static void grow(struct manager *m, int parallel)
{
	struct queue_stats qs;

	queue_get_stats(m->p->queue, &qs);
	int need = (int)qs.len - qs.idle - qs.connecting;
	if (need > parallel - qs.connecting)
		need = parallel - qs.connecting;
	for (int i = 0; i < need; i++)
		if (!start_one(m))
			return;
}

/* The dead host's probe, when it is due and none is under way. */
static void probe(struct manager *m)
{
	struct queue_stats qs;

	queue_get_stats(m->p->queue, &qs);
	if (qs.connecting > 0)
		return;
	log_msg(LOG_INFO, "host=%s event=probe", hname(m));
	(void)start_one(m);
}

/* How long to wait for demand, and for how many workers. */
static int64_t wait_plan(struct manager *m, int *limit)
{
	int64_t now = now_ms();

	*limit = m->nslots;
	if (atomic_load(&m->dead))
		/* Nothing is queued for a dead host but a replay (or a
		 * request that came just before it went dead): any item
		 * wakes us to answer it. */
		return m->next_probe;
	if (m->hold_until > now) {
		struct queue_stats qs;

		queue_get_stats(m->p->queue, &qs);
		*limit = qs.workers;
		return m->hold_until;
	}
	return -1;
}

/* One round of the manager's loop.  False when the queue closed. */
static bool manage(struct manager *m)
{
	int limit, parallel = parallel_limit(m);
	int64_t deadline = wait_plan(m, &limit);
	enum queue_rc rc = queue_wait_demand(m->p->queue, limit, parallel,
					     &m->settled, deadline);

	judge(m);
	reap(m, false);
	if (rc == QUEUE_CLOSED)
		return false;
	if (atomic_exchange(&m->reset, false)) {
		log_msg(LOG_NOTICE, "host=%s event=retries_reset", hname(m));
		clear_failures(m);
	} else if (atomic_load(&m->dead)) {
		if (now_ms() < m->next_probe)
			pool_fail_queued(m->p);
		else
			probe(m);
	} else if (rc == QUEUE_OK && m->hold_until <= now_ms() && demand_persists(m)) {
		grow(m, parallel_limit(m));
	}
	return true;
}

static void *manager_main(void *arg)
{
	struct manager *m = arg;

	thread_name("mgr", hname(m));
	while (manage(m))
		;
	reap(m, true);
	return NULL;
}

struct manager *manager_new(const struct pool *p, struct outage_entry *oe)
{
	struct manager *m = xcalloc(1, sizeof(*m));

	m->p = p;
	m->oe = oe;
	pthread_mutex_init(&m->mu, NULL);
	atomic_init(&m->retries_left, p->cfg->retry_attempts);
	m->nslots = p->conf->max_connections;
	m->slots = xcalloc((size_t)m->nslots, sizeof(*m->slots));
	m->judged = xcalloc((size_t)m->nslots, sizeof(*m->judged));
	return m;
}

int manager_start(struct manager *m)
{
	pthread_attr_t attr;
	int rc = 0;

	pthread_mutex_lock(&m->mu);
	if (m->stopped) {
		rc = -1;
	} else if (!m->started) {
		pthread_attr_init(&attr);
		pthread_attr_setstacksize(&attr, 128 * 1024);
		int err = pthread_create(&m->thread, &attr, manager_main, m);
		pthread_attr_destroy(&attr);
		if (err) {
			log_msg(LOG_ERR, "host=%s event=thread_failed thread=manager error=\"%s\"",
				hname(m), strerror(err));
			rc = -1;
		}
		m->started = !err;
	}
	pthread_mutex_unlock(&m->mu);
	return rc;
}

void manager_stop(struct manager *m)
{
	pthread_mutex_lock(&m->mu);
	bool started = m->started;
	m->stopped = true;
	m->started = false;
	pthread_mutex_unlock(&m->mu);
	if (started)
		pthread_join(m->thread, NULL);
}

void manager_free(struct manager *m)
{
	if (!m)
		return;
	pthread_mutex_destroy(&m->mu);
	free(m->slots);
	free(m->judged);
	free(m);
}

bool manager_dead(const struct manager *m)
{
	return atomic_load(&m->dead);
}

int manager_retries_left(const struct manager *m)
{
	return atomic_load(&m->retries_left);
}

void manager_reset(struct manager *m)
{
	atomic_store(&m->reset, true);
	queue_poke(m->p->queue);
}

/*
 * manager.c - one thread per host, started at the host's first request.
 *
 * It waits on the host queue's `changed` condvar and, while requests wait
 * and no worker is connecting, starts one worker at a time up to the
 * host's max_connections.  It counts consecutive failed connection
 * attempts; at retry_attempts the host is DEAD: queued and new requests
 * get con_lost at once, and a probe connection is made after a backoff
 * that doubles up to backoff_max (with jitter).  A successful handshake,
 * reset_retries or SIGUSR1 ends the dead state.
 *
 * The retry state below is owned by this thread alone; it publishes
 * h->dead and h->retries_left as atomics.  Locks: only through other
 * modules, one at a time: queue calls (h->queue.mu), host_set_error
 * (h->mu), outage_host_dead (the outage mutex), and acceptor_return
 * (acceptor->mu) when it fails queued clients.
 */
#include "manager.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "host.h"
#include "log.h"
#include "outage.h"
#include "worker.h"

struct manager {
	struct host *h;
	struct worker **slots;     /* live or finished-but-unjoined workers */
	int nslots;
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

		if (w && (wait || worker_finished(w))) {
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

static void fail_queued(struct host *h)
{
	void *item;

	while (queue_take(&h->queue, &item))
		host_fail_client(h, item);
}

static void clear_failures(struct manager *m)
{
	struct host *h = m->h;

	m->failures = 0;
	m->dead_steps = 0;
	m->hold_until = 0;
	atomic_store(&h->retries_left, h->cfg->retry_attempts);
	if (atomic_exchange(&h->dead, false))
		log_msg(LOG_NOTICE, "host=%s event=host_alive", h->conf->hostname);
}

static void attempt_failed(struct manager *m, const struct worker_result *r)
{
	struct host *h = m->h;
	const struct config *cfg = h->cfg;
	struct queue_stats qs;
	int64_t now = now_ms();

	atomic_fetch_add_explicit(&h->stats.connect_failures, 1, memory_order_relaxed);
	if (r->refused)
		atomic_fetch_add_explicit(&h->stats.refusals, 1, memory_order_relaxed);
	host_set_error(h, "%s", r->reason);
	queue_get_stats(&h->queue, &qs);
	if (qs.workers > 0) {
		/* Others are connected: the host is up but will not take one
		 * more connection now.  Wait before trying to grow again. */
		log_msg(LOG_WARNING, "host=%s event=grow_failed kind=%s reason=\"%s\" connections=%d",
			h->conf->hostname, r->refused ? "refused" : r->timed_out ?
			"timeout" : "error", r->reason, qs.workers);
		m->hold_until = now + cfg->backoff_initial_ms;
		return;
	}
	m->failures++;
	atomic_store(&h->retries_left, cfg->retry_attempts > m->failures ?
		     cfg->retry_attempts - m->failures : 0);
	log_msg(LOG_WARNING, "host=%s event=connect_failed kind=%s reason=\"%s\" attempt=%d/%d",
		h->conf->hostname, r->refused ? "refused" : r->timed_out ?
		"timeout" : "error", r->reason, m->failures, cfg->retry_attempts);
	/* Nobody can serve what waits: answer now rather than later. */
	fail_queued(h);
	if (m->failures < cfg->retry_attempts)
		return;
	int64_t delay = manager_backoff(cfg->backoff_initial_ms,
					cfg->backoff_max_ms, m->dead_steps++);
	m->next_probe = now + delay;
	if (!atomic_load(&h->dead)) {
		bool own_alarm = outage_host_dead(h);

		atomic_store(&h->dead, true);
		log_msg(own_alarm ? LOG_ERR : LOG_INFO,
			"host=%s event=host_dead attempts=%d next_probe_ms=%lld%s",
			h->conf->hostname, m->failures, (long long)delay,
			own_alarm ? "" : " part_of=local_network_problem");
	} else {
		log_msg(LOG_INFO, "host=%s event=probe_failed next_probe_ms=%lld",
			h->conf->hostname, (long long)delay);
	}
}

/* A busy worker is often about to finish: its client got the reply and
 * sent its next request (on a new connection) before the worker was back
 * in queue_pop.  Give busy workers a millisecond before growing the
 * pool, so a sequential client does not end up with two connections. */
static bool demand_persists(struct host *h)
{
	struct queue_stats qs;

	queue_get_stats(&h->queue, &qs);
	if (qs.workers - qs.connecting - qs.idle <= 0)
		return true;
	struct timespec ms = { 0, 1000000 };
	nanosleep(&ms, NULL);
	enum queue_rc rc = queue_wait_demand(&h->queue, h->conf->max_connections,
					     now_ms());
	if (rc == QUEUE_KICKED)
		queue_poke(&h->queue);   /* keep the poke for the main loop */
	return rc == QUEUE_OK;
}

/* Start one worker and wait for its handshake.  */
static void grow(struct manager *m)
{
	struct host *h = m->h;
	struct worker **slot = free_slot(m);

	if (!slot) {
		/* Every slot is taken, but the pool has room: a worker left
		 * it and is finishing (answering its client).  Wait for it
		 * rather than spin. */
		for (int i = 0; i < m->nslots && !slot; i++) {
			if (m->slots[i] && worker_left(m->slots[i])) {
				worker_join(m->slots[i]);
				m->slots[i] = NULL;
				slot = &m->slots[i];
			}
		}
		if (!slot)
			return;
	}
	*slot = worker_start(h, ++m->next_id);
	if (!*slot) {
		/* No thread: pause before the next try, dead or not. */
		m->hold_until = now_ms() + h->cfg->backoff_initial_ms;
		if (m->next_probe < m->hold_until)
			m->next_probe = m->hold_until;
		return;
	}
	queue_wait_connected(&h->queue, -1);
	const struct worker_result *r = worker_result(*slot);
	if (r->ok) {
		atomic_fetch_add_explicit(&h->stats.connects, 1, memory_order_relaxed);
		clear_failures(m);
	} else {
		attempt_failed(m, r);
	}
	reap(m, false);
}

static void *manager_main(void *arg)
{
	struct manager m = { .h = arg };
	struct host *h = m.h;

	pthread_setname_np(pthread_self(), "lonc-mgr");
	m.nslots = h->conf->max_connections;
	m.slots = xcalloc((size_t)m.nslots, sizeof(*m.slots));
	for (;;) {
		int64_t now = now_ms(), deadline = -1;
		int limit = m.nslots;
		bool dead = atomic_load(&h->dead);

		if (dead) {
			/* workers == 0 here, so any queued item is demand and
			 * wakes us to answer it con_lost. */
			deadline = m.next_probe;
		} else if (m.hold_until > now) {
			struct queue_stats qs;

			queue_get_stats(&h->queue, &qs);
			limit = qs.workers;
			deadline = m.hold_until;
		}
		enum queue_rc rc = queue_wait_demand(&h->queue, limit, deadline);
		reap(&m, false);
		if (rc == QUEUE_CLOSED)
			break;
		if (atomic_exchange(&h->reset_requested, false)) {
			log_msg(LOG_NOTICE, "host=%s event=retries_reset", h->conf->hostname);
			clear_failures(&m);
			continue;
		}
		if (atomic_load(&h->dead)) {
			if (now_ms() < m.next_probe) {
				fail_queued(h);
				continue;
			}
			log_msg(LOG_INFO, "host=%s event=probe", h->conf->hostname);
			grow(&m);
			continue;
		}
		if (rc == QUEUE_OK && m.hold_until <= now_ms() && demand_persists(h))
			grow(&m);
	}
	reap(&m, true);
	free(m.slots);
	return NULL;
}

int manager_start(struct host *h, pthread_t *thread)
{
	pthread_attr_t attr;
	int rc;

	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 128 * 1024);
	rc = pthread_create(thread, &attr, manager_main, h);
	pthread_attr_destroy(&attr);
	if (rc) {
		log_msg(LOG_ERR, "host=%s event=thread_failed thread=manager error=\"%s\"",
			h->conf->hostname, strerror(rc));
		return -1;
	}
	return 0;
}

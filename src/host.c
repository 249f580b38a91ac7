/*
 * host.c - life cycle and shared state of one remote host.
 *
 * Start-up order: host_new (sockets) -> host_start (acceptor thread);
 * the manager starts lazily at the first request.  Shutdown is the exact
 * reverse: stop accepting, close the queue (workers finish what was
 * queued), join the manager (which joins its workers), free.
 * Locks: h->mu guards the text fields and is a leaf.
 */
#include "host.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "acceptor.h"
#include "client.h"
#include "crypto.h"
#include "log.h"
#include "manager.h"
#include "net.h"
#include "outage.h"

static struct host *alloc_host(struct config *cfg, const struct host_conf *conf,
			       struct crypto_tls *tls)
{
	struct host *h = xcalloc(1, sizeof(*h));

	h->cfg = config_ref(cfg);
	h->conf = conf;
	h->tls = tls ? crypto_tls_ref(tls) : NULL;
	queue_init(&h->queue, (size_t)cfg->max_queue);
	pthread_mutex_init(&h->mu, NULL);
	atomic_init(&h->retries_left, cfg->retry_attempts);
	atomic_init(&h->last_request, INT64_MIN / 2);
	atomic_init(&h->dead_since, INT64_MIN / 2);
	return h;
}

/* Undo alloc_host (no threads, no acceptor). */
static void release_host(struct host *h)
{
	queue_destroy(&h->queue);
	pthread_mutex_destroy(&h->mu);
	crypto_tls_free(h->tls);
	config_unref(h->cfg);
	free(h);
}

static _Atomic int64_t shutdown_deadline = INT64_MAX;

void host_set_shutdown_deadline(int64_t deadline)
{
	/* Workers blocked on lond read it at least every RECV_SLICE_MS
	 * (worker.c). */
	atomic_store(&shutdown_deadline, deadline);
}

int64_t host_shutdown_deadline(void)
{
	return atomic_load_explicit(&shutdown_deadline, memory_order_relaxed);
}

struct host *host_new(struct config *cfg, const struct host_conf *conf,
		      struct crypto_tls *tls)
{
	struct host *h = alloc_host(cfg, conf, tls);

	h->acceptor = acceptor_new(h);
	if (!h->acceptor) {
		release_host(h);
		return NULL;
	}
	outage_register(h);
	return h;
}

struct host *host_new_successor(struct config *cfg, const struct host_conf *conf,
				struct crypto_tls *tls, const struct host *old)
{
	struct host *h = alloc_host(cfg, conf, tls);

	h->acceptor = acceptor_new_successor(h, old->acceptor);
	if (!h->acceptor) {
		release_host(h);
		return NULL;
	}
	outage_register(h);
	return h;
}

int host_take_over(struct host *h, struct host *old)
{
	acceptor_handover(old->acceptor, h->acceptor);
	return host_start(h);
}

int host_start(struct host *h)
{
	return acceptor_start(h->acceptor);
}

int host_ensure_manager(struct host *h)
{
	int rc = 0;

	if (atomic_load_explicit(&h->manager_started, memory_order_acquire))
		return 0;
	/* The acceptor and the delayed-file check may race to start it. */
	pthread_mutex_lock(&h->mu);
	if (h->shut) {
		rc = -1;
	} else if (!atomic_load(&h->manager_started)) {
		if (manager_start(h, &h->manager) < 0)
			rc = -1;
		else
			atomic_store(&h->manager_started, true);
	}
	pthread_mutex_unlock(&h->mu);
	return rc;
}

void host_stop_accepting(struct host *h)
{
	acceptor_close(h->acceptor);
}

void host_finish(struct host *h)
{
	acceptor_finish(h->acceptor);
}

void host_shutdown(struct host *h)
{
	bool started;

	queue_close(&h->queue);
	pthread_mutex_lock(&h->mu);
	h->shut = true;
	started = atomic_load(&h->manager_started);
	pthread_mutex_unlock(&h->mu);
	if (started) {
		pthread_join(h->manager, NULL);
		atomic_store(&h->manager_started, false);
	}
	/* Without a manager nobody pops: answer what is left. */
	void *item;
	while (queue_take(&h->queue, &item))
		host_fail_client(h, item);
}

void host_free(struct host *h)
{
	if (!h)
		return;
	outage_unregister(h);
	acceptor_free(h->acceptor);
	release_host(h);
}

void host_reset(struct host *h)
{
	atomic_store(&h->reset_requested, true);
	queue_poke(&h->queue);
}

void host_close_connections(struct host *h)
{
	queue_kick(&h->queue);
}

/* The pending request is answered: drop it from the client's buffer. */
static void request_done(struct host *h, struct client *c)
{
	linebuf_consume(&c->in, c->req_len + 1);
	c->req_len = 0;
	/* The client's read deadline runs from now: the acceptor, which
	 * is not woken for a hand-back, keeps it when it takes c back. */
	c->deadline = now_ms() + h->cfg->client_timeout_ms;
}

void host_fail_client(struct host *h, struct client *c)
{
	if (!c) {
		/* A replay marker: the files stay for the next connection. */
		atomic_store(&h->delayed_queued, false);
		return;
	}
	atomic_fetch_add_explicit(&h->stats.failed, 1, memory_order_relaxed);
	request_done(h, c);
	if (net_peer_closed(c->fd)) {
		atomic_fetch_add_explicit(&h->stats.client_gone, 1,
					  memory_order_relaxed);
		client_free(c);
		return;
	}
	if (client_send_line(c, "con_lost",
			     now_ms() + h->cfg->client_write_timeout_ms) < 0) {
		client_free(c);
		return;
	}
	acceptor_return(h->acceptor, c);
}

void host_queue_delayed(struct host *h)
{
	if (atomic_load(&h->dead) || atomic_exchange(&h->delayed_queued, true))
		return;
	if (queue_push(&h->queue, NULL) != QUEUE_OK || host_ensure_manager(h) < 0)
		atomic_store(&h->delayed_queued, false);
}

void host_release_client(struct host *h, struct client *c)
{
	request_done(h, c);
	acceptor_return(h->acceptor, c);
}

void host_set_error(struct host *h, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&h->mu);
	va_start(ap, fmt);
	vsnprintf(h->last_error, sizeof(h->last_error), fmt, ap);
	va_end(ap);
	pthread_mutex_unlock(&h->mu);
}

#define LOAD(x) atomic_load_explicit(&(x), memory_order_relaxed)

const int64_t host_latency_bounds_us[HOST_LATENCY_BUCKETS - 1] = {
	100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000,
	250000, 500000, 1000000, 2500000, 5000000, 10000000, 30000000,
};

void host_record_latency(struct host *h, int64_t us)
{
	int b = 0;

	while (b < HOST_LATENCY_BUCKETS - 1 && us > host_latency_bounds_us[b])
		b++;
	atomic_fetch_add_explicit(&h->stats.latency[b], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&h->stats.latency_sum_us, (unsigned long)us,
				  memory_order_relaxed);
}

/* The upper bound of the bucket holding quantile q; -1 without data. */
static int64_t quantile(const unsigned long *v, double q)
{
	unsigned long total = 0, seen = 0;

	for (int i = 0; i < HOST_LATENCY_BUCKETS; i++)
		total += v[i];
	if (!total)
		return -1;
	for (int i = 0; i < HOST_LATENCY_BUCKETS; i++) {
		seen += v[i];
		if ((double)seen >= q * (double)total)
			return i < HOST_LATENCY_BUCKETS - 1 ? host_latency_bounds_us[i] :
			       host_latency_bounds_us[HOST_LATENCY_BUCKETS - 2] * 10;
	}
	return -1;
}

void host_get_status(struct host *h, struct host_status *st)
{
	struct queue_stats qs;

	memset(st, 0, sizeof(*st));
	queue_get_stats(&h->queue, &qs);
	st->hostname = h->conf->hostname;
	st->state = LOAD(h->dead) ? "dead" : qs.workers ? "connected" : "idle";
	st->connections = qs.workers - qs.connecting;
	st->busy = qs.workers - qs.connecting - qs.idle;
	st->idle = qs.idle;
	st->connecting = qs.connecting;
	st->queued = qs.len;
	st->requests = LOAD(h->stats.requests);
	st->replied = LOAD(h->stats.replied);
	st->failed = LOAD(h->stats.failed);
	st->timeouts = LOAD(h->stats.timeouts);
	st->rejected = LOAD(h->stats.rejected);
	st->too_long = LOAD(h->stats.too_long);
	st->client_gone = LOAD(h->stats.client_gone);
	st->connects = LOAD(h->stats.connects);
	st->connect_failures = LOAD(h->stats.connect_failures);
	st->refusals = LOAD(h->stats.refusals);
	st->retries_left = LOAD(h->retries_left);
	st->max_connections = h->conf->max_connections;
	for (int i = 0; i < HOST_LATENCY_BUCKETS; i++)
		st->latency[i] = LOAD(h->stats.latency[i]);
	st->latency_sum_us = LOAD(h->stats.latency_sum_us);
	st->p50_us = quantile(st->latency, 0.50);
	st->p99_us = quantile(st->latency, 0.99);
	pthread_mutex_lock(&h->mu);
	memcpy(st->peer_version, h->peer_version, sizeof(st->peer_version));
	memcpy(st->last_error, h->last_error, sizeof(st->last_error));
	memcpy(st->key_mode_buf, h->key_mode_used, sizeof(st->key_mode_buf));
	pthread_mutex_unlock(&h->mu);
	st->key_mode = *st->key_mode_buf ? st->key_mode_buf :
		       config_key_mode_name(h->conf->key_mode);
}

size_t host_status_numbers(const struct host_status *st,
			   struct host_field out[HOST_STATUS_NUMBERS])
{
	const struct host_field f[] = {
		{ "connections", st->connections }, { "busy", st->busy },
		{ "idle", st->idle }, { "connecting", st->connecting },
		{ "max_connections", st->max_connections },
		{ "queued", (long long)st->queued },
		{ "requests", (long long)st->requests },
		{ "replied", (long long)st->replied },
		{ "failed", (long long)st->failed },
		{ "timeouts", (long long)st->timeouts },
		{ "rejected", (long long)st->rejected },
		{ "too_long", (long long)st->too_long },
		{ "client_gone", (long long)st->client_gone },
		{ "connects", (long long)st->connects },
		{ "connect_failures", (long long)st->connect_failures },
		{ "refusals", (long long)st->refusals },
		{ "p50_us", st->p50_us }, { "p99_us", st->p99_us },
		{ "retries_left", st->retries_left },
	};
	size_t n = sizeof(f) / sizeof(f[0]);

	_Static_assert(sizeof(f) / sizeof(f[0]) <= HOST_STATUS_NUMBERS,
		       "HOST_STATUS_NUMBERS too small");
	memcpy(out, f, sizeof(f));
	return n;
}

void host_log_status(struct host *h)
{
	struct host_status st;
	struct host_field f[HOST_STATUS_NUMBERS];
	char nums[1024];
	size_t len = 0;

	host_get_status(h, &st);
	size_t n = host_status_numbers(&st, f);
	nums[0] = '\0';
	for (size_t i = 0; i < n && len < sizeof(nums); i++)
		len += (size_t)snprintf(nums + len, sizeof(nums) - len, " %s=%lld",
					f[i].name, f[i].value);
	log_msg(LOG_NOTICE,
		"status host=%s state=%s%s key_mode=%s peer_version=\"%s\" last_error=\"%s\"",
		st.hostname, st.state, nums, st.key_mode, st.peer_version,
		st.last_error);
}

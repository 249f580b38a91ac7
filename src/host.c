/*
 * host.c - one remote host: it owns struct host, and joins its parts
 * (acceptor, queue, pool with manager and workers, stats, outage entry).
 *
 * Start-up order: host_new (sockets) -> host_start (acceptor thread);
 * the manager starts lazily at the first request.  Shutdown is the exact
 * reverse: stop accepting, close the queue (workers finish what was
 * queued), stop the manager (which joins its workers), finish the
 * acceptor (every client answered), free.
 * Threads: the acceptor calls host_request/host_too_long; the main,
 * admin and retire threads the rest.  Locks: none of its own.
 * May call: acceptor, client, config, crypto, log, lond, manager, outage, queue, stats, util, worker.
 */
#include "host.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acceptor.h"
#include "client.h"
#include "crypto.h"
#include "log.h"
#include "lond.h"
#include "manager.h"
#include "outage.h"
#include "queue.h"
#include "worker.h"

struct host {
	struct config *cfg;              /* immutable; we hold a reference */
	const struct host_conf *conf;    /* immutable, inside cfg */
	struct crypto_tls *tls;          /* shared TLS context, or NULL */
	const char **sockets;            /* socket names: hostname, aliases */
	struct acceptor *acceptor;
	struct queue queue;
	struct stats stats;
	struct pool pool;                /* what manager and workers share */
	struct manager *manager;
	struct outage_entry *outage;
	atomic_bool closing;             /* host_stop_accepting was called */
};

static const char *host_request(void *owner, struct client *c, size_t len);
static void host_too_long(void *owner);

static const struct acceptor_ops host_ops = {
	.request = host_request,
	.too_long = host_too_long,
};

static struct host *alloc_host(struct config *cfg, const struct host_conf *conf,
			       struct crypto_tls *tls)
{
	struct host *h = xcalloc(1, sizeof(*h));

	h->cfg = config_ref(cfg);
	h->conf = conf;
	h->tls = tls ? crypto_tls_ref(tls) : NULL;
	h->sockets = xcalloc(conf->n_aliases + 1, sizeof(*h->sockets));
	h->sockets[0] = conf->hostname;
	for (size_t i = 0; i < conf->n_aliases; i++)
		h->sockets[i + 1] = conf->aliases[i];
	queue_init(&h->queue, (size_t)cfg->max_queue);
	stats_init(&h->stats);
	h->pool = (struct pool){ .cfg = cfg, .conf = conf, .queue = &h->queue,
				 .stats = &h->stats, .tls = h->tls };
	h->outage = outage_register();
	h->manager = manager_new(&h->pool, h->outage);
	return h;
}

/* Undo alloc_host (no threads, no acceptor). */
static void release_host(struct host *h)
{
	manager_free(h->manager);
	outage_unregister(h->outage);
	queue_destroy(&h->queue);
	stats_destroy(&h->stats);
	crypto_tls_free(h->tls);
	free(h->sockets);
	config_unref(h->cfg);
	free(h);
}

static struct acceptor_conf acceptor_conf_of(const struct host *h)
{
	return (struct acceptor_conf){
		.name = h->conf->hostname,
		.socket_dir = h->cfg->socket_dir,
		.sockets = h->sockets,
		.n_sockets = h->conf->n_aliases + 1,
		.socket_mode = h->cfg->socket_mode,
		.max_request = h->cfg->max_request_bytes,
		.client_timeout_ms = h->cfg->client_timeout_ms,
	};
}

struct host *host_new(struct config *cfg, const struct host_conf *conf,
		      struct crypto_tls *tls)
{
	struct host *h = alloc_host(cfg, conf, tls);
	struct acceptor_conf ac = acceptor_conf_of(h);

	h->acceptor = acceptor_new(&ac, &host_ops, h);
	if (!h->acceptor) {
		release_host(h);
		return NULL;
	}
	return h;
}

struct host *host_new_successor(struct config *cfg, const struct host_conf *conf,
				struct crypto_tls *tls, const struct host *old)
{
	struct host *h = alloc_host(cfg, conf, tls);
	struct acceptor_conf ac = acceptor_conf_of(h);

	h->acceptor = acceptor_new_successor(&ac, &host_ops, h, old->acceptor);
	if (!h->acceptor) {
		release_host(h);
		return NULL;
	}
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

void host_stop_accepting(struct host *h)
{
	atomic_store(&h->closing, true);
	acceptor_close(h->acceptor);
}

void host_close_queue(struct host *h)
{
	queue_close(&h->queue);
}

void host_shutdown(struct host *h)
{
	queue_close(&h->queue);
	manager_stop(h->manager);
	/* Without a manager nobody pops: answer what is left. */
	pool_fail_queued(&h->pool);
}

void host_finish(struct host *h)
{
	acceptor_finish(h->acceptor);
}

void host_free(struct host *h)
{
	if (!h)
		return;
	acceptor_free(h->acceptor);
	release_host(h);
}

bool host_ping(struct host *h)
{
	return acceptor_ping(h->acceptor);
}

void host_reset(struct host *h)
{
	manager_reset(h->manager);
}

bool host_dead(const struct host *h)
{
	return manager_dead(h->manager);
}

void host_queue_replay(struct host *h)
{
	if (!manager_dead(h->manager) && queue_push_replay(&h->queue) &&
	    manager_start(h->manager) < 0)
		log_msg(LOG_WARNING, "host=%s event=delayed_replay_not_started",
			h->conf->hostname);
}

const struct host_conf *host_conf(const struct host *h)
{
	return h->conf;
}

const struct config *host_config(const struct host *h)
{
	return h->cfg;
}

const char *host_socket_path(const struct host *h, int i)
{
	return acceptor_path(h->acceptor, i);
}

/* A request lonc answers itself, or NULL. */
static const char *local_answer(struct host *h, const char *line, size_t len)
{
	switch (lond_local_command(line, len)) {
	case LOND_LOCAL_RESET_RETRIES:
		host_reset(h);
		return "ok";
	case LOND_LOCAL_CLOSE_CONNECTIONS:
		/* Every connection closes as soon as it is idle. */
		queue_kick(&h->queue);
		return "ok";
	case LOND_LOCAL_BAD_SETHOST:
		log_msg(LOG_INFO, "host=%s event=request_refused reason=bad_sethost_prefix",
			h->conf->hostname);
		return "error:bad_sethost";
	case LOND_LOCAL_HANDSHAKE:
		log_msg(LOG_WARNING, "host=%s event=request_refused reason=handshake_command",
			h->conf->hostname);
		return "error:handshake_command";
	case LOND_LOCAL_NONE:
		break;
	}
	return NULL;
}

/* acceptor_ops.request: answer, or queue for a worker. */
static const char *host_request(void *owner, struct client *c, size_t len)
{
	struct host *h = owner;
	const char *answer = local_answer(h, c->in.data, len);

	if (answer)
		return answer;
	stats_add(&h->stats, STAT_requests, 1);
	outage_note_request(h->outage);
	/* A dead host, or one going away (removed by a reload, or a
	 * shutdown), still answers every line it was given. */
	if (!manager_dead(h->manager) && !atomic_load(&h->closing) &&
	    manager_start(h->manager) == 0) {
		c->req_len = len;
		c->start_us = now_us();
		c->queued_at = c->start_us / 1000;
		enum queue_rc rc = queue_push_client(&h->queue, c);
		if (rc == QUEUE_OK)
			return NULL;
		if (rc == QUEUE_FULL)
			log_msg(LOG_WARNING, "host=%s event=queue_full max_queue=%d",
				h->conf->hostname, h->cfg->max_queue);
		c->req_len = 0;
	}
	stats_add(&h->stats, STAT_rejected, 1);
	stats_add(&h->stats, STAT_failed, 1);
	return "con_lost";
}

static void host_too_long(void *owner)
{
	struct host *h = owner;

	stats_add(&h->stats, STAT_too_long, 1);
}

/* ---- status ---------------------------------------------------------- */

const struct host_field_info host_fields[HOST_FIELDS] = {
#define HOST_GAUGE_INFO(name, prom, help) { #name, prom, help, HOST_KIND_GAUGE },
	HOST_GAUGES(HOST_GAUGE_INFO)
#undef HOST_GAUGE_INFO
#define HOST_COUNTER_INFO(name, prom, help) { #name, prom, help, HOST_KIND_COUNTER },
	STATS_COUNTERS(HOST_COUNTER_INFO)
#undef HOST_COUNTER_INFO
	{ "p50_us", NULL, "Median latency (upper bound of its bucket), us.",
	  HOST_KIND_QUANTILE },
	{ "p99_us", NULL, "99th percentile latency (upper bound of its bucket), us.",
	  HOST_KIND_QUANTILE },
};

void host_get_status(struct host *h, struct host_status *st)
{
	struct queue_stats qs;
	bool dead = manager_dead(h->manager);

	memset(st, 0, sizeof(*st));
	queue_get_stats(&h->queue, &qs);
	stats_view(&h->stats, &st->stats);
	st->hostname = h->conf->hostname;
	st->state = dead ? "dead" : qs.workers ? "connected" : "idle";
	st->v[HOST_G_connections] = qs.workers - qs.connecting;
	st->v[HOST_G_busy] = qs.workers - qs.connecting - qs.idle;
	st->v[HOST_G_idle] = qs.idle;
	st->v[HOST_G_connecting] = qs.connecting;
	st->v[HOST_G_max_connections] = h->conf->max_connections;
	st->v[HOST_G_queued] = (long long)qs.len;
	st->v[HOST_G_retries_left] = manager_retries_left(h->manager);
	st->v[HOST_G_dead] = dead;
	for (int i = 0; i < STATS_N; i++)
		st->v[HOST_COUNTER(i)] = (long long)st->stats.count[i];
	st->v[HOST_P50] = st->stats.p50_us;
	st->v[HOST_P99] = st->stats.p99_us;
	st->key_mode = *st->stats.key_mode ? st->stats.key_mode :
		       config_key_mode_name(h->conf->key_mode);
}

void host_log_status(struct host *h)
{
	struct host_status st;
	char nums[1024];
	size_t len = 0;

	host_get_status(h, &st);
	nums[0] = '\0';
	for (int i = 0; i < HOST_FIELDS && len < sizeof(nums); i++)
		len += (size_t)snprintf(nums + len, sizeof(nums) - len, " %s=%lld",
					host_fields[i].name, st.v[i]);
	log_msg(LOG_NOTICE,
		"status host=%s state=%s%s key_mode=%s peer_version=\"%s\" last_error=\"%s\"",
		st.hostname, st.state, nums, st.key_mode, st.stats.peer_version,
		st.stats.last_error);
}

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

#include "acceptor.h"
#include "client.h"
#include "log.h"
#include "manager.h"
#include "net.h"
#include "outage.h"

struct host *host_new(const struct config *cfg, const struct host_conf *conf,
		      struct crypto_tls *tls)
{
	struct host *h = xcalloc(1, sizeof(*h));

	h->cfg = cfg;
	h->conf = conf;
	h->tls = tls;
	queue_init(&h->queue, (size_t)cfg->max_queue);
	pthread_mutex_init(&h->mu, NULL);
	atomic_init(&h->retries_left, cfg->retry_attempts);
	atomic_init(&h->last_request, INT64_MIN / 2);
	atomic_init(&h->dead_since, INT64_MIN / 2);
	h->acceptor = acceptor_new(h);
	if (!h->acceptor) {
		queue_destroy(&h->queue);
		pthread_mutex_destroy(&h->mu);
		free(h);
		return NULL;
	}
	outage_register(h);
	return h;
}

int host_start(struct host *h)
{
	return acceptor_start(h->acceptor);
}

int host_ensure_manager(struct host *h)
{
	/* Only the host's own acceptor thread gets here, so there is no
	 * race between two starters; the flag is atomic for readers. */
	if (atomic_load_explicit(&h->manager_started, memory_order_relaxed))
		return 0;
	if (manager_start(h, &h->manager) < 0)
		return -1;
	atomic_store(&h->manager_started, true);
	return 0;
}

void host_stop_accepting(struct host *h)
{
	acceptor_stop(h->acceptor);
}

void host_shutdown(struct host *h)
{
	queue_close(&h->queue);
	if (atomic_load(&h->manager_started)) {
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
	queue_destroy(&h->queue);
	pthread_mutex_destroy(&h->mu);
	free(h);
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

void host_fail_client(struct host *h, struct client *c)
{
	atomic_fetch_add_explicit(&h->stats.failed, 1, memory_order_relaxed);
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

void host_release_client(struct host *h, struct client *c)
{
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

void host_log_status(struct host *h)
{
	struct queue_stats qs;
	char version[sizeof(h->peer_version)], error[sizeof(h->last_error)];
	char mode[sizeof(h->key_mode_used)];

	queue_get_stats(&h->queue, &qs);
	pthread_mutex_lock(&h->mu);
	memcpy(version, h->peer_version, sizeof(version));
	memcpy(error, h->last_error, sizeof(error));
	memcpy(mode, h->key_mode_used, sizeof(mode));
	pthread_mutex_unlock(&h->mu);
	log_msg(LOG_NOTICE,
		"status host=%s state=%s connections=%d busy=%d idle=%d connecting=%d "
		"queued=%zu requests=%lu replied=%lu failed=%lu timeouts=%lu "
		"rejected=%lu too_long=%lu client_gone=%lu connects=%lu "
		"connect_failures=%lu refusals=%lu retries_left=%d key_mode=%s "
		"peer_version=\"%s\" last_error=\"%s\"",
		h->conf->hostname, LOAD(h->dead) ? "dead" :
		qs.workers ? "connected" : "idle",
		qs.workers - qs.connecting, qs.workers - qs.connecting - qs.idle,
		qs.idle, qs.connecting, qs.len, LOAD(h->stats.requests),
		LOAD(h->stats.replied), LOAD(h->stats.failed),
		LOAD(h->stats.timeouts), LOAD(h->stats.rejected),
		LOAD(h->stats.too_long), LOAD(h->stats.client_gone),
		LOAD(h->stats.connects), LOAD(h->stats.connect_failures),
		LOAD(h->stats.refusals), LOAD(h->retries_left),
		*mode ? mode : config_key_mode_name(h->conf->key_mode), version, error);
}

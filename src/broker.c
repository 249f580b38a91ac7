/*
 * broker.c - the host table and its whole-set operations: bind, start,
 * reload (all or nothing), status, drain.
 *
 * Threads: the main thread (start-up, signals), the admin thread (status,
 * reset, reload), and short-lived retire threads that drain a host a
 * reload removed or replaced, then free it.  Locks, in order:
 * reload_mu (one reload or drain at a time) -> lock (rwlock over `hosts`
 * and `cfg`) -> retire_mu (count of retire threads, a leaf).
 */
#include "broker.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "acceptor.h"
#include "crypto.h"
#include "daemon.h"
#include "delayed.h"
#include "host.h"
#include "log.h"
#include "outage.h"

struct broker {
	char *path;
	pthread_mutex_t reload_mu;

	pthread_rwlock_t lock;
	struct config *cfg;        /* protected by lock; we hold a reference */
	struct crypto_tls *tls;    /* protected by lock; we hold a reference */
	struct host **hosts;       /* protected by lock */
	size_t n_hosts;            /* protected by lock */

	pthread_mutex_t retire_mu;
	pthread_cond_t retire_cv;  /* "one retire thread finished" */
	int retiring;              /* protected by retire_mu */
};

struct broker *broker_new(const char *path, struct config *cfg,
			  struct crypto_tls *tls)
{
	struct broker *b = xcalloc(1, sizeof(*b));

	b->path = xstrdup(path);
	b->cfg = cfg;
	b->tls = tls;
	pthread_mutex_init(&b->reload_mu, NULL);
	pthread_rwlock_init(&b->lock, NULL);
	pthread_mutex_init(&b->retire_mu, NULL);
	pthread_cond_init(&b->retire_cv, NULL);
	return b;
}

int broker_bind(struct broker *b)
{
	b->hosts = xcalloc(b->cfg->n_hosts, sizeof(*b->hosts));
	for (size_t i = 0; i < b->cfg->n_hosts; i++) {
		struct host *h = host_new(b->cfg, &b->cfg->hosts[i], b->tls);

		if (!h)
			return -1;
		b->hosts[b->n_hosts++] = h;
	}
	return 0;
}

int broker_give_sockets(struct broker *b, uid_t uid, gid_t gid)
{
	for (size_t i = 0; i < b->n_hosts; i++) {
		const char *p;

		for (int j = 0; (p = acceptor_path(b->hosts[i]->acceptor, j)); j++) {
			if (daemon_give(p, uid, gid, b->cfg->socket_mode) < 0) {
				log_errno(LOG_ERR, "event=start_failed reason=\"cannot give %s to the daemon user\"", p);
				return -1;
			}
		}
	}
	return 0;
}

int broker_start(struct broker *b)
{
	for (size_t i = 0; i < b->n_hosts; i++)
		if (host_start(b->hosts[i]) < 0)
			return -1;
	return 0;
}

/* ---- retiring hosts ---------------------------------------------- */

struct retire {
	struct broker *b;
	struct host *h;
};

/* Once no replaced host can hand a client to h any more: let h answer
 * the clients it still holds, free it; then h itself stops counting as
 * a predecessor of its own successor. */
static void free_when_unreferenced(struct broker *b, struct host *h)
{
	pthread_mutex_lock(&b->retire_mu);
	while (h->predecessors > 0)
		pthread_cond_wait(&b->retire_cv, &b->retire_mu);
	struct host *succ = h->successor;
	pthread_mutex_unlock(&b->retire_mu);
	host_finish(h);
	host_free(h);
	pthread_mutex_lock(&b->retire_mu);
	if (succ)
		succ->predecessors--;
	pthread_cond_broadcast(&b->retire_cv);
	pthread_mutex_unlock(&b->retire_mu);
}

static void *retire_main(void *arg)
{
	struct retire *r = arg;
	struct broker *b = r->b;

	pthread_setname_np(pthread_self(), "lonc-retire");

	host_shutdown(r->h);
	log_msg(LOG_INFO, "host=%s event=retired", r->h->conf->hostname);
	free_when_unreferenced(b, r->h);
	free(r);
	pthread_mutex_lock(&b->retire_mu);
	b->retiring--;
	pthread_cond_broadcast(&b->retire_cv);
	pthread_mutex_unlock(&b->retire_mu);
	return NULL;
}

/* Let h finish its queued and in-flight requests in the background,
 * then free it.  Falls back to doing it here if no thread can start. */
static void retire(struct broker *b, struct host *h)
{
	struct retire *r = xmalloc(sizeof(*r));
	pthread_attr_t attr;
	pthread_t t;

	r->b = b;
	r->h = h;
	pthread_mutex_lock(&b->retire_mu);
	b->retiring++;
	pthread_mutex_unlock(&b->retire_mu);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 128 * 1024);
	int rc = pthread_create(&t, &attr, retire_main, r);
	pthread_attr_destroy(&attr);
	if (rc)
		retire_main(r);
}

static void wait_retired(struct broker *b)
{
	pthread_mutex_lock(&b->retire_mu);
	while (b->retiring > 0)
		pthread_cond_wait(&b->retire_cv, &b->retire_mu);
	pthread_mutex_unlock(&b->retire_mu);
}

/* ---- reload ------------------------------------------------------- */

enum plan_kind { PLAN_KEEP, PLAN_CHANGE, PLAN_ADD };

struct plan {
	enum plan_kind kind;
	struct host *old;          /* KEEP, CHANGE */
	struct host *nh;           /* CHANGE, ADD: prepared, not started */
};

static struct host *find_host(struct host **v, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (v[i] && !strcmp(v[i]->conf->hostname, name))
			return v[i];
	return NULL;
}

/* A socket name that moves from one host to another cannot be handed
 * over atomically; such a reload is refused (do it in two steps). */
static const char *moved_name(struct broker *b, const struct config *cfg)
{
	for (size_t i = 0; i < cfg->n_hosts; i++) {
		const struct host_conf *hc = &cfg->hosts[i];

		for (size_t a = 0; a <= hc->n_aliases; a++) {
			const char *name = a ? hc->aliases[a - 1] : hc->hostname;

			for (size_t j = 0; j < b->n_hosts; j++) {
				const struct host_conf *oc = b->hosts[j]->conf;

				if (!strcmp(oc->hostname, hc->hostname))
					continue;
				for (size_t k = 0; k <= oc->n_aliases; k++)
					if (!strcmp(name, k ? oc->aliases[k - 1] : oc->hostname))
						return name;
			}
		}
	}
	return NULL;
}

static bool tls_same(const struct config *a, const struct config *b)
{
	return !strcmp(a->tls_ca_file, b->tls_ca_file) &&
	       !strcmp(a->tls_cert_file, b->tls_cert_file) &&
	       !strcmp(a->tls_key_file, b->tls_key_file) &&
	       a->tls_verify_hostname == b->tls_verify_hostname;
}

static bool config_uses_ssl(const struct config *cfg)
{
	for (size_t i = 0; i < cfg->n_hosts; i++)
		if (cfg->hosts[i].key_mode == KEY_SSL)
			return true;
	return false;
}

/* Append name to a comma list in buf. */
static void list_add(char *buf, size_t n, const char *name)
{
	size_t len = strlen(buf);

	if (len + strlen(name) + 2 < n)
		snprintf(buf + len, n - len, "%s%s", len ? "," : "", name);
}

int broker_reload(struct broker *b, char *msg, size_t msglen)
{
	struct config *cfg = NULL;
	struct crypto_tls *tls = NULL;
	struct plan *plan = NULL;
	char err[1024] = "";
	const char *moved;
	int rc = -1;

	pthread_mutex_lock(&b->reload_mu);
	if (config_load(b->path, &cfg, err, sizeof(err)) < 0)
		goto fail;
	if (config_check_reload(b->cfg, cfg, err, sizeof(err)) < 0)
		goto fail;
	if ((moved = moved_name(b, cfg))) {
		snprintf(err, sizeof(err),
			 "socket name '%s' moves to another host; remove it in one reload and add it in the next",
			 moved);
		goto fail;
	}
	if (config_uses_ssl(cfg)) {
		if (b->tls && tls_same(b->cfg, cfg)) {
			tls = crypto_tls_ref(b->tls);
		} else {
			char why[512];

			tls = crypto_tls_new(cfg->tls_ca_file, cfg->tls_cert_file,
					     cfg->tls_key_file, cfg->tls_verify_hostname,
					     why, sizeof(why));
			if (!tls) {
				snprintf(err, sizeof(err), "tls: %s", why);
				goto fail;
			}
		}
	}
	/* Prepare: everything that can fail happens before anything the
	 * running daemon uses is touched. */
	plan = xcalloc(cfg->n_hosts, sizeof(*plan));
	for (size_t i = 0; i < cfg->n_hosts; i++) {
		const struct host_conf *hc = &cfg->hosts[i];
		struct host *old = find_host(b->hosts, b->n_hosts, hc->hostname);

		plan[i].old = old;
		if (old && config_host_same(old->cfg, old->conf, cfg, hc)) {
			plan[i].kind = PLAN_KEEP;
			continue;
		}
		plan[i].kind = old ? PLAN_CHANGE : PLAN_ADD;
		plan[i].nh = old ? host_new_successor(cfg, hc, tls, old) :
				   host_new(cfg, hc, tls);
		if (!plan[i].nh) {
			snprintf(err, sizeof(err), "cannot create the sockets of host %s",
				 hc->hostname);
			goto fail;
		}
	}

	/* Commit. */
	char added[512] = "", removed[512] = "", changed[512] = "";
	size_t kept = 0;
	struct host **hosts = xcalloc(cfg->n_hosts, sizeof(*hosts));
	for (size_t i = 0; i < cfg->n_hosts; i++) {
		struct plan *p = &plan[i];

		switch (p->kind) {
		case PLAN_KEEP:
			hosts[i] = p->old;
			kept++;
			break;
		case PLAN_CHANGE:
			/* old forwards its hand-backs to nh until old is gone. */
			pthread_mutex_lock(&b->retire_mu);
			p->old->successor = p->nh;
			p->nh->predecessors++;
			pthread_mutex_unlock(&b->retire_mu);
			if (host_take_over(p->nh, p->old) < 0)
				log_msg(LOG_ERR, "host=%s event=reload_start_failed",
					p->nh->conf->hostname);
			hosts[i] = p->nh;
			list_add(changed, sizeof(changed), p->nh->conf->hostname);
			break;
		case PLAN_ADD:
			if (host_start(p->nh) < 0)
				log_msg(LOG_ERR, "host=%s event=reload_start_failed",
					p->nh->conf->hostname);
			hosts[i] = p->nh;
			list_add(added, sizeof(added), p->nh->conf->hostname);
			break;
		}
	}
	pthread_rwlock_wrlock(&b->lock);
	struct host **old_hosts = b->hosts;
	size_t old_n = b->n_hosts;
	struct config *old_cfg = b->cfg;
	struct crypto_tls *old_tls = b->tls;
	b->hosts = hosts;
	b->n_hosts = cfg->n_hosts;
	b->cfg = cfg;
	b->tls = tls;
	pthread_rwlock_unlock(&b->lock);
	for (size_t j = 0; j < old_n; j++) {
		struct host *o = old_hosts[j];
		const struct host_conf *hc = config_find_host(cfg, o->conf->hostname);

		if (!hc) {
			/* Removed: no new clients (its sockets go now); queued
			 * and in-flight requests finish in the background, and
			 * every client already connected is answered. */
			host_stop_accepting(o);
			list_add(removed, sizeof(removed), o->conf->hostname);
			retire(b, o);
		} else if (find_host(hosts, cfg->n_hosts, hc->hostname) != o) {
			retire(b, o);   /* replaced: its successor has the sockets */
		}
	}
	free(old_hosts);
	config_unref(old_cfg);
	crypto_tls_free(old_tls);
	log_set_level(cfg->log_level);
	outage_configure(cfg->outage_window_ms, cfg->outage_min_hosts);
	delayed_set_log_dir(cfg->log_dir);
	snprintf(msg, msglen, "added=%s removed=%s changed=%s unchanged=%zu",
		 *added ? added : "-", *removed ? removed : "-",
		 *changed ? changed : "-", kept);
	log_msg(LOG_NOTICE, "event=reload %s", msg);
	free(plan);
	pthread_mutex_unlock(&b->reload_mu);
	return 0;

fail:
	for (size_t i = 0; plan && i < cfg->n_hosts; i++)
		host_free(plan[i].nh);
	free(plan);
	crypto_tls_free(tls);
	config_unref(cfg);
	snprintf(msg, msglen, "reload failed, running config kept: %s", err);
	log_msg(LOG_ERR, "event=reload_failed reason=\"%s\"", err);
	pthread_mutex_unlock(&b->reload_mu);
	return rc;
}

/* ---- delayed transactions ------------------------------------------ */

static bool serves_id(const struct host *h, const char *id)
{
	for (size_t i = 0; i < h->conf->n_ids; i++)
		if (!strcmp(h->conf->ids[i], id))
			return true;
	return false;
}

int64_t broker_check_delayed(struct broker *b)
{
	struct config *cfg = broker_config(b);
	char *dir = delayed_dir(cfg->socket_dir);
	int64_t interval = cfg->delayed_scan_ms;
	struct delayed_item *items;
	size_t n;

	config_unref(cfg);
	/* The directory is read without any lock held. */
	if (delayed_scan(dir, NULL, 0, &items, &n) < 0) {
		log_errno(LOG_WARNING, "event=delayed_scan_failed dir=%s", dir);
		free(dir);
		return interval;
	}
	free(dir);
	if (n > 0) {
		pthread_rwlock_rdlock(&b->lock);
		for (size_t i = 0; i < b->n_hosts; i++) {
			struct host *h = b->hosts[i];

			for (size_t j = 0; j < n; j++) {
				if (serves_id(h, items[j].hostid)) {
					host_queue_delayed(h);
					break;
				}
			}
		}
		pthread_rwlock_unlock(&b->lock);
	}
	delayed_free(items, n);
	return interval;
}

/* ---- status --------------------------------------------------------- */

void broker_foreach(struct broker *b, void (*fn)(struct host *h, void *arg),
		    void *arg)
{
	pthread_rwlock_rdlock(&b->lock);
	for (size_t i = 0; i < b->n_hosts; i++)
		fn(b->hosts[i], arg);
	pthread_rwlock_unlock(&b->lock);
}

struct config *broker_config(struct broker *b)
{
	struct config *cfg;

	pthread_rwlock_rdlock(&b->lock);
	cfg = config_ref(b->cfg);
	pthread_rwlock_unlock(&b->lock);
	return cfg;
}

struct status_sum {
	size_t hosts, dead;
};

static void status_one(struct host *h, void *arg)
{
	struct status_sum *sum = arg;

	host_log_status(h);
	sum->hosts++;
	if (atomic_load(&h->dead)) {
		sum->dead++;
		host_reset(h);
	}
}

void broker_log_status(struct broker *b)
{
	struct status_sum sum = { 0, 0 };

	broker_foreach(b, status_one, &sum);
	log_msg(LOG_NOTICE, "status summary hosts=%zu dead_reset=%zu version=%s",
		sum.hosts, sum.dead, LONC_VERSION);
}

int broker_reset_host(struct broker *b, const char *hostname)
{
	int rc = -1;

	pthread_rwlock_rdlock(&b->lock);
	struct host *h = find_host(b->hosts, b->n_hosts, hostname);
	if (h) {
		host_reset(h);
		rc = 0;
	}
	pthread_rwlock_unlock(&b->lock);
	return rc;
}

/* ---- drain ---------------------------------------------------------- */

void broker_drain(struct broker *b)
{
	pthread_mutex_lock(&b->reload_mu);
	/* Only this thread changes the list from here on. */
	for (size_t i = 0; i < b->n_hosts; i++)
		host_stop_accepting(b->hosts[i]);
	host_set_shutdown_deadline(now_ms() + b->cfg->shutdown_timeout_ms);
	for (size_t i = 0; i < b->n_hosts; i++)
		queue_close(&b->hosts[i]->queue);
	for (size_t i = 0; i < b->n_hosts; i++)
		host_shutdown(b->hosts[i]);
	wait_retired(b);
	/* Clients still connected: answered, or closed when idle. */
	for (size_t i = 0; i < b->n_hosts; i++)
		host_finish(b->hosts[i]);
	pthread_mutex_unlock(&b->reload_mu);
}

void broker_free(struct broker *b)
{
	if (!b)
		return;
	for (size_t i = 0; i < b->n_hosts; i++) {
		host_stop_accepting(b->hosts[i]);
		host_shutdown(b->hosts[i]);
	}
	wait_retired(b);
	for (size_t i = 0; i < b->n_hosts; i++)
		free_when_unreferenced(b, b->hosts[i]);
	free(b->hosts);
	config_unref(b->cfg);
	crypto_tls_free(b->tls);
	pthread_rwlock_destroy(&b->lock);
	pthread_mutex_destroy(&b->reload_mu);
	pthread_mutex_destroy(&b->retire_mu);
	pthread_cond_destroy(&b->retire_cv);
	free(b->path);
	free(b);
}

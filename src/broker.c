/*
 * broker.c - the host table and its whole-set operations: bind, start,
 * reload (all or nothing), status, drain.
 *
 * Threads: the main thread (start-up, signals), the admin thread (status,
 * reset, reload), and short-lived retire threads that drain a host a
 * reload removed or replaced, then free it.  Locks, in order:
 * reload_mu (one reload or drain at a time) -> lock (rwlock over `hosts`
 * and `cfg`) -> retire_mu (count of retire threads, a leaf).
 * May call: config, crypto, delayed, host, log, notify, outage, util, worker.
 */
#include "broker.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "crypto.h"
#include "delayed.h"
#include "host.h"
#include "log.h"
#include "notify.h"
#include "outage.h"
#include "worker.h"

struct broker {
	char *path;
	pthread_mutex_t reload_mu;

	pthread_rwlock_t lock;
	struct config *cfg;        /* protected by lock; we hold a reference */
	struct crypto_tls *tls;    /* protected by lock; we hold a reference */
	struct host **hosts;       /* protected by lock */
	size_t n_hosts;            /* protected by lock */

	time_t started;            /* wall clock, for metrics */
	atomic_ulong reloads, reload_failures;
	atomic_bool last_reload_ok;
	_Atomic int64_t last_reload; /* wall clock seconds, 0: none yet */

	pthread_mutex_t retire_mu;
	pthread_cond_t retire_cv;  /* "a retire thread or a link ended" */
	int retiring;              /* protected by retire_mu */
	struct link *links;        /* protected by retire_mu */
};

/* A host a reload replaced, and its successor: until the old one is
 * gone, it hands clients to the successor, which must not be finished
 * and freed before. */
struct link {
	struct host *old, *succ;
	struct link *next;
};

struct broker *broker_new(const char *path, struct config *cfg,
			  struct crypto_tls *tls)
{
	struct broker *b = xcalloc(1, sizeof(*b));

	b->path = xstrdup(path);
	b->started = time(NULL);
	atomic_init(&b->last_reload_ok, true);
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

static bool has_predecessor(const struct broker *b, const struct host *h)
{
	for (const struct link *l = b->links; l; l = l->next)
		if (l->succ == h)
			return true;
	return false;
}

/* Once no replaced host can hand a client to h any more: let h answer
 * the clients it still holds, free it; then h no longer counts as a
 * predecessor of its own successor. */
static void free_when_unreferenced(struct broker *b, struct host *h)
{
	pthread_mutex_lock(&b->retire_mu);
	while (has_predecessor(b, h))
		pthread_cond_wait(&b->retire_cv, &b->retire_mu);
	pthread_mutex_unlock(&b->retire_mu);
	host_finish(h);
	host_free(h);
	pthread_mutex_lock(&b->retire_mu);
	for (struct link **pp = &b->links; *pp;) {
		struct link *l = *pp;

		if (l->old == h) {
			*pp = l->next;
			free(l);
		} else {
			pp = &l->next;
		}
	}
	pthread_cond_broadcast(&b->retire_cv);
	pthread_mutex_unlock(&b->retire_mu);
}

static void *retire_main(void *arg)
{
	struct retire *r = arg;
	struct broker *b = r->b;

	thread_name("retire", host_conf(r->h)->hostname);

	host_shutdown(r->h);
	log_msg(LOG_INFO, "host=%s event=retired", host_conf(r->h)->hostname);
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
		if (v[i] && !strcmp(host_conf(v[i])->hostname, name))
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
				const struct host_conf *oc = host_conf(b->hosts[j]);

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

/* A reload being made: the new configuration, its TLS context, and a
 * plan per host of it. */
struct reload {
	struct config *cfg;
	struct crypto_tls *tls;
	struct plan *plan;
	struct host **hosts;          /* the new list, in cfg's order */
	char added[512], removed[512], changed[512];
	size_t kept;
	char err[1024];
};

/* The TLS context the new configuration needs (the running one when
 * nothing changed).  0 or -1 (r->err). */
static int reload_tls(struct broker *b, struct reload *r)
{
	char why[512];

	if (!config_uses_ssl(r->cfg))
		return 0;
	if (b->tls && tls_same(b->cfg, r->cfg)) {
		r->tls = crypto_tls_ref(b->tls);
		return 0;
	}
	r->tls = crypto_tls_new(r->cfg->tls_ca_file, r->cfg->tls_cert_file,
				r->cfg->tls_key_file, r->cfg->tls_verify_hostname,
				why, sizeof(why));
	if (!r->tls)
		snprintf(r->err, sizeof(r->err), "tls: %s", why);
	return r->tls ? 0 : -1;
}

/* Load and check the file, then make every new host (sockets bound,
 * not started): all that can fail happens before anything running is
 * touched.  0 or -1 (r->err). */
static int reload_prepare(struct broker *b, struct reload *r)
{
	const char *moved;

	if (config_load(b->path, &r->cfg, r->err, sizeof(r->err)) < 0 ||
	    config_check_reload(b->cfg, r->cfg, r->err, sizeof(r->err)) < 0)
		return -1;
	if ((moved = moved_name(b, r->cfg))) {
		snprintf(r->err, sizeof(r->err),
			 "socket name '%s' moves to another host; remove it in one reload and add it in the next",
			 moved);
		return -1;
	}
	if (reload_tls(b, r) < 0)
		return -1;
	r->plan = xcalloc(r->cfg->n_hosts, sizeof(*r->plan));
	for (size_t i = 0; i < r->cfg->n_hosts; i++) {
		const struct host_conf *hc = &r->cfg->hosts[i];
		struct host *old = find_host(b->hosts, b->n_hosts, hc->hostname);
		struct plan *p = &r->plan[i];

		p->old = old;
		if (old && config_host_same(host_config(old), host_conf(old), r->cfg, hc)) {
			p->kind = PLAN_KEEP;
			continue;
		}
		p->kind = old ? PLAN_CHANGE : PLAN_ADD;
		p->nh = old ? host_new_successor(r->cfg, hc, r->tls, old) :
			      host_new(r->cfg, hc, r->tls);
		if (!p->nh) {
			snprintf(r->err, sizeof(r->err),
				 "cannot create the sockets of host %s", hc->hostname);
			return -1;
		}
	}
	return 0;
}

/* Start the new and changed hosts; the new list of hosts. */
static void reload_start(struct broker *b, struct reload *r)
{
	r->hosts = xcalloc(r->cfg->n_hosts, sizeof(*r->hosts));
	for (size_t i = 0; i < r->cfg->n_hosts; i++) {
		struct plan *p = &r->plan[i];
		const char *name = r->cfg->hosts[i].hostname;
		int rc = 0;

		if (p->kind == PLAN_KEEP) {
			r->hosts[i] = p->old;
			r->kept++;
			continue;
		}
		if (p->kind == PLAN_CHANGE) {
			/* old forwards its hand-backs to nh until old is gone. */
			struct link *l = xmalloc(sizeof(*l));

			*l = (struct link){ p->old, p->nh, NULL };
			pthread_mutex_lock(&b->retire_mu);
			l->next = b->links;
			b->links = l;
			pthread_mutex_unlock(&b->retire_mu);
			rc = host_take_over(p->nh, p->old);
			list_add(r->changed, sizeof(r->changed), name);
		} else {
			rc = host_start(p->nh);
			list_add(r->added, sizeof(r->added), name);
		}
		if (rc < 0)
			log_msg(LOG_ERR, "host=%s event=reload_start_failed", name);
		r->hosts[i] = p->nh;
	}
}

/* Swap the running list and configuration for the new ones; the old
 * hosts that are not kept retire in the background (a removed one
 * loses its sockets now, and answers every client it still has). */
static void reload_swap(struct broker *b, struct reload *r)
{
	pthread_rwlock_wrlock(&b->lock);
	struct host **old_hosts = b->hosts;
	size_t old_n = b->n_hosts;
	struct config *old_cfg = b->cfg;
	struct crypto_tls *old_tls = b->tls;
	b->hosts = r->hosts;
	b->n_hosts = r->cfg->n_hosts;
	b->cfg = r->cfg;
	b->tls = r->tls;
	pthread_rwlock_unlock(&b->lock);
	for (size_t j = 0; j < old_n; j++) {
		struct host *o = old_hosts[j];
		const char *name = host_conf(o)->hostname;

		if (find_host(r->hosts, r->cfg->n_hosts, name) == o)
			continue;
		if (!config_find_host(r->cfg, name)) {
			host_stop_accepting(o);
			list_add(r->removed, sizeof(r->removed), name);
		}
		retire(b, o);   /* removed, or replaced by its successor */
	}
	free(old_hosts);
	config_unref(old_cfg);
	crypto_tls_free(old_tls);
}

int broker_reload(struct broker *b, char *msg, size_t msglen)
{
	struct reload r = { 0 };
	int rc = 0;

	pthread_mutex_lock(&b->reload_mu);
	notify("RELOADING=1");
	if (reload_prepare(b, &r) < 0) {
		for (size_t i = 0; r.plan && i < r.cfg->n_hosts; i++)
			host_free(r.plan[i].nh);
		crypto_tls_free(r.tls);
		config_unref(r.cfg);
		snprintf(msg, msglen, "reload failed, running config kept: %s", r.err);
		/* Several errors (one per line): one log line each. */
		for (char *e = strtok(r.err, "\n"); e; e = strtok(NULL, "\n"))
			log_msg(LOG_ERR, "event=reload_failed reason=\"%s\"", e);
		atomic_fetch_add(&b->reload_failures, 1);
		rc = -1;
	} else {
		reload_start(b, &r);
		reload_swap(b, &r);
		log_set_level(r.cfg->log_level);
		log_set_file(r.cfg->log_file);
		outage_configure(r.cfg->outage_window_ms, r.cfg->outage_min_hosts);
		worker_limit_handshakes(r.cfg->max_handshakes);
		delayed_set_log_dir(r.cfg->log_dir);
		snprintf(msg, msglen, "added=%s removed=%s changed=%s unchanged=%zu",
			 *r.added ? r.added : "-", *r.removed ? r.removed : "-",
			 *r.changed ? r.changed : "-", r.kept);
		log_msg(LOG_NOTICE, "event=reload %s", msg);
	}
	free(r.plan);
	atomic_fetch_add(&b->reloads, 1);
	atomic_store(&b->last_reload_ok, rc == 0);
	atomic_store(&b->last_reload, (int64_t)time(NULL));
	notify("READY=1");
	pthread_mutex_unlock(&b->reload_mu);
	return rc;
}

/* ---- delayed transactions ------------------------------------------ */

static bool serves_id(const struct host *h, const char *id)
{
	const struct host_conf *hc = host_conf(h);

	for (size_t i = 0; i < hc->n_ids; i++)
		if (!strcmp(hc->ids[i], id))
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
					host_queue_replay(h);
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

void broker_lifetime(struct broker *b, struct broker_lifetime *lt)
{
	lt->started = b->started;
	lt->reloads = atomic_load(&b->reloads);
	lt->reload_failures = atomic_load(&b->reload_failures);
	lt->last_reload_ok = atomic_load(&b->last_reload_ok);
	lt->last_reload = atomic_load(&b->last_reload);
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
	if (host_dead(h)) {
		sum->dead++;
		host_reset(h);
	}
}

bool broker_acceptors_alive(struct broker *b)
{
	bool all = true;

	pthread_rwlock_rdlock(&b->lock);
	for (size_t i = 0; i < b->n_hosts; i++)
		all = host_ping(b->hosts[i]) && all;
	pthread_rwlock_unlock(&b->lock);
	return all;
}

static void sum_one(struct host *h, void *arg)
{
	struct broker_summary *s = arg;
	struct host_status st;

	host_get_status(h, &st);
	s->hosts++;
	s->connections += (int)st.v[HOST_G_connections];
	s->dead += st.v[HOST_G_dead] != 0;
}

void broker_summary(struct broker *b, struct broker_summary *s)
{
	*s = (struct broker_summary){ 0 };
	broker_foreach(b, sum_one, s);
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
	stop_deadline_set(now_ms() + b->cfg->shutdown_timeout_ms);
	for (size_t i = 0; i < b->n_hosts; i++)
		host_close_queue(b->hosts[i]);
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

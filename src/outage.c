/*
 * outage.c - correlate dead hosts.  Managers call outage_host_dead when
 * their host goes DEAD; the module counts, among the registered hosts
 * that saw a request within the window, those that went dead within it.
 * At least min_hosts of them, and more than half of the active ones,
 * is a probable local network problem: logged once per outage, and the
 * per-host alarms inside it are demoted to info.
 *
 * Each host has an entry of its own here (its last request, whether and
 * since when it is dead), so this module knows no host.  Lock: `mu`
 * guards the registry and the outage state; it is a leaf (entry fields
 * are atomics).  May call: log, util.
 */
#include "outage.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "log.h"
#include "util.h"

struct outage_entry {
	_Atomic int64_t last_request;  /* now_ms() of the latest request */
	_Atomic int64_t dead_since;    /* now_ms() when it last went dead */
	atomic_bool dead;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct outage_entry **entries; /* protected by mu */
static size_t n_entries, cap_entries; /* protected by mu */
static int64_t window_ms = 60000;     /* protected by mu */
static int min_hosts = 3;             /* protected by mu */
static int64_t outage_until;          /* protected by mu; 0: none */

void outage_configure(int64_t window, int min)
{
	pthread_mutex_lock(&mu);
	window_ms = window;
	min_hosts = min;
	pthread_mutex_unlock(&mu);
}

struct outage_entry *outage_register(void)
{
	struct outage_entry *e = xcalloc(1, sizeof(*e));

	atomic_init(&e->last_request, INT64_MIN / 2);
	atomic_init(&e->dead_since, INT64_MIN / 2);
	pthread_mutex_lock(&mu);
	if (n_entries == cap_entries) {
		cap_entries = cap_entries ? 2 * cap_entries : 64;
		entries = xrealloc(entries, cap_entries * sizeof(*entries));
	}
	entries[n_entries++] = e;
	pthread_mutex_unlock(&mu);
	return e;
}

void outage_unregister(struct outage_entry *e)
{
	if (!e)
		return;
	pthread_mutex_lock(&mu);
	for (size_t i = 0; i < n_entries; i++) {
		if (entries[i] == e) {
			entries[i] = entries[--n_entries];
			break;
		}
	}
	if (n_entries == 0) {
		free(entries);
		entries = NULL;
		cap_entries = 0;
	}
	pthread_mutex_unlock(&mu);
	free(e);
}

void outage_note_request(struct outage_entry *e)
{
	atomic_store_explicit(&e->last_request, now_ms(), memory_order_relaxed);
}

void outage_host_alive(struct outage_entry *e)
{
	atomic_store(&e->dead, false);
}

/* Hosts active in the window, and those of them that went dead in it
 * (e counts as dead: it is going dead now).  mu held. */
static void count_failed(const struct outage_entry *e, int64_t since,
			 int *active, int *failed)
{
	*active = *failed = 0;
	for (size_t i = 0; i < n_entries; i++) {
		struct outage_entry *o = entries[i];
		int64_t last = atomic_load_explicit(&o->last_request, memory_order_relaxed);
		int64_t dead = atomic_load(&o->dead_since);

		if (last < since && dead < since)
			continue;
		(*active)++;
		if (atomic_load(&o->dead) || o == e)
			*failed += dead >= since;
	}
}

bool outage_host_dead(struct outage_entry *e)
{
	int64_t now = now_ms();
	bool own_alarm = true;
	int active, failed;

	atomic_store(&e->dead_since, now);
	pthread_mutex_lock(&mu);
	count_failed(e, now - window_ms, &active, &failed);
	if (outage_until > now) {
		own_alarm = false;
		outage_until = now + window_ms;
	} else if (failed >= min_hosts && 2 * failed > active) {
		own_alarm = false;
		outage_until = now + window_ms;
		log_msg(LOG_ERR,
			"event=probable_local_network_problem hosts_failed=%d hosts_active=%d window_s=%lld detail=\"most recently active hosts failed together; check this machine's network\"",
			failed, active, (long long)(window_ms / 1000));
	}
	pthread_mutex_unlock(&mu);
	atomic_store(&e->dead, true);
	return own_alarm;
}

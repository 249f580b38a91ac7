/*
 * outage.c - correlate dead hosts.  Managers call outage_host_dead when
 * their host goes DEAD; the module counts, among the registered hosts
 * that saw a request within the window, those that went dead within it.
 * At least min_hosts of them, and more than half of the active ones,
 * is a probable local network problem: logged once per outage, and the
 * per-host alarms inside it are demoted to info.
 *
 * Lock: `mu` guards the registry and the outage state; it is a leaf
 * (host fields read under it are atomics).
 */
#include "outage.h"

#include <pthread.h>
#include <stdlib.h>

#include "host.h"
#include "log.h"

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct host **hosts;        /* protected by mu */
static size_t n_hosts, cap_hosts;  /* protected by mu */
static int64_t window_ms = 60000;  /* protected by mu */
static int min_hosts = 3;          /* protected by mu */
static int64_t outage_until;       /* protected by mu; 0: none */

void outage_configure(int64_t window, int min)
{
	pthread_mutex_lock(&mu);
	window_ms = window;
	min_hosts = min;
	pthread_mutex_unlock(&mu);
}

void outage_register(struct host *h)
{
	pthread_mutex_lock(&mu);
	if (n_hosts == cap_hosts) {
		cap_hosts = cap_hosts ? 2 * cap_hosts : 64;
		hosts = xrealloc(hosts, cap_hosts * sizeof(*hosts));
	}
	hosts[n_hosts++] = h;
	pthread_mutex_unlock(&mu);
}

void outage_unregister(struct host *h)
{
	pthread_mutex_lock(&mu);
	for (size_t i = 0; i < n_hosts; i++) {
		if (hosts[i] == h) {
			hosts[i] = hosts[--n_hosts];
			break;
		}
	}
	if (n_hosts == 0) {
		free(hosts);
		hosts = NULL;
		cap_hosts = 0;
	}
	pthread_mutex_unlock(&mu);
}

bool outage_host_dead(struct host *h)
{
	int64_t now = now_ms();
	bool own_alarm = true;

	atomic_store(&h->dead_since, now);
	pthread_mutex_lock(&mu);
	int64_t since = now - window_ms;
	int active = 0, failed = 0;
	for (size_t i = 0; i < n_hosts; i++) {
		struct host *o = hosts[i];
		int64_t last = atomic_load_explicit(&o->last_request, memory_order_relaxed);
		int64_t dead = atomic_load(&o->dead_since);

		if (last < since && dead < since)
			continue;
		active++;
		if (atomic_load(&o->dead) || o == h)
			failed += dead >= since;
	}
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
	return own_alarm;
}

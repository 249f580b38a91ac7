/*
 * stats.c - a host's counters, latency histogram and notes (stats.h).
 * Any thread; the notes under s->mu, a leaf.  May call: util only.
 */
#include "stats.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const struct stats_info stats_info[STATS_N] = {
#define STATS_INFO(name, prom, help) { #name, prom, help },
	STATS_COUNTERS(STATS_INFO)
#undef STATS_INFO
};

const int64_t stats_bounds_us[STATS_BUCKETS - 1] = {
	100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000,
	250000, 500000, 1000000, 2500000, 5000000, 10000000, 30000000,
};

void stats_init(struct stats *s)
{
	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->mu, NULL);
}

void stats_destroy(struct stats *s)
{
	pthread_mutex_destroy(&s->mu);
}

void stats_latency(struct stats *s, int64_t us)
{
	int b = 0;

	while (b < STATS_BUCKETS - 1 && us > stats_bounds_us[b])
		b++;
	atomic_fetch_add_explicit(&s->latency[b], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&s->latency_sum_us, (unsigned long)us,
				  memory_order_relaxed);
}

void stats_error(struct stats *s, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&s->mu);
	va_start(ap, fmt);
	vsnprintf(s->last_error, sizeof(s->last_error), fmt, ap);
	va_end(ap);
	pthread_mutex_unlock(&s->mu);
}

void stats_peer(struct stats *s, const char *version, const char *key_mode)
{
	pthread_mutex_lock(&s->mu);
	str_copy(s->peer_version, version, sizeof(s->peer_version));
	str_copy(s->key_mode, key_mode, sizeof(s->key_mode));
	pthread_mutex_unlock(&s->mu);
}

/* The upper bound of the bucket holding quantile q; -1 without data. */
static int64_t quantile(const unsigned long *v, double q)
{
	unsigned long total = 0, seen = 0;

	for (int i = 0; i < STATS_BUCKETS; i++)
		total += v[i];
	if (!total)
		return -1;
	for (int i = 0; i < STATS_BUCKETS; i++) {
		seen += v[i];
		if ((double)seen >= q * (double)total)
			return i < STATS_BUCKETS - 1 ? stats_bounds_us[i] :
			       stats_bounds_us[STATS_BUCKETS - 2] * 10;
	}
	return -1;
}

#define LOAD(x) atomic_load_explicit(&(x), memory_order_relaxed)

void stats_view(struct stats *s, struct stats_view *v)
{
	for (int i = 0; i < STATS_N; i++)
		v->count[i] = LOAD(s->count[i]);
	for (int i = 0; i < STATS_BUCKETS; i++)
		v->latency[i] = LOAD(s->latency[i]);
	v->latency_sum_us = LOAD(s->latency_sum_us);
	v->p50_us = quantile(v->latency, 0.50);
	v->p99_us = quantile(v->latency, 0.99);
	pthread_mutex_lock(&s->mu);
	memcpy(v->last_error, s->last_error, sizeof(v->last_error));
	memcpy(v->peer_version, s->peer_version, sizeof(v->peer_version));
	memcpy(v->key_mode, s->key_mode, sizeof(v->key_mode));
	pthread_mutex_unlock(&s->mu);
}

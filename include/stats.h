/*
 * stats.h - what one remote host has done, for status output: its
 * counters, its latency histogram, and a few notes (the last error, the
 * peer's version, the key mode in use).
 *
 * The counters are declared once, in STATS_COUNTERS below: the enum,
 * the status line, the JSON, the Prometheus metrics and the docs check
 * all come from that list, so a new counter is one line there and a
 * stats_add where it happens.  Any thread counts (relaxed atomics); the
 * notes are guarded by s->mu, a leaf.  May call: util only.
 */
#ifndef LONC_STATS_H
#define LONC_STATS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "util.h"

/* X(name, prometheus name, help) */
#define STATS_COUNTERS(X)                                                      \
	X(requests, "lonc_requests_total", "Requests taken from local clients.") \
	X(replied, "lonc_replies_total", "lond replies relayed to clients.")     \
	X(failed, "lonc_failed_total", "Requests answered con_lost.")             \
	X(timeouts, "lonc_timeouts_total",                                       \
	  "Transactions or queue waits that timed out.")                         \
	X(rejected, "lonc_rejected_total",                                       \
	  "Requests refused at once (queue full, host dead or going away).")    \
	X(too_long, "lonc_too_long_total",                                       \
	  "Request lines over max_request_bytes.")                               \
	X(client_gone, "lonc_client_gone_total",                                 \
	  "Clients that left (or stopped reading) before their reply.")          \
	X(connects, "lonc_connects_total", "Successful handshakes with lond.")    \
	X(connect_failures, "lonc_connect_failures_total",                       \
	  "Failed connection attempts.")                                         \
	X(refusals, "lonc_refusals_total",                                       \
	  "Failed attempts that lond or TCP refused.")

enum stats_counter {
#define STATS_ENUM(name, prom, help) STAT_##name,
	STATS_COUNTERS(STATS_ENUM)
#undef STATS_ENUM
	STATS_N
};

/* A counter's names and meaning. */
struct stats_info {
	const char *name;   /* in status lines and JSON */
	const char *prom;   /* the Prometheus metric */
	const char *help;
};
extern const struct stats_info stats_info[STATS_N];

/* Latency histogram bounds in microseconds (the last bucket is +Inf). */
#define STATS_BUCKETS 18
extern const int64_t stats_bounds_us[STATS_BUCKETS - 1];

#define STATS_NOTE 160

struct stats {
	atomic_ulong count[STATS_N];
	atomic_ulong latency[STATS_BUCKETS]; /* request complete -> reply sent */
	atomic_ulong latency_sum_us;
	pthread_mutex_t mu;
	char last_error[STATS_NOTE];   /* protected by mu */
	char peer_version[64];         /* protected by mu */
	char key_mode[24];             /* protected by mu; "" until a connection */
};

/* What a snapshot holds. */
struct stats_view {
	unsigned long count[STATS_N];
	unsigned long latency[STATS_BUCKETS];
	unsigned long latency_sum_us;
	int64_t p50_us, p99_us;        /* upper bucket bounds; -1 without data */
	char last_error[STATS_NOTE];
	char peer_version[64];
	char key_mode[24];
};

void stats_init(struct stats *s);
void stats_destroy(struct stats *s);

static inline void stats_add(struct stats *s, enum stats_counter c, unsigned long n)
{
	atomic_fetch_add_explicit(&s->count[c], n, memory_order_relaxed);
}

/* One relayed reply's latency. */
void stats_latency(struct stats *s, int64_t us);

/* The notes: a printf-style last error; what a handshake found. */
void stats_error(struct stats *s, const char *fmt, ...) PRINTF_LIKE(2, 3);
void stats_peer(struct stats *s, const char *version, const char *key_mode);

/* A consistent-enough copy for status output. */
void stats_view(struct stats *s, struct stats_view *v);

#endif

/*
 * host.h - one remote LON-CAPA machine: its configuration, its request
 * queue, its acceptor (sockets), its manager and worker threads, its
 * dead/alive state and its counters.
 *
 * Threads: the host's acceptor pushes requests; its manager starts
 * workers and owns the retry state; workers serve requests; the main
 * thread starts, stops and reports.  Locks: h->queue.mu (see queue.h)
 * and h->mu (text fields below, and the manager's start: it is created
 * under h->mu so that two starters cannot race).  Lock order: h->mu is a
 * leaf; no other lock is taken while holding it.
 */
#ifndef LONC_HOST_H
#define LONC_HOST_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "queue.h"
#include "util.h"

struct acceptor;
struct client;
struct crypto_tls;

/* Latency histogram bounds in microseconds (the last bucket is +Inf). */
#define HOST_LATENCY_BUCKETS 18
extern const int64_t host_latency_bounds_us[HOST_LATENCY_BUCKETS - 1];

/* Counters, updated with relaxed atomics by any thread. */
struct host_stats {
	atomic_ulong latency[HOST_LATENCY_BUCKETS]; /* request complete -> reply sent */
	atomic_ulong latency_sum_us;
	atomic_ulong requests;        /* requests taken from clients */
	atomic_ulong replied;         /* lond replies relayed */
	atomic_ulong failed;          /* answered con_lost */
	atomic_ulong timeouts;        /* transactions that timed out */
	atomic_ulong rejected;        /* refused at once: queue full, dead */
	atomic_ulong too_long;        /* requests over max_request_bytes */
	atomic_ulong client_gone;     /* clients that left before the reply */
	atomic_ulong connects;        /* successful handshakes */
	atomic_ulong connect_failures;
	atomic_ulong refusals;        /* of those: lond said refused / ECONNREFUSED */
};

struct host {
	struct config *cfg;              /* immutable; we hold a reference */
	const struct host_conf *conf;    /* immutable, inside cfg */
	struct queue queue;
	struct acceptor *acceptor;
	pthread_t manager;
	atomic_bool manager_started;     /* set by its first starter (the
					  * acceptor, or the delayed-file
					  * check); cleared by host_shutdown */

	atomic_bool dead;                /* written by the manager only */
	atomic_bool reset_requested;     /* reset_retries / SIGUSR1 */
	atomic_int retries_left;         /* for status output */
	_Atomic int64_t last_request;    /* now_ms() of the latest request */
	_Atomic int64_t dead_since;      /* now_ms() when it last went dead */
	atomic_bool delayed_queued;      /* a replay marker is in the queue */

	struct host_stats stats;

	pthread_mutex_t mu;
	bool shut;                       /* protected by mu: no manager start */
	char peer_version[64];           /* protected by mu */
	char last_error[160];            /* protected by mu */
	char key_mode_used[24];          /* protected by mu */
	struct crypto_tls *tls;          /* shared TLS context, or NULL */
	/* Reload bookkeeping, protected by the broker's retire_mu: the host
	 * that replaced this one, and how many replaced hosts may still hand
	 * clients to this one (it is not freed before they are). */
	struct host *successor;
	int predecessors;
};

/* Create the host and its listening sockets; tls is the shared TLS
 * client context (NULL when no host uses ssl).  The host holds
 * references to cfg and tls.  NULL (logged) on failure. */
struct host *host_new(struct config *cfg, const struct host_conf *conf,
		      struct crypto_tls *tls);

/* Reload: the replacement of `old` (same hostname, new settings).  Only
 * socket names old lacks are bound now; NULL (logged) on failure with
 * old untouched.  host_take_over then moves old's sockets and waiting
 * clients to h and starts h; old keeps serving what it had queued
 * (retire it with host_shutdown + host_free). */
struct host *host_new_successor(struct config *cfg, const struct host_conf *conf,
				struct crypto_tls *tls, const struct host *old);
int host_take_over(struct host *h, struct host *old) WUR;

/* Start the acceptor thread.  0 or -1 (logged). */
int host_start(struct host *h) WUR;

/* Called by the acceptor for every accepted request: start the manager
 * on first use.  0, or -1 if the thread could not be started. */
int host_ensure_manager(struct host *h) WUR;

/* Stop taking new clients: the socket names go at once; clients already
 * connected (or in the backlog) are still answered, new lines with
 * con_lost (closes nothing that is in flight). */
void host_stop_accepting(struct host *h);

/* After host_shutdown, once no other host can hand a client to this one:
 * wait until every client the host still holds is answered and gone
 * (acceptor_finish). */
void host_finish(struct host *h);

/* Close the queue: workers finish what is queued, then every host
 * thread ends; waits for them.  After this the host can be freed. */
void host_shutdown(struct host *h);

/* Remove sockets, free everything. */
void host_free(struct host *h);

/* Graceful shutdown: from now on no transaction may run past `deadline`
 * (a now_ms() value); requests still queued then are answered con_lost.
 * Process-wide; INT64_MAX (the default) means no limit. */
void host_set_shutdown_deadline(int64_t deadline);
int64_t host_shutdown_deadline(void);

/* Forget the dead state and failure count now (reset_retries, SIGUSR1). */
void host_reset(struct host *h);

/* Make every connection of this host close as soon as it is idle. */
void host_close_connections(struct host *h);

/* Answer a client con_lost (or drop it if it is gone), count it, and
 * hand it back to its acceptor. */
void host_fail_client(struct host *h, struct client *c);

/* New delayed transaction files are waiting: put a replay marker (a
 * NULL item) into the queue, once, so that a worker (started for it if
 * need be) replays them.  Nothing while the host is dead. */
void host_queue_delayed(struct host *h);

/* Hand a served client back to its acceptor for its next request. */
void host_release_client(struct host *h, struct client *c);

/* Record a printf-style last error (for status output). */
void host_set_error(struct host *h, const char *fmt, ...) PRINTF_LIKE(2, 3);

/* A consistent-enough snapshot of a host for status output. */
struct host_status {
	const char *hostname;
	const char *state;              /* "idle", "connected", "dead" */
	int connections, busy, idle, connecting;
	size_t queued;
	unsigned long requests, replied, failed, timeouts, rejected, too_long;
	unsigned long client_gone, connects, connect_failures, refusals;
	int retries_left;
	int max_connections;
	const char *key_mode;           /* points into the snapshot */
	char key_mode_buf[24];
	char peer_version[64];
	char last_error[160];
	unsigned long latency[HOST_LATENCY_BUCKETS];
	unsigned long latency_sum_us;
	int64_t p50_us, p99_us;         /* upper bucket bounds; -1 if no data */
};

void host_get_status(struct host *h, struct host_status *st);

/* The numeric fields of a snapshot as name/value pairs, in one fixed
 * order, for every status format (log line, JSON).  Returns the count
 * (at most HOST_STATUS_NUMBERS). */
#define HOST_STATUS_NUMBERS 20
struct host_field {
	const char *name;
	long long value;
};
size_t host_status_numbers(const struct host_status *st,
			   struct host_field out[HOST_STATUS_NUMBERS]);

/* Record one relayed reply's latency. */
void host_record_latency(struct host *h, int64_t us);

/* Log one status line for this host at LOG_NOTICE. */
void host_log_status(struct host *h);

#endif

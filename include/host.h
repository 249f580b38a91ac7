/*
 * host.h - one remote LON-CAPA machine: its sockets (acceptor), its
 * request queue, its pool (manager and workers), its state and counters.
 *
 * struct host is private to host.c; the broker and the admin socket use
 * the verbs below.  Threads: the host's acceptor calls up through
 * struct acceptor_ops; its manager starts workers; the main, admin and
 * retire threads start, stop and report.  Locks: none of its own beyond
 * the lower modules' (queue, stats, acceptor, manager), all leaves or
 * taken one at a time.  May call: acceptor, manager, worker (the pool
 * struct and pool_fail_queued), queue, stats, outage, client, lond,
 * config, crypto, log.
 */
#ifndef LONC_HOST_H
#define LONC_HOST_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "stats.h"
#include "util.h"

struct crypto_tls;
struct host;

/* Create the host and its listening sockets; tls is the shared TLS
 * client context (NULL when no host uses ssl).  The host holds
 * references to cfg and tls.  NULL (logged) on failure. */
struct host *host_new(struct config *cfg, const struct host_conf *conf,
		      struct crypto_tls *tls);

/* Reload: the replacement of `old` (same hostname, new settings).  Only
 * socket names old lacks are bound now; NULL (logged) on failure with
 * old untouched.  host_take_over then moves old's sockets and waiting
 * clients to h and starts h; old keeps serving what it had queued
 * (retire it with host_shutdown, host_finish, host_free). */
struct host *host_new_successor(struct config *cfg, const struct host_conf *conf,
				struct crypto_tls *tls, const struct host *old);
int host_take_over(struct host *h, struct host *old) WUR;

/* Start the acceptor thread.  0 or -1 (logged). */
int host_start(struct host *h) WUR;

/* Stop taking new clients: the socket names go at once; clients already
 * connected (or in the backlog) are still answered, new lines with
 * con_lost; nothing in flight is touched. */
void host_stop_accepting(struct host *h);

/* Refuse further requests into the queue and wake its workers (they
 * finish what is queued).  Part of host_shutdown; a drain calls it for
 * every host first, so that all of them finish at once. */
void host_close_queue(struct host *h);

/* Close the queue: workers finish what is queued, then the manager and
 * its workers end; waits for them; what is left is answered con_lost. */
void host_shutdown(struct host *h);

/* After host_shutdown, once no other host can hand a client to this one:
 * wait until every client the host still holds is answered and gone. */
void host_finish(struct host *h);

/* Remove sockets, free everything. */
void host_free(struct host *h);

/* The watchdog's question to the host's acceptor (acceptor_ping). */
bool host_ping(struct host *h);

/* Forget the dead state and failure count now (reset_retries, SIGUSR1). */
void host_reset(struct host *h);

/* The host is in the dead state. */
bool host_dead(const struct host *h);

/* New delayed transaction files are waiting for one of its IDs: queue a
 * replay (once; a worker is started for it if need be).  Nothing while
 * the host is dead. */
void host_queue_replay(struct host *h);

/* Its configuration entry, and the configuration it was built from. */
const struct host_conf *host_conf(const struct host *h);
const struct config *host_config(const struct host *h);

/* Socket path number i (0 = the hostname, then the aliases), or NULL. */
const char *host_socket_path(const struct host *h, int i);

/*
 * Status.  The numbers a snapshot holds are declared once: the gauges
 * below, then the counters of stats.h, then two latency quantiles.
 * Status lines, JSON and Prometheus metrics are all made from
 * host_fields, so a new number is one line in one of the two lists.
 */
/* X(name, Prometheus name, help) */
#define HOST_GAUGES(X)                                                       \
	X(connections, "lonc_connections", "Open lond connections.")          \
	X(busy, "lonc_busy_connections", "Connections serving a request.")   \
	X(idle, "lonc_idle_connections", "Connections waiting for a request.") \
	X(connecting, "lonc_connecting",                                      \
	  "Connections being made (handshake under way).")                    \
	X(max_connections, "lonc_max_connections",                            \
	  "The pool's bound (max_connections).")                              \
	X(queued, "lonc_queued_requests", "Requests waiting for a connection.") \
	X(retries_left, "lonc_retries_left",                                  \
	  "Connection attempts left before the host counts as dead.")         \
	X(dead, "lonc_host_dead", "1 while the host is in the dead state.")

enum host_gauge {
#define HOST_GAUGE_ENUM(name, prom, help) HOST_G_##name,
	HOST_GAUGES(HOST_GAUGE_ENUM)
#undef HOST_GAUGE_ENUM
	HOST_GAUGES_N
};

/* Field index of counter c, and of the two quantiles. */
#define HOST_COUNTER(c) (HOST_GAUGES_N + (c))
#define HOST_P50 (HOST_GAUGES_N + STATS_N)
#define HOST_P99 (HOST_P50 + 1)
#define HOST_FIELDS (HOST_P99 + 1)

enum host_field_kind { HOST_KIND_GAUGE, HOST_KIND_COUNTER, HOST_KIND_QUANTILE };

struct host_field_info {
	const char *name;   /* status lines, JSON */
	const char *prom;   /* Prometheus metric, or NULL (not exported) */
	const char *help;
	enum host_field_kind kind;
};
extern const struct host_field_info host_fields[HOST_FIELDS];

/* A consistent-enough snapshot of a host for status output. */
struct host_status {
	const char *hostname;
	const char *state;              /* "idle", "connected", "dead" */
	long long v[HOST_FIELDS];
	struct stats_view stats;        /* latency histogram and the notes */
	const char *key_mode;           /* in use, or as configured */
};

void host_get_status(struct host *h, struct host_status *st);

/* Log one status line for this host at LOG_NOTICE. */
void host_log_status(struct host *h);

#endif

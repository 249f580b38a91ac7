/*
 * broker.h - the set of remote hosts that lonc serves, and what happens
 * to it as a whole: start-up, reload, status, graceful drain.
 *
 * The main (signal) thread drives it; the admin thread reads it and may
 * ask for a reset or a reload.  Locks: b->reload_mu serializes reloads
 * and the drain; b->lock (a rwlock) guards the host list and the current
 * config pointer, write-locked only for the swap at the end of a reload.
 * Lock order: reload_mu -> lock -> (host locks, all leaves).
 */
#ifndef LONC_BROKER_H
#define LONC_BROKER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <stdint.h>
#include <time.h>

#include "config.h"
#include "util.h"

struct broker;
struct host;
struct crypto_tls;

/* A broker for cfg (the broker takes over the caller's reference) read
 * from `path` (reloads read it again).  tls may be NULL; the broker
 * takes over that reference too. */
struct broker *broker_new(const char *path, struct config *cfg,
			  struct crypto_tls *tls);

/* Create every host and bind its sockets.  0, or -1 (logged; nothing
 * left behind). */
int broker_bind(struct broker *b) WUR;

/* Start the acceptor threads.  0 or -1 (logged). */
int broker_start(struct broker *b) WUR;

/* Read the config file again and apply it all or nothing: added hosts
 * get sockets, removed hosts finish their work and lose their sockets,
 * changed hosts are rebuilt (their old connections retire as they go
 * idle), unchanged hosts keep their pools.  0, or -1 with the running
 * config kept; either way a one-line summary in msg. */
int broker_reload(struct broker *b, char *msg, size_t msglen);

/* Look for delayed transaction files and have each host that has some
 * replay them (host_queue_delayed).  Returns the milliseconds until the
 * next check is due. */
int64_t broker_check_delayed(struct broker *b);

/* SIGUSR1: log a status line per host plus a summary, and clear the
 * dead state of every dead host. */
void broker_log_status(struct broker *b);

/* Clear the dead state of one host.  0, or -1 if there is no such host. */
int broker_reset_host(struct broker *b, const char *hostname) WUR;

/* Call fn for every host, under the read lock (fn must not block). */
void broker_foreach(struct broker *b, void (*fn)(struct host *h, void *arg),
		    void *arg);

/* Since when lonc runs, and how its reloads went (for metrics). */
struct broker_lifetime {
	time_t started;                 /* wall clock */
	unsigned long reloads, reload_failures;
	bool last_reload_ok;            /* true before the first */
	int64_t last_reload;            /* wall clock seconds; 0: none yet */
};
void broker_lifetime(struct broker *b, struct broker_lifetime *lt);

/* The watchdog's question: did every acceptor go round since the last
 * time it was asked?  (It is asked again.) */
bool broker_acceptors_alive(struct broker *b);

/* Hosts, open connections and dead hosts, for the process title. */
struct broker_summary {
	size_t hosts, dead;
	int connections;
};
void broker_summary(struct broker *b, struct broker_summary *s);

/* The current config, referenced (config_unref it). */
struct config *broker_config(struct broker *b);

/* Graceful stop: stop accepting, let queued and in-flight requests
 * finish within shutdown_timeout, answer the rest con_lost, join every
 * thread, remove the sockets. */
void broker_drain(struct broker *b);

/* Free a drained (or never started) broker. */
void broker_free(struct broker *b);

#endif

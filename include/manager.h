/*
 * manager.h - the per-host thread that sizes the worker pool and owns
 * the host's failure count, dead state and retry backoff.
 *
 * The host creates its manager with its pool; the thread starts at the
 * host's first request (or delayed replay).  The dead state and the
 * retries left are published here for the host to read.
 */
#ifndef LONC_MANAGER_H
#define LONC_MANAGER_H

#include <stdbool.h>
#include <stdint.h>

#include "util.h"

struct manager;
struct outage_entry;
struct pool;

/* A manager for pool p (which must outlive it); oe is the host's outage
 * entry.  No thread yet. */
struct manager *manager_new(const struct pool *p, struct outage_entry *oe);

/* Start the thread (once; later calls do nothing).  0, or -1 (logged)
 * if it could not be started, or the manager was stopped. */
int manager_start(struct manager *m) WUR;

/* After the pool's queue was closed: wait for the thread, which joins
 * its workers first.  Then no manager start succeeds any more. */
void manager_stop(struct manager *m);

void manager_free(struct manager *m);

/* The host is DEAD: requests are answered con_lost at once. */
bool manager_dead(const struct manager *m);

/* Connection attempts left before the host counts as dead. */
int manager_retries_left(const struct manager *m);

/* Forget the dead state and the failure count now (reset_retries,
 * SIGUSR1, lonc-ctl reset). */
void manager_reset(struct manager *m);

/* The backoff before probe number `failures` past the limit: initial
 * doubled per step up to max, then +-20% jitter.  Exposed for tests. */
int64_t manager_backoff(int64_t initial, int64_t max, int step);

#endif

/*
 * manager.h - the per-host thread that sizes the worker pool and owns
 * the host's failure count, dead state and retry backoff.
 */
#ifndef LONC_MANAGER_H
#define LONC_MANAGER_H

#include <pthread.h>

#include "util.h"

struct host;

/* Start h's manager thread (lazily, at the host's first request).
 * 0, or -1 (logged). */
int manager_start(struct host *h, pthread_t *thread) WUR;

/* The backoff before probe number `failures` past the limit: initial
 * doubled per step up to max, then +-20% jitter.  Exposed for tests. */
int64_t manager_backoff(int64_t initial, int64_t max, int step);

#endif

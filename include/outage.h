/*
 * outage.h - tells one host going down from many going down together.
 *
 * When most of the recently active hosts fail within one window, the
 * likely cause is this machine's own network, not a hundred remote
 * hosts: lonc logs that once, instead of one alarm per host.
 * Lock: a module mutex, a leaf.
 */
#ifndef LONC_OUTAGE_H
#define LONC_OUTAGE_H

#include <stdbool.h>
#include <stdint.h>

struct host;

/* Window length and the fewest failed hosts that make an outage. */
void outage_configure(int64_t window_ms, int min_hosts);

/* Hosts are registered for as long as they exist. */
void outage_register(struct host *h);
void outage_unregister(struct host *h);

/* A host was declared dead now.  Returns true when its own alarm should
 * be logged, false when it is part of an outage already reported. */
bool outage_host_dead(struct host *h);

#endif

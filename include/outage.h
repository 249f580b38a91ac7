/*
 * outage.h - tells one host going down from many going down together.
 *
 * When most of the recently active hosts fail within one window, the
 * likely cause is this machine's own network, not a hundred remote
 * hosts: lonc logs that once, instead of one alarm per host.  Each host
 * keeps an entry here; the module knows nothing else of hosts.
 * Lock: a module mutex, a leaf.
 */
#ifndef LONC_OUTAGE_H
#define LONC_OUTAGE_H

#include <stdbool.h>
#include <stdint.h>

struct outage_entry;

/* Window length and the fewest failed hosts that make an outage. */
void outage_configure(int64_t window_ms, int min_hosts);

/* A host's entry, for as long as the host exists (NULL is fine to
 * unregister). */
struct outage_entry *outage_register(void);
void outage_unregister(struct outage_entry *e);

/* The host was asked for something (it counts as active). */
void outage_note_request(struct outage_entry *e);

/* The host was declared dead now.  Returns true when its own alarm
 * should be logged, false when it is part of an outage already
 * reported. */
bool outage_host_dead(struct outage_entry *e);

/* It is alive again. */
void outage_host_alive(struct outage_entry *e);

#endif

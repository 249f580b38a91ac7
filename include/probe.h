/*
 * probe.h - `lonc -c FILE --probe HOST`: find the protocol settings a
 * lond needs (the switches of doc/protocol.md).  It connects with the
 * configuration's credentials, tries the host's configured settings
 * first and then a bounded, ordered list of alternatives (one setting
 * changed, then two), each on a fresh connection with a short timeout,
 * and judges each by plain and encrypted pings, bare and addressed to
 * each of the host's IDs.  It prints a transcript of every attempt
 * (secrets masked) and the settings that worked, as YAML lines for the
 * host's entry.  Nothing beyond normal connections is done to the lond.
 * Main thread only.  May call: conn, config, lond, log, util.
 */
#ifndef LONC_PROBE_H
#define LONC_PROBE_H

#include <stdio.h>

struct config;
struct crypto_tls;

/* Probe host `name` (a hostname or alias of cfg) and report on out;
 * tls is the TLS context for an ssl host (NULL otherwise).  The exit
 * status: 0 when some settings worked, 1 when none did (or lond could
 * not be reached), 2 for an unknown host. */
int probe_run(const struct config *cfg, struct crypto_tls *tls, const char *name,
	      FILE *out);

#endif

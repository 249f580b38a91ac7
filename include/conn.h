/*
 * conn.h - one authenticated connection to a lond: connect, the
 * handshake (the plan of lond.c), requests sent as the protocol
 * switches say (sethost_mode, enc: framing), and every line lond sends
 * read through one reader into a struct reply (whole, or not at all).
 * Timing: a clock bounds each silence of lond's and the whole exchange;
 * a shutdown brings both closer.
 *
 * A struct conn belongs to one thread: a worker (worker.c) or the
 * probe (probe.c).  No locks of its own; it takes a host's stats notes
 * (stats_peer) and logs.  May call: lond, reply, net, crypto, stats,
 * config, log, util.
 */
#ifndef LONC_CONN_H
#define LONC_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "reply.h"
#include "util.h"

struct config;
struct crypto_idea;
struct crypto_tls;
struct host_conf;
struct stats;

/* What a connection attempt came to. */
struct conn_result {
	bool ok;
	bool refused;        /* lond said refused, or the TCP connect was refused */
	bool timed_out;      /* connect or handshake timed out */
	bool aborted;        /* not tried: the host is shutting down */
	const char *hint;    /* the setting the failure points at, or NULL */
	bool no_exchange;    /* failed before lond saw a line (no TCP
			      * connection, no key file): not the settings */
	bool local;          /* lonc's own resources failed (descriptors,
			      * memory, disk): not the host's fault */
	char reason[160];
};

/* The deadlines of one exchange with lond: the longest silence, and the
 * end of the whole. */
struct conn_clock {
	int64_t silence_ms;
	int64_t end;
	int64_t last;        /* the request went, or lond last sent something */
};

enum conn_read {
	CONN_OK,         /* the line is whole in c->reply */
	CONN_TIMEOUT,    /* a deadline of the clock (conn_read_reason) */
	CONN_CLOSED,     /* lond closed the connection */
	CONN_FAILED,     /* the socket failed (errno) */
	CONN_BAD,        /* a malformed enc: line */
	CONN_TOO_LONG,   /* over the line's limit */
	CONN_SPOOL,      /* the spool failed (errno) */
};

/* Every line sent and read, for a transcript (lonc --probe): `sent`
 * says which way; a secret (challenge, buildkey, key line, the plain
 * text of an encrypted request) comes as NULL with its length. */
typedef void conn_trace_fn(void *arg, bool sent, const char *line, size_t len);

struct conn {
	const struct config *cfg;
	const struct host_conf *conf;
	struct crypto_tls *tls;
	struct stats *stats;       /* notes of the handshake; NULL: none */
	const char *name;          /* the host, for logs */
	unsigned id;               /* the worker's number, for logs */
	conn_trace_fn *trace;      /* NULL: no transcript */
	void *trace_arg;

	int fd;                    /* -1 while closed */
	struct crypto_idea *cipher;
	struct reply reply;        /* the line being read from lond */
	bool sliced;               /* fd blocks, in short receives */
	char in_force[256];        /* the host ID lond applies ("": unknown) */
	bool hinted;               /* a hint was logged on this connection */
	bool enc_worked;           /* an encrypted request got a real answer */
	bool insecure;             /* its key came from ekey (IDs in the key) */
	char peer_version[64];     /* what the version step answered */
	char *wbuf;                /* enc: request buffer */
	size_t wcap;
	unsigned long served;      /* requests sent on this connection */
	struct conn_result *res;   /* where conn_open reports */
};

/* A closed connection for the host entry conf of cfg. */
void conn_init(struct conn *c, const struct config *cfg, const struct host_conf *conf,
	       struct crypto_tls *tls, struct stats *stats, unsigned id);

/* Connect and handshake; the outcome in *res.  0 or -1 (closed again). */
int conn_open(struct conn *c, struct conn_result *res) WUR;

/* Close the socket and forget the key (the buffers stay). */
void conn_close(struct conn *c);

/* Close, and free the buffers. */
void conn_destroy(struct conn *c);

/* Send one request line (line[len] is its '\n'): an encrypt: request
 * encrypted, its sethost: prefix as sethost_mode says (in line; as a
 * transaction of its own when the ID changes; or dropped).  0, or -1
 * with errno (EPIPE or ECONNRESET: lond had closed the connection and
 * never saw the request). */
int conn_send(struct conn *c, const char *line, size_t len, int64_t deadline) WUR;

/* Read one reply line (decrypted if enc:, at most max_line bytes) into
 * c->reply; the caller reply_end's it. */
enum conn_read conn_read(struct conn *c, struct conn_clock *k, size_t max_line) WUR;

/* conn_send, then conn_read of the answer, on a new clock of the
 * configuration's transaction timeouts (*k tells a timeout's reason). */
enum conn_read conn_exchange(struct conn *c, const char *req, size_t len,
			     struct conn_clock *k) WUR;

/* A clock: silence_ms at most between bytes, whole_ms in all. */
struct conn_clock conn_clock(int64_t silence_ms, int64_t whole_ms);

/* The next deadline of a clock (a shutdown may bring it closer). */
int64_t conn_deadline(const struct conn_clock *k);

/* A failed read in a word for the log ("closed_by_lond", ...); for a
 * timeout with its clock k, the limit it ran into:
 * "transaction_timeout", "max_transaction_time" or "shutdown_timeout"
 * (without one, "timed out"). */
const char *conn_read_reason(enum conn_read rc, const struct conn_clock *k);

/* The switch(es) lond's answer (in c->reply) to request `req` points
 * at (lond_answer_hint), or NULL; notes what the answer shows (an
 * encrypted request that worked). */
const char *conn_answer_hint(struct conn *c, const char *req, size_t len);

/* An answer that points at a protocol switch is logged with it, once
 * per connection. */
void conn_note_answer(struct conn *c, const char *req, size_t len);

#endif

/*
 * worker.c - a worker thread: one lond connection (conn.c), one
 * transaction at a time, taken from its host's queue.
 *
 * Life: a handshake slot (max_handshakes) -> connect and handshake ->
 * replay the host's delayed files -> loop { pop an item: a client's
 * request (admit, send with one resend on a stale connection, read the
 * reply whole, deliver it or answer con_lost) or a replay order } ->
 * close.  A reply reaches its client whole or not at all (con_lost); a
 * served client goes straight back to its acceptor.
 *
 * Locks: none of its own but the process-wide handshake slots
 * (slots_mu, a leaf); it takes, one at a time and never across I/O,
 * the queue's mutex (queue calls), the stats notes' (stats_error),
 * acceptor->mu (acceptor_return, acceptor_answer), and delayed.c's
 * claim_mu and record_mu.  May call: conn, acceptor, client, queue,
 * stats, delayed, lond, config, log, util.
 */
#include "worker.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "acceptor.h"
#include "client.h"
#include "delayed.h"
#include "config.h"
#include "log.h"
#include "conn.h"
#include "lond.h"
#include "queue.h"
#include "stats.h"

#define WORKER_STACK (256 * 1024)

struct worker {
	const struct pool *p;
	unsigned id;
	pthread_t thread;
	atomic_bool finished;
	atomic_bool handshaken;      /* result below is final (release) */
	struct conn_result result;   /* first handshake: read by the manager */

	struct queue_waiter waiter; /* parked here when idle (queue.h) */

	/* Owned by the worker thread. */
	struct conn conn;          /* its lond connection */
	unsigned generation;       /* the queue's generation at connect */
	bool counted;              /* still counted among the queue's workers */
	atomic_bool left;          /* left the pool, about to finish */
};

/* ---- handshakes in flight, process-wide (max_handshakes) ---- */

static pthread_mutex_t slots_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t slots_cv = PTHREAD_COND_INITIALIZER;
static int slots_used;                /* protected by slots_mu */
static int slots_max = 32;            /* protected by slots_mu */

void worker_limit_handshakes(int n)
{
	pthread_mutex_lock(&slots_mu);
	slots_max = n;
	pthread_cond_broadcast(&slots_cv);
	pthread_mutex_unlock(&slots_mu);
}

/* Wait for a handshake slot.  False when the host's queue closed
 * meanwhile (the wait is looked at every 100 ms). */
static bool slot_take(const struct pool *p)
{
	bool got = false;

	pthread_mutex_lock(&slots_mu);
	while (!got) {
		if (slots_used < slots_max) {
			slots_used++;
			got = true;
			break;
		}
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 100 * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&slots_cv, &slots_mu, &ts);
		pthread_mutex_unlock(&slots_mu);
		bool closed = queue_is_closed(p->queue);
		pthread_mutex_lock(&slots_mu);
		if (closed)
			break;
	}
	pthread_mutex_unlock(&slots_mu);
	return got;
}

static void slot_give(void)
{
	pthread_mutex_lock(&slots_mu);
	slots_used--;
	pthread_cond_signal(&slots_cv);
	pthread_mutex_unlock(&slots_mu);
}

enum txn_rc {
	TXN_OK,          /* reply relayed (or client gone); connection fine */
	TXN_BROKEN,      /* the connection is unusable; client answered */
};

static const char *hname(const struct worker *w)
{
	return w->p->conf->hostname;
}

/* Connect and handshake within a process-wide handshake slot; the
 * outcome in *res. */
static int handshake(struct worker *w, struct conn_result *res)
{
	if (!slot_take(w->p)) {
		*res = (struct conn_result){ .aborted = true };
		snprintf(res->reason, sizeof(res->reason), "shutting down");
		return -1;
	}
	int rc = conn_open(&w->conn, res);
	slot_give();
	return rc;
}

static void wipe_free(char *p, size_t n)
{
	memset(p, 0, n);
	free(p);
}

enum replay_rc {
	REPLAY_DELIVERED,    /* answered: deleted, recorded */
	REPLAY_SKIPPED,      /* unreadable or unsendable: it stays */
	REPLAY_BROKEN,       /* the connection broke: it stays */
	REPLAY_OUT_OF_STEP,  /* answered (so delivered), then unasked data */
};

/* lond answered a delayed file: it is delivered, so it is deleted (or,
 * if it cannot be, set aside: it must not go out again) and recorded. */
static enum replay_rc replay_done(struct worker *w, const struct delayed_item *it,
				  const char *line, size_t len)
{
	char perm_log[PATH_MAX];

	if (unlink(it->path) < 0 && errno != ENOENT) {
		log_errno(LOG_ERR, "host=%s event=delayed_unlink_failed file=%s action=\"set aside: not sent again; remove it by hand\"",
			  hname(w), it->path);
		delayed_set_aside(it);
	}
	if (delayed_record(it->hostid, line, len, perm_log, sizeof(perm_log)) < 0)
		log_errno(LOG_ERR, "host=%s event=delayed_record_failed file=%s",
			  hname(w), perm_log);
	if (!w->conn.reply.extra)
		return REPLAY_DELIVERED;
	/* The stream is out of step: the rest waits for a fresh connection. */
	log_msg(LOG_WARNING, "host=%s worker=%u event=protocol_error reason=extra_reply_data",
		hname(w), w->id);
	return REPLAY_OUT_OF_STEP;
}

/* Send one delayed file as sethost:<hostid>:<line> and wait for lond's
 * answer; only then is the file deleted and its S: record written. */
static enum replay_rc replay_one(struct worker *w, const struct delayed_item *it)
{
	const struct config *cfg = w->p->cfg;
	size_t len;
	char *line = delayed_read(it->path, cfg->max_request_bytes, &len);

	if (!line) {
		log_msg(LOG_WARNING, "host=%s event=delayed_unreadable file=%s",
			hname(w), it->path);
		return REPLAY_SKIPPED;
	}
	size_t plen = strlen(it->hostid) + 9;   /* "sethost:" id ":" */
	char *req = xmalloc(plen + len + 2);
	struct lond_request parsed;
	enum replay_rc rc;
	enum conn_read rr;
	struct conn_clock k;

	snprintf(req, plen + 1, "sethost:%s:", it->hostid);
	memcpy(req + plen, line, len);
	req[plen + len] = '\n';
	lond_parse_request(req, plen + len, &parsed);
	enum lond_local local = lond_local_command(line, len);
	if (parsed.bad_prefix || local != LOND_LOCAL_NONE) {
		/* A line with a sethost: prefix of its own (no form lond
		 * knows, and an encrypt: in it would go out in clear), or a
		 * handshake or lonc-local command (it would change the pooled
		 * connection's key or host, or is not lond's): no transaction
		 * lonnet writes.  It stays, for an operator to look at, and is
		 * not tried again by this process. */
		log_msg(LOG_ERR, "host=%s event=delayed_unsendable file=%s reason=%s",
			hname(w), it->path, parsed.bad_prefix ? "bad_sethost_prefix" :
			local == LOND_LOCAL_HANDSHAKE ? "handshake_command" : "lonc_command");
		delayed_set_aside(it);
		rc = REPLAY_SKIPPED;
	} else if ((rr = conn_exchange(&w->conn, req, plen + len, &k)) != CONN_OK) {
		log_msg(LOG_WARNING, "host=%s worker=%u event=delayed_replay_failed file=%s reason=\"%s\"",
			hname(w), w->id, it->path,
			rr == CONN_FAILED || rr == CONN_SPOOL ? strerror(errno) :
			conn_read_reason(rr, &k));
		rc = REPLAY_BROKEN;
	} else {
		conn_note_answer(&w->conn, req, plen + len);
		rc = replay_done(w, it, line, len);
	}
	reply_end(&w->conn.reply);
	wipe_free(req, plen + len);
	wipe_free(line, len);
	return rc;
}

/* Replay the files in dir for this host's IDs (claimed by the caller),
 * oldest first.  -1 when the connection broke (the rest stays for the
 * next connection). */
static int replay_files(struct worker *w, const char *dir)
{
	const struct host_conf *hc = w->p->conf;
	struct delayed_item *items;
	size_t n, done = 0;
	int rc = 0;

	if (delayed_scan(dir, hc->ids, hc->n_ids, &items, &n) < 0) {
		log_errno(LOG_WARNING, "host=%s event=delayed_scan_failed dir=%s", hname(w), dir);
		return 0;
	}
	for (size_t i = 0; i < n; i++) {
		/* Once a shutdown began, or a reload retired this host (its
		 * IDs may be another host's now), no new file is started: the
		 * rest stays for the next start or the successor. */
		if (stopping() || queue_is_closed(w->p->queue))
			break;
		enum replay_rc r = replay_one(w, &items[i]);

		if (r == REPLAY_DELIVERED || r == REPLAY_OUT_OF_STEP)
			done++;
		if (r == REPLAY_BROKEN || r == REPLAY_OUT_OF_STEP) {
			rc = -1;
			break;
		}
	}
	if (n)
		log_msg(LOG_NOTICE, "host=%s event=delayed_replayed delivered=%zu pending=%zu",
			hname(w), done, n - done);
	delayed_free(items, n);
	return rc;
}

/* Replay this host's delayed transactions on this connection.  Each file
 * goes out once: only while this process may delete files there, and
 * only under the claim of the host's IDs (no other replay of them, also
 * by a host a reload is retiring).  A file is deleted (and its S: record
 * written) only after lond answered it.  -1 when the connection broke. */
static int replay_delayed(struct worker *w)
{
	const struct host_conf *hc = w->p->conf;
	char *dir = delayed_dir(w->p->cfg->socket_dir);
	int rc = 0;

	if (delayed_dir_usable(dir) && delayed_claim(hc->ids, hc->n_ids)) {
		rc = replay_files(w, dir);
		delayed_release(hc->ids, hc->n_ids);
	}
	free(dir);
	return rc;
}

/* Stop counting this worker in the pool (once). */
static void leave_pool(struct worker *w)
{
	if (w->counted) {
		w->counted = false;
		atomic_store(&w->left, true);
		queue_worker_exit(w->p->queue, false);
	}
}

/* A request lonc could not complete: the client gets con_lost (unless
 * it is gone) and goes back to its acceptor for its next one. */
static void fail_client(const struct pool *p, struct client *c)
{
	stats_add(p->stats, STAT_failed, 1);
	if (!acceptor_answer(c, "con_lost", p->cfg->client_write_timeout_ms))
		stats_add(p->stats, STAT_client_gone, 1);
}

void pool_fail_queued(const struct pool *p)
{
	struct queue_item item;

	/* A replay item is dropped: its files stay for the next check. */
	while (queue_take(p->queue, &item))
		if (item.kind == QUEUE_ITEM_CLIENT)
			fail_client(p, item.client);
}

/* The transaction failed and the connection with it: the client gets
 * con_lost (nothing of the reply went to it).  `detail` may be NULL. */
static void fail_txn(struct worker *w, struct client *c, const char *what,
		     const char *detail)
{
	log_msg(LOG_WARNING, "host=%s worker=%u event=transaction_failed reason=%s%s%s%s",
		hname(w), w->id, what, detail ? " error=\"" : "", detail ? detail : "",
		detail ? "\"" : "");
	stats_error(w->p->stats, "transaction: %s%s%s", what, detail ? ": " : "",
		    detail ? detail : "");
	/* The connection is lost: leave the pool before the client hears
	 * of it, so that its next request finds the pool as it really is
	 * (a failed attempt to connect then counts toward the dead state). */
	leave_pool(w);
	fail_client(w->p, c);
}

/* Look at both ends without waiting.  Returns -1 when the client hung
 * up (a UNIX peer that closed gives POLLHUP; one that only shut down
 * its writing side still wants the reply).  Sets *stale when lond's end
 * of a connection that served before has something to read: lond closed
 * it (or broke it, or spoke unasked) while it sat in the pool.  Done
 * before every send: a lond that closes a connection does so right
 * after a reply, so even a connection used a moment ago may be stale. */
static int check_ends(struct worker *w, struct client *c, bool *stale)
{
	struct pollfd p[2] = {
		{ .fd = c->fd, .events = POLLIN },
		{ .fd = w->conn.fd, .events = POLLIN },
	};

	if (poll(p, 2, 0) <= 0)
		return 0;
	if (p[0].revents & (POLLHUP | POLLERR))
		return -1;
	*stale = w->conn.served > 0 && p[1].revents != 0;
	return 0;
}

/* Replace the connection by a fresh one.  0 or -1 (logged, counted). */
static int reconnect(struct worker *w)
{
	conn_close(&w->conn);
	/* The manager may still read w->result of the first handshake. */
	struct conn_result again;
	int rc = handshake(w, &again);
	if (rc < 0) {
		/* lonc's own shortage is not the host's failure (as the
		 * manager counts it). */
		if (!again.local)
			stats_add(w->p->stats, STAT_connect_failures, 1);
		log_msg(LOG_WARNING, "host=%s worker=%u event=reconnect_failed reason=\"%s\"%s%s",
			hname(w), w->id, again.reason, again.hint ? " hint=" : "",
			again.hint ? again.hint : "");
		stats_error(w->p->stats, "%s", again.reason);
		return -1;
	}
	stats_add(w->p->stats, STAT_connects, 1);
	return 0;
}

/* Before anything is sent: is the client still there, is there time
 * left (shutdown, queue_timeout)?  False when c was dealt with here. */
static bool admit(struct worker *w, struct client *c, bool *stale)
{
	const struct pool *p = w->p;

	/* One poll looks at both ends: a client that hung up while its
	 * request waited is dropped, and a pooled connection that lond
	 * closed while idle is noticed (send_with_resend). */
	if (check_ends(w, c, stale) < 0) {
		stats_add(p->stats, STAT_client_gone, 1);
		client_free(c);
		return false;
	}
	const char *late = now_ms() >= stop_deadline() ? "shutdown_timeout" :
			   now_ms() - c->queued_at > p->cfg->queue_timeout_ms ?
			   "queue_timeout" : NULL;
	if (!late)
		return true;
	if (!strcmp(late, "queue_timeout"))
		stats_add(p->stats, STAT_timeouts, 1);
	log_msg(LOG_WARNING, "host=%s worker=%u event=transaction_failed reason=%s",
		hname(w), w->id, late);
	fail_client(p, c);
	return false;
}

/* Send c's request.  A pooled connection that lond closed while it sat
 * idle shows EOF before we send (stale); one whose close we learn only
 * from the send fails with EPIPE/ECONNRESET.  Either way lond never saw
 * the request, so it is sent once more on a fresh connection.  Once a
 * byte of reply arrived there is no retry (it may have run).  0, or -1
 * with the client answered. */
static int send_with_resend(struct worker *w, struct client *c, bool stale,
			    const struct conn_clock *k)
{
	int rc = stale ? -1 : conn_send(&w->conn, c->in.data, c->req_len, conn_deadline(k));

	if (rc < 0 && w->conn.served > 0 && (stale || errno == EPIPE || errno == ECONNRESET)) {
		log_msg(LOG_INFO, "host=%s worker=%u event=stale_connection action=reconnect",
			hname(w), w->id);
		if (reconnect(w) < 0) {
			fail_txn(w, c, "reconnect_failed", NULL);
			return -1;
		}
		rc = conn_send(&w->conn, c->in.data, c->req_len, conn_deadline(k));
	}
	if (rc < 0) {
		fail_txn(w, c, errno == ETIMEDOUT ? "send_timeout" : "send_failed", NULL);
		return -1;
	}
	return 0;
}

/* The reply could not be read whole: count it, answer con_lost. */
static void reply_failed(struct worker *w, struct client *c, enum conn_read rc,
			 const struct conn_clock *k)
{
	const char *what = conn_read_reason(rc, k), *detail = NULL;

	if (rc == CONN_TIMEOUT) {
		/* A deadline a shutdown brought closer is no fault of lond's. */
		if (strcmp(what, "shutdown_timeout"))
			stats_add(w->p->stats, STAT_timeouts, 1);
	} else if (rc == CONN_FAILED || rc == CONN_SPOOL) {
		detail = strerror(errno);
	}
	fail_txn(w, c, what, detail);
}

/* The whole reply to its client, then the client back to its acceptor. */
static void deliver(struct worker *w, struct client *c)
{
	const struct pool *p = w->p;
	/* Read now: once handed back (or freed) c is not ours to look at. */
	int64_t start_us = c->start_us;

	if (client_send_reply(c, &w->conn.reply, p->cfg->client_write_timeout_ms) < 0) {
		/* It stopped reading its reply (or left): the one case where
		 * a client is cut off rather than answered con_lost. */
		log_errno(LOG_INFO, "host=%s worker=%u event=client_write_failed bytes=%zu",
			  hname(w), w->id, reply_size(&w->conn.reply) + 1);
		stats_add(p->stats, STAT_client_gone, 1);
		client_free(c);
	} else {
		acceptor_return(c);
	}
	stats_add(p->stats, STAT_replied, 1);
	stats_latency(p->stats, now_us() - start_us);
}

/* One transaction for client c. */
static enum txn_rc serve(struct worker *w, struct client *c)
{
	const struct config *cfg = w->p->cfg;
	bool stale = false;

	if (!admit(w, c, &stale))
		return TXN_OK;
	struct conn_clock k = conn_clock(cfg->transaction_timeout_ms, cfg->max_transaction_ms);
	if (send_with_resend(w, c, stale, &k) < 0)
		return TXN_BROKEN;
	enum conn_read rc = conn_read(&w->conn, &k, cfg->max_reply_bytes);
	if (rc != CONN_OK) {
		reply_failed(w, c, rc, &k);
		reply_end(&w->conn.reply);
		return TXN_BROKEN;
	}
	bool extra = w->conn.reply.extra;
	conn_note_answer(&w->conn, c->in.data, c->req_len);
	deliver(w, c);
	reply_end(&w->conn.reply);
	if (extra) {
		/* lond sent more than one line: the stream is out of step. */
		log_msg(LOG_WARNING, "host=%s worker=%u event=protocol_error reason=extra_reply_data",
			hname(w), w->id);
		stats_error(w->p->stats, "lond sent data after a reply");
		return TXN_BROKEN;
	}
	return TXN_OK;
}

/* Workers run under SCHED_BATCH (batch_workers): a woken batch thread
 * does not preempt the running one (the acceptor that handed it a
 * request and reads on). */
static void set_batch(struct worker *w)
{
	struct sched_param sp = { .sched_priority = 0 };
	int err = pthread_setschedparam(pthread_self(), SCHED_BATCH, &sp);

	if (err)
		log_msg(LOG_DEBUG, "host=%s worker=%u event=sched_batch_failed error=\"%s\"",
			hname(w), w->id, strerror(err));
}

/* Serve the queue until the connection ends; returns why it ended. */
static const char *serve_queue(struct worker *w)
{
	const struct config *cfg = w->p->cfg;

	if (replay_delayed(w) < 0)
		return "broken";
	for (;;) {
		/* Jitter spreads the closing of connections that went idle
		 * together over a tenth of the idle timeout. */
		int64_t idle = cfg->idle_timeout_ms +
			       rand_below((uint32_t)cfg->idle_timeout_ms / 10 + 1);
		struct queue_item item;

		switch (queue_pop(w->p->queue, &w->waiter, now_ms() + idle,
				  w->generation, &item)) {
		case QUEUE_TIMEOUT: return "idle";
		case QUEUE_CLOSED: return "shutdown";
		case QUEUE_KICKED: return "close_requested";
		default: break;
		}
		if (item.kind == QUEUE_ITEM_REPLAY ? replay_delayed(w) < 0 :
		    serve(w, item.client) == TXN_BROKEN)
			return "broken";
	}
}

/* The connection's end: everything released, the slot given up. */
static void finish(struct worker *w, bool connected)
{
	conn_destroy(&w->conn);
	atomic_store(&w->finished, true);
	if (!connected)
		queue_worker_exit(w->p->queue, true);
	else if (w->counted)
		queue_worker_exit(w->p->queue, false);
	else
		queue_poke(w->p->queue);   /* the manager may reap this slot now */
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	const struct config *cfg = w->p->cfg;

	thread_name("wrk", hname(w));
	if (cfg->batch_workers)
		set_batch(w);
	conn_init(&w->conn, cfg, w->p->conf, w->p->tls, w->p->stats, w->id);
	w->generation = queue_generation(w->p->queue);
	int rc = handshake(w, &w->result);
	/* Before the queue call that wakes the manager to judge it. */
	atomic_store_explicit(&w->handshaken, true, memory_order_release);
	if (rc < 0) {
		finish(w, false);
		return NULL;
	}
	log_msg(LOG_INFO, "host=%s worker=%u event=connected", hname(w), w->id);
	queue_worker_connected(w->p->queue);
	w->counted = true;
	const char *why = serve_queue(w);
	log_msg(LOG_INFO, "host=%s worker=%u event=disconnected reason=%s",
		hname(w), w->id, why);
	finish(w, true);
	return NULL;
}

struct worker *worker_start(const struct pool *p, unsigned id)
{
	struct worker *w = xcalloc(1, sizeof(*w));
	pthread_attr_t attr;
	int rc;

	w->p = p;
	w->id = id;

	queue_waiter_init(&w->waiter);
	queue_worker_start(p->queue);
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, WORKER_STACK);
	rc = pthread_create(&w->thread, &attr, worker_main, w);
	pthread_attr_destroy(&attr);
	if (rc) {
		log_msg(LOG_ERR, "host=%s event=thread_failed thread=worker error=\"%s\"",
			p->conf->hostname, strerror(rc));
		queue_worker_exit(p->queue, true);
		queue_waiter_destroy(&w->waiter);
		free(w);
		return NULL;
	}
	return w;
}

bool worker_handshaken(const struct worker *w)
{
	return atomic_load_explicit(&w->handshaken, memory_order_acquire);
}

const struct conn_result *worker_result(const struct worker *w)
{
	return &w->result;
}

bool worker_left(const struct worker *w)
{
	return atomic_load(&w->left) || atomic_load(&w->finished);
}

bool worker_finished(const struct worker *w)
{
	return atomic_load(&w->finished);
}

void worker_join(struct worker *w)
{
	pthread_join(w->thread, NULL);
	/* Its last queue call took the queue's mutex after its last pop,
	 * so no push still posts to the waiter. */
	queue_waiter_destroy(&w->waiter);
	free(w);
}

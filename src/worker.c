/*
 * worker.c - a worker thread: one lond connection, blocking I/O bounded
 * by poll deadlines, one transaction at a time.
 *
 * Life: connect -> handshake (table in lond.c) -> loop { pop a client,
 * send its request (enc:-framed for encrypt:), read the reply whole,
 * relay it } -> close.  Every line from lond (handshake answers,
 * replies, answers to delayed replays) is read by read_reply through
 * one struct reply (reply.h): a reply reaches its client whole or not
 * at all (con_lost), with at most reply_buffer bytes in memory.
 * Timing: transaction_timeout bounds each silence of lond's,
 * max_transaction_time the whole, a shutdown both.
 *
 * Locks: none of its own; it takes, one at a time and never across I/O,
 * the queue's mutex (queue calls), the stats notes' (stats_error),
 * acceptor->mu
 * (acceptor_return, when it hands a client back) and record_mu
 * (delayed_record).
 */
#include "worker.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "acceptor.h"
#include "client.h"
#include "crypto.h"
#include "delayed.h"
#include "config.h"
#include "log.h"
#include "lond.h"
#include "net.h"
#include "queue.h"
#include "reply.h"
#include "stats.h"

#define WORKER_RBUF (64 * 1024)   /* the reply buffer's usual size */
/* A worker blocked on lond's reply looks at its deadlines (the
 * transaction's, and a shutdown's that may begin meanwhile) this often. */
#define RECV_SLICE_MS 50
#define WORKER_STACK (256 * 1024)

struct worker {
	const struct pool *p;
	unsigned id;
	pthread_t thread;
	atomic_bool finished;
	atomic_bool handshaken;      /* result below is final (release) */
	struct worker_result result; /* first handshake: read by the manager */
	struct worker_result *res;   /* where handshake() reports (worker only) */

	struct queue_waiter waiter; /* parked here when idle (queue.h) */

	/* Owned by the worker thread. */
	int fd;
	struct crypto_idea *cipher;
	struct reply reply;        /* the line being read from lond */
	bool sliced;               /* fd blocks, in RECV_SLICE_MS receives */
	char in_force[256];        /* the host ID lond applies ("": unknown) */
	bool hinted;               /* a hint was logged on this connection */
	bool insecure;             /* its key came from ekey (IDs in the key) */
	char *wbuf;                /* enc: request buffer */
	size_t wcap;
	unsigned generation;       /* the queue's generation at connect */
	unsigned long served;      /* requests sent on this connection */
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
		struct queue_stats qs;
		queue_get_stats(p->queue, &qs);
		pthread_mutex_lock(&slots_mu);
		if (qs.closed)
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

static bool is_loopback(const char *addr)
{
	return !strncmp(addr, "127.", 4) || !strcmp(addr, "::1") || !strcmp(addr, "localhost");
}

/* Where to connect.  Local mode is for this machine's own lond over
 * loopback only (lond reads a key file lonc wrote): whatever address or
 * hostname the host entry has (hosts.tab gives the public one), it
 * connects to 127.0.0.1 unless the entry names a loopback address. */
static const char *connect_target(const struct worker *w)
{
	const struct host_conf *hc = w->p->conf;
	const char *target = hc->address ? hc->address : hc->hostname;

	if (hc->key_mode == KEY_LOCAL && !is_loopback(target))
		return "127.0.0.1";
	return target;
}

/* deadline, or the shutdown's deadline when that is sooner. */
static int64_t within_shutdown(int64_t deadline)
{
	int64_t stop_by = stop_deadline();

	return deadline < stop_by ? deadline : stop_by;
}

/* The deadlines of one exchange with lond: the longest silence, and
 * the end of the whole; a shutdown that begins meanwhile may bring
 * either closer. */
struct clock {
	int64_t silence_ms;
	int64_t end;
	int64_t last;    /* the request went, or lond last sent something */
};

static struct clock clock_start(int64_t silence_ms, int64_t whole_ms)
{
	int64_t now = now_ms();

	return (struct clock){ .silence_ms = silence_ms, .end = now + whole_ms,
			       .last = now };
}

static int64_t clock_deadline(const struct clock *k)
{
	int64_t d = k->last + k->silence_ms;

	return within_shutdown(d < k->end ? d : k->end);
}

/* Which limit a timed-out exchange ran into. */
static const char *timeout_reason(const struct clock *k)
{
	int64_t now = now_ms();

	return now >= stop_deadline() ? "shutdown_timeout" :
	       now >= k->end ? "max_transaction_time" : "transaction_timeout";
}

/* Wait for and read what lond sent, in receives of at most
 * RECV_SLICE_MS, so that the deadline (which a shutdown that began
 * meanwhile may bring closer) is looked at often.  After the handshake
 * each wait is one blocking recv: waiting and reading in one system
 * call.  Bytes, 0 at end of file, or -1 with errno (ETIMEDOUT). */
static ssize_t recv_some(struct worker *w, void *buf, size_t len,
			 const struct clock *k)
{
	for (;;) {
		int64_t now = now_ms(), stop = clock_deadline(k);

		if (now >= stop) {
			errno = ETIMEDOUT;
			return -1;
		}
		int64_t slice = now + RECV_SLICE_MS;
		ssize_t n = w->sliced ? net_recv_slice(w->fd, buf, len) :
			    net_read(w->fd, buf, len, slice < stop ? slice : stop);

		if (n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK &&
			       errno != ETIMEDOUT))
			return n;
	}
}

enum read_rc {
	READ_OK,         /* the line is whole in w->reply */
	READ_TIMEOUT,    /* a deadline of the clock (timeout_reason) */
	READ_CLOSED,     /* lond closed the connection */
	READ_FAILED,     /* the socket failed (errno) */
	READ_BAD,        /* a malformed enc: line */
	READ_TOO_LONG,   /* over the line's limit */
	READ_SPOOL,      /* the spool failed (errno) */
};

static const char *const read_reasons[] = {
	[READ_OK] = "ok", [READ_TIMEOUT] = "timed out",
	[READ_CLOSED] = "closed_by_lond", [READ_FAILED] = "read_failed",
	[READ_BAD] = "bad_enc_reply", [READ_TOO_LONG] = "reply_too_long",
	[READ_SPOOL] = "spool_failed",
};

/* Read one line from lond into w->reply (reply_begin'd by the caller),
 * the one reader of everything lond says. */
static enum read_rc read_reply(struct worker *w, struct clock *k)
{
	for (;;) {
		size_t room;
		char *p = reply_space(&w->reply, &room);

		if (!p)
			return errno == EMSGSIZE ? READ_TOO_LONG : READ_SPOOL;
		ssize_t n = recv_some(w, p, room, k);
		if (n == 0)
			return READ_CLOSED;
		if (n < 0)
			return errno == ETIMEDOUT ? READ_TIMEOUT : READ_FAILED;
		k->last = now_ms();
		switch (reply_commit(&w->reply, (size_t)n)) {
		case REPLY_DONE: return READ_OK;
		case REPLY_BAD: return READ_BAD;
		case REPLY_TOO_LONG: return READ_TOO_LONG;
		case REPLY_MORE: break;
		}
	}
}

static void set_result(struct worker *w, bool refused, bool timed_out,
		       const char *fmt, ...) PRINTF_LIKE(4, 5);

static void set_result(struct worker *w, bool refused, bool timed_out,
		       const char *fmt, ...)
{
	va_list ap;

	w->res->ok = false;
	w->res->hint = NULL;
	w->res->refused = refused;
	w->res->timed_out = timed_out;
	va_start(ap, fmt);
	vsnprintf(w->res->reason, sizeof(w->res->reason), fmt, ap);
	va_end(ap);
}

/* Local mode: a fresh random key in a new file only we can read. */
static int write_local_key(struct worker *w, struct lond_handshake *hs,
			   char *path, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char raw[LOND_KEY_LEN];
	uint32_t tag;
	int fd;

	if (crypto_random(raw, sizeof(raw)) < 0 || crypto_random(&tag, sizeof(tag)) < 0) {
		set_result(w, false, false, "local key: no random bytes");
		return -1;
	}
	for (size_t i = 0; i < sizeof(raw); i++) {
		hs->local_key[2 * i] = hex[raw[i] >> 4];
		hs->local_key[2 * i + 1] = hex[raw[i] & 15];
	}
	hs->local_key[2 * LOND_KEY_LEN] = '\0';
	memset(raw, 0, sizeof(raw));
	snprintf(path, n, "%s/lonc.%ld.%u.%08x.key", w->p->cfg->local_key_dir,
		 (long)getpid(), w->id, tag);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		set_result(w, false, false, "local key file %s: %s", path, strerror(errno));
		return -1;
	}
	char buf[2 * LOND_KEY_LEN + 1];
	memcpy(buf, hs->local_key, 2 * LOND_KEY_LEN);
	buf[2 * LOND_KEY_LEN] = '\n';
	ssize_t wr = write(fd, buf, sizeof(buf));
	memset(buf, 0, sizeof(buf));
	if (close(fd) < 0 || wr != (ssize_t)sizeof(buf)) {
		set_result(w, false, false, "local key file %s: write failed", path);
		unlink(path);
		return -1;
	}
	hs->local_path = path;
	return 0;
}

static enum lond_mode lond_mode_of(enum key_mode m)
{
	return m == KEY_SSL ? LOND_MODE_SSL :
	       m == KEY_LOCAL ? LOND_MODE_LOCAL : LOND_MODE_INSECURE;
}

/* One step's line from lond (whole, nothing after it) into w->reply.
 * 0, or -1 with the reason in *why. */
static int step_answer(struct worker *w, struct clock *k, const char **why)
{
	reply_begin(&w->reply, NULL, LOND_LINE_MAX);
	enum read_rc rc = read_reply(w, k);

	*why = rc == READ_FAILED ? strerror(errno) : rc == READ_CLOSED ?
	       "connection closed" : rc == READ_TOO_LONG ? "reply line too long" :
	       read_reasons[rc];
	if (rc == READ_OK && w->reply.extra) {
		*why = "extra data after the reply";
		return -1;
	}
	return rc == READ_OK ? 0 : -1;
}

/* The TLS step: lond's key line, read over TLS, into line. */
static int tls_step(struct worker *w, int64_t deadline, char *line, size_t *len)
{
	char err[256] = "";

	if (!w->p->tls) {
		set_result(w, false, false, "ssl mode without a TLS context");
		return -1;
	}
	if (crypto_tls_key_exchange(w->p->tls, w->fd, w->p->conf->tls_name, deadline,
				    w->p->conf->tls_close_notify == CLOSE_NOTIFY_LENIENT,
				    line, LOND_LINE_MAX, len, err, sizeof(err)) < 0) {
		set_result(w, false, errno == ETIMEDOUT, "%s", err);
		if (strstr(err, "close_notify"))
			w->res->hint = "tls_close_notify";
		return -1;
	}
	return 0;
}

/* Send the current step's line and feed lond's answer to the plan.
 * 1 when the handshake is done, 0 for the next step, -1 failed. */
static int run_step(struct worker *w, struct lond_handshake *hs, struct clock *k)
{
	enum lond_step step = lond_handshake_step(hs);
	char line[LOND_LINE_MAX];
	int len = lond_handshake_request(hs, line, sizeof(line));
	const char *text = line, *why;
	size_t rlen;
	int rc;

	if (len < 0) {
		set_result(w, false, false, "handshake step %s: line too long",
			   lond_step_name(step));
		return -1;
	}
	if (step == LOND_STEP_TLS) {
		if (tls_step(w, k->end, line, &rlen) < 0)
			return -1;
	} else if (net_write_all(w->fd, line, (size_t)len, k->end) < 0) {
		set_result(w, false, errno == ETIMEDOUT, "handshake step %s: %s",
			   lond_step_name(step), errno == ETIMEDOUT ? "timed out" :
			   strerror(errno));
		return -1;
	} else if (step_answer(w, k, &why) < 0) {
		set_result(w, false, !strcmp(why, "timed out"), "handshake step %s: %s",
			   lond_step_name(step), why);
		return -1;
	} else {
		text = reply_text(&w->reply, &rlen);
	}
	rc = lond_handshake_reply(hs, text, rlen);
	memset(line, 0, sizeof(line));
	reply_wipe(&w->reply);
	reply_end(&w->reply);
	if (rc < 0) {
		set_result(w, hs->refused, false, "handshake step %s: %s",
			   lond_step_name(step), hs->error);
		w->res->hint = hs->hint;
	}
	return rc;
}

/* Walk the handshake plan over the connected socket. */
static int run_steps(struct worker *w, struct lond_handshake *hs, int64_t deadline)
{
	struct clock k = { .silence_ms = INT64_MAX / 4, .end = deadline,
			   .last = now_ms() };
	int rc;

	while ((rc = run_step(w, hs, &k)) == 0)
		;
	return rc < 0 ? -1 : 0;
}

static int connect_handshake(struct worker *w)
{
	const struct host_conf *hc = w->p->conf;
	const struct config *cfg = w->p->cfg;
	struct lond_handshake hs;
	const char *why = NULL;
	char key_path[PATH_MAX];
	int64_t deadline = now_ms() + cfg->connect_timeout_ms;
	int rc = -1;

	lond_handshake_init(&hs, lond_mode_of(hc->key_mode), cfg->host_id,
			    hc->ids[0], hc->version_string, hc->version_step,
			    hc->sethost_step);
	hs.allow_insecure = cfg->allow_insecure;
	hs.init_version = hc->init_version;
	hs.local_first = hc->key_id_order == KEY_ID_LOCAL_FIRST;
	w->fd = net_connect_tcp(connect_target(w), hc->port, deadline, &why);
	if (w->fd < 0) {
		set_result(w, errno == ECONNREFUSED, errno == ETIMEDOUT,
			   "connect to %s port %d: %s", connect_target(w),
			   hc->port, why);
		return -1;
	}
	if (hs.mode == LOND_MODE_LOCAL &&
	    write_local_key(w, &hs, key_path, sizeof(key_path)) < 0)
		return -1;
	rc = run_steps(w, &hs, now_ms() + cfg->handshake_timeout_ms);
	/* lond deletes the file; if it did not, we do. */
	if (hs.mode == LOND_MODE_LOCAL && unlink(key_path) == 0)
		log_msg(LOG_INFO, "host=%s worker=%u event=local_key_removed",
			hname(w), w->id);
	if (rc < 0)
		goto out;
	if (hs.fell_back)
		log_msg(LOG_WARNING, "host=%s worker=%u event=ssl_fallback_insecure reason=\"lond answered init:ssl with a challenge\"",
			hname(w), w->id);
	w->cipher = crypto_idea_new(hs.key);
	if (!w->cipher) {
		set_result(w, false, false, "cannot set up the IDEA cipher");
		rc = -1;
		goto out;
	}
	if (net_set_recv_slice(w->fd, RECV_SLICE_MS) < 0) {
		set_result(w, false, false, "socket options: %s", strerror(errno));
		rc = -1;
		goto out;
	}
	w->sliced = true;
	/* The host ID in force on the connection (sethost_mode separate). */
	str_copy(w->in_force, hc->sethost_step ? hc->ids[0] : "", sizeof(w->in_force));
	w->hinted = false;
	w->insecure = hs.mode == LOND_MODE_INSECURE || hs.fell_back;
	stats_peer(w->p->stats, hs.peer_version, hs.fell_back ? "insecure(fallback)" :
		   lond_mode_name(hs.mode));
	w->res->ok = true;
out:
	memset(&hs, 0, sizeof(hs));
	return rc;
}

/* Connect and handshake within a process-wide handshake slot. */
static int handshake(struct worker *w)
{
	if (!slot_take(w->p)) {
		set_result(w, false, false, "shutting down");
		w->res->aborted = true;
		return -1;
	}
	int rc = connect_handshake(w);
	slot_give();
	return rc;
}

/* sethost_mode separate: make `id` the host ID in force on the
 * connection with a sethost:<id> transaction, unless it is already.  0,
 * or -1 with errno (a closed connection gives ECONNRESET, so that the
 * request, not yet sent, goes out on a fresh one; EPROTO when lond did
 * not answer ok). */
static int select_id(struct worker *w, const char *id, size_t idlen, int64_t deadline)
{
	char line[300];
	size_t len;

	if (idlen < sizeof(w->in_force) && !strncmp(w->in_force, id, idlen) &&
	    !w->in_force[idlen])
		return 0;
	int n = snprintf(line, sizeof(line), "sethost:%.*s\n", (int)idlen, id);
	if (n < 0 || (size_t)n >= sizeof(line) || idlen >= sizeof(w->in_force)) {
		errno = EINVAL;
		return -1;
	}
	if (net_write_all(w->fd, line, (size_t)n, deadline) < 0)
		return -1;
	struct clock k = { .silence_ms = INT64_MAX / 4, .end = deadline, .last = now_ms() };
	reply_begin(&w->reply, NULL, LOND_LINE_MAX);
	enum read_rc rc = read_reply(w, &k);
	const char *text = rc == READ_OK ? reply_text(&w->reply, &len) : NULL;
	bool ok = text && len == 2 && !memcmp(text, "ok", 2) && !w->reply.extra;
	reply_end(&w->reply);
	w->in_force[0] = '\0';
	if (!ok) {
		log_msg(LOG_WARNING, "host=%s worker=%u event=sethost_failed id=%.*s hint=sethost_mode",
			hname(w), w->id, (int)idlen, id);
		errno = rc == READ_CLOSED ? ECONNRESET : rc == READ_TIMEOUT ? ETIMEDOUT : EPROTO;
		return -1;
	}
	memcpy(w->in_force, id, idlen);
	w->in_force[idlen] = '\0';
	return 0;
}

/* Send one request line (line[len] is its '\n'), encrypting an
 * encrypt: request; its sethost: prefix as sethost_mode says: in line
 * (inline), as a transaction of its own when the ID changes (separate),
 * or not at all (off).  0 or -1. */
static int send_line(struct worker *w, const char *line, size_t len, int64_t deadline)
{
	const struct host_conf *hc = w->p->conf;
	struct lond_request r;

	lond_parse_request(line, len, &r);
	if (hc->sethost_mode != SETHOST_INLINE) {
		const char *id = r.prefix_len ? line + 8 : hc->ids[0];
		size_t idlen = r.prefix_len ? r.prefix_len - 9 : strlen(hc->ids[0]);

		if (hc->sethost_mode == SETHOST_SEPARATE &&
		    select_id(w, id, idlen, deadline) < 0)
			return -1;
		line += r.prefix_len;
		len -= r.prefix_len;
		r.prefix_len = 0;
	}
	if (!r.encrypt)
		return net_write_all(w->fd, line, len + 1, deadline);
	size_t need = lond_enc_size(r.prefix_len, r.cmd_len);
	if (need > w->wcap) {
		free(w->wbuf);
		w->wcap = need;
		w->wbuf = xmalloc(need);
	}
	long n = lond_enc_encode(w->cipher, line, r.prefix_len, r.cmd, r.cmd_len,
				 w->wbuf);
	if (n < 0) {
		errno = EINVAL;
		return -1;
	}
	int rc = net_write_all(w->fd, w->wbuf, (size_t)n, deadline);
	/* The plain text of an encrypt: request must not linger. */
	memset(w->wbuf, 0, (size_t)n);
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

/* Send a delayed request and read lond's answer into w->reply (the
 * caller reply_end's it).  *k tells a timeout's reason. */
static enum read_rc replay_exchange(struct worker *w, const char *req, size_t len,
				    struct clock *k)
{
	const struct config *cfg = w->p->cfg;

	*k = clock_start(cfg->transaction_timeout_ms, cfg->max_transaction_ms);
	if (send_line(w, req, len, clock_deadline(k)) < 0)
		return errno == ETIMEDOUT ? READ_TIMEOUT : READ_FAILED;
	reply_begin(&w->reply, w->cipher, cfg->max_reply_bytes);
	return read_reply(w, k);
}

/* An answer that points at a protocol setting (lond_answer_hint) is
 * logged with it, once per connection. */
static void note_answer(struct worker *w, const char *req, size_t len)
{
	struct lond_request r;
	size_t alen;
	const char *a = reply_text(&w->reply, &alen);

	if (w->hinted || !a)
		return;
	lond_parse_request(req, len, &r);
	if (w->p->conf->sethost_mode != SETHOST_INLINE)
		r.prefix_len = 0;   /* the prefix did not go out in line */
	const char *hint = lond_answer_hint(&r, w->insecure, a, alen);
	if (hint) {
		log_msg(LOG_WARNING, "host=%s worker=%u event=suspect_answer answer=\"%.*s\" hint=%s",
			hname(w), w->id, alen > 40 ? 40 : (int)alen, a, hint);
		w->hinted = true;
	}
}

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
	if (!w->reply.extra)
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
	enum read_rc rr;
	struct clock k;

	snprintf(req, plen + 1, "sethost:%s:", it->hostid);
	memcpy(req + plen, line, len);
	req[plen + len] = '\n';
	lond_parse_request(req, plen + len, &parsed);
	if (parsed.bad_prefix) {
		/* A line with a sethost: prefix of its own: no form lond
		 * knows, and an encrypt: in it would go out in clear.  It
		 * stays, for an operator to look at. */
		log_msg(LOG_ERR, "host=%s event=delayed_unsendable file=%s reason=bad_sethost_prefix",
			hname(w), it->path);
		rc = REPLAY_SKIPPED;
	} else if ((rr = replay_exchange(w, req, plen + len, &k)) != READ_OK) {
		log_msg(LOG_WARNING, "host=%s worker=%u event=delayed_replay_failed file=%s reason=\"%s\"",
			hname(w), w->id, it->path, rr == READ_TIMEOUT ? timeout_reason(&k) :
			rr == READ_FAILED || rr == READ_SPOOL ? strerror(errno) : read_reasons[rr]);
		rc = REPLAY_BROKEN;
	} else {
		note_answer(w, req, plen + len);
		rc = replay_done(w, it, line, len);
	}
	reply_end(&w->reply);
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
		/* Once a shutdown began, no new file is started: the rest
		 * stays for the next start (stop_deadline). */
		if (stopping())
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
		{ .fd = w->fd, .events = POLLIN },
	};

	if (poll(p, 2, 0) <= 0)
		return 0;
	if (p[0].revents & (POLLHUP | POLLERR))
		return -1;
	*stale = w->served > 0 && p[1].revents != 0;
	return 0;
}

/* Replace the connection by a fresh one.  0 or -1 (logged, counted). */
static int reconnect(struct worker *w)
{
	close(w->fd);
	w->fd = -1;
	crypto_idea_free(w->cipher);
	w->cipher = NULL;
	w->served = 0;
	/* The manager may still read w->result of the first handshake. */
	struct worker_result again = { 0 };
	w->res = &again;
	int rc = handshake(w);
	w->res = &w->result;
	if (rc < 0) {
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
			    const struct clock *k)
{
	int rc = stale ? -1 : send_line(w, c->in.data, c->req_len, clock_deadline(k));

	if (rc < 0 && w->served > 0 && (stale || errno == EPIPE || errno == ECONNRESET)) {
		log_msg(LOG_INFO, "host=%s worker=%u event=stale_connection action=reconnect",
			hname(w), w->id);
		if (reconnect(w) < 0) {
			fail_txn(w, c, "reconnect_failed", NULL);
			return -1;
		}
		rc = send_line(w, c->in.data, c->req_len, clock_deadline(k));
	}
	if (rc < 0) {
		fail_txn(w, c, errno == ETIMEDOUT ? "send_timeout" : "send_failed", NULL);
		return -1;
	}
	w->served++;
	return 0;
}

/* The reply could not be read whole: count it, answer con_lost. */
static void reply_failed(struct worker *w, struct client *c, enum read_rc rc,
			 const struct clock *k)
{
	const char *what = read_reasons[rc], *detail = NULL;

	if (rc == READ_TIMEOUT) {
		what = timeout_reason(k);
		/* A deadline a shutdown brought closer is no fault of lond's. */
		if (strcmp(what, "shutdown_timeout"))
			stats_add(w->p->stats, STAT_timeouts, 1);
	} else if (rc == READ_FAILED || rc == READ_SPOOL) {
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

	if (client_send_reply(c, &w->reply, p->cfg->client_write_timeout_ms) < 0) {
		/* It stopped reading its reply (or left): the one case where
		 * a client is cut off rather than answered con_lost. */
		log_errno(LOG_INFO, "host=%s worker=%u event=client_write_failed bytes=%zu",
			  hname(w), w->id, reply_size(&w->reply) + 1);
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
	struct clock k = clock_start(cfg->transaction_timeout_ms, cfg->max_transaction_ms);
	if (send_with_resend(w, c, stale, &k) < 0)
		return TXN_BROKEN;
	reply_begin(&w->reply, w->cipher, cfg->max_reply_bytes);
	enum read_rc rc = read_reply(w, &k);
	if (rc != READ_OK) {
		reply_failed(w, c, rc, &k);
		reply_end(&w->reply);
		return TXN_BROKEN;
	}
	bool extra = w->reply.extra;
	note_answer(w, c->in.data, c->req_len);
	deliver(w, c);
	reply_end(&w->reply);
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
	if (w->fd >= 0)
		close(w->fd);
	w->fd = -1;
	crypto_idea_free(w->cipher);
	w->cipher = NULL;
	reply_destroy(&w->reply);
	free(w->wbuf);
	w->wbuf = NULL;
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
	reply_init(&w->reply, WORKER_RBUF, cfg->reply_buffer, cfg->spool_dir);
	w->generation = queue_generation(w->p->queue);
	int rc = handshake(w);
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
	w->fd = -1;
	w->res = &w->result;
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

const struct worker_result *worker_result(const struct worker *w)
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

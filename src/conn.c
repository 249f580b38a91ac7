/*
 * conn.c - one authenticated lond connection (conn.h): connect, the
 * handshake plan walked step by step, requests sent as the switches say,
 * every line read by one reader.  One thread per struct conn; no locks
 * of its own.  May call: lond, reply, net, crypto, stats, config, log,
 * util.
 */
#include "conn.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "crypto.h"
#include "log.h"
#include "lond.h"
#include "net.h"
#include "stats.h"

#define CONN_RBUF (64 * 1024)   /* the reply buffer's usual size */
/* A receive waits this long at most before the deadlines are looked at
 * again (the transaction's, and a shutdown's that may begin meanwhile). */
#define RECV_SLICE_MS 50

/* A line for the transcript, if one is kept. */
static void trace(struct conn *c, bool sent, const char *line, size_t len, bool secret)
{
	if (c->trace)
		c->trace(c->trace_arg, sent, secret ? NULL : line, len);
}

static bool is_loopback(const char *addr)
{
	return !strncmp(addr, "127.", 4) || !strcmp(addr, "::1") || !strcmp(addr, "localhost");
}

/* Where to connect.  Local mode is for this machine's own lond over
 * loopback only (lond reads a key file lonc wrote): whatever address or
 * hostname the host entry has (hosts.tab gives the public one), it
 * connects to 127.0.0.1 unless the entry names a loopback address. */
static const char *connect_target(const struct conn *c)
{
	const struct host_conf *hc = c->conf;
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


struct conn_clock conn_clock(int64_t silence_ms, int64_t whole_ms)
{
	int64_t now = now_ms();

	return (struct conn_clock){ .silence_ms = silence_ms, .end = now + whole_ms,
			       .last = now };
}

int64_t conn_deadline(const struct conn_clock *k)
{
	int64_t d = k->last + k->silence_ms;

	return within_shutdown(d < k->end ? d : k->end);
}

/* Which limit a timed-out exchange ran into. */
static const char *timeout_reason(const struct conn_clock *k)
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
static ssize_t recv_some(struct conn *c, void *buf, size_t len,
			 const struct conn_clock *k)
{
	for (;;) {
		int64_t now = now_ms(), stop = conn_deadline(k);

		if (now >= stop) {
			errno = ETIMEDOUT;
			return -1;
		}
		int64_t slice = now + RECV_SLICE_MS;
		ssize_t n = c->sliced ? net_recv_slice(c->fd, buf, len) :
			    net_read(c->fd, buf, len, slice < stop ? slice : stop);

		if (n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK &&
			       errno != ETIMEDOUT))
			return n;
	}
}


static const char *const read_reasons[] = {
	[CONN_OK] = "ok", [CONN_TIMEOUT] = "timed out",
	[CONN_CLOSED] = "closed_by_lond", [CONN_FAILED] = "read_failed",
	[CONN_BAD] = "bad_enc_reply", [CONN_TOO_LONG] = "reply_too_long",
	[CONN_SPOOL] = "spool_failed",
};

/* Read one line from lond into c->reply (reply_begin'd by the caller),
 * the one reader of everything lond says. */
static enum conn_read read_reply(struct conn *c, struct conn_clock *k)
{
	for (;;) {
		size_t room;
		char *p = reply_space(&c->reply, &room);

		if (!p)
			return errno == EMSGSIZE ? CONN_TOO_LONG : CONN_SPOOL;
		ssize_t n = recv_some(c, p, room, k);
		if (n == 0)
			return CONN_CLOSED;
		if (n < 0)
			return errno == ETIMEDOUT ? CONN_TIMEOUT : CONN_FAILED;
		k->last = now_ms();
		switch (reply_commit(&c->reply, (size_t)n)) {
		case REPLY_DONE: return CONN_OK;
		case REPLY_BAD: return CONN_BAD;
		case REPLY_TOO_LONG: return CONN_TOO_LONG;
		case REPLY_MORE: break;
		}
	}
}

static void set_result(struct conn *c, bool refused, bool timed_out,
		       const char *fmt, ...) PRINTF_LIKE(4, 5);

/* An errno that says lonc itself ran short, not the host. */
static bool local_errno(int e)
{
	return e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM || e == ENOSPC ||
	       e == EDQUOT;
}

static void set_result(struct conn *c, bool refused, bool timed_out,
		       const char *fmt, ...)
{
	va_list ap;

	c->res->ok = false;
	c->res->hint = NULL;
	c->res->no_exchange = false;
	c->res->local = false;
	c->res->refused = refused;
	c->res->timed_out = timed_out;
	va_start(ap, fmt);
	vsnprintf(c->res->reason, sizeof(c->res->reason), fmt, ap);
	va_end(ap);
}

/* Local mode: a fresh random key in a new file only we can read. */
static int write_local_key(struct conn *c, struct lond_handshake *hs,
			   char *path, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char raw[LOND_KEY_LEN];
	uint32_t tag;
	int fd;

	if (crypto_random(raw, sizeof(raw)) < 0 || crypto_random(&tag, sizeof(tag)) < 0) {
		set_result(c, false, false, "local key: no random bytes");
		return -1;
	}
	for (size_t i = 0; i < sizeof(raw); i++) {
		hs->local_key[2 * i] = hex[raw[i] >> 4];
		hs->local_key[2 * i + 1] = hex[raw[i] & 15];
	}
	hs->local_key[2 * LOND_KEY_LEN] = '\0';
	memset(raw, 0, sizeof(raw));
	snprintf(path, n, "%s/lonc.%ld.%u.%08x.key", c->cfg->local_key_dir,
		 (long)getpid(), c->id, tag);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		int e = errno;
		set_result(c, false, false, "local key file %s: %s", path, strerror(e));
		c->res->no_exchange = true;
		c->res->local = local_errno(e);
		return -1;
	}
	char buf[2 * LOND_KEY_LEN + 1];
	memcpy(buf, hs->local_key, 2 * LOND_KEY_LEN);
	buf[2 * LOND_KEY_LEN] = '\n';
	ssize_t wr = write(fd, buf, sizeof(buf));
	memset(buf, 0, sizeof(buf));
	if (close(fd) < 0 || wr != (ssize_t)sizeof(buf)) {
		int e = errno;
		set_result(c, false, false, "local key file %s: write failed", path);
		c->res->no_exchange = true;
		c->res->local = local_errno(e);
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

/* One step's line from lond (whole, nothing after it) into c->reply.
 * 0, or -1 with the reason in *why. */
static int step_answer(struct conn *c, struct conn_clock *k, const char **why)
{
	reply_begin(&c->reply, NULL, LOND_LINE_MAX);
	enum conn_read rc = read_reply(c, k);

	*why = rc == CONN_FAILED ? strerror(errno) : rc == CONN_CLOSED ?
	       "connection closed" : rc == CONN_TOO_LONG ? "reply line too long" :
	       read_reasons[rc];
	if (rc == CONN_OK && c->reply.extra) {
		*why = "extra data after the reply";
		return -1;
	}
	return rc == CONN_OK ? 0 : -1;
}

/* The TLS step: lond's key line, read over TLS, into line. */
static int tls_step(struct conn *c, int64_t deadline, char *line, size_t *len)
{
	char err[256] = "";

	if (!c->tls) {
		set_result(c, false, false, "ssl mode without a TLS context");
		return -1;
	}
	if (crypto_tls_key_exchange(c->tls, c->fd, c->conf->tls_name, deadline,
				    c->conf->tls_close_notify == CLOSE_NOTIFY_LENIENT,
				    line, LOND_LINE_MAX, len, err, sizeof(err)) < 0) {
		set_result(c, false, errno == ETIMEDOUT, "%s", err);
		if (strstr(err, "close_notify"))
			c->res->hint = "tls_close_notify";
		return -1;
	}
	return 0;
}

/* Send the current step's line and feed lond's answer to the plan.
 * 1 when the handshake is done, 0 for the next step, -1 failed. */
static int run_step(struct conn *c, struct lond_handshake *hs, struct conn_clock *k)
{
	enum lond_step step = lond_handshake_step(hs);
	char line[LOND_LINE_MAX];
	int len = lond_handshake_request(hs, line, sizeof(line));
	const char *text = line, *why;
	size_t rlen;
	int rc;

	if (len < 0) {
		set_result(c, false, false, "handshake step %s: line too long",
			   lond_step_name(step));
		return -1;
	}
	if (step != LOND_STEP_TLS)
		trace(c, true, line, (size_t)len - 1, step == LOND_STEP_CHALLENGE);
	if (step == LOND_STEP_TLS) {
		if (tls_step(c, k->end, line, &rlen) < 0)
			return -1;
		trace(c, false, line, rlen, true);
	} else if (net_write_all(c->fd, line, (size_t)len, k->end) < 0) {
		set_result(c, false, errno == ETIMEDOUT, "handshake step %s: %s",
			   lond_step_name(step), errno == ETIMEDOUT ? "timed out" :
			   strerror(errno));
		return -1;
	} else if (step_answer(c, k, &why) < 0) {
		set_result(c, false, !strcmp(why, "timed out"), "handshake step %s: %s",
			   lond_step_name(step), why);
		return -1;
	} else {
		text = reply_text(&c->reply, &rlen);
	}
	rc = lond_handshake_reply(hs, text, rlen);
	/* A challenge or buildkey lond's answer was taken as is a secret;
	 * an answer refused (refused, unknown_cmd, ...) is shown. */
	if (step != LOND_STEP_TLS)
		trace(c, false, text, rlen, rc >= 0 && (step == LOND_STEP_INIT ||
		      step == LOND_STEP_EKEY || (step == LOND_STEP_INIT_SSL && rlen != 6)));
	memset(line, 0, sizeof(line));
	reply_wipe(&c->reply);
	reply_end(&c->reply);
	if (rc < 0) {
		set_result(c, hs->refused, false, "handshake step %s: %s",
			   lond_step_name(step), hs->error);
		c->res->hint = hs->hint;
	}
	return rc;
}

/* Walk the handshake plan over the connected socket. */
static int run_steps(struct conn *c, struct lond_handshake *hs, int64_t deadline)
{
	struct conn_clock k = { .silence_ms = INT64_MAX / 4, .end = deadline,
			   .last = now_ms() };
	int rc;

	while ((rc = run_step(c, hs, &k)) == 0)
		;
	return rc < 0 ? -1 : 0;
}

static int connect_handshake(struct conn *c)
{
	const struct host_conf *hc = c->conf;
	const struct config *cfg = c->cfg;
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
	c->fd = net_connect_tcp(connect_target(c), hc->port, deadline, &why);
	if (c->fd < 0) {
		int e = errno;
		set_result(c, e == ECONNREFUSED, e == ETIMEDOUT,
			   "connect to %s port %d: %s", connect_target(c),
			   hc->port, why);
		c->res->no_exchange = true;
		c->res->local = local_errno(e);
		return -1;
	}
	if (hs.mode == LOND_MODE_LOCAL &&
	    write_local_key(c, &hs, key_path, sizeof(key_path)) < 0)
		return -1;
	rc = run_steps(c, &hs, now_ms() + cfg->handshake_timeout_ms);
	/* lond deletes the file; if it did not, we do. */
	if (hs.mode == LOND_MODE_LOCAL && unlink(key_path) == 0)
		log_msg(LOG_INFO, "host=%s worker=%u event=local_key_removed",
			c->name, c->id);
	if (rc < 0)
		goto out;
	if (hs.fell_back)
		log_msg(LOG_WARNING, "host=%s worker=%u event=ssl_fallback_insecure reason=\"lond answered init:ssl with a challenge\"",
			c->name, c->id);
	c->cipher = crypto_idea_new(hs.key);
	if (!c->cipher) {
		set_result(c, false, false, "cannot set up the IDEA cipher");
		rc = -1;
		goto out;
	}
	if (net_set_recv_slice(c->fd, RECV_SLICE_MS) < 0) {
		set_result(c, false, false, "socket options: %s", strerror(errno));
		rc = -1;
		goto out;
	}
	c->sliced = true;
	/* The host ID in force on the connection (sethost_mode separate). */
	str_copy(c->in_force, hc->sethost_step ? hc->ids[0] : "", sizeof(c->in_force));
	c->hinted = false;
	c->enc_worked = false;
	c->insecure = hs.mode == LOND_MODE_INSECURE || hs.fell_back;
	str_copy(c->peer_version, hs.peer_version, sizeof(c->peer_version));
	if (c->stats)
		stats_peer(c->stats, hs.peer_version, hs.fell_back ? "insecure(fallback)" :
			   lond_mode_name(hs.mode));
	c->res->ok = true;
out:
	memset(&hs, 0, sizeof(hs));
	return rc;
}


/* sethost_mode separate: make `id` the host ID in force on the
 * connection with a sethost:<id> transaction, unless it is already.  0,
 * or -1 with errno (a closed connection gives ECONNRESET, so that the
 * request, not yet sent, goes out on a fresh one; EPROTO when lond did
 * not answer ok). */
static int select_id(struct conn *c, const char *id, size_t idlen, int64_t deadline)
{
	char line[300];
	size_t len;

	if (idlen < sizeof(c->in_force) && !strncmp(c->in_force, id, idlen) &&
	    !c->in_force[idlen])
		return 0;
	int n = snprintf(line, sizeof(line), "sethost:%.*s\n", (int)idlen, id);
	if (n < 0 || (size_t)n >= sizeof(line) || idlen >= sizeof(c->in_force)) {
		errno = EINVAL;
		return -1;
	}
	trace(c, true, line, (size_t)n - 1, false);
	if (net_write_all(c->fd, line, (size_t)n, deadline) < 0)
		return -1;
	struct conn_clock k = { .silence_ms = INT64_MAX / 4, .end = deadline, .last = now_ms() };
	reply_begin(&c->reply, NULL, LOND_LINE_MAX);
	enum conn_read rc = read_reply(c, &k);
	int err = errno;
	const char *text = rc == CONN_OK ? reply_text(&c->reply, &len) : NULL;
	if (text)
		trace(c, false, text, len, false);
	bool ok = text && len == 2 && !memcmp(text, "ok", 2) && !c->reply.extra;
	reply_end(&c->reply);
	c->in_force[0] = '\0';
	if (!ok && text) {
		/* lond answered, but not ok: the switch is the suspect. */
		log_msg(LOG_WARNING, "host=%s worker=%u event=sethost_failed id=%.*s hint=sethost_mode",
			c->name, c->id, (int)idlen, id);
		errno = EPROTO;
		return -1;
	}
	if (!ok) {
		/* No answer: the connection's failure, as any read's (a reset
		 * keeps its errno, so the request may go on a fresh one). */
		log_msg(LOG_WARNING, "host=%s worker=%u event=sethost_failed id=%.*s reason=%s",
			c->name, c->id, (int)idlen, id, conn_read_reason(rc, &k));
		errno = rc == CONN_CLOSED ? ECONNRESET : rc == CONN_TIMEOUT ? ETIMEDOUT :
			rc == CONN_FAILED ? err : EPROTO;
		return -1;
	}
	memcpy(c->in_force, id, idlen);
	c->in_force[idlen] = '\0';
	return 0;
}

/* Send one request line (line[len] is its '\n'), encrypting an
 * encrypt: request; its sethost: prefix as sethost_mode says: in line
 * (inline), as a transaction of its own when the ID changes (separate),
 * or not at all (off).  0 or -1. */
static int send_line(struct conn *c, const char *line, size_t len, int64_t deadline)
{
	const struct host_conf *hc = c->conf;
	struct lond_request r;

	lond_parse_request(line, len, &r);
	if (hc->sethost_mode != SETHOST_INLINE) {
		const char *id = r.prefix_len ? line + 8 : hc->ids[0];
		size_t idlen = r.prefix_len ? r.prefix_len - 9 : strlen(hc->ids[0]);

		if (hc->sethost_mode == SETHOST_SEPARATE &&
		    select_id(c, id, idlen, deadline) < 0)
			return -1;
		line += r.prefix_len;
		len -= r.prefix_len;
		r.prefix_len = 0;
	}
	/* An encrypt: request's text is a secret (in the transcript too). */
	trace(c, true, line, len, r.encrypt);
	if (!r.encrypt)
		return net_write_all(c->fd, line, len + 1, deadline);
	size_t need = lond_enc_size(r.prefix_len, r.cmd_len);
	if (need > c->wcap) {
		free(c->wbuf);
		c->wcap = need;
		c->wbuf = xmalloc(need);
	}
	long n = lond_enc_encode(c->cipher, line, r.prefix_len, r.cmd, r.cmd_len,
				 c->wbuf);
	if (n < 0) {
		errno = EINVAL;
		return -1;
	}
	int rc = net_write_all(c->fd, c->wbuf, (size_t)n, deadline);
	/* The plain text of an encrypt: request must not linger. */
	memset(c->wbuf, 0, (size_t)n);
	return rc;
}


enum conn_read conn_exchange(struct conn *c, const char *req, size_t len,
			     struct conn_clock *k)
{
	const struct config *cfg = c->cfg;

	*k = conn_clock(cfg->transaction_timeout_ms, cfg->max_transaction_ms);
	if (send_line(c, req, len, conn_deadline(k)) < 0)
		return errno == ETIMEDOUT ? CONN_TIMEOUT : CONN_FAILED;
	return conn_read(c, k, cfg->max_reply_bytes);
}

const char *conn_answer_hint(struct conn *c, const char *req, size_t len)
{
	struct lond_request r;
	size_t alen;
	const char *a = reply_text(&c->reply, &alen);

	if (!a)
		return NULL;
	lond_parse_request(req, len, &r);
	if (c->conf->sethost_mode != SETHOST_INLINE)
		r.prefix_len = 0;   /* the prefix did not go out in line */
	const char *hint = lond_answer_hint(&r, c->insecure, c->enc_worked, a, alen);
	if (r.encrypt && !hint && !lond_is_error(a, alen))
		c->enc_worked = true;
	return hint;
}

void conn_note_answer(struct conn *c, const char *req, size_t len)
{
	size_t alen;
	const char *a = reply_text(&c->reply, &alen);
	const char *hint = a ? conn_answer_hint(c, req, len) : NULL;

	if (hint && !c->hinted) {
		log_msg(LOG_WARNING, "host=%s worker=%u event=suspect_answer answer=\"%.*s\" hint=%s",
			c->name, c->id, alen > 40 ? 40 : (int)alen, a, hint);
		c->hinted = true;
	}
}


/* ---- the public side ------------------------------------------------ */

void conn_init(struct conn *c, const struct config *cfg, const struct host_conf *conf,
	       struct crypto_tls *tls, struct stats *stats, unsigned id)
{
	memset(c, 0, sizeof(*c));
	c->cfg = cfg;
	c->conf = conf;
	c->tls = tls;
	c->stats = stats;
	c->name = conf->hostname;
	c->id = id;
	c->fd = -1;
	reply_init(&c->reply, CONN_RBUF, cfg->reply_buffer, cfg->spool_dir);
}

int conn_open(struct conn *c, struct conn_result *res)
{
	*res = (struct conn_result){ 0 };
	c->res = res;
	c->served = 0;
	if (connect_handshake(c) == 0)
		return 0;
	conn_close(c);
	return -1;
}

void conn_close(struct conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->sliced = false;
	crypto_idea_free(c->cipher);
	c->cipher = NULL;
}

void conn_destroy(struct conn *c)
{
	conn_close(c);
	reply_destroy(&c->reply);
	free(c->wbuf);
	c->wbuf = NULL;
}

int conn_send(struct conn *c, const char *line, size_t len, int64_t deadline)
{
	int rc = send_line(c, line, len, deadline);

	if (rc == 0)
		c->served++;
	return rc;
}

enum conn_read conn_read(struct conn *c, struct conn_clock *k, size_t max_line)
{
	reply_begin(&c->reply, c->cipher, max_line);
	enum conn_read rc = read_reply(c, k);
	size_t len;
	const char *text = rc == CONN_OK ? reply_text(&c->reply, &len) : NULL;

	if (text)
		trace(c, false, text, len, false);
	return rc;
}

const char *conn_read_reason(enum conn_read rc, const struct conn_clock *k)
{
	return rc == CONN_TIMEOUT && k ? timeout_reason(k) : read_reasons[rc];
}

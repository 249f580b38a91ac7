/*
 * lond.c - lond's wire protocol, encode and decode only.
 *
 * The handshake is a plan (a list of named steps) walked by
 * lond_handshake_request/reply, so each reconstructed step of
 * protocol.md can be changed or switched off on its own.  The caller
 * (worker.c) does the I/O.  Pure functions; no locks, no globals.
 * May call: crypto, util.
 */
#include "lond.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

static const char *const step_names[] = {
	[LOND_STEP_INIT] = "init",
	[LOND_STEP_INIT_SSL] = "init_ssl",
	[LOND_STEP_TLS] = "tls",
	[LOND_STEP_INIT_LOCAL] = "init_local",
	[LOND_STEP_CHALLENGE] = "challenge",
	[LOND_STEP_VERSION] = "version",
	[LOND_STEP_SETHOST] = "sethost",
	[LOND_STEP_EKEY] = "ekey",
	[LOND_STEP_DONE] = "done",
};

const char *lond_step_name(enum lond_step step)
{
	return step_names[step];
}

const char *lond_mode_name(enum lond_mode mode)
{
	static const char *const names[] = {
		[LOND_MODE_INSECURE] = "insecure", [LOND_MODE_SSL] = "ssl",
		[LOND_MODE_LOCAL] = "local",
	};
	return names[mode];
}

/* Append the steps that follow the key mode's first exchange, from
 * plan[n] on; returns the new length (plan ends with DONE). */
static int plan_tail(struct lond_handshake *hs, int n, bool ekey)
{
	if (hs->version_step)
		hs->plan[n++] = LOND_STEP_VERSION;
	if (hs->sethost_step)
		hs->plan[n++] = LOND_STEP_SETHOST;
	if (ekey)
		hs->plan[n++] = LOND_STEP_EKEY;
	hs->plan[n] = LOND_STEP_DONE;
	return n;
}

void lond_handshake_init(struct lond_handshake *hs, enum lond_mode mode,
			 const char *our_id, const char *peer_id,
			 const char *version, bool version_step,
			 bool sethost_step)
{
	int n = 0;

	memset(hs, 0, sizeof(*hs));
	hs->mode = mode;
	hs->our_id = our_id;
	hs->peer_id = peer_id;
	hs->version = version;
	hs->version_step = version_step;
	hs->sethost_step = sethost_step;
	switch (mode) {
	case LOND_MODE_INSECURE:
		hs->plan[n++] = LOND_STEP_INIT;
		hs->plan[n++] = LOND_STEP_CHALLENGE;
		plan_tail(hs, n, true);
		break;
	case LOND_MODE_SSL:
		hs->plan[n++] = LOND_STEP_INIT_SSL;
		hs->plan[n++] = LOND_STEP_TLS;
		plan_tail(hs, n, false);
		break;
	case LOND_MODE_LOCAL:
		hs->plan[n++] = LOND_STEP_INIT_LOCAL;
		plan_tail(hs, n, false);
		break;
	}
}

enum lond_step lond_handshake_step(const struct lond_handshake *hs)
{
	return hs->plan[hs->at];
}

int lond_handshake_request(const struct lond_handshake *hs, char *buf, size_t n)
{
	int len;

	switch (lond_handshake_step(hs)) {
	case LOND_STEP_INIT:
		len = hs->init_version && *hs->init_version ?
		      snprintf(buf, n, "init::%s\n", hs->init_version) :
		      snprintf(buf, n, "init\n");
		break;
	case LOND_STEP_INIT_SSL:
		len = hs->init_version && *hs->init_version ?
		      snprintf(buf, n, "init:ssl:%s\n", hs->init_version) :
		      snprintf(buf, n, "init:ssl\n");
		break;
	case LOND_STEP_TLS:
		return n > 0 ? (buf[0] = '\0', 0) : -1;
	case LOND_STEP_INIT_LOCAL:
		len = snprintf(buf, n, "init:local:%s\n", hs->local_path);
		break;
	case LOND_STEP_CHALLENGE:
		len = snprintf(buf, n, "%s\n", hs->challenge);
		break;
	case LOND_STEP_VERSION:
		len = snprintf(buf, n, "version:%s\n", hs->version);
		break;
	case LOND_STEP_SETHOST:
		len = snprintf(buf, n, "sethost:%s\n", hs->peer_id);
		break;
	case LOND_STEP_EKEY:
		len = snprintf(buf, n, "ekey\n");
		break;
	default:
		return -1;
	}
	return len < 0 || (size_t)len >= n ? -1 : len;
}

static bool is_line(const char *line, size_t len, const char *word)
{
	return len == strlen(word) && memcmp(line, word, len) == 0;
}

static bool all_digits(const char *s, size_t len)
{
	if (len == 0)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!isdigit((unsigned char)s[i]))
			return false;
	return true;
}

static bool all_hex(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (!isxdigit((unsigned char)s[i]))
			return false;
	return true;
}

/* Printable, no separators: what a buildkey may contain. */
static bool is_token(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (!isgraph((unsigned char)s[i]))
			return false;
	return len > 0;
}

static int step_fail(struct lond_handshake *hs, const char *why)
{
	hs->error = why;
	return -1;
}

/* Answers any step may get: `refused` fails it; `unknown_cmd` to an
 * optional step names the switch that turns it off.  -1 when failed. */
static int any_step(struct lond_handshake *hs, const char *line, size_t len)
{
	enum lond_step step = lond_handshake_step(hs);

	if (is_line(line, len, "refused")) {
		hs->refused = true;
		/* Refused at the first line: lond may want the other init. */
		if (step == LOND_STEP_INIT || step == LOND_STEP_INIT_SSL)
			hs->hint = "init_version";
		/* Refused at the version: lond may compare the version. */
		else if (step == LOND_STEP_VERSION)
			hs->hint = "version_string";
		return step_fail(hs, "lond refused the connection");
	}
	if (is_line(line, len, "unknown_cmd") &&
	    (step == LOND_STEP_VERSION || step == LOND_STEP_SETHOST))
		hs->hint = step == LOND_STEP_VERSION ? "version_step" : "sethost_step";
	return 0;
}

int lond_handshake_reply(struct lond_handshake *hs, const char *line, size_t len)
{
	if (len > 0 && line[len - 1] == '\r')
		len--;
	if (any_step(hs, line, len) < 0)
		return -1;
	switch (lond_handshake_step(hs)) {
	case LOND_STEP_INIT:
		if (!all_digits(line, len) || len >= sizeof(hs->challenge))
			return step_fail(hs, "the challenge is not a line of digits");
		memcpy(hs->challenge, line, len);
		hs->challenge[len] = '\0';
		break;
	case LOND_STEP_INIT_SSL:
		if (is_line(line, len, "ok:ssl"))
			break;
		if (!all_digits(line, len) || len >= sizeof(hs->challenge))
			return step_fail(hs, "init:ssl was answered neither ok:ssl nor a challenge");
		if (!hs->allow_insecure)
			return step_fail(hs, "lond has no certificates (it sent a challenge) and allow_insecure is false");
		/* lond without certificates: go on as insecure mode. */
		memcpy(hs->challenge, line, len);
		hs->challenge[len] = '\0';
		hs->fell_back = true;
		hs->plan[hs->at + 1] = LOND_STEP_CHALLENGE;
		plan_tail(hs, hs->at + 2, true);
		break;
	case LOND_STEP_TLS:
		/* The key line read over TLS: 32 hex digits. */
		if (len != 2 * LOND_KEY_LEN || !all_hex(line, len))
			return step_fail(hs, "the key sent over TLS is not 32 hex digits");
		lond_pack_h32(line, len, hs->key);
		hs->have_key = true;
		break;
	case LOND_STEP_INIT_LOCAL:
		if (!is_line(line, len, "ok:local"))
			return step_fail(hs, "init:local was not answered ok:local");
		lond_pack_h32(hs->local_key, 2 * LOND_KEY_LEN, hs->key);
		hs->have_key = true;
		break;
	case LOND_STEP_CHALLENGE:
	case LOND_STEP_SETHOST:
		if (!is_line(line, len, "ok")) {
			if (lond_handshake_step(hs) == LOND_STEP_SETHOST)
				hs->hint = "sethost_step";
			return step_fail(hs, lond_handshake_step(hs) == LOND_STEP_SETHOST ?
					 "sethost was not answered ok" :
					 "the challenge was not answered ok");
		}
		break;
	case LOND_STEP_VERSION:
		/* lond answers with its own version string, whatever it is
		 * (a Perl lond's may be "$Revision: 1.489 $"): any line is
		 * taken.  It is kept for the status output, where control
		 * characters and quotes would garble a line or a field, and a
		 * byte that is not ASCII might not be UTF-8 (JSON). */
		if (len >= sizeof(hs->peer_version))
			len = sizeof(hs->peer_version) - 1;
		for (size_t i = 0; i < len; i++) {
			unsigned char ch = (unsigned char)line[i];

			hs->peer_version[i] = ch < 0x20 || ch >= 0x7f || ch == '"' ||
					      ch == '\\' ? '?' : (char)ch;
		}
		hs->peer_version[len] = '\0';
		break;
	case LOND_STEP_EKEY:
		if (!is_token(line, len) || len > 64)
			return step_fail(hs, "the ekey reply is not a key word");
		if (hs->local_first)
			lond_session_key(hs->our_id, hs->peer_id, line, len, hs->key);
		else
			lond_session_key(hs->peer_id, hs->our_id, line, len, hs->key);
		hs->have_key = true;
		break;
	default:
		return step_fail(hs, "handshake already finished");
	}
	hs->at++;
	return lond_handshake_step(hs) == LOND_STEP_DONE ? 1 : 0;
}

void lond_pack_h32(const char *s, size_t n, unsigned char out[LOND_KEY_LEN])
{
	memset(out, 0, LOND_KEY_LEN);
	if (n > 2 * LOND_KEY_LEN)
		n = 2 * LOND_KEY_LEN;
	for (size_t i = 0; i < n; i++) {
		unsigned c = (unsigned char)s[i];
		unsigned nib = isalpha(c) ? ((c & 0x0f) + 9) & 0x0f : c & 0x0f;

		out[i / 2] |= (unsigned char)(i % 2 ? nib : nib << 4);
	}
}

void lond_session_key(const char *peer_id, const char *our_id,
		      const char *buildkey, size_t buildkey_len,
		      unsigned char key[LOND_KEY_LEN])
{
	char ids[2 * 256];
	char s[2 * LOND_KEY_LEN];
	size_t nids = 0, n = 0;

	/* <peer id><our id>, upper-cased, G..P and Q..Z mapped to digits. */
	for (const char *p = peer_id; *p && nids < sizeof(ids) / 2; p++)
		ids[nids++] = *p;
	for (const char *p = our_id; *p && nids < sizeof(ids); p++)
		ids[nids++] = *p;
	for (size_t i = 0; i < nids; i++) {
		int c = toupper((unsigned char)ids[i]);

		if (c >= 'G' && c <= 'P')
			c = '0' + (c - 'G');
		else if (c >= 'Q' && c <= 'Z')
			c = '0' + (c - 'Q');
		ids[i] = (char)c;
	}
	/* (ids . buildkey) three times, first 32 characters. */
	for (int rep = 0; rep < 3 && n < sizeof(s); rep++) {
		for (size_t i = 0; i < nids && n < sizeof(s); i++)
			s[n++] = ids[i];
		for (size_t i = 0; i < buildkey_len && n < sizeof(s); i++)
			s[n++] = buildkey[i];
	}
	lond_pack_h32(s, n, key);
}

static const char sethost_word[] = "sethost:";
#define SETHOST_LEN (sizeof(sethost_word) - 1)

static bool starts_sethost(const char *s, size_t len)
{
	return len >= SETHOST_LEN && memcmp(s, sethost_word, SETHOST_LEN) == 0;
}

void lond_parse_request(const char *line, size_t len, struct lond_request *r)
{
	static const char encrypt[] = "encrypt:";
	size_t el = sizeof(encrypt) - 1;

	r->prefix_len = 0;
	r->bad_prefix = false;
	if (len > SETHOST_LEN && starts_sethost(line, len)) {
		const char *colon = memchr(line + SETHOST_LEN, ':', len - SETHOST_LEN);

		/* Only "sethost:<id>:<rest>" carries a prefix; a bare
		 * "sethost:<id>" is an ordinary command.  An empty <id>, or
		 * a second prefix in <rest>, is no form lond knows: lonc
		 * could not tell what to encrypt, so such a line is refused
		 * rather than sent (lond_request.bad_prefix). */
		if (colon == line + SETHOST_LEN)
			r->bad_prefix = true;
		else if (colon)
			r->prefix_len = (size_t)(colon - line) + 1;
		if (r->prefix_len && starts_sethost(line + r->prefix_len, len - r->prefix_len))
			r->bad_prefix = true;
	}
	r->cmd = line + r->prefix_len;
	r->cmd_len = len - r->prefix_len;
	r->encrypt = r->cmd_len >= el && memcmp(r->cmd, encrypt, el) == 0;
	if (r->encrypt) {
		r->cmd += el;
		r->cmd_len -= el;
	}
}

enum lond_local lond_local_command(const char *line, size_t len)
{
	struct lond_request r;

	if (len > 0 && line[len - 1] == '\r')
		len--;
	lond_parse_request(line, len, &r);
	if (r.bad_prefix)
		return LOND_LOCAL_BAD_SETHOST;
	if (r.encrypt)
		return LOND_LOCAL_NONE;
	/* A bare sethost:<id> would re-address the pooled connection for
	 * whoever uses it next. */
	if (r.prefix_len == 0 && starts_sethost(line, len))
		return LOND_LOCAL_HANDSHAKE;
	/* After a sethost:<id>: prefix too: lonnet may address any request
	 * to a host ID, and these are still lonc's business. */
	if (is_line(r.cmd, r.cmd_len, "ekey") || is_line(r.cmd, r.cmd_len, "init") ||
	    (r.cmd_len >= 5 && memcmp(r.cmd, "init:", 5) == 0))
		return LOND_LOCAL_HANDSHAKE;
	if (is_line(r.cmd, r.cmd_len, "reset_retries"))
		return LOND_LOCAL_RESET_RETRIES;
	if (is_line(r.cmd, r.cmd_len, "close_connection_exit"))
		return LOND_LOCAL_CLOSE_CONNECTIONS;
	return LOND_LOCAL_NONE;
}

bool lond_is_error(const char *a, size_t len)
{
	static const char *const errs[] = { "unknown_cmd", "refused", "rejected", NULL };

	if (len > 0 && a[len - 1] == '\r')
		len--;
	for (const char *const *e = errs; *e; e++)
		if (is_line(a, len, *e))
			return true;
	return len >= 6 && !memcmp(a, "error:", 6);
}

const char *lond_answer_hint(const struct lond_request *r, bool insecure, bool enc_worked,
			     const char *answer, size_t len)
{
	if (len > 0 && answer[len - 1] == '\r')     /* as lond_is_error */
		len--;
	bool unknown = is_line(answer, len, "unknown_cmd");
	bool error = len >= 6 && !memcmp(answer, "error:", 6);

	if (r->encrypt && insecure && !enc_worked) {
		if (r->prefix_len && unknown)
			return "sethost_mode,key_id_order";
		if (unknown || error)
			return "key_id_order";
	}
	if (r->prefix_len && unknown)
		return "sethost_mode";
	return NULL;
}

size_t lond_enc_size(size_t prefix_len, size_t cmd_len)
{
	size_t blocks = cmd_len / CRYPTO_IDEA_BLOCK + 1;

	/* prefix "enc:" <len> ":" hex "\n" */
	return prefix_len + 4 + 20 + 1 + blocks * 2 * CRYPTO_IDEA_BLOCK + 1;
}

static const char hexdigits[] = "0123456789abcdef";

long lond_enc_encode(struct crypto_idea *c, const char *prefix,
		     size_t prefix_len, const char *cmd, size_t cmd_len,
		     char *out)
{
	size_t blocks = cmd_len / CRYPTO_IDEA_BLOCK + 1;
	size_t plain_len = blocks * CRYPTO_IDEA_BLOCK;
	char *p = out;

	memcpy(p, prefix, prefix_len);
	p += prefix_len;
	p += sprintf(p, "enc:%zu:", cmd_len);
	/* Encrypt in the tail of the hex area, then expand to hex from the
	 * front: hex takes twice the room, so it never overtakes. */
	unsigned char *raw = (unsigned char *)p + plain_len;
	memcpy(raw, cmd, cmd_len);
	memset(raw + cmd_len, ' ', plain_len - cmd_len);
	if (crypto_idea_encrypt(c, raw, plain_len) < 0)
		return -1;
	for (size_t i = 0; i < plain_len; i++) {
		unsigned char b = raw[i];

		p[2 * i] = hexdigits[b >> 4];
		p[2 * i + 1] = hexdigits[b & 15];
	}
	p += 2 * plain_len;
	*p++ = '\n';
	return (long)(p - out);
}

bool lond_is_enc(const char *line, size_t len)
{
	return len >= 4 && memcmp(line, "enc:", 4) == 0;
}

/* The value of a hex digit, or -1. */
static int hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c |= 0x20;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* States of struct lond_reply. */
enum { LR_START, LR_PLAIN, LR_LEN, LR_LEN_DIGITS, LR_HEX, LR_CR, LR_DONE, LR_BAD };

#define HEX_PER_BLOCK (2 * CRYPTO_IDEA_BLOCK)

void lond_reply_init(struct lond_reply *r, struct crypto_idea *cipher)
{
	memset(r, 0, sizeof(*r));
	r->cipher = cipher;
	r->state = LR_START;
}

static enum lond_reply_rc reply_bad(struct lond_reply *r, const char *why)
{
	r->state = LR_BAD;
	r->error = why;
	return LOND_REPLY_BAD;
}

/* Plain text of a decrypted block (or of several): only what the length
 * given in the frame still wants; the rest is the padding. */
static size_t take_plain(struct lond_reply *r, size_t n)
{
	size_t want = r->declared - r->plain;

	if (n > want)
		n = want;
	r->plain += n;
	return n;
}

/* Whole blocks of hex at buf[*i..n): converted to bytes at buf[*o..]
 * and decrypted in one call.  In place: byte j goes to *o + j, and
 * *o + j <= *i + 2j, which is read already.  A piece of a block at the
 * end is left for the next call (with what follows it). */
static int hex_blocks(struct lond_reply *r, char *buf, size_t n, size_t *i,
		      size_t *o)
{
	size_t k = 0;

	while (*i + k < n && hexval((unsigned char)buf[*i + k]) >= 0)
		k++;
	k -= k % HEX_PER_BLOCK;
	if (k == 0)
		return 0;
	unsigned char *raw = (unsigned char *)buf + *o;
	for (size_t j = 0; j < k / 2; j++)
		raw[j] = (unsigned char)(hexval((unsigned char)buf[*i + 2 * j]) << 4 |
					 hexval((unsigned char)buf[*i + 2 * j + 1]));
	if (crypto_idea_decrypt(r->cipher, raw, k / 2) < 0)
		return -1;
	*i += k;
	r->hex += k;
	*o += take_plain(r, k / 2);
	return 0;
}

/* The '\n' of an enc: line: the frame must hold whole blocks, enough
 * of them for the length it gives. */
static enum lond_reply_rc enc_end(struct lond_reply *r)
{
	if (r->hex == 0)
		return reply_bad(r, "enc: no data");
	if (r->hex / 2 < r->declared)
		return reply_bad(r, "enc: length exceeds its data");
	r->state = LR_DONE;
	return LOND_REPLY_DONE;
}

/* The "<len>:" of an enc: line, one character. */
static enum lond_reply_rc enc_length(struct lond_reply *r, unsigned char c)
{
	if (c == ':' && r->state == LR_LEN_DIGITS) {
		r->state = LR_HEX;
	} else if (c >= '0' && c <= '9' && r->declared <= SIZE_MAX / 10 - 1) {
		r->declared = r->declared * 10 + (size_t)(c - '0');
		r->state = LR_LEN_DIGITS;
	} else {
		return reply_bad(r, "enc: the length is not a number");
	}
	return LOND_REPLY_MORE;
}

/* An enc: line from buf[*i], its plain text to buf[*o]. */
static enum lond_reply_rc feed_enc(struct lond_reply *r, char *buf, size_t n,
				   size_t *i, size_t *o)
{
	while (*i < n) {
		if (r->state == LR_HEX) {
			if (hex_blocks(r, buf, n, i, o) < 0)
				return reply_bad(r, "enc: the cipher failed");
			size_t k = 0;
			while (*i + k < n && hexval((unsigned char)buf[*i + k]) >= 0)
				k++;
			if (*i + k == n)
				break;   /* a piece of a block: wait for the rest */
			if (k > 0)
				return reply_bad(r, "enc: data is not whole blocks of hex");
		}
		unsigned char c = (unsigned char)buf[(*i)++];

		if (r->state == LR_LEN || r->state == LR_LEN_DIGITS) {
			if (enc_length(r, c) == LOND_REPLY_BAD)
				return LOND_REPLY_BAD;
		} else if (c == '\n') {
			return enc_end(r);
		} else if (c != '\r' || r->state == LR_CR) {
			return reply_bad(r, r->state == LR_CR ?
					 "enc: data after a carriage return" :
					 "enc: data is not hex");
		} else {
			r->state = LR_CR;
		}
	}
	return LOND_REPLY_MORE;
}

/* The first bytes decide: "enc:" (with a cipher) or a plain line.
 * Returns false when they cannot tell yet. */
static bool classify(struct lond_reply *r, const char *buf, size_t n, size_t *i)
{
	size_t k = n < 4 ? n : 4;

	if (r->cipher && memcmp(buf, "enc:", k) == 0) {
		if (k < 4)
			return memchr(buf, '\n', n) ? (r->state = LR_PLAIN, true) : false;
		r->enc = true;
		r->state = LR_LEN;
		*i = 4;
		return true;
	}
	r->state = LR_PLAIN;
	return true;
}

enum lond_reply_rc lond_reply_feed(struct lond_reply *r, char *buf, size_t n,
				   size_t *produced, size_t *consumed)
{
	enum lond_reply_rc rc = LOND_REPLY_MORE;
	size_t i = 0, o = 0;

	if (r->state == LR_START && !classify(r, buf, n, &i)) {
		*produced = *consumed = 0;
		return LOND_REPLY_MORE;
	}
	if (r->state == LR_PLAIN) {
		/* The plain text is the input itself. */
		const char *nl = memchr(buf, '\n', n);

		o = nl ? (size_t)(nl - buf) : n;
		i = nl ? o + 1 : n;
		r->plain += o;
		if (nl) {
			r->state = LR_DONE;
			rc = LOND_REPLY_DONE;
		}
	} else if (r->state == LR_DONE || r->state == LR_BAD) {
		return reply_bad(r, "the line has ended");
	} else {
		rc = feed_enc(r, buf, n, &i, &o);
	}
	r->wire += i;
	*produced = o;
	*consumed = i;
	return rc;
}

int lond_enc_decode(struct crypto_idea *c, char *line, size_t len, size_t *out_len)
{
	struct lond_reply r;
	size_t produced, consumed, tail;
	char nl = '\n';

	lond_reply_init(&r, c);
	if (lond_reply_feed(&r, line, len, &produced, &consumed) != LOND_REPLY_MORE ||
	    !r.enc || consumed != len)
		return -1;
	if (lond_reply_feed(&r, &nl, 1, &tail, &consumed) != LOND_REPLY_DONE)
		return -1;
	*out_len = produced;
	return 0;
}

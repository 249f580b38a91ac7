/*
 * lond.h - the lond wire protocol as pure encode/decode functions: the
 * handshake as a table of named steps, the session key derivation, the
 * enc: framing and the classification of client requests.  No sockets,
 * no threads: every function here is unit-tested on its own.
 */
#ifndef LONC_LOND_H
#define LONC_LOND_H

#include <stdbool.h>
#include <stddef.h>

#include "crypto.h"
#include "util.h"

#define LOND_KEY_LEN 16
#define LOND_LINE_MAX 512       /* longest handshake line we send or accept */

enum lond_step {
	LOND_STEP_INIT,         /* send init, read the challenge */
	LOND_STEP_INIT_SSL,     /* send init:ssl, read ok:ssl (or a challenge) */
	LOND_STEP_TLS,          /* no line: the caller runs TLS and feeds the
				   key line read over it */
	LOND_STEP_INIT_LOCAL,   /* send init:local:<path>, read ok:local */
	LOND_STEP_CHALLENGE,    /* echo the challenge, read ok */
	LOND_STEP_VERSION,      /* send version:<v>, read lond's version */
	LOND_STEP_SETHOST,      /* send sethost:<id>, read ok */
	LOND_STEP_EKEY,         /* send ekey, read the buildkey */
	LOND_STEP_DONE,
};

enum lond_mode { LOND_MODE_INSECURE, LOND_MODE_SSL, LOND_MODE_LOCAL };

struct lond_handshake {
	/* inputs */
	enum lond_mode mode;
	const char *our_id;       /* this node's host ID */
	const char *peer_id;      /* the remote host ID we address */
	const char *version;      /* what we announce in version: */
	bool version_step, sethost_step;
	bool allow_insecure;      /* ssl: continue insecure after a challenge */
	const char *init_version; /* init_version: "" or NULL sends init /
				     init:ssl; v sends init::v / init:ssl:v */
	bool local_first;         /* key_id_order local_first: our ID first
				     in the insecure session key */
	const char *local_path;   /* local: the key file's path */
	char local_key[33];       /* local: the key's 32 hex digits */
	/* state */
	enum lond_step plan[8];   /* the steps, in order, ending with DONE */
	int at;                   /* index into plan */
	char challenge[LOND_LINE_MAX];
	char peer_version[64];
	unsigned char key[LOND_KEY_LEN];
	bool have_key;
	bool refused;             /* lond answered "refused" */
	bool fell_back;           /* ssl answered by a challenge: insecure */
	const char *error;        /* why the handshake failed (static) */
	const char *hint;         /* the setting a failure points at, or NULL */
};

/* Plan a handshake (doc/protocol.md, "lond side").  Set hs->allow_insecure
 * (ssl), hs->local_path and hs->local_key (local), hs->init_version and
 * hs->local_first (the switches) afterwards. */
void lond_handshake_init(struct lond_handshake *hs, enum lond_mode mode,
			 const char *our_id, const char *peer_id,
			 const char *version, bool version_step,
			 bool sethost_step);

/* Name of a step, for logs ("init", "challenge", ...). */
const char *lond_step_name(enum lond_step step);

/* The current step (LOND_STEP_DONE when finished). */
enum lond_step lond_handshake_step(const struct lond_handshake *hs);

/* Write the current step's request line, '\n' included, into buf.
 * Returns its length, 0 for LOND_STEP_TLS (nothing to send), or -1 if
 * it does not fit. */
int lond_handshake_request(const struct lond_handshake *hs, char *buf,
			   size_t n) WUR;

/* Feed lond's reply line (without '\n') to the current step.  Returns 1
 * when the handshake is complete, 0 when the next step is due, -1 on
 * failure (hs->error says why, hs->refused if lond said so). */
int lond_handshake_reply(struct lond_handshake *hs, const char *line,
			 size_t len) WUR;

/* "insecure", "ssl", "local". */
const char *lond_mode_name(enum lond_mode mode);

/* Perl's pack("H32", s) over the first n characters of s. */
void lond_pack_h32(const char *s, size_t n, unsigned char out[LOND_KEY_LEN]);

/* The insecure-mode session key (doc/protocol.md, the ekey step). */
void lond_session_key(const char *peer_id, const char *our_id,
		      const char *buildkey, size_t buildkey_len,
		      unsigned char key[LOND_KEY_LEN]);

/* A client request, split into its parts. */
struct lond_request {
	size_t prefix_len;   /* length of a leading "sethost:<id>:", or 0 */
	bool bad_prefix;     /* "sethost::..." or a second sethost: prefix */
	bool encrypt;        /* the command was given as encrypt:<cmd> */
	const char *cmd;     /* the command to send (after encrypt:) */
	size_t cmd_len;
};

/* Split a request line (without '\n'). */
void lond_parse_request(const char *line, size_t len, struct lond_request *r);

/* What lonc does with a client's request line (without '\n'), looked at
 * once: forward it, answer it itself, or refuse it. */
enum lond_local {
	LOND_LOCAL_NONE,              /* forward it to lond */
	LOND_LOCAL_RESET_RETRIES,     /* reset_retries: answered "ok" */
	LOND_LOCAL_CLOSE_CONNECTIONS, /* close_connection_exit: "ok" */
	LOND_LOCAL_BAD_SETHOST,       /* unreadable sethost: prefix (bad_prefix) */
	LOND_LOCAL_HANDSHAKE,         /* init..., ekey, a bare sethost:<id>: they
				       * would change the shared pooled
				       * connection's key or host */
};
/* Also after a sethost:<id>: prefix; an encrypt: request is forwarded. */
enum lond_local lond_local_command(const char *line, size_t len);

/* An answer that says lond did not do it: unknown_cmd, refused,
 * rejected, error:... */
bool lond_is_error(const char *answer, size_t len);

/* The setting(s) that a lond answer to a request may point at (a hint
 * for the log; several are named with commas, likeliest first), or
 * NULL.  `unknown_cmd` to a request with an in-line sethost: prefix:
 * sethost_mode.  `unknown_cmd` or an error to an encrypted request on
 * an insecure-mode connection: key_id_order (lond decrypted garbage),
 * unless an encrypted request has worked on the connection (enc_worked:
 * the key is right, the error is lond's own); both when the request had
 * both and nothing is known yet. */
const char *lond_answer_hint(const struct lond_request *r, bool insecure, bool enc_worked,
			     const char *answer, size_t len);

/* Bytes needed by lond_enc_encode for a command of cmd_len bytes after a
 * prefix of prefix_len bytes, '\n' included. */
size_t lond_enc_size(size_t prefix_len, size_t cmd_len);

/* Write prefix + "enc:<len>:<hex>\n" into out (lond_enc_size bytes).
 * Returns the length written, or -1 if the cipher failed. */
long lond_enc_encode(struct crypto_idea *c, const char *prefix,
		     size_t prefix_len, const char *cmd, size_t cmd_len,
		     char *out) WUR;

/* True when a reply line is enc: framed. */
bool lond_is_enc(const char *line, size_t len);

/*
 * A reply line from lond, read in pieces as it arrives.  The reader finds
 * the line's end, tells an enc: reply from a plain one by its first four
 * bytes, and decodes and decrypts an enc: reply block by block, so that
 * neither kind needs the whole line in memory.  Used for every line lonc
 * reads from lond: handshake answers (without a cipher: no enc: then),
 * transaction replies and the answers to delayed replays.
 */
enum lond_reply_rc {
	LOND_REPLY_MORE,  /* the line goes on */
	LOND_REPLY_DONE,  /* its '\n' was the last byte consumed */
	LOND_REPLY_BAD,   /* a malformed enc: line (r->error says why) */
};

struct lond_reply {
	struct crypto_idea *cipher; /* NULL: enc: lines are not decoded */
	int state;                  /* lond.c's LR_* */
	bool enc;                   /* the line is enc: framed */
	size_t wire;                /* bytes consumed, the '\n' included */
	size_t plain;               /* plain bytes produced */
	size_t declared;            /* enc: the plain length it gives */
	size_t hex;                 /* enc: hex digits taken */
	const char *error;          /* why LOND_REPLY_BAD (static) */
};

/* Start reading a new line; cipher NULL reads enc: lines as plain ones. */
void lond_reply_init(struct lond_reply *r, struct crypto_idea *cipher);

/*
 * Take the next n bytes of the line, in buf.  The plain text they yield
 * is written to buf[0..*produced) (decoding never overtakes its input,
 * so it works in place; for a plain line it is the input itself), and
 * *consumed bytes of buf were used:
 * LOND_REPLY_MORE: all of them, except up to 3 at the start of a line
 *   that may yet begin "enc:", or up to 15 hex digits of an enc: block
 *   not yet whole (give them again, followed by what comes next);
 * LOND_REPLY_DONE: up to and including the '\n' (not in the plain text);
 *   buf[*consumed..n) is data lond sent unasked;
 * LOND_REPLY_BAD: a malformed enc: line.
 */
enum lond_reply_rc lond_reply_feed(struct lond_reply *r, char *buf, size_t n,
				   size_t *produced, size_t *consumed) WUR;

/* Decrypt a whole enc: line (without '\n') in place, through the reader
 * above: on success the plain text is line[0..*out_len) and 0 is
 * returned; -1 when malformed. */
int lond_enc_decode(struct crypto_idea *c, char *line, size_t len,
		    size_t *out_len) WUR;

#endif

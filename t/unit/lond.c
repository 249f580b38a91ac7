/*
 * Unit test for lond.c, the lond wire protocol codec:
 *  (a) lond_pack_h32 and lond_session_key against Perl's pack("H32") as
 *      the oracle, the key string built here independently by the rule
 *      of protocol.md 2.3 step 4;
 *  (b) the insecure handshake plan, with and without the version and
 *      sethost steps: exact request lines, failures, the key;
 *  (c) lond_parse_request; (d) lond_local_command (local, refused);
 *  (e) enc: framing (protocol.md 2.7) with a real IDEA cipher: round
 *      trips for every length 0..40, block count, lower-case hex, the
 *      sethost prefix in clear, and malformed lines rejected.
 * Inputs are passed in exact-size heap copies without a NUL, so reading
 * past the given length shows up under AddressSanitizer.
 */
#include <ctype.h>

#include "crypto.h"
#include "lond.h"
#include "tap.h"

/* An exact-size copy of s without a terminating NUL. */
static char *exact_copy(const char *s, size_t n)
{
	char *p = xmalloc(n ? n : 1);

	memcpy(p, s, n);
	return p;
}

/* ---- (a) key derivation against Perl ---------------------------------- */

/* Perl's unpack("H*", pack("H32", s)) into out (33 bytes).  s must not
 * contain a single quote (it is passed in single quotes). */
static bool perl_pack_h32(const char *s, char out[33])
{
	char cmd[1024];
	FILE *f;
	size_t n;

	if (strchr(s, '\'') || strlen(s) > 600)
		return false;
	snprintf(cmd, sizeof(cmd),
		 "perl -e 'print unpack(\"H*\", pack(\"H32\", $ARGV[0]))' -- '%s'", s);
	f = popen(cmd, "r");
	if (!f)
		return false;
	n = fread(out, 1, 32, f);
	out[n] = '\0';
	return pclose(f) == 0 && n == 32;
}

/* The key string of protocol.md 2.3 step 4, built independently of
 * lond.c: ids = upper(peer . ours) with G..P and Q..Z mapped to 0..9,
 * then (ids . buildkey) x 3, first 32 characters. */
static void key_string(const char *peer, const char *ours, const char *buildkey,
		       char out[33])
{
	char ids[1024], rep[4096];

	snprintf(ids, sizeof(ids), "%s%s", peer, ours);
	for (char *p = ids; *p; p++) {
		if (*p >= 'a' && *p <= 'z')
			*p = (char)(*p - 'a' + 'A');
		if (*p >= 'G' && *p <= 'P')
			*p = (char)('0' + (*p - 'G'));
		else if (*p >= 'Q' && *p <= 'Z')
			*p = (char)('0' + (*p - 'Q'));
	}
	snprintf(rep, sizeof(rep), "%s%s%s%s%s%s", ids, buildkey, ids, buildkey,
		 ids, buildkey);
	size_t n = strlen(rep);

	if (n > 32)
		n = 32;          /* keep the first 32 characters */
	memcpy(out, rep, n);
	out[n] = '\0';
}

struct key_case {
	const char *peer, *ours, *buildkey;
};

static const struct key_case key_cases[] = {
	{ "msul3", "msul1", "1234567890" },                   /* lower case, digits */
	{ "MSUL3", "MSUL1", "abcdef" },                       /* upper case */
	{ "host-a", "host_b", "k3y" },                        /* '-' and '_' */
	{ "ghijklmnop", "qrstuvwxyz", "" },                   /* g..z, empty buildkey */
	{ "GHIJKLMNOPQRSTUVWXYZ", "ab", "0" },                /* G..Z upper */
	{ "averyveryverylonghostidentifier-x1", "us", "bk" }, /* peer > 32 chars */
	{ "a", "b", "" },                                     /* short: 6 chars in all */
	{ "", "", "12345" },                                  /* no ids */
	{ "x", "y", "Zz-_9Gg" },                              /* buildkey not mapped */
	{ "lon-capa_01", "MSU-2", "9f8e7d6c5b4a" },
	{ "a", "b", "0123456789abcdefABCDEFghijklmnopqrstuvwxyz" }, /* long buildkey */
	{ "ucb1", "ohiou2", "AbCdEfGhIj" },
	{ "Fh1-Q", "zz_top", "buildKEY42" },
	{ "0123456789abcdef", "", "FEDCBA9876543210" },       /* exactly 32 */
	{ "m", "", "x" },                                     /* odd length: 6 chars */
	{ "msul1", "averyveryverylongourhostidentifier_", "k.e+y" },
};

static void check_pack_h32(void)
{
	static const char *const strings[] = {
		"", "0", "abc", "ABCDEF", "abcdef0123456789",
		"ghijklmnopqrstuvwxyz", "GHIJKLMNOPQRSTUVWXYZ", "-_.+:/ =",
		"0123456789abcdef0123456789ABCDEF", /* exactly 32 */
		"0123456789abcdef0123456789ABCDEFffff9999", /* longer than 32 */
		"Zz9", "msul1msul3deadbeef",
		"caf\xe9\xc1",   /* bytes above ASCII are not letters to pack */
	};
	char want[33], got[33], name[128];
	unsigned char out[LOND_KEY_LEN];

	for (size_t i = 0; i < sizeof(strings) / sizeof(strings[0]); i++) {
		const char *s = strings[i];
		char *copy = exact_copy(s, strlen(s));

		snprintf(name, sizeof(name), "pack_h32('%s'): perl oracle ran", s);
		ok(perl_pack_h32(s, want), name);
		memset(out, 0xAA, sizeof(out));
		lond_pack_h32(copy, strlen(s), out);
		to_hex(out, sizeof(out), got);
		snprintf(name, sizeof(name), "pack_h32('%s') equals perl", s);
		is_str(got, want, name);
		free(copy);
	}
	/* n limits the characters used. */
	lond_pack_h32("abcdef", 3, out);
	to_hex(out, sizeof(out), got);
	is_str(got, "abc00000000000000000000000000000", "pack_h32: only n characters used");
}

static void check_session_key(void)
{
	char s[33], want[33], got[33], name[160];
	unsigned char key[LOND_KEY_LEN], packed[LOND_KEY_LEN];

	for (size_t i = 0; i < sizeof(key_cases) / sizeof(key_cases[0]); i++) {
		const struct key_case *k = &key_cases[i];
		size_t bl = strlen(k->buildkey);
		char *bk = exact_copy(k->buildkey, bl);

		key_string(k->peer, k->ours, k->buildkey, s);
		snprintf(name, sizeof(name), "key %s/%s/'%s': perl oracle ran (s=%s)",
			 k->peer, k->ours, k->buildkey, s);
		ok(perl_pack_h32(s, want), name);
		memset(key, 0xAA, sizeof(key));
		lond_session_key(k->peer, k->ours, bk, bl, key);
		to_hex(key, sizeof(key), got);
		snprintf(name, sizeof(name), "key %s/%s/'%s' equals perl",
			 k->peer, k->ours, k->buildkey);
		is_str(got, want, name);
		lond_pack_h32(s, strlen(s), packed);
		snprintf(name, sizeof(name), "key %s/%s/'%s': pack_h32 of the key string",
			 k->peer, k->ours, k->buildkey);
		ok(memcmp(packed, key, sizeof(key)) == 0, name);
		free(bk);
	}
	/* The buildkey length is honoured, not a NUL. */
	lond_session_key("a", "b", "12345", 2, key);
	key_string("a", "b", "12", s);
	lond_pack_h32(s, strlen(s), packed);
	ok(memcmp(packed, key, sizeof(key)) == 0, "key: buildkey_len limits the buildkey");
	/* Order matters: lond's ID comes first. */
	unsigned char other[LOND_KEY_LEN];

	lond_session_key("msul3", "msul1", "77", 2, key);
	lond_session_key("msul1", "msul3", "77", 2, other);
	ok(memcmp(key, other, sizeof(key)) != 0, "key: peer and our ID are not interchangeable");
}

/* ---- (b) the handshake plan ------------------------------------------ */

struct exchange {
	enum lond_step step;
	const char *request;   /* what we must send */
	const char *reply;     /* what lond answers */
};

struct plan_case {
	const char *name;
	bool version_step, sethost_step;
	struct exchange ex[6];
	int n;
};

static const struct plan_case plan_cases[] = {
	{ "full", true, true, {
		{ LOND_STEP_INIT, "init\n", "4711169900000" },
		{ LOND_STEP_CHALLENGE, "4711169900000\n", "ok" },
		{ LOND_STEP_VERSION, "version:0.1.0\n", "2.11.4" },
		{ LOND_STEP_SETHOST, "sethost:msul3\n", "ok" },
		{ LOND_STEP_EKEY, "ekey\n", "8b2f0c" },
	}, 5 },
	{ "plain", false, false, {
		{ LOND_STEP_INIT, "init\n", "12" },
		{ LOND_STEP_CHALLENGE, "12\n", "ok" },
		{ LOND_STEP_EKEY, "ekey\n", "abcdefXYZ" },
	}, 3 },
	{ "version only", true, false, {
		{ LOND_STEP_INIT, "init\n", "99887766" },
		{ LOND_STEP_CHALLENGE, "99887766\n", "ok" },
		/* A Perl lond's version may hold spaces and dollars. */
		{ LOND_STEP_VERSION, "version:0.1.0\n", "$Revision: 1.489 $" },
		{ LOND_STEP_EKEY, "ekey\n", "0" },
	}, 4 },
	{ "sethost only", false, true, {
		{ LOND_STEP_INIT, "init\n", "5" },
		{ LOND_STEP_CHALLENGE, "5\n", "ok" },
		{ LOND_STEP_SETHOST, "sethost:msul3\n", "ok" },
		{ LOND_STEP_EKEY, "ekey\n", "Kk-_42" },
	}, 4 },
};

/* Feed one reply line via an exact-size copy. */
static int feed(struct lond_handshake *hs, const char *reply)
{
	size_t n = strlen(reply);
	char *copy = exact_copy(reply, n);
	int rc = lond_handshake_reply(hs, copy, n);

	free(copy);
	return rc;
}

static void run_plan(const struct plan_case *pc)
{
	struct lond_handshake hs;
	char buf[LOND_LINE_MAX], name[160];
	const char *buildkey = NULL, *peer_version = NULL;

	lond_handshake_init(&hs, LOND_MODE_INSECURE, "msul1", "msul3", "0.1.0",
			    pc->version_step, pc->sethost_step);
	for (int i = 0; i < pc->n; i++) {
		const struct exchange *e = &pc->ex[i];

		snprintf(name, sizeof(name), "plan %s: step %d is %s", pc->name, i,
			 lond_step_name(e->step));
		is_int(lond_handshake_step(&hs), e->step, name);
		int len = lond_handshake_request(&hs, buf, sizeof(buf));

		snprintf(name, sizeof(name), "plan %s: request of step %s", pc->name,
			 lond_step_name(e->step));
		is_str(len >= 0 ? buf : "(failed)", e->request, name);
		snprintf(name, sizeof(name), "plan %s: request length of step %s",
			 pc->name, lond_step_name(e->step));
		is_int(len, strlen(e->request), name);
		snprintf(name, sizeof(name), "plan %s: reply to %s accepted", pc->name,
			 lond_step_name(e->step));
		is_int(feed(&hs, e->reply), i == pc->n - 1 ? 1 : 0, name);
		if (e->step == LOND_STEP_EKEY)
			buildkey = e->reply;
		if (e->step == LOND_STEP_VERSION)
			peer_version = e->reply;
	}
	snprintf(name, sizeof(name), "plan %s: done", pc->name);
	is_int(lond_handshake_step(&hs), LOND_STEP_DONE, name);
	snprintf(name, sizeof(name), "plan %s: no request after done", pc->name);
	is_int(lond_handshake_request(&hs, buf, sizeof(buf)), -1, name);
	snprintf(name, sizeof(name), "plan %s: no reply accepted after done", pc->name);
	is_int(feed(&hs, "ok"), -1, name);
	snprintf(name, sizeof(name), "plan %s: have_key, not refused", pc->name);
	ok(hs.have_key && !hs.refused, name);
	if (peer_version) {
		snprintf(name, sizeof(name), "plan %s: peer version kept", pc->name);
		is_str(hs.peer_version, peer_version, name);
	}

	unsigned char key[LOND_KEY_LEN];
	char s[33], want[33], got[33];

	lond_session_key("msul3", "msul1", buildkey, strlen(buildkey), key);
	snprintf(name, sizeof(name), "plan %s: key equals lond_session_key", pc->name);
	ok(memcmp(hs.key, key, sizeof(key)) == 0, name);
	key_string("msul3", "msul1", buildkey, s);
	to_hex(hs.key, sizeof(hs.key), got);
	snprintf(name, sizeof(name), "plan %s: key equals perl's", pc->name);
	ok(perl_pack_h32(s, want) && strcmp(got, want) == 0, name);
}

/* Any version line is taken; what would garble a status line is masked. */
static void check_version_masked(void)
{
	struct lond_handshake hs;

	lond_handshake_init(&hs, LOND_MODE_INSECURE, "msul1", "msul3", "0.1.0",
			    true, false);
	ok(feed(&hs, "42") == 0 && feed(&hs, "ok") == 0, "version masking: up to the version step");
	is_int(feed(&hs, "v \"1\"\t\\x\x01\xff\xc3\xa9"), 0, "version masking: the reply is taken");
	is_str(hs.peer_version, "v ?1???x????",
	       "version masking: quotes, backslash, controls and non-ASCII bytes masked (JSON stays valid)");
}

/* Walk a full plan, answering each step with the good reply until step
 * `at`, which gets `bad`; the reply must fail there. */
static void run_failure(int at, const char *bad, bool refused, const char *what)
{
	const struct plan_case *pc = &plan_cases[0];
	struct lond_handshake hs;
	char name[160];
	int rc = 0;

	lond_handshake_init(&hs, LOND_MODE_INSECURE, "msul1", "msul3", "0.1.0",
			    true, true);
	for (int i = 0; i < at && rc == 0; i++)
		rc = feed(&hs, pc->ex[i].reply);
	snprintf(name, sizeof(name), "fail %s: earlier steps pass", what);
	is_int(rc, 0, name);
	snprintf(name, sizeof(name), "fail %s: at step %s", what,
		 lond_step_name(pc->ex[at].step));
	is_int(lond_handshake_step(&hs), pc->ex[at].step, name);
	snprintf(name, sizeof(name), "fail %s: reply fails", what);
	is_int(feed(&hs, bad), -1, name);
	snprintf(name, sizeof(name), "fail %s: refused is %s", what,
		 refused ? "set" : "clear");
	is_int(hs.refused, refused, name);
	snprintf(name, sizeof(name), "fail %s: error message set", what);
	ok(hs.error != NULL && hs.error[0] != '\0', name);
	snprintf(name, sizeof(name), "fail %s: no key", what);
	ok(!hs.have_key, name);
}

static void check_handshake(void)
{
	for (size_t i = 0; i < sizeof(plan_cases) / sizeof(plan_cases[0]); i++)
		run_plan(&plan_cases[i]);

	run_failure(0, "refused", true, "refused at init");
	run_failure(1, "refused", true, "refused at challenge");
	run_failure(3, "refused", true, "refused at sethost");
	run_failure(4, "refused", true, "refused at ekey");
	run_failure(0, "12a34", false, "non-digit challenge");
	run_failure(0, "abc", false, "letters as challenge");
	run_failure(0, "", false, "empty challenge");
	run_failure(0, "ok", false, "ok as challenge");
	run_failure(1, "no", false, "challenge not answered ok");
	run_failure(1, "okay", false, "challenge answered okay");
	run_failure(1, "", false, "challenge answered empty");
	run_failure(3, "error:unknown_host", false, "sethost not answered ok");

	/* A request that does not fit the buffer is refused. */
	struct lond_handshake hs;
	char small[5];

	lond_handshake_init(&hs, LOND_MODE_INSECURE, "msul1", "msul3", "0.1.0",
			    true, true);
	is_int(lond_handshake_request(&hs, small, sizeof(small)), -1,
	       "request: 'init\\n' does not fit 5 bytes");
	char six[6];
	is_int(lond_handshake_request(&hs, six, sizeof(six)), 5,
	       "request: 'init\\n' fits 6 bytes");
}

/* The switches: init_version, key_id_order, and the hints a failure
 * gives (the setting it points at). */
static void check_switches(void)
{
	struct lond_handshake hs;
	char line[LOND_LINE_MAX];

	lond_handshake_init(&hs, LOND_MODE_INSECURE, "msul1", "msul3", "2.11", true, true);
	hs.init_version = "2.11";
	ok(lond_handshake_request(&hs, line, sizeof(line)) > 0 && !strcmp(line, "init::2.11\n"),
	   "init_version: init::<v>");
	lond_handshake_init(&hs, LOND_MODE_SSL, "msul1", "msul3", "2.11", true, true);
	hs.init_version = "2.11";
	ok(lond_handshake_request(&hs, line, sizeof(line)) > 0 && !strcmp(line, "init:ssl:2.11\n"),
	   "init_version: init:ssl:<v>");
	hs.init_version = "";
	ok(lond_handshake_request(&hs, line, sizeof(line)) > 0 && !strcmp(line, "init:ssl\n"),
	   "init_version empty: init:ssl");
	is_int(lond_handshake_reply(&hs, "refused", 7), -1, "refused at init:ssl");
	is_str(hs.hint, "init_version", "... hints at init_version");

	/* The version string announced is the one given. */
	lond_handshake_init(&hs, LOND_MODE_LOCAL, "msul1", "msul3", "lonc-x", true, true);
	hs.local_path = "/k";
	memcpy(hs.local_key, "00112233445566778899aabbccddeeff", 33);
	is_int(lond_handshake_reply(&hs, "ok:local", 8), 0, "local: ok");
	ok(lond_handshake_request(&hs, line, sizeof(line)) > 0 && !strcmp(line, "version:lonc-x\n"),
	   "version_string: version:<string>");
	is_int(lond_handshake_reply(&hs, "unknown_cmd", 11), 0, "version answered unknown_cmd");
	is_str(hs.hint, "version_step", "... notes version_step");
	is_int(lond_handshake_reply(&hs, "unknown_cmd", 11), -1, "sethost answered unknown_cmd");
	is_str(hs.hint, "sethost_step", "... hints at sethost_step");
	lond_handshake_init(&hs, LOND_MODE_LOCAL, "msul1", "msul3", "lonc-x", true, true);
	hs.local_path = "/k";
	memcpy(hs.local_key, "00112233445566778899aabbccddeeff", 33);
	is_int(lond_handshake_reply(&hs, "ok:local", 8), 0, "local: ok");
	is_int(lond_handshake_reply(&hs, "refused", 7), -1, "version refused");
	is_str(hs.hint, "version_string", "... hints at version_string");

	/* key_id_order: the IDs swap places in the key. */
	unsigned char remote[LOND_KEY_LEN], local[LOND_KEY_LEN];
	for (int order = 0; order < 2; order++) {
		lond_handshake_init(&hs, LOND_MODE_INSECURE, "msul1", "msul3", "v", false, false);
		hs.local_first = order;
		if (lond_handshake_reply(&hs, "123", 3) != 0 || lond_handshake_reply(&hs, "ok", 2) != 0 ||
		    lond_handshake_reply(&hs, "4711", 4) != 1) {
			ok(0, "key_id_order: handshake");
			return;
		}
		memcpy(order ? local : remote, hs.key, LOND_KEY_LEN);
	}
	unsigned char want[LOND_KEY_LEN];
	lond_session_key("msul1", "msul3", "4711", 4, want);
	ok(!memcmp(local, want, LOND_KEY_LEN), "key_id_order local_first: our ID first");
	lond_session_key("msul3", "msul1", "4711", 4, want);
	ok(!memcmp(remote, want, LOND_KEY_LEN), "key_id_order remote_first: lond's ID first");
	ok(memcmp(local, remote, LOND_KEY_LEN), "the two orders give other keys");

	/* Hints from answers to requests. */
	struct lond_request r;
	lond_parse_request("sethost:msul3:ping", 18, &r);
	is_str(lond_answer_hint(&r, true, false, "unknown_cmd", 11), "sethost_mode",
	       "unknown_cmd to an in-line prefix: sethost_mode");
	is_str(lond_answer_hint(&r, true, false, "pong", 4), NULL, "a real answer: no hint");
	lond_parse_request("encrypt:passwd:x", 16, &r);
	is_str(lond_answer_hint(&r, true, false, "error:bad", 9), "key_id_order",
	       "an error to an encrypted request, insecure key: key_id_order");
	is_str(lond_answer_hint(&r, false, false, "error:bad", 9), NULL,
	       "... not for a key that names no IDs (ssl, local)");
	is_str(lond_answer_hint(&r, true, true, "error:bad", 9), NULL,
	       "... nor once an encrypted request worked (the error is lond's own)");
	lond_parse_request("sethost:msul3:encrypt:passwd:x", 30, &r);
	is_str(lond_answer_hint(&r, true, false, "unknown_cmd", 11), "sethost_mode,key_id_order",
	       "unknown_cmd to an encrypted request with an in-line prefix: both, the prefix first");
	is_str(lond_answer_hint(&r, true, true, "unknown_cmd", 11), "sethost_mode",
	       "... the prefix alone once an encrypted request worked");
	lond_parse_request("ping", 4, &r);
	is_str(lond_answer_hint(&r, true, false, "unknown_cmd", 11), NULL,
	       "unknown_cmd to a bare request: no hint");
	ok(lond_is_error("unknown_cmd", 11) && lond_is_error("error:x", 7) &&
	   lond_is_error("refused", 7) && lond_is_error("rejected\r", 9), "lond_is_error: the errors");
	ok(!lond_is_error("ok", 2) && !lond_is_error("error", 5) && !lond_is_error("refusedx", 8),
	   "lond_is_error: not others");
}

/* ---- (c) lond_parse_request ------------------------------------------ */

static void parse_case(const char *line, size_t prefix_len, bool encrypt,
		       const char *cmd)
{
	size_t n = strlen(line);
	char *copy = exact_copy(line, n);
	struct lond_request r;
	char name[160];

	memset(&r, 0xAA, sizeof(r));
	lond_parse_request(copy, n, &r);
	snprintf(name, sizeof(name), "parse '%s': prefix_len", line);
	is_int(r.prefix_len, prefix_len, name);
	snprintf(name, sizeof(name), "parse '%s': encrypt", line);
	is_int(r.encrypt, encrypt, name);
	snprintf(name, sizeof(name), "parse '%s': cmd", line);
	ok(r.cmd >= copy && r.cmd <= copy + n && r.cmd_len == strlen(cmd) &&
	   r.cmd + r.cmd_len == copy + n && memcmp(r.cmd, cmd, r.cmd_len) == 0, name);
	free(copy);
}

static void bad_prefix_case(const char *line, bool bad)
{
	size_t n = strlen(line);
	char *copy = exact_copy(line, n);
	struct lond_request r;
	char name[160];

	lond_parse_request(copy, n, &r);
	snprintf(name, sizeof(name), "parse '%s': %s", line,
		 bad ? "a malformed sethost prefix" : "no malformed prefix");
	is_int(r.bad_prefix, bad, name);
	free(copy);
}

static void check_parse(void)
{
	parse_case("get:msul1:key", 0, false, "get:msul1:key");
	parse_case("ping", 0, false, "ping");
	parse_case("encrypt:passwd:user:pw", 0, true, "passwd:user:pw");
	parse_case("sethost:msul3:get:a:b", 14, false, "get:a:b");
	parse_case("sethost:msul3:encrypt:passwd:x", 14, true, "passwd:x");
	parse_case("sethost:msul3", 0, false, "sethost:msul3");
	parse_case("sethost:lon-capa_1:ping", 19, false, "ping");
	parse_case("encryptx:foo", 0, false, "encryptx:foo");
	parse_case("put:encrypt:x", 0, false, "put:encrypt:x");
	bad_prefix_case("sethost::encrypt:passwd:x", true);
	bad_prefix_case("sethost::ping", true);
	bad_prefix_case("sethost:a:sethost:b:encrypt:passwd:x", true);
	bad_prefix_case("sethost:a:sethost:b", true);
	bad_prefix_case("sethost:msul3:encrypt:passwd:x", false);
	bad_prefix_case("sethost:msul3", false);
	bad_prefix_case("get:sethost::x", false);

	/* The length is honoured: "encrypt:x" cut to 5 bytes is "encry". */
	struct lond_request r;
	char *copy = exact_copy("encrypt:x", 5);

	lond_parse_request(copy, 5, &r);
	ok(!r.encrypt && r.prefix_len == 0 && r.cmd == copy && r.cmd_len == 5,
	   "parse: only len bytes looked at");
	free(copy);
}

static void setup_case(const char *line, bool want)
{
	size_t n = strlen(line);
	char *copy = exact_copy(line, n);
	char name[160];

	snprintf(name, sizeof(name), "'%s' is %sa handshake command", line, want ? "" : "not ");
	is_int(lond_local_command(copy, n) == LOND_LOCAL_HANDSHAKE, want, name);
	free(copy);
}

static void check_setup_commands(void)
{
	setup_case("ekey", true);
	setup_case("ekey\r", true);
	setup_case("init", true);
	setup_case("init:ssl", true);
	setup_case("init::2.11", true);
	setup_case("init:local:/tmp/k", true);
	setup_case("sethost:evil", true);
	setup_case("sethost:msul3:ekey", true);
	setup_case("sethost:msul3:init", true);
	setup_case("sethost:msul3:ping", false);
	setup_case("encrypt:ekey", false);
	setup_case("ekeys", false);
	setup_case("initialize", false);
	setup_case("ping", false);
	setup_case("get:init:x", false);
}

/* ---- (d) lond_local_command ------------------------------------------ */

static void local_case(const char *line, size_t n, enum lond_local want)
{
	char *copy = exact_copy(line, n);
	char name[160];

	snprintf(name, sizeof(name), "local '%.*s'", (int)n, line);
	is_int(lond_local_command(copy, n), want, name);
	free(copy);
}

static void check_local(void)
{
	local_case("reset_retries", 13, LOND_LOCAL_RESET_RETRIES);
	local_case("close_connection_exit", 21, LOND_LOCAL_CLOSE_CONNECTIONS);
	local_case("reset_retries\n", 13, LOND_LOCAL_RESET_RETRIES);
	local_case("reset_retries2", 14, LOND_LOCAL_NONE);
	local_case("reset_retrie", 12, LOND_LOCAL_NONE);
	local_case("close_connection", 16, LOND_LOCAL_NONE);
	local_case("close_connection_exit_now", 25, LOND_LOCAL_NONE);
	local_case("RESET_RETRIES", 13, LOND_LOCAL_NONE);
	local_case("ping", 4, LOND_LOCAL_NONE);
	local_case("", 0, LOND_LOCAL_NONE);
	/* Addressed to a host ID, as lonnet may send any request. */
	local_case("sethost:msul3:reset_retries", 27, LOND_LOCAL_RESET_RETRIES);
	local_case("sethost:msul3:close_connection_exit", 35, LOND_LOCAL_CLOSE_CONNECTIONS);
	local_case("sethost:msul3:ping", 18, LOND_LOCAL_NONE);
	local_case("sethost::reset_retries", 22, LOND_LOCAL_BAD_SETHOST);
	local_case("sethost:a:sethost:b:ping", 24, LOND_LOCAL_BAD_SETHOST);
	local_case("sethost:msul3:encrypt:reset_retries", 35, LOND_LOCAL_NONE);
}

/* ---- (e) enc: framing ------------------------------------------------ */

static const unsigned char enc_key[LOND_KEY_LEN] = {
	0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef,
	0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32, 0x10,
};

static bool all_lower_hex(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f')))
			return false;
	return true;
}

/* Decrypt hex (n digits) independently of lond_enc_decode. */
static bool independent_decrypt(struct crypto_idea *c, const char *hex, size_t n,
				unsigned char *out)
{
	for (size_t i = 0; i < n / 2; i++) {
		unsigned v;

		if (sscanf(hex + 2 * i, "%2x", &v) != 1)
			return false;
		out[i] = (unsigned char)v;
	}
	return crypto_idea_decrypt(c, out, n / 2) == 0;
}

/* Encode cmd (after prefix), check the frame, decode it back. */
static void enc_round_trip(struct crypto_idea *c, const char *prefix,
			   const char *cmd, size_t len)
{
	size_t pl = strlen(prefix);
	size_t size = lond_enc_size(pl, len);
	char *out = xmalloc(size);
	char head[64], name[160];
	size_t blocks = len / 8 + 1;
	bool frame_ok = false, hex_ok = false, pad_ok = false, rt_ok = false;
	long n = lond_enc_encode(c, prefix, pl, cmd, len, out);

	snprintf(head, sizeof(head), "enc:%zu:", len);
	size_t hl = strlen(head);

	if (n > 0 && (size_t)n <= size) {
		frame_ok = (size_t)n == pl + hl + 16 * blocks + 1 &&
			   memcmp(out, prefix, pl) == 0 &&
			   memcmp(out + pl, head, hl) == 0 && out[n - 1] == '\n';
		if (frame_ok)
			hex_ok = all_lower_hex(out + pl + hl, 16 * blocks);
		if (hex_ok) {
			unsigned char *plain = xmalloc(8 * blocks);

			pad_ok = independent_decrypt(c, out + pl + hl, 16 * blocks, plain) &&
				 memcmp(plain, cmd, len) == 0;
			for (size_t i = len; i < 8 * blocks; i++)
				pad_ok = pad_ok && plain[i] == ' ';
			free(plain);
		}
		/* lond_enc_decode on the enc: part, without prefix and '\n'. */
		size_t line_len = (size_t)n - pl - 1;
		char *line = exact_copy(out + pl, line_len);
		size_t out_len = 0;

		rt_ok = lond_enc_decode(c, line, line_len, &out_len) == 0 &&
			out_len == len && memcmp(line, cmd, len) == 0;
		free(line);
	}
	snprintf(name, sizeof(name), "enc %s%zu: encode fits lond_enc_size", pl ? "prefix " : "", len);
	ok(n > 0 && (size_t)n <= size, name);
	snprintf(name, sizeof(name), "enc %s%zu: frame 'enc:%zu:' + %zu hex digits + '\\n'",
		 pl ? "prefix " : "", len, len, 16 * blocks);
	ok(frame_ok, name);
	snprintf(name, sizeof(name), "enc %s%zu: lower-case hex", pl ? "prefix " : "", len);
	ok(hex_ok, name);
	snprintf(name, sizeof(name), "enc %s%zu: IDEA of cmd padded with spaces", pl ? "prefix " : "", len);
	ok(pad_ok, name);
	snprintf(name, sizeof(name), "enc %s%zu: decode round trip", pl ? "prefix " : "", len);
	ok(rt_ok, name);
	free(out);
}

static void check_enc_frames(struct crypto_idea *c)
{
	char cmd[41];

	for (size_t i = 0; i < sizeof(cmd); i++)
		cmd[i] = "put:msul1:a%20b=c&d\xe9\x01Z"[i % 22];
	for (size_t len = 0; len <= 40; len++)
		enc_round_trip(c, "", cmd, len);
	enc_round_trip(c, "sethost:msul3:", "passwd:user:secret", 18);
	enc_round_trip(c, "sethost:msul3:", "", 0);
	enc_round_trip(c, "sethost:msul3:", "12345678", 8);
}

static void check_is_enc(void)
{
	ok(lond_is_enc("enc:3:00", 8), "is_enc: enc: line");
	ok(lond_is_enc("enc:", 4), "is_enc: bare enc:");
	ok(!lond_is_enc("enc", 3), "is_enc: 'enc' is not");
	ok(!lond_is_enc("encrypt:x", 9), "is_enc: encrypt: is not");
	ok(!lond_is_enc("ok", 2), "is_enc: ok is not");
	ok(!lond_is_enc("enc:", 3), "is_enc: length honoured");
}

static void decode_bad(struct crypto_idea *c, const char *line, const char *what)
{
	size_t n = strlen(line);
	char *copy = exact_copy(line, n);
	size_t out_len = 12345;
	char name[160];

	snprintf(name, sizeof(name), "decode rejects %s", what);
	is_int(lond_enc_decode(c, copy, n, &out_len), -1, name);
	free(copy);
}

static void check_enc_malformed(struct crypto_idea *c)
{
	static const char b16[] = "0123456789abcdef";
	char line[256];

	decode_bad(c, "ok", "a line without enc:");
	decode_bad(c, "enc:", "enc: alone");
	decode_bad(c, "enc::0123456789abcdef", "an empty length");
	decode_bad(c, "enc:x:0123456789abcdef", "a non-digit length");
	decode_bad(c, "enc:-1:0123456789abcdef", "a negative length");
	decode_bad(c, "enc:3", "a length without colon or data");
	decode_bad(c, "enc:3abcdef0123456789", "a missing colon");
	decode_bad(c, "enc:3;0123456789abcdef", "a wrong separator");
	decode_bad(c, "enc:0:", "no hex data");
	decode_bad(c, "enc:3:", "a length with no hex data");
	decode_bad(c, "enc:3:0123456789abcdeg", "a non-hex digit 'g'");
	decode_bad(c, "enc:3:0123456789abcde ", "a space among the hex");
	decode_bad(c, "enc:3:zz23456789abcdef", "non-hex at the start");
	decode_bad(c, "enc:3:0123456789abcde", "an odd number of hex digits (15)");
	decode_bad(c, "enc:3:0123456789abcdef0", "an odd number of hex digits (17)");
	decode_bad(c, "enc:3:0123456789abcdef01", "hex that is not whole blocks (18)");
	decode_bad(c, "enc:9:0123456789abcdef", "a length longer than the data (9 > 8)");
	snprintf(line, sizeof(line), "enc:17:%s%s", b16, b16);
	decode_bad(c, line, "a length longer than the data (17 > 16)");
	snprintf(line, sizeof(line), "enc:99999999999999999999999:%s", b16);
	decode_bad(c, line, "an overflowing length");
	snprintf(line, sizeof(line), "enc:3:%s%s", b16, "0123456789abcdeX");
	decode_bad(c, line, "non-hex in the second block");
}


/* ---- (f) the reply reader, fed in pieces ------------------------------ */

/* Feed wire[0..n) to a reader in pieces of at most `piece` bytes (and
 * once split at `split`, if nonzero), as the worker does: its plain text
 * gathers at the front of a buffer, bytes the reader did not consume
 * wait in front of the next piece.  Returns the final code; the plain
 * text in out (NUL-terminated), its length in *out_len, the bytes after
 * the '\n' in *extra. */
static enum lond_reply_rc drive(struct crypto_idea *c, const char *wire, size_t n,
				size_t piece, size_t split, char *out,
				size_t *out_len, size_t *extra)
{
	struct lond_reply r;
	char *buf = xmalloc(n + 1);
	size_t len = 0, raw = 0, at = 0;
	enum lond_reply_rc rc = LOND_REPLY_MORE;

	lond_reply_init(&r, c);
	*extra = 0;
	while (at < n && rc == LOND_REPLY_MORE) {
		size_t k = n - at < piece ? n - at : piece;

		if (split && at < split && at + k > split)
			k = split - at;
		memcpy(buf + len + raw, wire + at, k);
		at += k;
		raw += k;
		size_t produced, consumed;
		rc = lond_reply_feed(&r, buf + len, raw, &produced, &consumed);
		if (rc == LOND_REPLY_DONE)
			*extra = raw - consumed + (n - at);
		memmove(buf + len + produced, buf + len + consumed, raw - consumed);
		len += produced;
		raw -= consumed;
	}
	memcpy(out, buf, len);
	out[len] = '\0';
	*out_len = len;
	free(buf);
	return rc;
}

static void reply_pieces(struct crypto_idea *c, const char *what, const char *wire,
			 size_t n, enum lond_reply_rc want, const char *plain,
			 size_t want_extra)
{
	char *out = xmalloc(n + 1), name[200];
	bool all_ok = true;
	size_t len, extra;

	for (size_t piece = 1; piece <= n; piece = piece < 20 ? piece + 1 : piece * 3) {
		for (size_t split = 0; split < n; split += piece > 2 ? 1 : 7) {
			enum lond_reply_rc rc = drive(c, wire, n, piece, split, out, &len, &extra);
			bool good = rc == want && (want != LOND_REPLY_DONE ||
				     (len == strlen(plain) && !memcmp(out, plain, len) &&
				      extra == want_extra));

			if (!good && all_ok) {
				printf("# %s: piece %zu split %zu: rc %d, got '%s', extra %zu\n",
				       what, piece, split, (int)rc, out, extra);
			}
			all_ok = all_ok && good;
		}
	}
	snprintf(name, sizeof(name), "reply reader, any pieces: %s", what);
	ok(all_ok, name);
	free(out);
}

/* An enc: reply line for text, as lond would send it (lond frames its
 * replies as lonc frames requests). */
static size_t enc_reply(struct crypto_idea *c, const char *text, char *out)
{
	long n = lond_enc_encode(c, "", 0, text, strlen(text), out);

	return n > 0 ? (size_t)n : 0;
}

static void check_reply_reader(struct crypto_idea *c)
{
	char wire[512], long_text[200];
	size_t n;

	for (size_t i = 0; i < sizeof(long_text) - 1; i++)
		long_text[i] = (char)('a' + i % 26);
	long_text[sizeof(long_text) - 1] = '\0';
	reply_pieces(c, "plain line", "pong\n", 5, LOND_REPLY_DONE, "pong", 0);
	reply_pieces(c, "empty line", "\n", 1, LOND_REPLY_DONE, "", 0);
	reply_pieces(c, "'en' is plain", "en\n", 3, LOND_REPLY_DONE, "en", 0);
	reply_pieces(c, "'enc' is plain", "enc\n", 4, LOND_REPLY_DONE, "enc", 0);
	reply_pieces(c, "'encx:' is plain", "encx:1\n", 7, LOND_REPLY_DONE, "encx:1", 0);
	reply_pieces(c, "plain with extra data", "ok\nmore", 7, LOND_REPLY_DONE, "ok", 4);
	reply_pieces(c, "plain keeps a CR", "ok\r\n", 4, LOND_REPLY_DONE, "ok\r", 0);
	reply_pieces(c, "unterminated plain", "abc", 3, LOND_REPLY_MORE, NULL, 0);
	n = enc_reply(c, "secret:42", wire);
	reply_pieces(c, "enc: 9 bytes", wire, n, LOND_REPLY_DONE, "secret:42", 0);
	n = enc_reply(c, "12345678", wire);
	reply_pieces(c, "enc: a whole block (padding block)", wire, n, LOND_REPLY_DONE,
		     "12345678", 0);
	n = enc_reply(c, "", wire);
	reply_pieces(c, "enc: empty", wire, n, LOND_REPLY_DONE, "", 0);
	n = enc_reply(c, long_text, wire);
	reply_pieces(c, "enc: 199 bytes", wire, n, LOND_REPLY_DONE, long_text, 0);
	n = enc_reply(c, "x", wire);
	memcpy(wire + n - 1, "\r\nnext", 7);
	reply_pieces(c, "enc: CR LF, then extra data", wire, n + 5, LOND_REPLY_DONE, "x", 4);
	n = enc_reply(c, "x", wire);
	reply_pieces(c, "enc: unterminated", wire, n - 1, LOND_REPLY_MORE, NULL, 0);
	reply_pieces(c, "enc: a bad hex digit", "enc:1:01234567z9abcdef\n", 23,
		     LOND_REPLY_BAD, NULL, 0);
	reply_pieces(c, "enc: an empty length", "enc::0123456789abcdef\n", 22,
		     LOND_REPLY_BAD, NULL, 0);
	reply_pieces(c, "enc: half a block", "enc:1:01234567\n", 15, LOND_REPLY_BAD,
		     NULL, 0);
	reply_pieces(c, "enc: a length beyond its data", "enc:9:0123456789abcdef\n", 23,
		     LOND_REPLY_BAD, NULL, 0);
	reply_pieces(c, "enc: a CR inside", "enc:1:01234567\r89abcdef\n", 24,
		     LOND_REPLY_BAD, NULL, 0);
	reply_pieces(c, "enc: a huge length", "enc:99999999999999999999999:00\n", 31,
		     LOND_REPLY_BAD, NULL, 0);

	/* Without a cipher (the handshake) an enc: line is plain. */
	struct lond_reply r;
	char line[] = "enc:1:0123456789abcdef\n";
	size_t produced, consumed;

	lond_reply_init(&r, NULL);
	is_int(lond_reply_feed(&r, line, strlen(line), &produced, &consumed),
	       LOND_REPLY_DONE, "no cipher: an enc: line is a plain one");
	is_int(produced, strlen(line) - 1, "no cipher: all of it is the text");
	is_int(r.wire, strlen(line), "wire counts the bytes with the newline");
	is_int(lond_reply_feed(&r, line, 1, &produced, &consumed), LOND_REPLY_BAD,
	       "feeding past the end is refused");

	/* The bytes counted on the wire, for max_reply_bytes. */
	lond_reply_init(&r, c);
	n = enc_reply(c, long_text, wire);
	is_int(lond_reply_feed(&r, wire, n, &produced, &consumed), LOND_REPLY_DONE,
	       "enc: whole line at once");
	is_int(r.wire, n, "enc: wire counts every byte");
	is_int(r.plain, strlen(long_text), "enc: plain counts the text");
}

static void check_enc(void)
{
	struct crypto_idea *c;

	is_int(crypto_init(), 0, "crypto_init");
	c = crypto_idea_new(enc_key);
	ok(c != NULL, "IDEA cipher created");
	if (!c)
		return;
	check_enc_frames(c);
	check_is_enc();
	check_enc_malformed(c);
	check_reply_reader(c);
	crypto_idea_free(c);
}

/* Step request line for the current step, as a string. */
static const char *req_line(struct lond_handshake *hs)
{
	static char buf[LOND_LINE_MAX];

	if (lond_handshake_request(hs, buf, sizeof(buf)) < 0)
		return "(error)";
	return buf;
}

/* ssl mode: init:ssl -> ok:ssl -> TLS (key line) -> version -> sethost. */
static void check_ssl_plan(void)
{
	struct lond_handshake hs;
	const char *key = "00112233445566778899aabbccddeeff";
	unsigned char want[LOND_KEY_LEN];

	lond_handshake_init(&hs, LOND_MODE_SSL, "msul1", "msul3", "0.1.0", true, true);
	is_str(req_line(&hs), "init:ssl\n", "ssl: first line is init:ssl");
	is_int(feed(&hs, "ok:ssl"), 0, "ssl: ok:ssl moves on");
	is_int(lond_handshake_step(&hs), LOND_STEP_TLS, "ssl: then the TLS step");
	is_str(req_line(&hs), "", "ssl: the TLS step sends no line");
	is_int(feed(&hs, "0011223344"), -1, "ssl: a short key line fails");
	lond_handshake_init(&hs, LOND_MODE_SSL, "msul1", "msul3", "0.1.0", true, true);
	is_int(feed(&hs, "ok:ssl"), 0, "ssl again: ok:ssl");
	is_int(feed(&hs, key), 0, "ssl: 32 hex digits accepted as the key");
	lond_pack_h32(key, 32, want);
	ok(hs.have_key && memcmp(hs.key, want, LOND_KEY_LEN) == 0, "ssl: key is pack(H32, line)");
	is_str(req_line(&hs), "version:0.1.0\n", "ssl: version step after TLS");
	is_int(feed(&hs, "2.11.4"), 0, "ssl: version answered");
	is_str(req_line(&hs), "sethost:msul3\n", "ssl: sethost step");
	is_int(feed(&hs, "ok"), 1, "ssl: no ekey step; done after sethost");
	ok(!hs.fell_back, "ssl: no fallback");

	/* A challenge instead of ok:ssl: lond has no certificates. */
	lond_handshake_init(&hs, LOND_MODE_SSL, "msul1", "msul3", "0.1.0", false, false);
	is_int(feed(&hs, "1234567890"), -1, "ssl: a challenge fails when insecure is not allowed");
	ok(hs.error && strstr(hs.error, "allow_insecure"), "ssl: and says why");
	lond_handshake_init(&hs, LOND_MODE_SSL, "msul1", "msul3", "0.1.0", false, false);
	hs.allow_insecure = true;
	is_int(feed(&hs, "1234567890"), 0, "ssl: a challenge continues insecure when allowed");
	ok(hs.fell_back, "ssl: fallback recorded");
	is_str(req_line(&hs), "1234567890\n", "fallback: the challenge is echoed");
	is_int(feed(&hs, "ok"), 0, "fallback: ok");
	is_str(req_line(&hs), "ekey\n", "fallback: then ekey");
	is_int(feed(&hs, "98765"), 1, "fallback: done after ekey");
	lond_handshake_init(&hs, LOND_MODE_SSL, "msul1", "msul3", "0.1.0", false, false);
	is_int(feed(&hs, "refused"), -1, "ssl: refused fails");
	ok(hs.refused, "ssl: refused recorded");
	lond_handshake_init(&hs, LOND_MODE_SSL, "msul1", "msul3", "0.1.0", false, false);
	is_int(feed(&hs, "ok:local"), -1, "ssl: a wrong answer fails");
}

/* local mode: init:local:<path> -> ok:local, key from the file. */
static void check_local_plan(void)
{
	struct lond_handshake hs;
	unsigned char want[LOND_KEY_LEN];

	lond_handshake_init(&hs, LOND_MODE_LOCAL, "msul1", "msul1", "0.1.0", false, true);
	hs.local_path = "/var/lib/lonc/keys/k1";
	snprintf(hs.local_key, sizeof(hs.local_key), "%s", "fedcba9876543210fedcba9876543210");
	is_str(req_line(&hs), "init:local:/var/lib/lonc/keys/k1\n", "local: init line names the file");
	is_int(feed(&hs, "ok"), -1, "local: plain ok is not ok:local");
	lond_handshake_init(&hs, LOND_MODE_LOCAL, "msul1", "msul1", "0.1.0", false, true);
	hs.local_path = "/k";
	snprintf(hs.local_key, sizeof(hs.local_key), "%s", "fedcba9876543210fedcba9876543210");
	is_int(feed(&hs, "ok:local"), 0, "local: ok:local accepted");
	lond_pack_h32(hs.local_key, 32, want);
	ok(hs.have_key && memcmp(hs.key, want, LOND_KEY_LEN) == 0, "local: key is the file's");
	is_str(req_line(&hs), "sethost:msul1\n", "local: sethost follows");
	is_int(feed(&hs, "ok"), 1, "local: done");
	is_str(lond_mode_name(LOND_MODE_LOCAL), "local", "mode names");
}

int main(void)
{
	check_ssl_plan();
	check_local_plan();
	check_pack_h32();
	check_session_key();
	check_handshake();
	check_switches();
	check_version_masked();
	check_parse();
	check_setup_commands();
	check_local();
	check_enc();
	done_testing();
}

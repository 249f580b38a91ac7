/*
 * probe.c - lonc --probe (probe.h): settings tried in order on fresh
 * connections (conn.c), each judged by pings, with a transcript.  Main
 * thread only; no locks.  May call: conn, config, lond, log, util.
 */
#include "probe.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "conn.h"
#include "log.h"
#include "lond.h"

/* The versioned init tried when the host has none configured: the
 * form newer LON-CAPA clients send (doc/protocol.md). */
#define PROBE_INIT_VERSION "2.11"
/* Each step of an attempt waits at most this long. */
#define PROBE_TIMEOUT_MS 3000
#define MAX_TRIALS 64

/* One set of the protocol switches. */
struct trial {
	int sethost_mode;
	const char *init_version;
	int key_id_order;
	const char *version_string;
	int tls_close_notify;
	bool version_step, sethost_step;
};

/* The points in the order their being wrong does harm (issue ranking),
 * each with the way to its alternatives. */
enum point { P_SETHOST_MODE, P_KEY_ID_ORDER, P_INIT_VERSION, P_VERSION_STRING,
	     P_CLOSE_NOTIFY, P_VERSION_STEP, P_SETHOST_STEP, P_N };

/* The k-th alternative of point p to base (false: none left). */
static bool alternative(enum point p, int k, const struct trial *base, int key_mode,
			struct trial *t)
{
	*t = *base;
	switch (p) {
	case P_SETHOST_MODE:
		if (k > 1)
			return false;
		t->sethost_mode = (base->sethost_mode + 1 + k) % 3;
		return true;
	case P_KEY_ID_ORDER:
		t->key_id_order = !base->key_id_order;
		return k == 0 && key_mode == KEY_INSECURE;
	case P_INIT_VERSION:
		t->init_version = *base->init_version ? "" : PROBE_INIT_VERSION;
		return k == 0 && key_mode != KEY_LOCAL;
	case P_VERSION_STRING:
		t->version_string = strcmp(base->version_string, LONC_VERSION) ?
				    LONC_VERSION : PROBE_INIT_VERSION;
		return k == 0 && base->version_step;
	case P_CLOSE_NOTIFY:
		t->tls_close_notify = !base->tls_close_notify;
		return k == 0 && key_mode == KEY_SSL;
	case P_VERSION_STEP:
		t->version_step = !base->version_step;
		return k == 0;
	case P_SETHOST_STEP:
		t->sethost_step = !base->sethost_step;
		return k == 0;
	default:
		return false;
	}
}

/* Apply what point p of `from` says to `to`. */
static void take_point(struct trial *to, const struct trial *from, enum point p)
{
	switch (p) {
	case P_SETHOST_MODE: to->sethost_mode = from->sethost_mode; break;
	case P_KEY_ID_ORDER: to->key_id_order = from->key_id_order; break;
	case P_INIT_VERSION: to->init_version = from->init_version; break;
	case P_VERSION_STRING: to->version_string = from->version_string; break;
	case P_CLOSE_NOTIFY: to->tls_close_notify = from->tls_close_notify; break;
	case P_VERSION_STEP: to->version_step = from->version_step; break;
	default: to->sethost_step = from->sethost_step; break;
	}
}

/* The configured settings, then every single change, then every pair of
 * changes to two different points.  Returns how many. */
static size_t plan(const struct host_conf *hc, struct trial *out)
{
	struct trial singles[16];
	enum point of[16];
	size_t n = 0, ns = 0;

	out[n++] = (struct trial){ hc->sethost_mode, hc->init_version, hc->key_id_order,
				   hc->version_string, hc->tls_close_notify,
				   hc->version_step, hc->sethost_step };
	for (int p = 0; p < P_N; p++)
		for (int k = 0; ns < 16 && alternative(p, k, &out[0], hc->key_mode, &singles[ns]); k++)
			of[ns++] = p;
	for (size_t i = 0; i < ns && n < MAX_TRIALS; i++)
		out[n++] = singles[i];
	for (size_t i = 0; i < ns; i++) {
		for (size_t j = i + 1; j < ns && n < MAX_TRIALS; j++) {
			if (of[i] == of[j])
				continue;
			out[n] = singles[i];
			take_point(&out[n], &singles[j], of[j]);
			n++;
		}
	}
	return n;
}

static bool same(const struct trial *a, const struct trial *b)
{
	return a->sethost_mode == b->sethost_mode && a->key_id_order == b->key_id_order &&
	       !strcmp(a->init_version, b->init_version) &&
	       !strcmp(a->version_string, b->version_string) &&
	       a->tls_close_notify == b->tls_close_notify &&
	       a->version_step == b->version_step && a->sethost_step == b->sethost_step;
}

static bool was_tried(const struct trial *t, const struct trial *tried, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (same(t, &tried[i]))
			return true;
	return false;
}

/* After `last` failed with a hint (conn.h, lond_answer_hint): the
 * hinted point's first alternative to last not yet tried, in *out; so
 * a lond that differs on several points is found in as many steps.
 * NULL when there is no hint or nothing new along it. */
static const struct trial *follow(const char *hint, const struct trial *last, int key_mode,
				  const struct trial *tried, size_t n, struct trial *out)
{
	static const char *const names[P_N] = {
		[P_SETHOST_MODE] = "sethost_mode", [P_KEY_ID_ORDER] = "key_id_order",
		[P_INIT_VERSION] = "init_version", [P_VERSION_STRING] = "version_string",
		[P_CLOSE_NOTIFY] = "tls_close_notify", [P_VERSION_STEP] = "version_step",
		[P_SETHOST_STEP] = "sethost_step",
	};

	/* A hint may name several, likeliest first ("a,b"). */
	for (const char *h = hint; h && *h; h = strchr(h, ',') ? strchr(h, ',') + 1 : NULL) {
		size_t len = strcspn(h, ",");

		for (int p = 0; p < P_N; p++) {
			if (strlen(names[p]) != len || strncmp(h, names[p], len))
				continue;
			for (int k = 0; alternative(p, k, last, key_mode, out); k++)
				if (!was_tried(out, tried, n))
					return out;
		}
	}
	return NULL;
}

static void print_trial(FILE *out, const struct trial *t, const char *indent)
{
	fprintf(out, "%ssethost_mode: %s\n%sinit_version: \"%s\"\n%skey_id_order: %s\n"
		"%sversion_string: \"%s\"\n%stls_close_notify: %s\n%sversion_step: %s\n"
		"%ssethost_step: %s\n",
		indent, config_sethost_mode_name(t->sethost_mode), indent, t->init_version,
		indent, config_key_id_order_name(t->key_id_order), indent, t->version_string,
		indent, config_close_notify_name(t->tls_close_notify), indent,
		t->version_step ? "true" : "false", indent, t->sethost_step ? "true" : "false");
}

/* The transcript: every line, secrets as their length only. */
static void transcript(void *arg, bool sent, const char *line, size_t len)
{
	FILE *out = arg;

	if (!line)
		fprintf(out, "  %s (%zu bytes, not shown)\n", sent ? ">" : "<", len);
	else
		fprintf(out, "  %s %.*s%s\n", sent ? ">" : "<", len > 200 ? 200 : (int)len,
			line, len > 200 ? "..." : "");
}

/* Send `req` and keep lond's answer in ans.  0, or -1 with why and, when
 * the failure points at a switch, *hint. */
static int ask(struct conn *c, const char *req, char *ans, size_t n, char *why, size_t wn,
	       const char **hint)
{
	struct lond_request r;

	lond_parse_request(req, strlen(req), &r);
	char line[512];
	struct conn_clock k;
	size_t len;
	int m = snprintf(line, sizeof(line), "%s\n", req);

	enum conn_read rc = conn_exchange(c, line, (size_t)m - 1, &k);
	const char *text = rc == CONN_OK ? reply_text(&c->reply, &len) : NULL;
	if (!text) {
		snprintf(why, wn, "%s: no answer (%s)", req,
			 conn_read_reason(rc, NULL));
		reply_end(&c->reply);
		/* A separate sethost: transaction lond did not answer ok. */
		if (r.prefix_len && c->conf->sethost_mode == SETHOST_SEPARATE)
			*hint = "sethost_mode";
		return -1;
	}
	const char *h = conn_answer_hint(c, req, strlen(req));
	snprintf(ans, n, "%.*s", (int)len, text);
	reply_end(&c->reply);
	if (lond_is_error(ans, strlen(ans))) {
		snprintf(why, wn, "%s was answered '%s'", req, ans);
		*hint = h;
		return -1;
	}
	return 0;
}

/* The checks of one connected attempt: for the bare address and each
 * of the host's IDs, ping and encrypt:ping answer, alike, and not with
 * an error.  0, or -1 with why. */
static int judge(struct conn *c, const struct host_conf *hc, char *why, size_t wn,
		 const char **hint)
{
	for (size_t i = 0; i <= hc->n_ids; i++) {
		char plain[300], enc[300], a[128], b[128];
		const char *pre = i ? "sethost:" : "", *id = i ? hc->ids[i - 1] : "";

		snprintf(plain, sizeof(plain), "%s%s%sping", pre, id, i ? ":" : "");
		snprintf(enc, sizeof(enc), "%s%s%sencrypt:ping", pre, id, i ? ":" : "");
		if (ask(c, plain, a, sizeof(a), why, wn, hint) < 0 ||
		    ask(c, enc, b, sizeof(b), why, wn, hint) < 0)
			return -1;
		if (strcmp(a, b)) {
			snprintf(why, wn, "%.100s answered '%.60s' but %.100s '%.60s' (a wrong key?)",
				 plain, a, enc, b);
			if (c->insecure)
				*hint = "key_id_order";
			return -1;
		}
	}
	return 0;
}

/* One attempt: a fresh connection with the trial's settings.  1 when it
 * worked, 0 when not, -1 when lond cannot be reached at all. */
static int attempt(const struct config *cfg, struct crypto_tls *tls,
		   const struct host_conf *base, const struct trial *t, int no, FILE *out,
		   const char **hint)
{
	struct host_conf hc = *base;
	struct conn c;
	struct conn_result res;
	char why[512] = "";

	hc.sethost_mode = t->sethost_mode;
	hc.init_version = (char *)(uintptr_t)t->init_version;
	hc.key_id_order = t->key_id_order;
	hc.version_string = (char *)(uintptr_t)t->version_string;
	hc.tls_close_notify = t->tls_close_notify;
	hc.version_step = t->version_step;
	hc.sethost_step = t->sethost_step;
	fprintf(out, "attempt %d:\n", no);
	print_trial(out, t, "  # ");
	conn_init(&c, cfg, &hc, tls, NULL, 0);
	c.trace = transcript;
	c.trace_arg = out;
	int rc = conn_open(&c, &res);
	if (rc < 0 && res.no_exchange) {
		fprintf(out, "  fails: %s\n  stopped: no other settings can help with that\n",
			res.reason);
		conn_destroy(&c);
		return -1;
	}
	*hint = rc < 0 ? res.hint : NULL;
	if (rc < 0)
		snprintf(why, sizeof(why), "%s", res.reason);
	else if (judge(&c, &hc, why, sizeof(why), hint) == 0)
		fprintf(out, "  works (lond's version: \"%s\")\n", c.peer_version);
	if (*why)
		fprintf(out, "  fails: %s%s%s\n", why, *hint ? "; hint: " : "", *hint ? *hint : "");
	conn_destroy(&c);
	return *why ? 0 : 1;
}

int probe_run(const struct config *cfg, struct crypto_tls *tls, const char *name,
	      FILE *out)
{
	const struct host_conf *hc = config_find_host(cfg, name);
	static struct trial trials[MAX_TRIALS], tried[MAX_TRIALS], hinted;

	for (size_t i = 0; !hc && i < cfg->n_hosts; i++)
		for (size_t a = 0; a < cfg->hosts[i].n_aliases; a++)
			if (!strcmp(cfg->hosts[i].aliases[a], name))
				hc = &cfg->hosts[i];
	if (!hc) {
		fprintf(stderr, "lonc: --probe: no host '%s' in %s\n", name, cfg->path);
		return 2;
	}
	/* Short waits: a wrong guess often shows as silence. */
	struct config quick = *cfg;
	quick.connect_timeout_ms = quick.connect_timeout_ms < PROBE_TIMEOUT_MS ?
				   quick.connect_timeout_ms : PROBE_TIMEOUT_MS;
	quick.handshake_timeout_ms = quick.transaction_timeout_ms =
		quick.max_transaction_ms = PROBE_TIMEOUT_MS;
	size_t n = plan(hc, trials), next = 0, done = 0;
	fprintf(out, "probing %s (%s port %d, key mode %s)\n", hc->hostname,
		hc->address ? hc->address : hc->hostname, hc->port,
		config_key_mode_name(hc->key_mode));
	const struct trial *t = &trials[next++];
	while (t && done < MAX_TRIALS) {
		const char *hint = NULL;
		tried[done++] = *t;
		int rc = attempt(&quick, tls, hc, t, (int)done, out, &hint);

		if (rc < 0)
			return 1;
		if (rc == 1) {
			fprintf(out, "\n# Settings that work for %s (paste into its hosts: entry):\n",
				hc->hostname);
			print_trial(out, t, "    ");
			return 0;
		}
		t = follow(hint, &tried[done - 1], hc->key_mode, tried, done, &hinted);
		while (!t && next < n)
			if (!was_tried(&trials[next++], tried, done))
				t = &trials[next - 1];
	}
	fprintf(out, "\nno settings worked for %s\n", hc->hostname);
	return 1;
}

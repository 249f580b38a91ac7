/*
 * config.c - YAML configuration loader.  The only file that includes
 * <yaml.h>.  One option table describes every top-level key (name, type,
 * default, bounds); defaults go through the same parser as file values,
 * so a default can never be of the wrong type.  For the move from
 * loncnew it also applies what loncapa.c reads from LON-CAPA's own
 * files: PerlSetVar defaults (loncapa_conf) and imported hosts
 * (hosts_tab).  Precedence: table defaults < loncapa_conf < YAML keys.
 * Called from the main thread (start-up, reload on a signal) or the admin
 * thread (reload), one at a time (broker's reload_mu); takes no locks.
 * May call: loncapa, log, util.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <yaml.h>

#include "loncapa.h"
#include "log.h"

enum opt_type { T_STR, T_INT, T_SIZE, T_MS, T_BOOL, T_LEVEL, T_FACILITY,
		T_KEYMODE, T_OPTSTR, T_MODE, T_ENUM };

/* How a changed option takes effect on reload. */
enum reload_rule {
	RELOAD_HOSTS,    /* it shapes the hosts: a host whose settings differ
			    is rebuilt (the default) */
	RELOAD_LIVE,     /* applied at once, nothing rebuilt */
	RELOAD_RESTART,  /* refused: it takes effect at a restart only */
};

struct option {
	const char *name;
	enum opt_type type;
	size_t offset;
	const char *def;        /* NULL: required */
	long long min, max;     /* for numbers (ms for durations) */
	enum reload_rule reload;
	const char *const *names; /* T_ENUM: the values, NULL-terminated */
};

#define OPT(n, t, d, lo, hi) { #n, t, offsetof(struct config, n), d, lo, hi, RELOAD_HOSTS, NULL }
#define OPT_R(n, t, d, r) { #n, t, offsetof(struct config, n), d, 0, 0, r, NULL }
#define OPT_MS(n, key, d, lo, hi) \
	{ key, T_MS, offsetof(struct config, n), d, lo, hi, RELOAD_HOSTS, NULL }
#define OPT_MS_LIVE(n, key, d, lo, hi) \
	{ key, T_MS, offsetof(struct config, n), d, lo, hi, RELOAD_LIVE, NULL }
#define OPT_AS(n, key, t, d) { key, t, offsetof(struct config, n), d, 0, 0, RELOAD_HOSTS, NULL }
#define OPT_ENUM(n, d, v) { #n, T_ENUM, offsetof(struct config, n), d, 0, 0, RELOAD_HOSTS, v }

static const char *const sethost_mode_names[] = { "inline", "separate", "off", NULL };
static const char *const key_id_order_names[] = { "remote_first", "local_first", NULL };
static const char *const close_notify_names[] = { "required", "lenient", NULL };

const char *config_sethost_mode_name(int m)
{
	return sethost_mode_names[m];
}

const char *config_key_id_order_name(int o)
{
	return key_id_order_names[o];
}

const char *config_close_notify_name(int c)
{
	return close_notify_names[c];
}
#define DAY_MS (86400LL * 1000)

static const struct option options[] = {
	OPT(host_id, T_STR, NULL, 0, 0),
	OPT_R(socket_dir, T_STR, NULL, RELOAD_RESTART),
	OPT_R(pid_file, T_STR, "/var/run/lonc/lonc.pid", RELOAD_RESTART),
	OPT_R(log_dir, T_STR, "/home/httpd/perl/logs", RELOAD_LIVE),
	OPT_R(user, T_STR, "www", RELOAD_RESTART),
	OPT_R(log_level, T_LEVEL, "info", RELOAD_LIVE),
	OPT_R(log_file, T_OPTSTR, "", RELOAD_LIVE),
	OPT_R(syslog_facility, T_FACILITY, "daemon", RELOAD_RESTART),
	OPT(lond_port, T_INT, "5663", 1, 65535),
	OPT(max_connections, T_INT, "10", 1, 1000),
	OPT(max_queue, T_INT, "1024", 1, 1000000),
	OPT(retry_attempts, T_INT, "5", 1, 1000),
	{ "max_handshakes", T_INT, offsetof(struct config, max_handshakes), "32", 1, 100000,
	  RELOAD_LIVE, NULL },
	OPT(batch_workers, T_BOOL, "true", 0, 0),
	OPT(max_request_bytes, T_SIZE, "16M", 64, 1LL << 31),
	OPT(max_reply_bytes, T_SIZE, "1G", 64, 1LL << 40),
	OPT(reply_buffer, T_SIZE, "1M", 4096, 1LL << 30),
	OPT_R(spool_dir, T_STR, "/var/lib/lonc/spool", RELOAD_RESTART),
	OPT_MS(idle_timeout_ms, "idle_timeout", "300", 100, DAY_MS),
	OPT_MS(connect_timeout_ms, "connect_timeout", "10", 10, DAY_MS),
	OPT_MS(handshake_timeout_ms, "handshake_timeout", "10", 10, DAY_MS),
	OPT_MS(transaction_timeout_ms, "transaction_timeout", "120", 10, DAY_MS),
	OPT_MS(max_transaction_ms, "max_transaction_time", "300", 10, DAY_MS),
	OPT_MS(client_timeout_ms, "client_timeout", "30", 10, DAY_MS),
	OPT_MS(client_write_timeout_ms, "client_write_timeout", "30", 10, DAY_MS),
	OPT_MS(queue_timeout_ms, "queue_timeout", "60", 10, DAY_MS),
	OPT_MS(backoff_initial_ms, "backoff_initial", "5", 10, DAY_MS),
	OPT_MS(backoff_max_ms, "backoff_max", "300", 10, DAY_MS),
	OPT(version_step, T_BOOL, "true", 0, 0),
	OPT(sethost_step, T_BOOL, "true", 0, 0),
	OPT_ENUM(sethost_mode, "inline", sethost_mode_names),
	OPT(init_version, T_OPTSTR, "", 0, 0),
	OPT_ENUM(key_id_order, "remote_first", key_id_order_names),
	OPT(version_string, T_STR, LONC_VERSION, 0, 0),
	OPT_ENUM(tls_close_notify, "required", close_notify_names),
	OPT_MS_LIVE(outage_window_ms, "outage_window", "60", 1000, DAY_MS),
	{ "outage_min_hosts", T_INT, offsetof(struct config, outage_min_hosts), "3", 2, 100000,
	  RELOAD_LIVE, NULL },
	OPT(key_mode, T_KEYMODE, "auto", 0, 0),
	OPT(allow_insecure, T_BOOL, "false", 0, 0),
	OPT(local_key_dir, T_STR, "/var/lib/lonc/keys", 0, 0),
	OPT_R(group, T_OPTSTR, "", RELOAD_RESTART),
	{ "socket_mode", T_MODE, offsetof(struct config, socket_mode), "0660", 0, 0777,
	  RELOAD_RESTART, NULL },
	OPT_MS_LIVE(shutdown_timeout_ms, "shutdown_timeout", "30", 0, DAY_MS),
	OPT_R(admin_socket, T_STR, "/var/run/lonc/admin.sock", RELOAD_RESTART),
	OPT_MS_LIVE(delayed_scan_ms, "delayed_scan_interval", "30", 100, DAY_MS),
	/* Migration from loncnew: "" means none. */
	OPT_R(loncapa_conf, T_OPTSTR, "", RELOAD_RESTART),
	OPT_R(hosts_tab, T_OPTSTR, "", RELOAD_RESTART),
	/* The tls: mapping; its keys are "tls.<name>". */
	OPT_AS(tls_ca_file, "tls.ca_file", T_OPTSTR, ""),
	OPT_AS(tls_cert_file, "tls.cert_file", T_OPTSTR, ""),
	OPT_AS(tls_key_file, "tls.key_file", T_OPTSTR, ""),
	OPT_AS(tls_verify_hostname, "tls.verify_hostname", T_BOOL, "true"),
};
#define N_OPTIONS (sizeof(options) / sizeof(options[0]))



static const char *const key_mode_names[] = {
	[KEY_AUTO] = "auto", [KEY_SSL] = "ssl", [KEY_INSECURE] = "insecure",
	[KEY_LOCAL] = "local",
};

const char *config_key_mode_name(enum key_mode m)
{
	return key_mode_names[m];
}

static int parse_key_mode(const char *s)
{
	for (int i = 0; i < 4; i++)
		if (!strcmp(s, key_mode_names[i]))
			return i;
	return -1;
}

/*
 * The keys of a hosts: entry, in one table: their type, where they go in
 * struct host_conf, and the top-level option that gives their default.
 * Loading, the defaults, the reload comparison (config_host_same) and
 * the documentation check all walk it: a new per-host key is one row
 * here (and its use).  Every per-host key shapes its host: a change
 * rebuilds that host on reload.
 */
enum host_type {
	H_NAME,     /* a socket name (the hostname) */
	H_STR,      /* a non-empty string, or NULL when not given */
	H_LIST,     /* a list of socket names or IDs (count at count_offset) */
	H_INT,      /* a number min..max */
	H_BOOL,
	H_KEYMODE,
	H_ENUM,     /* one of names */
	H_OPTSTR,   /* a string, maybe empty; never NULL once loaded */
};

struct host_option {
	const char *name;
	enum host_type type;
	size_t offset;           /* in struct host_conf */
	size_t count_offset;     /* H_LIST: where its length goes */
	long long min, max;      /* H_INT */
	const char *global;      /* the top-level option giving the default */
	const char *const *names; /* H_ENUM */
};

#define HOPT(n, t, g) { #n, t, offsetof(struct host_conf, n), 0, 0, 0, g, NULL }
#define HOPT_INT(n, lo, hi, g) { #n, H_INT, offsetof(struct host_conf, n), 0, lo, hi, g, NULL }
#define HOPT_LIST(n) { #n, H_LIST, offsetof(struct host_conf, n), \
		       offsetof(struct host_conf, n_##n), 0, 0, NULL, NULL }
#define HOPT_ENUM(n, v) { #n, H_ENUM, offsetof(struct host_conf, n), 0, 0, 0, #n, v }

static const struct host_option host_options[] = {
	HOPT(hostname, H_NAME, NULL),
	HOPT_LIST(ids),
	HOPT(address, H_STR, NULL),
	HOPT_INT(port, 1, 65535, "lond_port"),
	HOPT_LIST(aliases),
	HOPT_INT(max_connections, 1, 1000, "max_connections"),
	HOPT(version_step, H_BOOL, "version_step"),
	HOPT(sethost_step, H_BOOL, "sethost_step"),
	HOPT(key_mode, H_KEYMODE, "key_mode"),
	HOPT(tls_name, H_STR, NULL),
	HOPT_ENUM(sethost_mode, sethost_mode_names),
	HOPT(init_version, H_OPTSTR, "init_version"),
	HOPT_ENUM(key_id_order, key_id_order_names),
	HOPT(version_string, H_STR, "version_string"),
	HOPT_ENUM(tls_close_notify, close_notify_names),
};
#define N_HOST_OPTIONS (sizeof(host_options) / sizeof(host_options[0]))

const char *const *config_option_names(void)
{
	/* Filled once from the main thread (or a test) before any use. */
	static const char *names[N_OPTIONS + 32];
	size_t n = 0;

	if (!names[0]) {
		for (size_t i = 0; i < N_OPTIONS; i++)
			names[n++] = options[i].name;
		names[n++] = "hosts";
		for (size_t i = 0; i < N_HOST_OPTIONS; i++) {
			static char full[N_HOST_OPTIONS][48];

			snprintf(full[i], sizeof(full[i]), "hosts.%s", host_options[i].name);
			names[n++] = full[i];
		}
		names[n] = NULL;
	}
	return names;
}

/* Errors reported at most by one config_load. */
#define MAX_ERRORS 20

struct loader {
	const char *path;
	struct config *cfg;             /* being loaded */
	yaml_document_t doc;
	char *err;                      /* every error, one per line */
	size_t errlen;
	unsigned errors;                /* how many so far */
	bool entries_only;              /* hosts entries read only for their
					 * own errors (load_host) */
	bool seen[N_OPTIONS];           /* given in the YAML file */
	unsigned long key_line[N_OPTIONS];  /* ... at this line */
	bool from_conf[N_OPTIONS];      /* set from loncapa_conf */
	char *conf_path;                /* loncapa_conf, resolved */
	char *tab_path;                 /* hosts_tab, resolved */
};

/* A line of one of the files being read, for messages. */
struct where {
	const char *path;
	unsigned long line;
};

static struct where at(const struct loader *ld, const yaml_node_t *node)
{
	return (struct where){ ld->path,
			       node ? (unsigned long)node->start_mark.line + 1 : 1UL };
}

static int vfail(struct loader *ld, struct where w, const char *key,
		 const char *fmt, va_list ap) PRINTF_LIKE(4, 0);

static int vfail(struct loader *ld, struct where w, const char *key,
		 const char *fmt, va_list ap)
{
	char msg[512];
	size_t used = ld->errors ? strlen(ld->err) : 0;

	/* Each error on a line of its own, as many as fit. */
	if (ld->errors++ >= MAX_ERRORS || used + 2 >= ld->errlen)
		return -1;
	if (used)
		ld->err[used++] = '\n';
	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (key)
		snprintf(ld->err + used, ld->errlen - used, "%s:%lu: key '%s': %s", w.path,
			 w.line, key, msg);
	else
		snprintf(ld->err + used, ld->errlen - used, "%s:%lu: %s", w.path, w.line, msg);
	return -1;
}

/* "FILE:LINE: key 'KEY': message" (without the key part if key is NULL)
 * for a YAML node (fail) or any line of any file (fail_at). */
static int fail(struct loader *ld, const yaml_node_t *node, const char *key,
		const char *fmt, ...) PRINTF_LIKE(4, 5);
static int fail_at(struct loader *ld, struct where w, const char *key,
		   const char *fmt, ...) PRINTF_LIKE(4, 5);

static int fail(struct loader *ld, const yaml_node_t *node, const char *key,
		const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfail(ld, at(ld, node), key, fmt, ap);
	va_end(ap);
	return -1;
}

static int fail_at(struct loader *ld, struct where w, const char *key,
		   const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfail(ld, w, key, fmt, ap);
	va_end(ap);
	return -1;
}

static const char *scalar(const yaml_node_t *node)
{
	return node && node->type == YAML_SCALAR_NODE ?
		(const char *)node->data.scalar.value : NULL;
}

static int parse_ll(const char *s, long long *out)
{
	char *end;

	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || end == s || *end)
		return -1;
	*out = v;
	return 0;
}

/* "2.5" seconds -> 2500 ms.  Plain decimal only: no exponents. */
static int parse_ms(const char *s, long long *out)
{
	long long whole = 0, frac = 0, scale = 1000;
	const char *p = s;

	if (!*p)
		return -1;
	for (; *p >= '0' && *p <= '9'; p++) {
		whole = whole * 10 + (*p - '0');
		if (whole > DAY_MS)
			return -1;
	}
	if (*p == '.') {
		p++;
		if (!(*p >= '0' && *p <= '9'))
			return -1;
		for (; *p >= '0' && *p <= '9'; p++) {
			if (scale > 1) {
				scale /= 10;
				frac += (*p - '0') * scale;
			}
		}
	}
	if (*p || p == s)
		return -1;
	*out = whole * 1000 + frac;
	return 0;
}

/* "4096", "64K", "16M", "1G" -> bytes. */
static int parse_size(const char *s, long long *out)
{
	char *end;

	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || end == s || v < 0)
		return -1;
	long long mult = 1;
	switch (*end) {
	case '\0': break;
	case 'k': case 'K': mult = 1LL << 10; end++; break;
	case 'm': case 'M': mult = 1LL << 20; end++; break;
	case 'g': case 'G': mult = 1LL << 30; end++; break;
	default: return -1;
	}
	if (*end || v > LLONG_MAX / mult)
		return -1;
	*out = v * mult;
	return 0;
}

static int parse_bool(const char *s, bool *out)
{
	if (!strcmp(s, "true") || !strcmp(s, "yes") || !strcmp(s, "on")) {
		*out = true;
		return 0;
	}
	if (!strcmp(s, "false") || !strcmp(s, "no") || !strcmp(s, "off")) {
		*out = false;
		return 0;
	}
	return -1;
}

static const char *type_name(enum opt_type t)
{
	switch (t) {
	case T_STR: return "a string";
	case T_INT: return "an integer";
	case T_SIZE: return "a size in bytes (e.g. 4096, 64K, 16M)";
	case T_MS: return "a duration in seconds (e.g. 10 or 0.5)";
	case T_BOOL: return "true or false";
	case T_LEVEL: return "a log level (err, warning, notice, info, debug)";
	case T_FACILITY: return "a syslog facility (daemon, user, local0..local7)";
	case T_KEYMODE: return "a key mode (auto, ssl, insecure, local)";
	case T_OPTSTR: return "a string";
	case T_MODE: return "an octal file mode (e.g. 0660)";
	case T_ENUM: return "one of the values listed in lonc.yaml(5)";
	}
	return "?";
}

/* One of names (a NULL-terminated list) into *out. */
static int parse_enum(struct loader *ld, const char *const *names, const char *s,
		      int *out, struct where w, const char *key)
{
	char list[256] = "";

	for (int i = 0; names[i]; i++) {
		if (!strcmp(names[i], s)) {
			*out = i;
			return 0;
		}
		size_t n = strlen(list);
		snprintf(list + n, sizeof(list) - n, "%s%s", i ? ", " : "", names[i]);
	}
	return fail_at(ld, w, key, "expected one of %s, got '%s'", list, s);
}

/* Store text value `s` for option `o` into cfg.  Messages name the key
 * as `key` (the option, or the PerlSetVar it came from) at `w`. */
static int set_option(struct loader *ld, struct config *cfg,
		      const struct option *o, const char *s, struct where w,
		      const char *key)
{
	char *field = (char *)cfg + o->offset;
	long long v = 0;
	int rc = 0;

	switch (o->type) {
	case T_STR:
		if (!*s)
			return fail_at(ld, w, key, "must not be empty");
		/* fall through */
	case T_OPTSTR:
		free(*(char **)field);
		*(char **)field = xstrdup(s);
		return 0;
	case T_KEYMODE:
		if ((*(int *)field = parse_key_mode(s)) < 0)
			return fail_at(ld, w, key, "expected %s, got '%s'",
				       type_name(o->type), s);
		return 0;
	case T_ENUM:
		return parse_enum(ld, o->names, s, (int *)field, w, key);
	case T_BOOL:
		if (parse_bool(s, (bool *)field) < 0)
			return fail_at(ld, w, key, "expected %s, got '%s'",
				       type_name(o->type), s);
		return 0;
	case T_LEVEL:
		if ((*(int *)field = log_level_from_name(s)) < 0)
			return fail_at(ld, w, key, "expected %s, got '%s'",
				       type_name(o->type), s);
		return 0;
	case T_FACILITY:
		if ((*(int *)field = log_facility_from_name(s)) < 0)
			return fail_at(ld, w, key, "expected %s, got '%s'",
				       type_name(o->type), s);
		return 0;
	case T_INT: rc = parse_ll(s, &v); break;
	case T_SIZE: rc = parse_size(s, &v); break;
	case T_MODE: {
		char *end;

		errno = 0;
		v = strtoll(s, &end, 8);
		rc = errno || end == s || *end ? -1 : 0;
		break;
	}
	case T_MS: rc = parse_ms(s, &v); break;
	}
	if (rc < 0)
		return fail_at(ld, w, key, "expected %s, got '%s'",
			       type_name(o->type), s);
	if (v < o->min || v > o->max) {
		if (o->type == T_MS)
			return fail_at(ld, w, key,
				       "%s is out of range (%.3g to %lld seconds)",
				       s, (double)o->min / 1000, o->max / 1000);
		return fail_at(ld, w, key,
			       "%s is out of range (%lld to %lld)", s, o->min,
			       o->max);
	}
	if (o->type == T_SIZE)
		*(size_t *)field = (size_t)v;
	else
		*(int *)field = (int)v;
	return 0;
}

static bool option_equal(const struct option *o, const struct config *a,
			 const struct config *b)
{
	const char *fa = (const char *)a + o->offset;
	const char *fb = (const char *)b + o->offset;

	switch (o->type) {
	case T_STR:
	case T_OPTSTR:
		return !strcmp(*(char *const *)fa, *(char *const *)fb);
	case T_SIZE:
		return *(const size_t *)fa == *(const size_t *)fb;
	case T_BOOL:
		return *(const bool *)fa == *(const bool *)fb;
	default:
		return *(const int *)fa == *(const int *)fb;
	}
}

int config_check_reload(const struct config *old, const struct config *new,
			char *err, size_t errlen)
{
	for (size_t i = 0; i < N_OPTIONS; i++) {
		const struct option *o = &options[i];

		if (o->reload == RELOAD_RESTART && !option_equal(o, old, new)) {
			snprintf(err, errlen,
				 "%s: key '%s' changed; it takes effect only at a restart",
				 new->path, o->name);
			return -1;
		}
	}
	return 0;
}

static bool strings_equal(char **a, size_t na, char **b, size_t nb)
{
	if (na != nb)
		return false;
	for (size_t i = 0; i < na; i++)
		if (strcmp(a[i], b[i]))
			return false;
	return true;
}

static bool host_option_equal(const struct host_option *o,
			      const struct host_conf *a, const struct host_conf *b)
{
	const char *fa = (const char *)a + o->offset;
	const char *fb = (const char *)b + o->offset;

	switch (o->type) {
	case H_NAME:
	case H_STR:
	case H_OPTSTR: {
		const char *sa = *(char *const *)fa, *sb = *(char *const *)fb;

		return !strcmp(sa ? sa : "", sb ? sb : "");
	}
	case H_LIST:
		return strings_equal(*(char **const *)fa,
				     *(const size_t *)((const char *)a + o->count_offset),
				     *(char **const *)fb,
				     *(const size_t *)((const char *)b + o->count_offset));
	case H_BOOL:
		return *(const bool *)fa == *(const bool *)fb;
	case H_INT:
	case H_KEYMODE:
	case H_ENUM:
		return *(const int *)fa == *(const int *)fb;
	}
	return false;
}

bool config_host_same(const struct config *a, const struct host_conf *ha,
		      const struct config *b, const struct host_conf *hb)
{
	for (size_t i = 0; i < N_OPTIONS; i++)
		if (options[i].reload == RELOAD_HOSTS && !option_equal(&options[i], a, b))
			return false;
	for (size_t i = 0; i < N_HOST_OPTIONS; i++)
		if (!host_option_equal(&host_options[i], ha, hb))
			return false;
	return true;
}

const struct host_conf *config_find_host(const struct config *cfg,
					 const char *hostname)
{
	for (size_t i = 0; i < cfg->n_hosts; i++)
		if (!strcmp(cfg->hosts[i].hostname, hostname))
			return &cfg->hosts[i];
	return NULL;
}

struct config *config_ref(struct config *cfg)
{
	atomic_fetch_add(&cfg->refs, 1);
	return cfg;
}

void config_unref(struct config *cfg)
{
	if (cfg && atomic_fetch_sub(&cfg->refs, 1) == 1)
		config_free(cfg);
}

static const struct option *find_option(const char *name)
{
	for (size_t i = 0; i < N_OPTIONS; i++)
		if (!strcmp(options[i].name, name))
			return &options[i];
	return NULL;
}

/* A sequence of non-empty scalars -> NULL-free string array. */
static int load_strings(struct loader *ld, yaml_node_t *node, const char *key,
			char ***out, size_t *n)
{
	if (node->type != YAML_SEQUENCE_NODE)
		return fail(ld, node, key, "expected a list");
	size_t cnt = (size_t)(node->data.sequence.items.top -
			      node->data.sequence.items.start);
	*out = xcalloc(cnt + 1, sizeof(char *));
	*n = 0;
	for (yaml_node_item_t *it = node->data.sequence.items.start;
	     it < node->data.sequence.items.top; it++) {
		yaml_node_t *item = yaml_document_get_node(&ld->doc, *it);
		const char *s = scalar(item);

		if (!s || !*s)
			return fail(ld, item, key,
				    "list items must be non-empty strings");
		(*out)[(*n)++] = xstrdup(s);
	}
	return 0;
}

/* A socket name becomes a file name under socket_dir. */
static bool valid_socket_name(const char *s)
{
	/* A leading dot: lonc's own files in socket_dir (and no DNS name). */
	if (!*s || *s == '.')
		return false;
	for (; *s; s++)
		if (*s == '/' || (unsigned char)*s <= ' ' || *s == 0x7f)
			return false;
	return true;
}

static bool tls_configured(const struct config *cfg)
{
	return *cfg->tls_ca_file && *cfg->tls_cert_file && *cfg->tls_key_file;
}

/* auto: local for this node's own lond (its ids include host_id), ssl
 * when certificates are configured, insecure only if allowed. */
static int resolve_key_mode(struct loader *ld, const struct config *cfg,
			    struct host_conf *h, struct where w)
{
	if (h->key_mode == KEY_AUTO) {
		bool own = false;

		for (size_t i = 0; i < h->n_ids; i++)
			own |= !strcmp(h->ids[i], cfg->host_id);
		if (own)
			h->key_mode = KEY_LOCAL;
		else if (tls_configured(cfg))
			h->key_mode = KEY_SSL;
		else if (cfg->allow_insecure)
			h->key_mode = KEY_INSECURE;
		else
			return fail_at(ld, w, "key_mode",
				       "host '%s': auto finds no usable key mode (no tls: certificates and allow_insecure is false)",
				       h->hostname);
	}
	if (h->key_mode == KEY_SSL && !tls_configured(cfg))
		return fail_at(ld, w, "tls",
			       "host '%s' uses ssl but tls: ca_file, cert_file and key_file are not all set",
			       h->hostname);
	return 0;
}

/* What a host entry takes from the globals unless it says otherwise. */
static void host_defaults(const struct config *cfg, struct host_conf *h)
{
	for (size_t i = 0; i < N_HOST_OPTIONS; i++) {
		const struct host_option *ho = &host_options[i];
		const struct option *o = ho->global ? find_option(ho->global) : NULL;

		if (!o)
			continue;
		if (ho->type == H_STR || ho->type == H_OPTSTR)
			*(char **)((char *)h + ho->offset) =
				xstrdup(*(char *const *)((const char *)cfg + o->offset));
		else
			memcpy((char *)h + ho->offset, (const char *)cfg + o->offset,
			       ho->type == H_BOOL ? sizeof(bool) : sizeof(int));
	}
}

/* Complete an entry once its own keys are in; w is for messages. */
static int finish_host(struct loader *ld, const struct config *cfg,
		       struct host_conf *h, struct where w)
{
	if (resolve_key_mode(ld, cfg, h, w) < 0)
		return -1;
	if (!h->tls_name)
		h->tls_name = xstrdup(h->hostname);
	return 0;
}

static const struct host_option *find_host_option(const char *name)
{
	for (size_t i = 0; i < N_HOST_OPTIONS; i++)
		if (!strcmp(host_options[i].name, name))
			return &host_options[i];
	return NULL;
}

/* Set the key o of entry h from its YAML value vn. */
static int set_host_option(struct loader *ld, struct host_conf *h,
			   const struct host_option *o, yaml_node_t *vn)
{
	char *field = (char *)h + o->offset;
	const char *v = scalar(vn);
	long long n;

	if (o->type == H_LIST)
		return load_strings(ld, vn, o->name, (char ***)field,
				    (size_t *)((char *)h + o->count_offset));
	if (!v)
		return fail(ld, vn, o->name, "expected a single value");
	switch (o->type) {
	case H_NAME:
		if (!valid_socket_name(v))
			return fail(ld, vn, o->name, "'%s' cannot name a socket file", v);
		/* fall through */
	case H_STR:
		if (!*v)
			return fail(ld, vn, o->name, "must not be empty");
		/* fall through */
	case H_OPTSTR:
		free(*(char **)field);
		*(char **)field = xstrdup(v);
		return 0;
	case H_ENUM:
		return parse_enum(ld, o->names, v, (int *)field, at(ld, vn), o->name);
	case H_INT:
		if (parse_ll(v, &n) < 0 || n < o->min || n > o->max)
			return fail(ld, vn, o->name, "expected an integer %lld..%lld, got '%s'",
				    o->min, o->max, v);
		*(int *)field = (int)n;
		return 0;
	case H_BOOL:
		if (parse_bool(v, (bool *)field) < 0)
			return fail(ld, vn, o->name, "expected true or false, got '%s'", v);
		return 0;
	case H_KEYMODE:
		if ((*(int *)field = parse_key_mode(v)) < 0)
			return fail(ld, vn, o->name, "expected %s, got '%s'",
				    type_name(T_KEYMODE), v);
		return 0;
	case H_LIST:
		break;
	}
	return 0;
}

static int load_host(struct loader *ld, struct config *cfg, yaml_node_t *node,
		     struct host_conf *h)
{
	bool seen[N_HOST_OPTIONS] = { false };
	unsigned errors = ld->errors;

	h->line = (int)node->start_mark.line + 1;
	host_defaults(cfg, h);
	if (node->type != YAML_MAPPING_NODE)
		return fail(ld, node, "hosts",
			    "each entry must be a mapping with hostname and ids");
	for (yaml_node_pair_t *p = node->data.mapping.pairs.start;
	     p < node->data.mapping.pairs.top; p++) {
		yaml_node_t *kn = yaml_document_get_node(&ld->doc, p->key);
		yaml_node_t *vn = yaml_document_get_node(&ld->doc, p->value);
		const char *k = scalar(kn);
		const struct host_option *o = k ? find_host_option(k) : NULL;

		if (!k) {
			fail(ld, kn, "hosts", "keys must be strings");
		} else if (!o) {
			fail(ld, kn, k, "unknown key in hosts entry");
		} else if (seen[o - host_options]) {
			fail(ld, kn, k, "given twice in one hosts entry");
		} else {
			seen[o - host_options] = true;
			(void)set_host_option(ld, h, o, vn);
		}
	}
	if (ld->errors > errors)
		return -1;
	if (!h->hostname)
		return fail(ld, node, "hostname", "missing in hosts entry");
	if (!h->ids || h->n_ids == 0)
		return fail(ld, node, "ids",
			    "missing in hosts entry '%s' (at least one host ID)",
			    h->hostname);
	for (size_t i = 0; i < h->n_aliases; i++)
		if (!valid_socket_name(h->aliases[i]))
			return fail(ld, node, "aliases",
				    "'%s' cannot name a socket file",
				    h->aliases[i]);
	/* What follows depends on top-level keys that had errors. */
	return ld->entries_only ? 0 : finish_host(ld, cfg, h, at(ld, node));
}

static void free_strings(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static void host_conf_free(struct host_conf *h)
{
	free(h->hostname);
	free(h->address);
	free(h->tls_name);
	free(h->init_version);
	free(h->version_string);
	free_strings(h->ids, h->n_ids);
	free_strings(h->aliases, h->n_aliases);
}

/* Read one hosts entry only for its errors. */
static void check_host_entry(struct loader *ld, struct config *cfg, yaml_node_t *node)
{
	struct host_conf h = { 0 };

	(void)load_host(ld, cfg, node, &h);
	host_conf_free(&h);
}

/*
 * Files of LON-CAPA (migration from loncnew)
 * ------------------------------------------
 * loncapa_conf and hosts_tab name files that loncapa.c parses; this is
 * where their contents become lonc settings.  A relative path is taken
 * from the directory of the YAML file, so a reload (after the daemon
 * changed to "/") reads the same files.  Only regular files are read: a
 * FIFO or a device named by mistake must not hang the loader.
 */

static char *resolve_path(const char *config_path, const char *p)
{
	const char *slash = strrchr(config_path, '/');

	if (p[0] == '/' || !slash)
		return xstrdup(p);
	size_t dl = (size_t)(slash - config_path) + 1;
	char *r = xmalloc(dl + strlen(p) + 1);
	memcpy(r, config_path, dl);
	strcpy(r + dl, p);
	return r;
}

/* The most lonc reads of any one configuration file: a hosts.tab of
 * hundreds of hosts is some tens of KiB; a file past this (a sparse
 * terabyte of someone's) is refused, not read to its end. */
#define CONFIG_MAX_FILE (4u << 20)

static config_opener *opener;

void config_set_opener(config_opener *fn)
{
	opener = fn;
}

int config_open_regular(const char *path, struct stat *st, char *msg, size_t n)
{
	int fd = open_regular(path, st);

	if (fd < 0)
		snprintf(msg, n, errno == EINVAL ? "'%s' is not a regular file" :
			 "cannot open '%s': %s", path, strerror(errno));
	return fd;
}

/* All of the file fd (closed here), at most CONFIG_MAX_FILE bytes.
 * NULL with a message. */
static char *read_config_file(int fd, const char *path, const struct stat *st,
			      size_t *len, char *msg, size_t n)
{
	char *buf = NULL;

	errno = EFBIG;
	if ((uintmax_t)st->st_size <= CONFIG_MAX_FILE)
		buf = read_all(fd, CONFIG_MAX_FILE, len);
	if (!buf && errno == EFBIG)
		snprintf(msg, n, "'%s' is over %u MiB: not a configuration file", path,
			 CONFIG_MAX_FILE >> 20);
	else if (!buf)
		snprintf(msg, n, "cannot read '%s': %s", path, strerror(errno));
	close(fd);
	return buf;
}

/* Open the file of option `name` (already resolved to `path`), read
 * whole into *buf (freed by the caller after fclose); a failure names
 * the YAML line of the key. */
static FILE *open_import(struct loader *ld, const char *name, const char *path, char **buf)
{
	const struct option *o = find_option(name);
	struct where w = { ld->path, ld->key_line[o - options] };
	struct stat st;
	char msg[512];
	size_t len = 0;
	/* Looked at before it is opened: root opens no FIFO or device at
	 * the end of someone's symlink (and, as root, a file on a way the
	 * user could change only with the user's ids: opener). */
	int fd = opener ? opener(path, name, ld->cfg, &st, msg, sizeof(msg)) :
			  config_open_regular(path, &st, msg, sizeof(msg));

	*buf = fd < 0 ? NULL : read_config_file(fd, path, &st, &len, msg, sizeof(msg));
	if (!*buf) {
		fail_at(ld, w, name, "%s", msg);
		return NULL;
	}
	/* An empty file reads as one blank line (fmemopen wants a size). */
	if (len == 0)
		strcpy(*buf, "\n");
	FILE *f = fmemopen(*buf, len ? len : 1, "r");
	if (!f) {
		fail_at(ld, w, name, "cannot read '%s': %s", path, strerror(errno));
		free(*buf);
		*buf = NULL;
		return NULL;
	}
	return f;
}

/*
 * loncapa_conf: the PerlSetVar values loncnew ran with become defaults
 * of lonc options, below any key the YAML file gives itself (whatever
 * the order of the keys there) and above the table's defaults.
 * lonDaemons was loncnew's home: its pid file and logs were in
 * <lonDaemons>/logs.
 */
static const struct perl_default {
	const char *var;        /* PerlSetVar name */
	const char *option;     /* lonc option it gives a default for */
	const char *suffix;     /* appended to the value */
} perl_defaults[] = {
	{ "lonHostID", "host_id", NULL },
	{ "lonSockDir", "socket_dir", NULL },
	{ "londPort", "lond_port", NULL },
	{ "lonDaemons", "pid_file", "/logs/lonc.pid" },
	{ "lonDaemons", "log_dir", "/logs" },
	{ "lonDaemons", "log_file", "/logs/lonc.log" },
	{ "loncAllowInsecure", "allow_insecure", NULL },
};
#define N_PERL_DEFAULTS (sizeof(perl_defaults) / sizeof(perl_defaults[0]))

static const char *const perl_vars[] = {
	"lonHostID", "lonSockDir", "londPort", "lonDaemons",
	"loncAllowInsecure", NULL,
};

/* loncAllowInsecure is a Perl truth value: 1/0 as well as words. */
static const char *perl_bool(const char *v)
{
	static const char *const yes[] = { "1", "yes", "true", "on", NULL };
	static const char *const no[] = { "0", "no", "false", "off", NULL };

	for (const char *const *y = yes; *y; y++)
		if (!strcasecmp(v, *y))
			return "true";
	for (const char *const *n = no; *n; n++)
		if (!strcasecmp(v, *n))
			return "false";
	return NULL;
}

static int apply_perl_default(struct loader *ld, struct config *cfg,
			      const struct perl_default *pd,
			      const struct loncapa_var *v)
{
	const struct option *o = find_option(pd->option);
	struct where w = { ld->conf_path, (unsigned long)v->line };
	char *value;
	int rc;

	if (ld->seen[o - options])
		return 0;               /* the YAML file says otherwise */
	if (o->type == T_BOOL) {
		const char *b = perl_bool(v->value);

		if (!b)
			return fail_at(ld, w, v->name,
				       "expected 1 or 0 (or yes/no, true/false), got '%s'",
				       v->value);
		value = xstrdup(b);
	} else if (pd->suffix) {
		size_t n = strlen(v->value);

		if (n == 0)
			return fail_at(ld, w, v->name, "must not be empty");
		while (n > 1 && v->value[n - 1] == '/')
			n--;
		if (n == 1 && v->value[0] == '/')
			n = 0;
		value = xmalloc(n + strlen(pd->suffix) + 1);
		memcpy(value, v->value, n);
		strcpy(value + n, pd->suffix);
	} else {
		value = xstrdup(v->value);
		/* A directory (lonSockDir) without its trailing '/'. */
		for (size_t n = strlen(value); value[0] == '/' && n > 1 && value[n - 1] == '/'; n--)
			value[n - 1] = '\0';
	}
	rc = set_option(ld, cfg, o, value, w, v->name);
	free(value);
	ld->from_conf[o - options] = rc == 0;
	return rc;
}

static int apply_loncapa_conf(struct loader *ld, struct config *cfg)
{
	struct loncapa_conf conf = { NULL, 0 };
	char *buf;
	FILE *f;
	int rc;

	ld->conf_path = resolve_path(ld->path, cfg->loncapa_conf);
	if (!(f = open_import(ld, "loncapa_conf", ld->conf_path, &buf)))
		return -1;
	rc = loncapa_read_conf(f, ld->conf_path, perl_vars, &conf, ld->err,
			       ld->errlen);
	fclose(f);
	free(buf);
	for (size_t i = 0; rc == 0 && i < N_PERL_DEFAULTS; i++) {
		const struct loncapa_var *v =
			loncapa_conf_get(&conf, perl_defaults[i].var);

		if (v)
			rc = apply_perl_default(ld, cfg, &perl_defaults[i], v);
	}
	loncapa_conf_free(&conf);
	return rc;
}

/* The PerlSetVar that could have given option `name`, or NULL. */
static const char *perl_var_of(const char *name)
{
	for (size_t i = 0; i < N_PERL_DEFAULTS; i++)
		if (!strcmp(perl_defaults[i].option, name))
			return perl_defaults[i].var;
	return NULL;
}

/*
 * hosts_tab: each machine of the host table becomes a host entry with
 * the globals' settings, its ids in file order and, from the old form,
 * its address.  An entry of hosts: with the same hostname replaces the
 * imported one whole; the others are added.  Entries keep their
 * hosts.tab line, so later messages about them name that file.
 */
static int import_host(struct loader *ld, const struct config *cfg,
		       const struct loncapa_host *t, struct host_conf *h)
{
	struct where w = { ld->tab_path, (unsigned long)t->line };

	h->imported = true;
	h->line = t->line;
	host_defaults(cfg, h);
	if (!valid_socket_name(t->name))
		return fail_at(ld, w, NULL,
			       "host name '%s' cannot name a socket file",
			       t->name);
	h->hostname = xstrdup(t->name);
	h->ids = xcalloc(t->n_ids + 1, sizeof(char *));
	for (h->n_ids = 0; h->n_ids < t->n_ids; h->n_ids++)
		h->ids[h->n_ids] = xstrdup(t->ids[h->n_ids]);
	h->address = t->address ? xstrdup(t->address) : NULL;
	return finish_host(ld, cfg, h, w);
}

static int read_hosts_tab(struct loader *ld, struct config *cfg,
			  struct loncapa_hosts *tab)
{
	char *buf;
	FILE *f;
	int rc;

	ld->tab_path = resolve_path(ld->path, cfg->hosts_tab);
	if (!(f = open_import(ld, "hosts_tab", ld->tab_path, &buf)))
		return -1;
	rc = loncapa_read_hosts_tab(f, ld->tab_path, tab, ld->err, ld->errlen);
	fclose(f);
	free(buf);
	return rc;
}

/* The hosts: list (node, NULL when absent) and then the imported hosts
 * it does not replace. */
static int load_hosts(struct loader *ld, struct config *cfg, yaml_node_t *node)
{
	struct loncapa_hosts tab = { NULL, 0 };
	size_t cnt = 0;
	int rc = -1;

	if (node && node->type != YAML_SEQUENCE_NODE)
		return fail(ld, node, "hosts", "expected a list of hosts");
	if (node)
		cnt = (size_t)(node->data.sequence.items.top -
			       node->data.sequence.items.start);
	if (*cfg->hosts_tab && read_hosts_tab(ld, cfg, &tab) < 0)
		return -1;
	cfg->hosts = xcalloc(cnt + tab.n + 1, sizeof(struct host_conf));
	for (size_t i = 0; i < cnt; i++) {
		yaml_node_t *item = yaml_document_get_node(
			&ld->doc, node->data.sequence.items.start[i]);

		/* Every entry is read, so every broken one is reported. */
		(void)load_host(ld, cfg, item, &cfg->hosts[cfg->n_hosts++]);
	}
	if (ld->errors)
		goto out;
	for (size_t i = 0; i < tab.n; i++) {
		if (config_find_host(cfg, tab.hosts[i].name))
			continue;       /* hosts: has it */
		if (import_host(ld, cfg, &tab.hosts[i],
				&cfg->hosts[cfg->n_hosts++]) < 0)
			goto out;
	}
	if (*cfg->hosts_tab && cfg->n_hosts == 0) {
		const struct option *o = find_option("hosts_tab");

		struct where w = { ld->path, ld->key_line[o - options] };

		fail_at(ld, w, "hosts_tab",
			"'%s' names no hosts and there is no hosts: list",
			ld->tab_path);
		goto out;
	}
	rc = 0;
out:
	loncapa_hosts_free(&tab);
	return rc;
}

/* The file an entry comes from: the YAML file or hosts_tab. */
static const char *host_file(const struct loader *ld, const struct host_conf *h)
{
	return h->imported ? ld->tab_path : ld->path;
}

/* A bad socket name of entry h, as "FILE:LINE: key 'hosts': ..." for an
 * entry of hosts: and "FILE:LINE: ..." for an imported one.  `other`
 * is the entry that has the name already, or NULL. */
static int socket_name_error(struct loader *ld, const struct host_conf *h,
			     const char *name, const struct host_conf *other)
{
	char also[PATH_MAX + 32] = "";

	if (other && other->imported == h->imported)
		snprintf(also, sizeof(also), " (also at line %d)", other->line);
	else if (other)
		snprintf(also, sizeof(also), " (also at %s:%d)",
			 host_file(ld, other), other->line);
	snprintf(ld->err, ld->errlen, "%s:%d: %ssocket name '%s' %s%s",
		 host_file(ld, h), h->line, h->imported ? "" : "key 'hosts': ",
		 name, other ? "is used twice" :
		 "is reserved or too long for socket_dir", also);
	return -1;
}

/* Every socket name (hostnames and aliases) must be unique and fit
 * into sun_path together with socket_dir. */
static int check_socket_names(struct loader *ld, struct config *cfg)
{
	size_t max = sizeof(((struct sockaddr_un *)0)->sun_path) - 2 -
		     strlen(cfg->socket_dir);

	for (size_t i = 0; i < cfg->n_hosts; i++) {
		struct host_conf *h = &cfg->hosts[i];

		for (size_t a = 0; a <= h->n_aliases; a++) {
			const char *name = a == 0 ? h->hostname : h->aliases[a - 1];

			if (strlen(name) > max || !strcmp(name, "delayed"))
				return socket_name_error(ld, h, name, NULL);
			for (size_t j = 0; j <= i; j++) {
				struct host_conf *o = &cfg->hosts[j];
				size_t lim = j == i ? a : o->n_aliases + 1;

				for (size_t b = 0; b < lim; b++) {
					const char *other = b == 0 ? o->hostname :
								     o->aliases[b - 1];
					if (!strcmp(name, other))
						return socket_name_error(ld, h, name, o);
				}
			}
		}
	}
	return 0;
}

/* A LON-CAPA host ID names one machine: two entries serving the same ID
 * would both get its delayed transactions (each file sent twice), and
 * lonc could not tell which one a request for it should reach. */
static int check_host_ids(struct loader *ld, const struct config *cfg)
{
	for (size_t i = 0; i < cfg->n_hosts; i++) {
		const struct host_conf *h = &cfg->hosts[i];

		for (size_t a = 0; a < h->n_ids; a++) {
			for (size_t j = 0; j <= i; j++) {
				const struct host_conf *o = &cfg->hosts[j];
				size_t lim = j == i ? a : o->n_ids;

				for (size_t b = 0; b < lim; b++) {
					if (strcmp(h->ids[a], o->ids[b]))
						continue;
					snprintf(ld->err, ld->errlen,
						 "%s:%d: %shost ID '%s' of host '%s' is also served by host '%s' (%s:%d)",
						 host_file(ld, h), h->line,
						 h->imported ? "" : "key 'ids': ",
						 h->ids[a], h->hostname, o->hostname,
						 host_file(ld, o), o->line);
					return -1;
				}
			}
		}
	}
	return 0;
}

/* Set one option from a key/value node pair, once. */
static int load_option(struct loader *ld, struct config *cfg,
		       const struct option *o, yaml_node_t *kn, yaml_node_t *vn)
{
	if (ld->seen[o - options])
		return fail(ld, kn, o->name, "given twice");
	ld->seen[o - options] = true;
	ld->key_line[o - options] = at(ld, kn).line;
	const char *v = scalar(vn);
	if (!v)
		return fail(ld, vn, o->name, "expected %s", type_name(o->type));
	return set_option(ld, cfg, o, v, at(ld, vn), o->name);
}

static int load_tls(struct loader *ld, struct config *cfg, yaml_node_t *node)
{
	if (node->type != YAML_MAPPING_NODE)
		return fail(ld, node, "tls",
			    "expected a mapping of ca_file, cert_file, key_file, verify_hostname");
	for (yaml_node_pair_t *p = node->data.mapping.pairs.start;
	     p < node->data.mapping.pairs.top; p++) {
		yaml_node_t *kn = yaml_document_get_node(&ld->doc, p->key);
		yaml_node_t *vn = yaml_document_get_node(&ld->doc, p->value);
		const char *k = scalar(kn);
		char name[64];

		snprintf(name, sizeof(name), "tls.%s", k ? k : "");
		const struct option *o = k ? find_option(name) : NULL;
		if (!o)
			return fail(ld, kn, name, "unknown key");
		if (load_option(ld, cfg, o, kn, vn) < 0)
			return -1;
	}
	return 0;
}

static int load_root(struct loader *ld, struct config *cfg)
{
	yaml_node_t *root = yaml_document_get_root_node(&ld->doc);
	yaml_node_t *hosts = NULL;

	if (!root)
		return fail(ld, NULL, NULL, "the file is empty");
	if (root->type != YAML_MAPPING_NODE)
		return fail(ld, root, NULL, "the top level must be a mapping of keys");
	for (yaml_node_pair_t *p = root->data.mapping.pairs.start;
	     p < root->data.mapping.pairs.top; p++) {
		yaml_node_t *kn = yaml_document_get_node(&ld->doc, p->key);
		yaml_node_t *vn = yaml_document_get_node(&ld->doc, p->value);
		const char *k = scalar(kn);

		/* An error here does not stop the others being found. */
		if (!k) {
			fail(ld, kn, NULL, "keys must be strings");
		} else if (!strcmp(k, "hosts")) {
			if (hosts)
				fail(ld, kn, k, "given twice");
			hosts = vn;
		} else if (!strcmp(k, "tls")) {
			(void)load_tls(ld, cfg, vn);
		} else {
			const struct option *o = find_option(k);

			if (!o || strchr(k, '.'))
				fail(ld, kn, k, "unknown key");
			else
				(void)load_option(ld, cfg, o, kn, vn);
		}
	}
	/* With errors so far, only the hosts entries are still read (for
	 * their own errors): what depends on the top-level keys would
	 * only repeat them. */
	if (ld->errors) {
		ld->entries_only = true;
		if (hosts && hosts->type == YAML_SEQUENCE_NODE)
			for (yaml_node_item_t *i = hosts->data.sequence.items.start;
			     i < hosts->data.sequence.items.top; i++)
				check_host_entry(ld, cfg, yaml_document_get_node(&ld->doc, *i));
		return -1;
	}
	if (*cfg->loncapa_conf && apply_loncapa_conf(ld, cfg) < 0)
		return -1;
	for (size_t i = 0; i < N_OPTIONS; i++) {
		const char *var = perl_var_of(options[i].name);

		if (ld->seen[i] || ld->from_conf[i] || options[i].def)
			continue;
		if (*cfg->loncapa_conf && var)
			return fail(ld, root, options[i].name,
				    "required but missing (and %s sets no %s)",
				    ld->conf_path, var);
		return fail(ld, root, options[i].name, "required but missing");
	}
	if (!hosts && !*cfg->hosts_tab)
		return fail(ld, root, "hosts",
			    "required but missing (or hosts_tab)");
	if (cfg->backoff_initial_ms > cfg->backoff_max_ms)
		return fail(ld, root, "backoff_initial",
			    "must not exceed backoff_max");
	if (load_hosts(ld, cfg, hosts) < 0)
		return -1;
	if (check_socket_names(ld, cfg) < 0)
		return -1;
	return check_host_ids(ld, cfg);
}

int config_load(const char *path, struct config **out, char *err, size_t errlen)
{
	struct config *cfg = xcalloc(1, sizeof(*cfg));
	struct loader ld = { .path = path, .err = err, .errlen = errlen, .cfg = cfg };
	yaml_parser_t parser;
	int rc = -1;

	cfg->path = xstrdup(path);
	atomic_init(&cfg->refs, 1);
	/* Defaults first, through the same parser as file values. */
	for (size_t i = 0; i < N_OPTIONS; i++)
		if (options[i].def &&
		    set_option(&ld, cfg, &options[i], options[i].def,
			       (struct where){ path, 1 }, options[i].name) < 0)
			goto out_cfg;
	/* A regular file only, looked at before it is opened (a FIFO named
	 * by mistake must not hang lonc -t; root opens no device at the end
	 * of someone's symlink), and read whole, within bounds. */
	struct stat st;
	char msg[512];
	size_t len = 0;
	int fd = open_regular(path, &st);

	if (fd < 0)
		snprintf(msg, sizeof(msg), errno == EINVAL ? "%s: not a regular file" :
			 "%s: cannot open: %s", path, strerror(errno));
	char *text = fd < 0 ? NULL : read_config_file(fd, path, &st, &len, msg, sizeof(msg));

	if (!text) {
		snprintf(err, errlen, "%s", msg);
		goto out_cfg;
	}
	if (!yaml_parser_initialize(&parser)) {
		snprintf(err, errlen, "%s: cannot initialise the YAML parser", path);
		goto out_file;
	}
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
	if (!yaml_parser_load(&parser, &ld.doc)) {
		if (parser.context)
			snprintf(err, errlen, "%s:%lu: YAML syntax error: %s (%s at line %lu)",
				 path, (unsigned long)parser.problem_mark.line + 1,
				 parser.problem ? parser.problem : "unknown",
				 parser.context,
				 (unsigned long)parser.context_mark.line + 1);
		else
			snprintf(err, errlen, "%s:%lu: YAML syntax error: %s", path,
				 (unsigned long)parser.problem_mark.line + 1,
				 parser.problem ? parser.problem : "unknown");
		goto out_parser;
	}
	rc = load_root(&ld, cfg);
	yaml_document_delete(&ld.doc);
out_parser:
	yaml_parser_delete(&parser);
out_file:
	free(text);
out_cfg:
	free(ld.conf_path);
	free(ld.tab_path);
	if (rc < 0) {
		config_free(cfg);
		return -1;
	}
	*out = cfg;
	return 0;
}


void config_free(struct config *cfg)
{
	if (!cfg)
		return;
	for (size_t i = 0; i < cfg->n_hosts; i++)
		host_conf_free(&cfg->hosts[i]);
	free(cfg->hosts);
	for (size_t i = 0; i < N_OPTIONS; i++)
		if (options[i].type == T_STR || options[i].type == T_OPTSTR)
			free(*(char **)((char *)cfg + options[i].offset));
	free(cfg->path);
	free(cfg);
}

void config_print(const struct config *cfg, FILE *out)
{
	fprintf(out, "config %s: OK\n", cfg->path);
	fprintf(out, "host_id %s, socket_dir %s, %zu host(s)\n", cfg->host_id,
		cfg->socket_dir, cfg->n_hosts);
	/* One line each, for scripts: sed -n 's/^pid_file //p'. */
	fprintf(out, "pid_file %s\n", cfg->pid_file);
	if (*cfg->admin_socket)
		fprintf(out, "admin_socket %s\n", cfg->admin_socket);
	fprintf(out, "log_dir %s\n", cfg->log_dir);
	fprintf(out, "socket_dir %s\n", cfg->socket_dir);
	fprintf(out, "user %s\n", cfg->user);
	if (*cfg->loncapa_conf) {
		char *p = resolve_path(cfg->path, cfg->loncapa_conf);

		fprintf(out, "loncapa_conf %s: PerlSetVar defaults under this file's keys\n",
			p);
		free(p);
	}
	if (*cfg->hosts_tab) {
		char *p = resolve_path(cfg->path, cfg->hosts_tab);
		size_t n = 0;

		for (size_t i = 0; i < cfg->n_hosts; i++)
			n += cfg->hosts[i].imported;
		fprintf(out, "hosts_tab %s: %zu host(s) imported\n", p, n);
		free(p);
	}
	fprintf(out, "pool: max_connections %d, max_queue %d, idle_timeout %.1fs\n",
		cfg->max_connections, cfg->max_queue, cfg->idle_timeout_ms / 1000.0);
	fprintf(out, "timeouts: connect %.1fs, handshake %.1fs, transaction %.1fs, client %.1fs, queue %.1fs\n",
		cfg->connect_timeout_ms / 1000.0, cfg->handshake_timeout_ms / 1000.0,
		cfg->transaction_timeout_ms / 1000.0, cfg->client_timeout_ms / 1000.0,
		cfg->queue_timeout_ms / 1000.0);
	for (size_t i = 0; i < cfg->n_hosts; i++) {
		const struct host_conf *h = &cfg->hosts[i];

		fprintf(out, "  host %s -> %s:%d ids=", h->hostname,
			h->address ? h->address : h->hostname, h->port);
		for (size_t j = 0; j < h->n_ids; j++)
			fprintf(out, "%s%s", j ? "," : "", h->ids[j]);
		if (h->n_aliases) {
			fprintf(out, " aliases=");
			for (size_t j = 0; j < h->n_aliases; j++)
				fprintf(out, "%s%s", j ? "," : "", h->aliases[j]);
		}
		fprintf(out, " key_mode=%s max_connections=%d",
			config_key_mode_name(h->key_mode), h->max_connections);
		if (h->imported)
			fprintf(out, " (hosts_tab line %d)", h->line);
		fputc('\n', out);
	}
}

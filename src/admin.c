/*
 * admin.c - the admin socket thread and its commands.
 *
 * One connection, one command line, one answer, close.  Answers are
 * built in memory (a host table is small) and written with a deadline,
 * so a stuck admin client cannot block the thread for long.  The thread
 * polls the listener and a wake pipe; admin_stop wakes and joins it.
 * Locks: none of its own; it reads the broker with broker_foreach (the
 * broker's read lock) and host snapshots (host locks, leaves).
 * May call: broker, config, host, linebuf, log, net, util.
 */
#include "admin.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "broker.h"
#include "config.h"
#include "host.h"
#include "linebuf.h"
#include "log.h"
#include "net.h"

#define ADMIN_IO_MS 2000
#define ADMIN_LINE_MAX 1024

static struct broker *broker;
static char *admin_path;
static int listen_fd = -1;
static int wake_pipe[2] = { -1, -1 };
static pthread_t thread;
static bool started;

/* ---- a growable string ---- */

struct buf {
	char *p;
	size_t len, cap;
};

static void bprintf(struct buf *b, const char *fmt, ...) PRINTF_LIKE(2, 3);

static void bprintf(struct buf *b, const char *fmt, ...)
{
	va_list ap;

	for (;;) {
		size_t room = b->cap - b->len;

		va_start(ap, fmt);
		int n = vsnprintf(b->p ? b->p + b->len : NULL, room, fmt, ap);
		va_end(ap);
		if (n < 0)
			return;
		if ((size_t)n < room) {
			b->len += (size_t)n;
			return;
		}
		b->cap = b->cap ? 2 * b->cap + (size_t)n : 1024 + (size_t)n;
		b->p = xrealloc(b->p, b->cap);
	}
}

/* A JSON string: quotes, backslashes and control characters escaped. */
static void bjson(struct buf *b, const char *s)
{
	bprintf(b, "\"");
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			bprintf(b, "\\%c", c);
		else if (c < 0x20)
			bprintf(b, "\\u%04x", c);
		else
			bprintf(b, "%c", c);
	}
	bprintf(b, "\"");
}

/* ---- commands ---- */

static void table_row(struct host *h, void *arg)
{
	struct buf *b = arg;
	struct host_status st;
	const long long *v = st.v;

	host_get_status(h, &st);
	bprintf(b, "%-28s %-9s %3lld/%-3lld %4lld %6lld %9lld %7lld %7lld %8lld %8lld %5lld %-18s %s\n",
		st.hostname, st.state, v[HOST_G_busy], v[HOST_G_connections],
		v[HOST_G_idle], v[HOST_G_queued], v[HOST_COUNTER(STAT_requests)],
		v[HOST_COUNTER(STAT_failed)], v[HOST_COUNTER(STAT_timeouts)],
		v[HOST_P50], v[HOST_P99], v[HOST_G_retries_left], st.key_mode,
		*st.stats.last_error ? st.stats.last_error : "-");
}

/* One name and value: `,"name":value` in JSON, ` name=value` else;
 * a quoted value is a string. */
static void field(struct buf *b, bool json, const char *name, const char *value,
		  bool quoted)
{
	if (json) {
		bprintf(b, ",\"%s\":", name);
		if (quoted)
			bjson(b, value);
		else
			bprintf(b, "%s", value);
	} else {
		bprintf(b, quoted ? " %s=\"%s\"" : " %s=%s", name, value);
	}
}

/* The protocol switches in force for a host (doc/protocol.md). */
static void settings(struct buf *b, const struct host_conf *hc, bool json)
{
	field(b, json, "sethost_mode", config_sethost_mode_name(hc->sethost_mode), json);
	field(b, json, "init_version", hc->init_version, true);
	field(b, json, "key_id_order", config_key_id_order_name(hc->key_id_order), json);
	field(b, json, "version_string", hc->version_string, true);
	field(b, json, "tls_close_notify", config_close_notify_name(hc->tls_close_notify), json);
	field(b, json, "version_step", hc->version_step ? "true" : "false", false);
	field(b, json, "sethost_step", hc->sethost_step ? "true" : "false", false);
}

static void json_host(struct host *h, void *arg)
{
	struct buf *b = arg;
	struct host_status st;

	host_get_status(h, &st);
	if (b->len && b->p[b->len - 1] == '}')
		bprintf(b, ",");
	bprintf(b, "{\"host\":");
	bjson(b, st.hostname);
	bprintf(b, ",\"state\":\"%s\"", st.state);
	for (int i = 0; i < HOST_FIELDS; i++)
		bprintf(b, ",\"%s\":%lld", host_fields[i].name, st.v[i]);
	bprintf(b, ",\"key_mode\":");
	bjson(b, st.key_mode);
	bprintf(b, ",\"peer_version\":");
	bjson(b, st.stats.peer_version);
	bprintf(b, ",\"last_error\":");
	bjson(b, st.stats.last_error);
	settings(b, host_conf(h), true);
	bprintf(b, "}");
}

/* A Prometheus label value: backslash, quote and newline escaped. */
static void blabel(struct buf *b, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\' || *s == '"')
			bprintf(b, "\\%c", *s);
		else if (*s == '\n')
			bprintf(b, "\\n");
		else
			bprintf(b, "%c", *s);
	}
}

struct metrics_arg {
	struct buf *b;
	int which;   /* index into host_fields[], or -1 for the histogram */
};

/* `name{host="H"<extra>} ` */
static void metric_start(struct buf *b, const char *name, const char *host,
			 const char *extra)
{
	bprintf(b, "%s{host=\"", name);
	blabel(b, host);
	bprintf(b, "\"%s} ", extra);
}

static void histogram_lines(struct buf *b, const struct host_status *st)
{
	unsigned long cum = 0, count = 0;
	char le[48];

	for (int i = 0; i < STATS_BUCKETS; i++)
		count += st->stats.latency[i];
	for (int i = 0; i < STATS_BUCKETS - 1; i++) {
		cum += st->stats.latency[i];
		snprintf(le, sizeof(le), ",le=\"%g\"", (double)stats_bounds_us[i] / 1e6);
		metric_start(b, "lonc_request_duration_seconds_bucket", st->hostname, le);
		bprintf(b, "%lu\n", cum);
	}
	metric_start(b, "lonc_request_duration_seconds_bucket", st->hostname, ",le=\"+Inf\"");
	bprintf(b, "%lu\n", count);
	metric_start(b, "lonc_request_duration_seconds_sum", st->hostname, "");
	bprintf(b, "%.6f\n", (double)st->stats.latency_sum_us / 1e6);
	metric_start(b, "lonc_request_duration_seconds_count", st->hostname, "");
	bprintf(b, "%lu\n", count);
}

static void metric_line(struct host *h, void *arg)
{
	struct metrics_arg *m = arg;
	struct host_status st;

	host_get_status(h, &st);
	if (m->which < 0) {
		histogram_lines(m->b, &st);
		return;
	}
	metric_start(m->b, host_fields[m->which].prom, st.hostname, "");
	bprintf(m->b, "%lld\n", st.v[m->which]);
}

/* One process-wide metric with its HELP and TYPE lines. */
static void metric_one(struct buf *b, const char *name, const char *type,
		       const char *help, const char *labels, double value)
{
	bprintf(b, "# HELP %s %s\n# TYPE %s %s\n%s%s %.17g\n", name, help, name, type,
		name, labels, value);
}

/* The process: its version, since when it runs, how reloads went. */
static void process_metrics(struct broker *br, struct buf *b)
{
	struct broker_lifetime lt;

	broker_lifetime(br, &lt);
	metric_one(b, "lonc_build_info", "gauge", "lonc's version (always 1).",
		   "{version=\"" LONC_VERSION "\"}", 1);
	metric_one(b, "lonc_start_time_seconds", "gauge",
		   "When lonc started, in seconds since the epoch.", "", (double)lt.started);
	metric_one(b, "lonc_reloads_total", "counter", "Reloads tried (SIGHUP, lonc-ctl reload).",
		   "", (double)lt.reloads);
	metric_one(b, "lonc_reload_failures_total", "counter",
		   "Reloads refused (the running configuration was kept).", "",
		   (double)lt.reload_failures);
	metric_one(b, "lonc_last_reload_success", "gauge",
		   "1 when the latest reload took effect (or none was tried).", "",
		   lt.last_reload_ok);
	metric_one(b, "lonc_last_reload_time_seconds", "gauge",
		   "When the latest reload was tried, in seconds since the epoch (0: never).",
		   "", (double)lt.last_reload);
}

static void metrics(struct broker *br, struct buf *b)
{
	process_metrics(br, b);
	for (int i = 0; i < HOST_FIELDS; i++) {
		const struct host_field_info *f = &host_fields[i];
		struct metrics_arg m = { b, i };

		if (!f->prom)
			continue;
		bprintf(b, "# HELP %s %s\n# TYPE %s %s\n", f->prom, f->help, f->prom,
			f->kind == HOST_KIND_COUNTER ? "counter" : "gauge");
		broker_foreach(br, metric_line, &m);
	}
	struct metrics_arg m = { b, -1 };
	bprintf(b, "# HELP lonc_request_duration_seconds Time from a complete request to its relayed reply.\n"
		"# TYPE lonc_request_duration_seconds histogram\n");
	broker_foreach(br, metric_line, &m);
}

static void hosts_line(struct host *h, void *arg)
{
	struct buf *b = arg;
	const struct host_conf *hc = host_conf(h);

	bprintf(b, "%s address=%s port=%d ids=", hc->hostname,
		hc->address ? hc->address : hc->hostname, hc->port);
	for (size_t i = 0; i < hc->n_ids; i++)
		bprintf(b, "%s%s", i ? "," : "", hc->ids[i]);
	bprintf(b, " aliases=");
	for (size_t i = 0; i < hc->n_aliases; i++)
		bprintf(b, "%s%s", i ? "," : "", hc->aliases[i]);
	bprintf(b, "%s key_mode=%s max_connections=%d", hc->n_aliases ? "" : "-",
		config_key_mode_name(hc->key_mode), hc->max_connections);
	settings(b, hc, false);
	struct host_status st;
	host_get_status(h, &st);
	bprintf(b, " peer_version=\"%s\"\n", st.stats.peer_version);
}

char *admin_command(struct broker *br, const char *line)
{
	struct buf b = { 0 };

	if (!strcmp(line, "status")) {
		bprintf(&b, "%-28s %-9s %7s %4s %6s %9s %7s %7s %8s %8s %5s %-18s %s\n",
			"HOST", "STATE", "BUSY/CN", "IDLE", "QUEUED", "REQUESTS",
			"FAILED", "TIMEOUT", "P50_US", "P99_US", "RETRY", "KEY_MODE",
			"LAST_ERROR");
		broker_foreach(br, table_row, &b);
	} else if (!strcmp(line, "status json")) {
		bprintf(&b, "{\"version\":\"%s\",\"pid\":%ld,\"hosts\":[", LONC_VERSION,
			(long)getpid());
		broker_foreach(br, json_host, &b);
		bprintf(&b, "]}\n");
	} else if (!strcmp(line, "metrics")) {
		metrics(br, &b);
	} else if (!strcmp(line, "hosts")) {
		broker_foreach(br, hosts_line, &b);
	} else if (!strncmp(line, "reset ", 6)) {
		if (broker_reset_host(br, line + 6) == 0)
			bprintf(&b, "ok\n");
		else
			bprintf(&b, "error: no host named '%s'\n", line + 6);
	} else if (!strcmp(line, "reload")) {
		char msg[1024];

		if (broker_reload(br, msg, sizeof(msg)) == 0)
			bprintf(&b, "ok %s\n", msg);
		else
			bprintf(&b, "error: %s\n", msg);
	} else {
		bprintf(&b, "error: unknown command '%s' (status, status json, metrics, hosts, reset HOST, reload)\n",
			line);
	}
	return b.p;
}

/* ---- the thread ---- */

static void serve(int fd)
{
	struct linebuf lb;
	int64_t deadline = now_ms() + ADMIN_IO_MS;
	size_t len;

	linebuf_init(&lb, ADMIN_LINE_MAX);
	for (;;) {
		if (linebuf_has_line(&lb, &len))
			break;
		if (linebuf_overflowed(&lb) || net_wait_readable(fd, deadline) < 0)
			goto out;
		ssize_t n = linebuf_fill(&lb, fd);
		if (n == 0 || (n < 0 && errno != EAGAIN))
			goto out;
	}
	lb.data[len] = '\0';
	if (len && lb.data[len - 1] == '\r')
		lb.data[len - 1] = '\0';
	/* Debug only: a metrics scrape every few seconds is no event. */
	log_msg(LOG_DEBUG, "event=admin_command command=\"%s\"", lb.data);
	char *answer = admin_command(broker, lb.data);
	if (answer) {
		if (net_write_all(fd, answer, strlen(answer), now_ms() + ADMIN_IO_MS) < 0)
			log_errno(LOG_INFO, "event=admin_write_failed");
		free(answer);
	}
out:
	linebuf_free(&lb);
	close(fd);
}

static void *admin_main(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "lonc-admin");
	for (;;) {
		struct pollfd p[2] = {
			{ .fd = listen_fd, .events = POLLIN },
			{ .fd = wake_pipe[0], .events = POLLIN },
		};

		if (poll(p, 2, -1) < 0) {
			if (errno != EINTR)
				usleep(10000);
			continue;
		}
		if (p[1].revents)
			return NULL;
		if (p[0].revents & POLLIN) {
			int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

			if (fd >= 0)
				serve(fd);
			else if (errno == EMFILE || errno == ENFILE)
				usleep(100000);
		}
	}
}

int admin_open(struct broker *b, const char *path)
{
	broker = b;
	admin_path = xstrdup(path);
	listen_fd = net_listen_unix(path, 0600, 16);
	if (listen_fd < 0) {
		log_errno(LOG_ERR, "event=admin_listen_failed socket=%s", path);
		return -1;
	}
	if (pipe2(wake_pipe, O_CLOEXEC) < 0) {
		log_errno(LOG_ERR, "event=admin_pipe_failed");
		return -1;
	}
	return 0;
}

int admin_give(uid_t uid, gid_t gid)
{
	/* In root's own directory (fsafe_place_of): nobody else can put
	 * anything at the name; and no symlink is followed all the same. */
	return fchownat(AT_FDCWD, admin_path, uid, gid, AT_SYMLINK_NOFOLLOW);
}

int admin_start(void)
{
	int rc = pthread_create(&thread, NULL, admin_main, NULL);

	if (rc) {
		log_msg(LOG_ERR, "event=thread_failed thread=admin error=\"%s\"", strerror(rc));
		return -1;
	}
	started = true;
	return 0;
}

void admin_stop(void)
{
	if (started) {
		ssize_t n = write(wake_pipe[1], "x", 1);

		(void)n;
		pthread_join(thread, NULL);
		started = false;
	}
	if (listen_fd >= 0) {
		close(listen_fd);
		listen_fd = -1;
		/* In root's run directory lonc, no longer root, cannot remove
		 * it: the next start replaces it (nobody listens there). */
		if (unlink(admin_path) < 0 && errno != ENOENT)
			log_errno(LOG_INFO, "event=admin_socket_left path=%s", admin_path);
	}
	for (int i = 0; i < 2; i++) {
		if (wake_pipe[i] >= 0)
			close(wake_pipe[i]);
		wake_pipe[i] = -1;
	}
	free(admin_path);
	admin_path = NULL;
}

/*
 * lonc-load - a load generator and checker for lonc.
 *
 * N client threads each send M requests through a lonc UNIX socket,
 * either opening a new connection per request (the lonnet pattern) or
 * keeping one connection (--keepalive).  With --verify every request
 * carries a unique payload (echo:<client>-<seq>-<nonce><padding>) and
 * every reply must be exactly that payload: replies that belong to
 * another request (cross-talk) are counted as mismatches.
 *
 * Prints one summary line of key=value pairs; exit 0 only when every
 * request got its own reply (with --verify) or a reply (without).
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define HIST_BUCKETS 64   /* log2 buckets of microseconds, 4 sub-steps */

struct opts {
	const char *socket;
	int clients;
	int requests;
	int payload;
	bool keepalive;
	bool verify;
	const char *command;  /* request without verification */
	double seconds;       /* stop after this long (0: no limit) */
};

struct stats {
	atomic_long ok, mismatch, con_lost, errors;
	atomic_long hist[HIST_BUCKETS * 4];
};

static struct opts o = { .clients = 1, .requests = 1, .payload = 16,
			 .verify = true };
static struct stats st;
static int64_t stop_at_us;

static int64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int bucket_of(int64_t us)
{
	if (us < 1)
		us = 1;
	int lg = 63 - __builtin_clzll((unsigned long long)us);
	int sub = lg >= 2 ? (int)((us >> (lg - 2)) & 3) : 0;
	int b = lg * 4 + sub;
	return b < HIST_BUCKETS * 4 ? b : HIST_BUCKETS * 4 - 1;
}

static int64_t bucket_value(int b)
{
	int lg = b / 4, sub = b % 4;

	if (lg < 2)
		return (int64_t)1 << lg;
	return ((int64_t)1 << lg) + ((int64_t)sub << (lg - 2));
}

static int64_t percentile(double p)
{
	long total = 0, seen = 0;

	for (int i = 0; i < HIST_BUCKETS * 4; i++)
		total += atomic_load(&st.hist[i]);
	if (!total)
		return 0;
	long want = (long)(p * (double)total);
	for (int i = 0; i < HIST_BUCKETS * 4; i++) {
		seen += atomic_load(&st.hist[i]);
		if (seen > want)
			return bucket_value(i);
	}
	return bucket_value(HIST_BUCKETS * 4 - 1);
}

static int open_socket(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", o.socket);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Read one line into *buf (grown as needed); returns its length
 * without '\n', or -1. */
static ssize_t read_line(int fd, char **buf, size_t *cap)
{
	size_t have = 0;

	for (;;) {
		if (have == *cap) {
			*cap = *cap ? *cap * 2 : 4096;
			*buf = realloc(*buf, *cap);
			if (!*buf)
				abort();
		}
		ssize_t n = read(fd, *buf + have, *cap - have);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		char *nl = memchr(*buf + have, '\n', (size_t)n);
		have += (size_t)n;
		if (nl)
			return nl - *buf;
	}
}

static void *client_main(void *arg)
{
	int id = (int)(intptr_t)arg;
	unsigned nonce = (unsigned)now_us() ^ (unsigned)(id * 2654435761u);
	size_t reqcap = (size_t)o.payload + 128, cap = 0;
	char *req = malloc(reqcap), *reply = NULL;
	int fd = -1;

	for (int i = 0; i < o.requests; i++) {
		if (stop_at_us && now_us() > stop_at_us)
			break;
		size_t len;
		const char *want = NULL;
		size_t want_len = 0;

		if (o.verify) {
			int n = snprintf(req, reqcap, "echo:%d-%d-%u-", id, i, nonce++);
			len = (size_t)n;
			while (len < (size_t)o.payload + 5) {
				req[len] = (char)('a' + (len % 26));
				len++;
			}
			want = req + 5;
			want_len = len - 5;
			req[len++] = '\n';
		} else {
			len = (size_t)snprintf(req, reqcap, "%s\n", o.command);
		}
		int64_t t0 = now_us();
		if (fd < 0 && (fd = open_socket()) < 0) {
			atomic_fetch_add(&st.errors, 1);
			continue;
		}
		ssize_t rlen = -1;
		if (write_all(fd, req, len) == 0)
			rlen = read_line(fd, &reply, &cap);
		int64_t dt = now_us() - t0;
		if (rlen < 0) {
			atomic_fetch_add(&st.errors, 1);
			close(fd);
			fd = -1;
			continue;
		}
		atomic_fetch_add(&st.hist[bucket_of(dt)], 1);
		if (rlen == 8 && memcmp(reply, "con_lost", 8) == 0)
			atomic_fetch_add(&st.con_lost, 1);
		else if (o.verify && ((size_t)rlen != want_len ||
				      memcmp(reply, want, want_len) != 0))
			atomic_fetch_add(&st.mismatch, 1);
		else
			atomic_fetch_add(&st.ok, 1);
		if (!o.keepalive) {
			close(fd);
			fd = -1;
		}
	}
	if (fd >= 0)
		close(fd);
	free(req);
	free(reply);
	return NULL;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: lonc-load --socket PATH [--clients N] [--requests M]\n"
		"       [--payload BYTES] [--keepalive] [--command CMD] [--seconds S]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "clients", required_argument, NULL, 'c' },
		{ "requests", required_argument, NULL, 'n' },
		{ "payload", required_argument, NULL, 'p' },
		{ "keepalive", no_argument, NULL, 'k' },
		{ "command", required_argument, NULL, 'C' },
		{ "seconds", required_argument, NULL, 'S' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 's': o.socket = optarg; break;
		case 'c': o.clients = atoi(optarg); break;
		case 'n': o.requests = atoi(optarg); break;
		case 'p': o.payload = atoi(optarg); break;
		case 'k': o.keepalive = true; break;
		case 'C': o.command = optarg; o.verify = false; break;
		case 'S': o.seconds = atof(optarg); break;
		default: usage();
		}
	}
	if (!o.socket || o.clients < 1 || o.requests < 1 || o.payload < 0)
		usage();
	pthread_t *th = calloc((size_t)o.clients, sizeof(*th));
	int64_t t0 = now_us();
	if (o.seconds > 0)
		stop_at_us = t0 + (int64_t)(o.seconds * 1e6);
	for (int i = 0; i < o.clients; i++) {
		pthread_attr_t attr;

		pthread_attr_init(&attr);
		pthread_attr_setstacksize(&attr, 128 * 1024);
		if (pthread_create(&th[i], &attr, client_main, (void *)(intptr_t)i)) {
			fprintf(stderr, "lonc-load: cannot start thread %d\n", i);
			return 2;
		}
		pthread_attr_destroy(&attr);
	}
	for (int i = 0; i < o.clients; i++)
		pthread_join(th[i], NULL);
	double secs = (double)(now_us() - t0) / 1e6;
	long ok = atomic_load(&st.ok), mism = atomic_load(&st.mismatch);
	long lost = atomic_load(&st.con_lost), err = atomic_load(&st.errors);
	printf("ok=%ld mismatch=%ld con_lost=%ld errors=%ld seconds=%.3f rps=%.0f "
	       "p50_us=%lld p99_us=%lld p999_us=%lld\n",
	       ok, mism, lost, err, secs, (double)(ok + mism + lost) / secs,
	       (long long)percentile(0.50), (long long)percentile(0.99),
	       (long long)percentile(0.999));
	free(th);
	return mism || lost || err ? 1 : 0;
}

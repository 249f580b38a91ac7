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
 * For the benchmark (bench/run) it can also talk to a lond directly over
 * persistent TCP connections (--tcp HOST:PORT, insecure handshake done
 * before the clock starts), spread its clients over several sockets
 * (--socket-count), wrap requests in encrypt: (--encrypt), leave a warm-up
 * period out of the figures (--warmup) and check the length of a long
 * reply (--expect-bytes).
 *
 * Every client thread keeps its own counters and latency histogram
 * (log-linear, 32 steps per power of two of nanoseconds: about 3 %
 * resolution), merged when all threads are done, so measuring costs no
 * shared cache line.  All threads connect (and handshake) first, wait at a
 * barrier, then start together.
 *
 * Prints one summary line of key=value pairs; exit 0 only when every
 * request got its own reply (with --verify) or a reply (without).
 */
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* Histogram: values below 2^SUB_BITS ns get one bucket each; above, each
 * power of two is split into 2^SUB_BITS equal steps. */
#define SUB_BITS 5
#define SUB_COUNT (1 << SUB_BITS)
#define HIST_OCTAVES 44               /* up to 2^44 ns: about 4.9 hours */
#define HIST_SIZE ((HIST_OCTAVES - SUB_BITS + 1) * SUB_COUNT)

struct opts {
	const char *socket;
	int socket_count;     /* >0: client i uses <socket><i % count> */
	const char *tcp;      /* HOST:PORT: persistent TCP to a lond */
	bool handshake;       /* with --tcp: the insecure handshake */
	int clients;
	int requests;
	int payload;
	bool keepalive;
	bool verify;
	bool encrypt;
	const char *command;  /* request without verification */
	double seconds;       /* stop after this long (0: no limit) */
	double warmup;        /* leave the first seconds out of the figures */
	long long expect_bytes; /* with --command: reply length (-1: any) */
};

struct stats {
	long ok, mismatch, con_lost, errors;
	uint64_t hist[HIST_SIZE];
	int64_t sum_ns, max_ns;
	int64_t last_done_ns; /* when this thread finished its last request */
};

/* Aligned so that no two clients' counters share a cache line. */
struct client {
	_Alignas(64) struct stats st;
	int id;
	pthread_t thread;
	char pad[64];
};

static struct opts o = { .clients = 1, .requests = 1, .payload = 16,
			 .verify = true, .handshake = true,
			 .expect_bytes = -1 };
static struct sockaddr_storage tcp_addr;
static socklen_t tcp_addr_len;
static pthread_barrier_t ready, go;
static int64_t start_ns, measure_ns, stop_ns; /* written before `go` */

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int bucket_of(int64_t ns)
{
	if (ns < SUB_COUNT)
		return ns < 0 ? 0 : (int)ns;
	int lg = 63 - __builtin_clzll((unsigned long long)ns);
	int sub = (int)((ns >> (lg - SUB_BITS)) & (SUB_COUNT - 1));
	int b = (lg - SUB_BITS + 1) * SUB_COUNT + sub;
	return b < HIST_SIZE ? b : HIST_SIZE - 1;
}

/* The middle of bucket b, in nanoseconds. */
static double bucket_value(int b)
{
	if (b < SUB_COUNT)
		return b;
	int lg = b / SUB_COUNT + SUB_BITS - 1, sub = b % SUB_COUNT;
	double step = (double)((int64_t)1 << (lg - SUB_BITS));

	return (double)((int64_t)1 << lg) + ((double)sub + 0.5) * step;
}

static double percentile_us(const struct stats *st, double p)
{
	uint64_t total = 0, seen = 0;

	for (int i = 0; i < HIST_SIZE; i++)
		total += st->hist[i];
	if (!total)
		return 0;
	uint64_t want = (uint64_t)(p * (double)total);
	for (int i = 0; i < HIST_SIZE; i++) {
		seen += st->hist[i];
		if (seen > want)
			return bucket_value(i) / 1000.0;
	}
	return bucket_value(HIST_SIZE - 1) / 1000.0;
}

static int open_unix(int id)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	if (o.socket_count > 0)
		snprintf(sa.sun_path, sizeof(sa.sun_path), "%s%d", o.socket,
			 id % o.socket_count);
	else
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

/* The lond side's insecure handshake: init, echo the challenge, ok,
 * ekey.  The key is not needed: the load is plain requests. */
static int tcp_handshake(int fd, char **buf, size_t *cap)
{
	ssize_t n;

	if (write_all(fd, "init\n", 5) < 0 || (n = read_line(fd, buf, cap)) < 0)
		return -1;
	(*buf)[n] = '\n';
	if (write_all(fd, *buf, (size_t)n + 1) < 0 ||
	    (n = read_line(fd, buf, cap)) != 2 || memcmp(*buf, "ok", 2) != 0)
		return -1;
	if (write_all(fd, "ekey\n", 5) < 0 || read_line(fd, buf, cap) < 0)
		return -1;
	return 0;
}

static int open_tcp(char **buf, size_t *cap)
{
	int one = 1;
	int fd = socket(tcp_addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&tcp_addr, tcp_addr_len) < 0)
		goto fail;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (o.handshake && tcp_handshake(fd, buf, cap) < 0)
		goto fail;
	return fd;
fail:
	close(fd);
	return -1;
}

static void record(struct stats *st, int64_t t0, int64_t t1)
{
	int64_t dt = t1 - t0;

	st->hist[bucket_of(dt)]++;
	st->sum_ns += dt;
	if (dt > st->max_ns)
		st->max_ns = dt;
	st->last_done_ns = t1;
}

static void *client_main(void *arg)
{
	struct client *cl = arg;
	struct stats *st = &cl->st;
	int id = cl->id;
	unsigned nonce = (unsigned)now_ns() ^ (unsigned)((unsigned)id * 2654435761u);
	size_t reqcap = (size_t)o.payload + 160, cap = 0;
	char *req = malloc(reqcap), *reply = NULL;
	const char *prefix = o.encrypt ? "encrypt:" : "";
	size_t plen = strlen(prefix);
	int fd = -1;

	if (!req)
		abort();
	/* A persistent connection is made (and handshaken) before the
	 * clock starts: the baseline is an already open connection. */
	if (o.tcp && (fd = open_tcp(&reply, &cap)) < 0)
		st->errors++;
	pthread_barrier_wait(&ready);
	pthread_barrier_wait(&go);
	if (o.tcp && fd < 0)
		goto out;
	for (int i = 0; i < o.requests; i++) {
		int64_t t0 = now_ns();

		if (stop_ns && t0 > stop_ns)
			break;
		size_t len;
		const char *want = NULL;
		size_t want_len = 0;

		if (o.verify) {
			int n = snprintf(req, reqcap, "%secho:%d-%d-%u-", prefix,
					 id, i, nonce++);
			len = (size_t)n;
			while (len < (size_t)o.payload + 5 + plen) {
				req[len] = (char)('a' + (len % 26));
				len++;
			}
			want = req + plen + 5;
			want_len = len - plen - 5;
			req[len++] = '\n';
		} else {
			len = (size_t)snprintf(req, reqcap, "%s%s\n", prefix,
					       o.command);
		}
		if (fd < 0 && (fd = open_unix(id)) < 0) {
			if (t0 >= measure_ns)
				st->errors++;
			continue;
		}
		ssize_t rlen = -1;
		if (write_all(fd, req, len) == 0)
			rlen = read_line(fd, &reply, &cap);
		int64_t t1 = now_ns();
		bool counted = t0 >= measure_ns;
		if (rlen < 0) {
			if (counted)
				st->errors++;
			close(fd);
			fd = -1;
			if (o.tcp)
				break; /* a persistent connection is not remade */
			continue;
		}
		if (counted) {
			record(st, t0, t1);
			if (rlen == 8 && memcmp(reply, "con_lost", 8) == 0)
				st->con_lost++;
			else if (o.verify && ((size_t)rlen != want_len ||
					      memcmp(reply, want, want_len) != 0))
				st->mismatch++;
			else if (!o.verify && o.expect_bytes >= 0 &&
				 rlen != o.expect_bytes)
				st->mismatch++;
			else
				st->ok++;
		}
		if (!o.keepalive && !o.tcp) {
			close(fd);
			fd = -1;
		}
	}
out:
	if (fd >= 0)
		close(fd);
	free(req);
	free(reply);
	return NULL;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: lonc-load (--socket PATH | --tcp HOST:PORT) [--clients N]\n"
		"       [--requests M] [--payload BYTES] [--keepalive] [--command CMD]\n"
		"       [--seconds S] [--warmup S] [--encrypt] [--socket-count N]\n"
		"       [--no-handshake] [--expect-bytes N]\n"
		"  --socket PATH      lonc's UNIX socket (or any line server's)\n"
		"  --socket-count N   client i uses the socket PATH<i mod N>\n"
		"  --tcp HOST:PORT    one persistent TCP connection per client to a\n"
		"                     lond, handshaken (insecure) before timing starts\n"
		"  --no-handshake     with --tcp: send requests at once\n"
		"  --keepalive        one UNIX connection per client for all requests\n"
		"  --encrypt          send encrypt:<request>\n"
		"  --payload BYTES    echo payload size (request: echo:<payload>)\n"
		"  --command CMD      send CMD instead of verified echo requests\n"
		"  --expect-bytes N   with --command: each reply must be N bytes\n"
		"  --seconds S        stop starting requests after S seconds\n"
		"  --warmup S         leave the first S seconds out of the figures\n");
	exit(2);
}

static int resolve_tcp(const char *spec)
{
	char host[256];
	const char *colon = strrchr(spec, ':');
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_NUMERICSERV };
	struct addrinfo *res;

	if (!colon || (size_t)(colon - spec) >= sizeof(host))
		return -1;
	memcpy(host, spec, (size_t)(colon - spec));
	host[colon - spec] = '\0';
	if (getaddrinfo(host, colon + 1, &hints, &res) != 0)
		return -1;
	memcpy(&tcp_addr, res->ai_addr, res->ai_addrlen);
	tcp_addr_len = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

static void merge(struct stats *sum, const struct stats *st)
{
	sum->ok += st->ok;
	sum->mismatch += st->mismatch;
	sum->con_lost += st->con_lost;
	sum->errors += st->errors;
	sum->sum_ns += st->sum_ns;
	if (st->max_ns > sum->max_ns)
		sum->max_ns = st->max_ns;
	if (st->last_done_ns > sum->last_done_ns)
		sum->last_done_ns = st->last_done_ns;
	for (int i = 0; i < HIST_SIZE; i++)
		sum->hist[i] += st->hist[i];
}

static double cpu_seconds(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
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
		{ "warmup", required_argument, NULL, 'W' },
		{ "tcp", required_argument, NULL, 'T' },
		{ "no-handshake", no_argument, NULL, 'H' },
		{ "encrypt", no_argument, NULL, 'e' },
		{ "socket-count", required_argument, NULL, 'N' },
		{ "expect-bytes", required_argument, NULL, 'B' },
		{ "help", no_argument, NULL, 'h' },
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
		case 'W': o.warmup = atof(optarg); break;
		case 'T': o.tcp = optarg; break;
		case 'H': o.handshake = false; break;
		case 'e': o.encrypt = true; break;
		case 'N': o.socket_count = atoi(optarg); break;
		case 'B': o.expect_bytes = atoll(optarg); break;
		default: usage();
		}
	}
	if ((!o.socket == !o.tcp) || o.clients < 1 || o.requests < 1 ||
	    o.payload < 0 || o.socket_count < 0 || o.warmup < 0 ||
	    (o.warmup > 0 && o.seconds <= o.warmup))
		usage();
	if (o.tcp && resolve_tcp(o.tcp) < 0) {
		fprintf(stderr, "lonc-load: cannot resolve %s\n", o.tcp);
		return 2;
	}
	size_t clsize = (size_t)o.clients * sizeof(struct client);
	struct client *cl = aligned_alloc(64, clsize);
	struct stats *sum = calloc(1, sizeof(*sum));
	if (!cl || !sum) {
		fprintf(stderr, "lonc-load: out of memory\n");
		return 2;
	}
	memset(cl, 0, clsize);
	pthread_barrier_init(&ready, NULL, (unsigned)o.clients + 1);
	pthread_barrier_init(&go, NULL, (unsigned)o.clients + 1);
	for (int i = 0; i < o.clients; i++) {
		pthread_attr_t attr;

		cl[i].id = i;
		pthread_attr_init(&attr);
		pthread_attr_setstacksize(&attr, 128 * 1024);
		if (pthread_create(&cl[i].thread, &attr, client_main, &cl[i])) {
			fprintf(stderr, "lonc-load: cannot start thread %d\n", i);
			return 2;
		}
		pthread_attr_destroy(&attr);
	}
	pthread_barrier_wait(&ready);
	double cpu0 = cpu_seconds();
	start_ns = now_ns();
	measure_ns = start_ns + (int64_t)(o.warmup * 1e9);
	if (o.seconds > 0)
		stop_ns = start_ns + (int64_t)(o.seconds * 1e9);
	pthread_barrier_wait(&go);
	for (int i = 0; i < o.clients; i++) {
		pthread_join(cl[i].thread, NULL);
		merge(sum, &cl[i].st);
	}
	int64_t end_ns = now_ns();
	double cpu = cpu_seconds() - cpu0;
	/* The measured interval ends when the last counted request did. */
	if (sum->last_done_ns > measure_ns)
		end_ns = sum->last_done_ns;
	double secs = (double)(end_ns - measure_ns) / 1e9;
	long done = sum->ok + sum->mismatch + sum->con_lost;
	printf("ok=%ld mismatch=%ld con_lost=%ld errors=%ld seconds=%.3f rps=%.0f "
	       "p50_us=%.1f p99_us=%.1f p999_us=%.1f p90_us=%.1f mean_us=%.1f "
	       "max_us=%.1f cpu_s=%.3f\n",
	       sum->ok, sum->mismatch, sum->con_lost, sum->errors, secs,
	       secs > 0 ? (double)done / secs : 0.0,
	       percentile_us(sum, 0.50), percentile_us(sum, 0.99),
	       percentile_us(sum, 0.999), percentile_us(sum, 0.90),
	       done ? (double)sum->sum_ns / (double)done / 1000.0 : 0.0,
	       (double)sum->max_ns / 1000.0, cpu);
	int bad = sum->mismatch || sum->con_lost || sum->errors;
	pthread_barrier_destroy(&ready);
	pthread_barrier_destroy(&go);
	free(cl);
	free(sum);
	return bad ? 1 : 0;
}

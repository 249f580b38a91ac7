/*
 * delay - a TCP relay that holds every chunk for a fixed one-way delay in
 * each direction: network delay on loopback, where this kernel has no
 * netem.  bench/run puts it between lonc and a test lond (scenario 10);
 * `--delay-ms 25` gives a 50 ms round trip.
 *
 * It listens on a loopback port; for each connection it accepts it
 * connects to the upstream address and relays bytes both ways, each
 * chunk it reads released to the other side `delay` after it was read.
 * Order is kept; chunk boundaries are not (TCP has none).  A half-close
 * (FIN) travels like data, after the same delay; a reset, a failed
 * write or a failed upstream connect ends both sides with a reset.  It
 * is a byte pipe, so it carries TLS unchanged.
 *
 * What a real link of the same length would also delay, and how much of
 * it is imitated:
 *  - The client's TCP connect completes at once, in this machine's
 *    kernel (nothing in user space can hold back the SYN-ACK of a
 *    listening socket).  Instead the upstream connect is started one
 *    one-way delay after the accept (the SYN's way out), and the
 *    client's bytes leave no earlier than one round trip after the
 *    accept plus the one-way delay: what its first bytes would cost had
 *    its connect taken a round trip.  --no-connect-delay turns this off.
 *  - A refused upstream connect reaches the client as a reset one
 *    one-way delay later, on its first read or write: not as a refused
 *    connect.
 *  - No loss, no bandwidth limit, no reordering; TCP acknowledgements
 *    and window updates are not delayed (each side's kernel talks only
 *    to this relay), so a sender is throttled only by the relay's own
 *    bound: at most --buffer bytes (data and bookkeeping) held per
 *    direction and connection, after which that side is not read until
 *    the queue drains.  A bulk transfer runs at about buffer / delay.
 *
 * One thread, epoll, a timerfd for the next release; no thread per
 * connection or chunk.
 *
 * Usage: delay --upstream HOST:PORT --delay-ms MS [--port N]
 *              [--buffer BYTES] [--max-conns N] [--no-connect-delay]
 * Prints "ready port=<N>" on stdout once listening.  SIGTERM or SIGINT:
 * a line of counters on stderr, exit 0.  Bad arguments: exit 2.
 */
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define DELAY_READ (64 * 1024)
#define DELAY_EVENTS 128

enum chunk_kind { CH_DATA, CH_FIN, CH_RST };

struct chunk {
	struct chunk *next;
	int64_t due;               /* monotonic ns: release time */
	size_t len, off;           /* data bytes, and how many are written */
	enum chunk_kind kind;
	char data[];
};

/* One direction: from side `src` to side 1 - src. */
struct dir {
	struct chunk *head, *tail;
	size_t held;               /* data + bookkeeping bytes queued */
	bool src_eof;              /* nothing more will be read */
	bool done;                 /* FIN written on to the destination */
	bool blocked;              /* the last write would have blocked */
};

struct pair;

struct side {
	int fd;                    /* -1: not (yet, or no longer) open */
	struct pair *p;
	int idx;                   /* 0 client, 1 upstream */
	uint32_t events;           /* registered with epoll */
	bool registered;
	bool hup;                  /* epoll said it hung up: removed */
};

enum up_state { UP_WAIT, UP_CONNECTING, UP_OPEN, UP_FAILED };

struct pair {
	struct pair *prev, *next;  /* the live list, or the graveyard (next) */
	bool dead;                 /* closed; freed after this epoll batch */
	struct side s[2];
	struct dir d[2];           /* d[0]: client -> upstream */
	enum up_state up;
	int64_t connect_at;        /* start the upstream connect then */
	int64_t client_not_before; /* client bytes leave no earlier */
};

static struct {
	int64_t delay_ns;
	size_t buffer;
	int max_conns;
	bool connect_delay;
	struct sockaddr_storage up;
	socklen_t up_len;
} opt = { .buffer = 1024 * 1024, .max_conns = 1024, .connect_delay = true };

static int ep, tfd, lfd, sfd;
static struct pair *pairs, *graveyard;
static int npairs;
static int64_t armed = -1;
static unsigned long long n_accepted, n_refused, n_failed, bytes_dir[2];
static char rbuf[DELAY_READ];

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void die(const char *what)
{
	fprintf(stderr, "delay: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void set_interest(struct side *s, uint32_t want)
{
	struct epoll_event ev = { .events = want, .data.ptr = s };

	if (s->fd < 0 || s->hup)
		return;
	if (!s->registered) {
		if (epoll_ctl(ep, EPOLL_CTL_ADD, s->fd, &ev) < 0)
			die("epoll_ctl add");
		s->registered = true;
	} else if (want != s->events && epoll_ctl(ep, EPOLL_CTL_MOD, s->fd, &ev) < 0) {
		die("epoll_ctl mod");
	}
	s->events = want;
}

/* Side j reads into d[j] and writes what d[1 - j] releases. */
static void update(struct pair *p, int j)
{
	struct side *s = &p->s[j];
	uint32_t want = 0;

	if (s->fd < 0 || (j == 1 && p->up == UP_WAIT))
		return;
	if (j == 1 && p->up == UP_CONNECTING) {
		set_interest(s, EPOLLOUT);
		return;
	}
	if (!p->d[j].src_eof && p->d[j].held < opt.buffer)
		want |= EPOLLIN;
	if (p->d[1 - j].blocked)
		want |= EPOLLOUT;
	set_interest(s, want);
}

static void close_side(struct side *s, bool reset)
{
	if (s->fd < 0)
		return;
	if (reset) {
		struct linger l = { 1, 0 };

		setsockopt(s->fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
	}
	close(s->fd);   /* also leaves the epoll set */
	s->fd = -1;
	s->registered = false;
}

static void pop(struct dir *d)
{
	struct chunk *c = d->head;

	d->head = c->next;
	if (!d->head)
		d->tail = NULL;
	d->held -= sizeof(*c) + c->len;
	free(c);
}

/* Close both sides and drop what is queued.  The memory is kept until
 * the current batch of epoll events is handled (bury): a later event of
 * the batch may still name this pair. */
static void pair_free(struct pair *p, bool reset)
{
	for (int i = 0; i < 2; i++) {
		close_side(&p->s[i], reset);
		while (p->d[i].head)
			pop(&p->d[i]);
	}
	if (p->prev)
		p->prev->next = p->next;
	else
		pairs = p->next;
	if (p->next)
		p->next->prev = p->prev;
	npairs--;
	p->dead = true;
	p->prev = NULL;
	p->next = graveyard;
	graveyard = p;
}

static void bury(void)
{
	while (graveyard) {
		struct pair *p = graveyard;

		graveyard = p->next;
		free(p);
	}
}

static void push(struct pair *p, int i, enum chunk_kind kind, const char *buf,
		 size_t len, int64_t now)
{
	struct dir *d = &p->d[i];
	struct chunk *c = malloc(sizeof(*c) + len);

	if (!c) {
		fprintf(stderr, "delay: out of memory\n");
		exit(1);
	}
	int64_t from = i == 0 && now < p->client_not_before ? p->client_not_before : now;
	c->due = from + opt.delay_ns;
	if (d->tail && c->due < d->tail->due)
		c->due = d->tail->due;
	c->len = len;
	c->off = 0;
	c->kind = kind;
	c->next = NULL;
	if (len)
		memcpy(c->data, buf, len);
	if (d->tail)
		d->tail->next = c;
	else
		d->head = c;
	d->tail = c;
	d->held += sizeof(*c) + len;
	if (kind != CH_DATA)
		d->src_eof = true;
}

/* Write what d[i] has released.  False when the pair was freed. */
static bool flush(struct pair *p, int i, int64_t now)
{
	struct dir *d = &p->d[i];
	struct side *dst = &p->s[1 - i];

	if ((i == 0 && p->up != UP_OPEN) || d->blocked)
		return true;
	while (d->head && d->head->due <= now) {
		struct chunk *c = d->head;

		if (c->kind == CH_RST || dst->fd < 0) {
			pair_free(p, true);
			return false;
		}
		if (c->kind == CH_FIN) {
			shutdown(dst->fd, SHUT_WR);
			d->done = true;
			pop(d);
			continue;
		}
		ssize_t n = send(dst->fd, c->data + c->off, c->len - c->off, MSG_NOSIGNAL);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && !dst->hup) {
			d->blocked = true;
			break;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			n_failed++;
			pair_free(p, true);
			return false;
		}
		bytes_dir[i] += (size_t)n;
		c->off += (size_t)n;
		if (c->off == c->len)
			pop(d);
	}
	if (!d->head || d->head->due > now)
		d->blocked = false;
	if (p->d[0].done && p->d[1].done) {
		pair_free(p, false);
		return false;
	}
	update(p, 0);
	update(p, 1);
	return true;
}

/* Read what side j has (once, or up to its end after a hang-up). */
static void drain(struct pair *p, int j, bool hup, int64_t now)
{
	struct dir *d = &p->d[j];

	while (!d->src_eof && (hup || d->held < opt.buffer)) {
		size_t room = hup || opt.buffer - d->held > sizeof(rbuf)
			? sizeof(rbuf) : opt.buffer - d->held;
		ssize_t n = recv(p->s[j].fd, rbuf, room, 0);

		if (n > 0)
			push(p, j, CH_DATA, rbuf, (size_t)n, now);
		else if (n == 0)
			push(p, j, CH_FIN, NULL, 0, now);
		else if (errno == EINTR)
			continue;
		else if (errno != EAGAIN && errno != EWOULDBLOCK)
			push(p, j, CH_RST, NULL, 0, now);
		if (n <= 0 || !hup)
			break;
	}
}

static void upstream_connect(struct pair *p, int64_t now)
{
	int fd = socket(opt.up.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		die("socket");
	p->s[1].fd = fd;
	if (connect(fd, (struct sockaddr *)&opt.up, opt.up_len) == 0) {
		p->up = UP_OPEN;
	} else if (errno == EINPROGRESS) {
		p->up = UP_CONNECTING;
	} else {
		p->up = UP_FAILED;
		close_side(&p->s[1], false);
		n_refused++;
		push(p, 1, CH_RST, NULL, 0, now);
		return;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	update(p, 1);
}

static void connect_done(struct pair *p, int64_t now)
{
	int err = 0;
	socklen_t len = sizeof(err);

	getsockopt(p->s[1].fd, SOL_SOCKET, SO_ERROR, &err, &len);
	if (err) {
		p->up = UP_FAILED;
		close_side(&p->s[1], false);
		n_refused++;
		push(p, 1, CH_RST, NULL, 0, now);
		return;
	}
	p->up = UP_OPEN;
	update(p, 1);
	(void)flush(p, 0, now);
}

static void on_side(struct side *s, uint32_t ev, int64_t now)
{
	struct pair *p = s->p;
	int j = s->idx;

	if (p->dead)
		return;
	if (j == 1 && p->up == UP_CONNECTING) {
		connect_done(p, now);
		return;
	}
	bool hup = ev & (EPOLLHUP | EPOLLERR);
	if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR))
		drain(p, j, hup, now);
	if (hup) {
		/* Level-triggered hang-ups repeat: read to the end (above),
		 * then stop watching; writes to it fail from now on. */
		epoll_ctl(ep, EPOLL_CTL_DEL, s->fd, NULL);
		s->registered = false;
		s->hup = true;
	}
	if (ev & EPOLLOUT)
		p->d[1 - j].blocked = false;
	if (flush(p, 1 - j, now))
		update(p, j);
}

static void on_accept(int64_t now)
{
	int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

	if (fd < 0)
		return;
	if (npairs >= opt.max_conns) {
		close(fd);
		return;
	}
	struct pair *p = calloc(1, sizeof(*p));
	if (!p) {
		close(fd);
		return;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	for (int i = 0; i < 2; i++) {
		p->s[i].p = p;
		p->s[i].idx = i;
	}
	p->s[0].fd = fd;
	p->s[1].fd = -1;
	p->connect_at = opt.connect_delay ? now + opt.delay_ns : now;
	p->client_not_before = opt.connect_delay ? now + 2 * opt.delay_ns : now;
	p->next = pairs;
	if (pairs)
		pairs->prev = p;
	pairs = p;
	npairs++;
	n_accepted++;
	update(p, 0);
}

/* Start due connects, write what is due; returns the next deadline
 * (-1: none). */
static int64_t run_due(int64_t now)
{
	int64_t next = -1;

	for (struct pair *p = pairs, *n; p; p = n) {
		n = p->next;
		if (p->up == UP_WAIT && p->connect_at <= now)
			upstream_connect(p, now);
		if (!flush(p, 0, now) || !flush(p, 1, now))
			continue;
		int64_t t[3] = { p->up == UP_WAIT ? p->connect_at : -1, -1, -1 };
		for (int i = 0; i < 2; i++)
			if (p->d[i].head && !p->d[i].blocked && !(i == 0 && p->up != UP_OPEN))
				t[i + 1] = p->d[i].head->due;
		for (int i = 0; i < 3; i++)
			if (t[i] >= 0 && (next < 0 || t[i] < next))
				next = t[i];
	}
	return next;
}

static void arm(int64_t when)
{
	struct itimerspec its = { 0 };

	if (when == armed)
		return;
	if (when >= 0) {
		its.it_value.tv_sec = when / 1000000000;
		its.it_value.tv_nsec = when % 1000000000;
		if (!its.it_value.tv_sec && !its.it_value.tv_nsec)
			its.it_value.tv_nsec = 1;
	}
	if (timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL) < 0)
		die("timerfd_settime");
	armed = when;
}

static void loop(void)
{
	struct epoll_event evs[DELAY_EVENTS];

	for (;;) {
		arm(run_due(now_ns()));
		int n = epoll_wait(ep, evs, DELAY_EVENTS, -1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			die("epoll_wait");
		int64_t now = now_ns();
		for (int i = 0; i < n; i++) {
			void *ptr = evs[i].data.ptr;

			if (ptr == &lfd) {
				on_accept(now);
			} else if (ptr == &tfd) {
				uint64_t x;

				if (read(tfd, &x, sizeof(x)) < 0 && errno != EAGAIN)
					die("timerfd read");
				armed = -1;
			} else if (ptr == &sfd) {
				return;
			} else {
				on_side(ptr, evs[i].events, now);
			}
		}
		bury();
	}
}

static void usage(void)
{
	fprintf(stderr,
		"usage: delay --upstream HOST:PORT --delay-ms MS [--port N]\n"
		"             [--buffer BYTES] [--max-conns N] [--no-connect-delay]\n"
		"  --upstream HOST:PORT  where to relay each connection (numeric)\n"
		"  --delay-ms MS         one-way delay, each direction (may be 0 or\n"
		"                        fractional; 25 = a 50 ms round trip)\n"
		"  --port N              loopback port to listen on (0: any; default)\n"
		"  --buffer BYTES        bytes held per direction and connection\n"
		"                        (default 1048576)\n"
		"  --max-conns N         connections at once (default 1024)\n"
		"  --no-connect-delay    connect upstream at once, and release the\n"
		"                        client's first bytes after the delay only\n");
	exit(2);
}

static void resolve(const char *spec)
{
	char host[256];
	const char *colon = strrchr(spec, ':');
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV };
	struct addrinfo *res;

	if (!colon || colon == spec || (size_t)(colon - spec) >= sizeof(host))
		usage();
	memcpy(host, spec, (size_t)(colon - spec));
	host[colon - spec] = '\0';
	if (host[0] == '[' && host[strlen(host) - 1] == ']') {
		memmove(host, host + 1, strlen(host));
		host[strlen(host) - 1] = '\0';
	}
	if (getaddrinfo(host, colon + 1, &hints, &res) != 0)
		usage();
	memcpy(&opt.up, res->ai_addr, res->ai_addrlen);
	opt.up_len = res->ai_addrlen;
	freeaddrinfo(res);
}

static void parse(int argc, char **argv, int *port)
{
	static const struct option lo[] = {
		{ "upstream", required_argument, NULL, 'u' },
		{ "delay-ms", required_argument, NULL, 'd' },
		{ "port", required_argument, NULL, 'p' },
		{ "buffer", required_argument, NULL, 'b' },
		{ "max-conns", required_argument, NULL, 'm' },
		{ "no-connect-delay", no_argument, NULL, 'n' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	bool have_up = false, have_delay = false;
	char *end;
	int c;

	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'u': resolve(optarg); have_up = true; break;
		case 'd': {
			double ms = strtod(optarg, &end);

			if (*end || end == optarg || !(ms >= 0 && ms <= 600000))
				usage();
			opt.delay_ns = (int64_t)(ms * 1e6);
			have_delay = true;
			break;
		}
		case 'p': *port = (int)strtol(optarg, &end, 10);
			if (*end || *port < 0 || *port > 65535)
				usage();
			break;
		case 'b': opt.buffer = (size_t)strtoull(optarg, &end, 10);
			if (*end || opt.buffer < 4096)
				usage();
			break;
		case 'm': opt.max_conns = (int)strtol(optarg, &end, 10);
			if (*end || opt.max_conns < 1)
				usage();
			break;
		case 'n': opt.connect_delay = false; break;
		default: usage();
		}
	}
	if (!have_up || !have_delay || optind != argc)
		usage();
}

static void add_fd(int fd, void *tag)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = tag };

	if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
		die("epoll_ctl");
}

static int listen_on(int port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_port = htons((uint16_t)port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	int one = 1;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		die("socket");
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		die("bind");
	if (listen(fd, 4096) < 0)
		die("listen");
	if (getsockname(fd, (struct sockaddr *)&sa, &len) < 0)
		die("getsockname");
	printf("ready port=%d\n", ntohs(sa.sin_port));
	fflush(stdout);
	return fd;
}

int main(int argc, char **argv)
{
	int port = 0;
	sigset_t mask;

	parse(argc, argv, &port);
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
		die("sigprocmask");
	if ((sfd = signalfd(-1, &mask, SFD_CLOEXEC)) < 0)
		die("signalfd");
	if ((tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)) < 0)
		die("timerfd_create");
	if ((ep = epoll_create1(EPOLL_CLOEXEC)) < 0)
		die("epoll_create1");
	lfd = listen_on(port);
	add_fd(lfd, &lfd);
	add_fd(tfd, &tfd);
	add_fd(sfd, &sfd);
	loop();
	fprintf(stderr, "delay: accepted=%llu upstream_failed=%llu reset=%llu "
		"bytes_up=%llu bytes_down=%llu open=%d\n", n_accepted, n_refused,
		n_failed, bytes_dir[0], bytes_dir[1], npairs);
	while (pairs)
		pair_free(pairs, false);
	bury();
	return 0;
}

/*
 * handoff - the benchmark's design floor: the smallest server built the
 * way lonc's design prescribes, for the one-client latency reference.
 *
 * One acceptor thread takes a UNIX connection and reads its request
 * line; it hands the connection to a parked worker thread (a semaphore
 * per worker, last parked first woken, as lonc's queue does); the worker
 * owns one persistent TCP connection to a lond, sends the line, reads
 * the reply line with a blocking recv and writes it to the client, then
 * closes the client.  It uses lonc's tricks that cut system calls or
 * wake-ups (the request is only peeked at until the answer, so that the
 * client is not woken for nothing; workers run under SCHED_BATCH), and
 * nothing else: no request parsing, no deadlines, no pool management,
 * no hand-back (one request per connection, the lonnet pattern), no
 * error answers.  Whatever lonc adds to the direct
 * path beyond what this adds is lonc's own; what this adds is the
 * design's (two thread hand-overs and the relay's second hop).
 *
 * The acceptor blocks in accept(2) and read(2): it serves only this
 * pattern, where lonc's acceptor must also watch keep-alive clients (in
 * epoll), so the floor is a little lower than any full implementation.
 * It needs a lond that answers without a handshake (testlond
 * --no-handshake).  Requests and replies must fit HANDOFF_LINE bytes.
 *
 * Three options add, one at a time, what lonc does beyond this floor,
 * so that each one's cost can be measured (doc/performance.md):
 *   --epoll      the acceptor waits in epoll_wait, then accepts (lonc's
 *                acceptor must also watch clients it served, in epoll)
 *   --hand-back  a served client goes back into that epoll set instead
 *                of being closed, and is closed when it hangs up (lonc
 *                waits for a keep-alive client's next request); implies
 *                --epoll
 *   --check      the worker polls the client and its lond connection
 *                before each send (lonc's check for a connection lond
 *                closed while it sat in the pool)
 * and one takes away the design's first hand-over, to price it:
 *   --no-hop     no acceptor thread: every worker blocks in accept(2)
 *                on the listener and serves what it accepted itself (not
 *                lonc's design; what leaving the acceptor out would buy)
 *
 * Usage: handoff --socket PATH --lond HOST:PORT [--workers N] [--epoll]
 * [--hand-back] [--check] [--no-hop].  Prints "ready" once listening;
 * SIGTERM or SIGINT remove the socket and exit 0.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "net.h"

#define HANDOFF_BACKLOG 4096
#define HANDOFF_LINE 4096
#define HANDOFF_RING 4096
#define HANDOFF_MAX_WORKERS 64

struct job {
	int fd;
	size_t len;         /* request bytes, '\n' included */
	char *line;
};

struct worker {
	pthread_t thread;
	sem_t wake;
	struct job job;     /* set by the pusher before the post */
	int lond;
	struct worker *next_parked;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct job ring[HANDOFF_RING];   /* under mu */
static size_t ring_head, ring_len;      /* under mu */
static struct worker *parked;           /* under mu */

static bool opt_epoll, opt_hand_back, opt_check, opt_no_hop;
static int listen_fd = -1;
static int epfd = -1;                   /* with --epoll */

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
	stop_signal = sig;
}

static void die(const char *what)
{
	perror(what);
	exit(1);
}

/* Read from fd until the buffer holds a '\n'.  Bytes, or -1.  With
 * MSG_PEEK the bytes stay in the socket (the whole line must fit). */
static ssize_t read_line(int fd, char *buf, size_t cap, int flags)
{
	size_t have = 0;

	while (have < cap) {
		ssize_t n = recv(fd, buf + have, cap - have, flags);

		if (n > 0 && (flags & MSG_PEEK)) {
			/* A peek returns from the start each time, and at
			 * once while anything is there: a line still coming
			 * (never, with lonc-load) is waited for in short
			 * sleeps rather than a spin. */
			if (memchr(buf, '\n', (size_t)n))
				return n;
			if ((size_t)n == cap)
				return -1;
			usleep(100);
			continue;
		}

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		if (memchr(buf + have, '\n', (size_t)n))
			return (ssize_t)(have + (size_t)n);
		have += (size_t)n;
	}
	return -1;
}

/* Writes are bounded, so that a stuck peer ends the benchmark run with
 * an error rather than a hang. */
#define HANDOFF_WRITE_MS 10000

static void serve(struct worker *w, struct job *j)
{
	char reply[HANDOFF_LINE];   /* the thread's stack is the default */
	ssize_t n = -1;

	if (opt_check) {
		struct pollfd p[2] = {
			{ .fd = j->fd, .events = POLLIN },
			{ .fd = w->lond, .events = POLLIN },
		};

		if (poll(p, 2, 0) < 0)
			perror("handoff: poll");
	}
	if (net_write_all(w->lond, j->line, j->len, now_ms() + HANDOFF_WRITE_MS) == 0)
		n = read_line(w->lond, reply, sizeof(reply), 0);
	/* Take the request out of the client's socket, then answer. */
	if (n > 0 && recv(j->fd, j->line, j->len, 0) != (ssize_t)j->len)
		n = -1;
	if (n > 0 && net_write_all(j->fd, reply, (size_t)n, now_ms() + HANDOFF_WRITE_MS) < 0)
		n = -1;
	if (n <= 0)
		fprintf(stderr, "handoff: a transaction failed\n");
	struct epoll_event ev = {
		.events = EPOLLIN | EPOLLRDHUP | EPOLLONESHOT, .data.fd = j->fd,
	};
	if (n <= 0 || !opt_hand_back || epoll_ctl(epfd, EPOLL_CTL_ADD, j->fd, &ev) < 0)
		close(j->fd);
	free(j->line);
}

/* Accept a connection and peek at its request.  False when there was
 * none, or it closed before sending one. */
static bool take_request(int lfd, struct job *j)
{
	int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

	if (fd < 0) {
		if (errno != EINTR && errno != ECONNABORTED && errno != EAGAIN)
			perror("handoff: accept");
		return false;
	}
	char *line = malloc(HANDOFF_LINE);
	ssize_t n = line ? read_line(fd, line, HANDOFF_LINE, MSG_PEEK) : -1;
	if (n <= 0) {
		close(fd);
		free(line);
		return false;
	}
	/* Only the first line, the one the worker takes out. */
	*j = (struct job){ .fd = fd, .line = line,
		.len = (size_t)((char *)memchr(line, '\n', (size_t)n) - line + 1) };
	return true;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct sched_param sp = { .sched_priority = 0 };

	pthread_setschedparam(pthread_self(), SCHED_BATCH, &sp);

	for (;;) {
		struct job j;

		if (opt_no_hop) {
			if (take_request(listen_fd, &j))
				serve(w, &j);
			continue;
		}

		pthread_mutex_lock(&mu);
		if (ring_len > 0) {
			j = ring[ring_head];
			ring_head = (ring_head + 1) % HANDOFF_RING;
			ring_len--;
			pthread_mutex_unlock(&mu);
		} else {
			w->next_parked = parked;
			parked = w;
			pthread_mutex_unlock(&mu);
			while (sem_wait(&w->wake) < 0 && errno == EINTR)
				;
			j = w->job;
		}
		serve(w, &j);
	}
	return NULL;
}

/* Give a job to the last parked worker, or queue it. */
static void push(struct job j)
{
	pthread_mutex_lock(&mu);
	struct worker *w = parked;
	if (w) {
		parked = w->next_parked;
		w->job = j;
		pthread_mutex_unlock(&mu);
		sem_post(&w->wake);
		return;
	}
	if (ring_len == HANDOFF_RING) {
		pthread_mutex_unlock(&mu);
		fprintf(stderr, "handoff: queue full\n");
		close(j.fd);
		free(j.line);
		return;
	}
	ring[(ring_head + ring_len) % HANDOFF_RING] = j;
	ring_len++;
	pthread_mutex_unlock(&mu);
}

/* With --epoll: wait until the listener is ready, closing the clients
 * handed back (--hand-back) that hung up meanwhile.  True when a
 * connection waits to be accepted. */
static bool wait_listener(int lfd)
{
	struct epoll_event evs[64];
	bool ready = false;
	int n = epoll_wait(epfd, evs, 64, -1);

	for (int i = 0; i < n; i++) {
		if (evs[i].data.fd == lfd)
			ready = true;
		else
			close(evs[i].data.fd);   /* one request per connection */
	}
	return ready;
}

/* A blocking, persistent connection to the lond at HOST:PORT. */
static int connect_lond(const char *hostport)
{
	char host[256];
	const char *colon = strrchr(hostport, ':');
	const char *why = NULL;

	if (!colon || colon == hostport || (size_t)(colon - hostport) >= sizeof(host)) {
		fprintf(stderr, "handoff: --lond HOST:PORT\n");
		exit(2);
	}
	memcpy(host, hostport, (size_t)(colon - hostport));
	host[colon - hostport] = '\0';
	int fd = net_connect_tcp(host, atoi(colon + 1), now_ms() + 5000, &why);
	if (fd < 0) {
		fprintf(stderr, "handoff: connect to lond %s: %s\n", hostport, why ? why : "failed");
		exit(1);
	}
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) < 0)
		die("handoff: fcntl");
	return fd;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "lond", required_argument, NULL, 'l' },
		{ "workers", required_argument, NULL, 'w' },
		{ "epoll", no_argument, NULL, 'e' },
		{ "hand-back", no_argument, NULL, 'b' },
		{ "check", no_argument, NULL, 'c' },
		{ "no-hop", no_argument, NULL, 'n' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = NULL, *lond = NULL;
	int nworkers = 1, c;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 's': path = optarg; break;
		case 'l': lond = optarg; break;
		case 'w': nworkers = atoi(optarg); break;
		case 'e': opt_epoll = true; break;
		case 'b': opt_hand_back = opt_epoll = true; break;
		case 'c': opt_check = true; break;
		case 'n': opt_no_hop = true; break;
		default: return 2;
		}
	}
	if (!path || !lond || nworkers < 1 || nworkers > HANDOFF_MAX_WORKERS ||
	    (opt_no_hop && opt_epoll)) {
		fprintf(stderr, "usage: handoff --socket PATH --lond HOST:PORT [--workers 1-%d]"
			" [--epoll] [--hand-back] [--check] [--no-hop]\n",
			HANDOFF_MAX_WORKERS);
		return 2;
	}

	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(sun.sun_path)) {
		fprintf(stderr, "handoff: socket path too long\n");
		return 2;
	}
	strcpy(sun.sun_path, path);
	unlink(path);
	int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sun, sizeof(sun)) < 0 ||
	    listen(lfd, HANDOFF_BACKLOG) < 0)
		die("handoff: listen");
	listen_fd = lfd;
	if (opt_epoll) {
		struct epoll_event ev = { .events = EPOLLIN, .data.fd = lfd };

		epfd = epoll_create1(EPOLL_CLOEXEC);
		if (epfd < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev) < 0)
			die("handoff: epoll");
	}

	/* Workers start with SIGTERM and SIGINT blocked, so that the
	 * accepting thread is the one they interrupt. */
	sigset_t stop, old;
	sigemptyset(&stop);
	sigaddset(&stop, SIGTERM);
	sigaddset(&stop, SIGINT);
	pthread_sigmask(SIG_BLOCK, &stop, &old);
	static struct worker workers[HANDOFF_MAX_WORKERS];
	for (int i = 0; i < nworkers; i++) {
		workers[i].lond = connect_lond(lond);
		if (sem_init(&workers[i].wake, 0, 0) < 0 ||
		    pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]) != 0)
			die("handoff: worker");
	}

	/* Signals end the accept loop (no SA_RESTART); workers need no
	 * stopping: the process exits. */
	struct sigaction sa = { .sa_handler = on_signal };
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	printf("ready\n");
	fflush(stdout);

	if (opt_no_hop) {
		/* The workers accept; wait for a signal (still blocked here,
		 * so none is lost between the check and the wait). */
		while (!stop_signal)
			sigsuspend(&old);
	} else {
		pthread_sigmask(SIG_SETMASK, &old, NULL);
	}
	while (!stop_signal) {
		struct job j;

		if ((!opt_epoll || wait_listener(lfd)) && take_request(lfd, &j))
			push(j);
	}
	unlink(path);
	return 0;
}

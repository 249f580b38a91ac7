/*
 * floor - the benchmark's floor server: a minimal single-threaded UNIX
 * socket line server with no second hop.
 *
 * It answers `echo:<x>` with `<x>` (anything else with `unknown_cmd`) in
 * the one thread that also accepts: accept, read the line (usually there
 * at once), write the reply, then keep reading the connection until the
 * client closes it or sends the next line.  It is what any broker could
 * reach at best with the same clients and pattern on the same machine,
 * so bench/run divides lonc's throughput by this one.
 *
 * Usage: floor --socket PATH.  Prints "ready" on stdout once listening;
 * SIGTERM or SIGINT remove the socket and exit 0.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define FLOOR_BACKLOG 4096
#define FLOOR_EVENTS 256
#define FLOOR_BUF_MIN 4096
#define FLOOR_READ (64 * 1024)
#define FLOOR_LINE_MAX (64 * 1024 * 1024)

struct conn {
	int fd;
	char *in;          /* bytes read, not yet answered */
	size_t len, cap;
	char *out;         /* reply bytes not yet written (socket was full) */
	size_t out_len, out_off, out_cap;
};

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
	stop_signal = sig;
}

static void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n);

	if (!q) {
		fprintf(stderr, "floor: out of memory\n");
		exit(1);
	}
	return q;
}

static void conn_free(struct conn *c)
{
	close(c->fd);
	free(c->in);
	free(c->out);
	free(c);
}

/* Queue reply bytes behind what could not be written yet. */
static void queue_out(struct conn *c, const char *p, size_t n)
{
	if (c->out_len + n > c->out_cap) {
		c->out_cap = (c->out_len + n) * 2;
		c->out = xrealloc(c->out, c->out_cap);
	}
	memcpy(c->out + c->out_len, p, n);
	c->out_len += n;
}

/* Write what is pending; 1 when all is out, 0 when the socket is full,
 * -1 on error. */
static int flush_out(struct conn *c)
{
	while (c->out_off < c->out_len) {
		ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
				 MSG_NOSIGNAL);

		if (n > 0) {
			c->out_off += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		return -1;
	}
	c->out_off = c->out_len = 0;
	return 1;
}

/* Send one reply line: straight out when nothing is pending. */
static int reply(struct conn *c, const char *p, size_t n)
{
	if (c->out_len == 0) {
		ssize_t w;

		do {
			w = send(c->fd, p, n, MSG_NOSIGNAL);
		} while (w < 0 && errno == EINTR);
		if (w == (ssize_t)n)
			return 0;
		if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
			return -1;
		if (w > 0) {
			p += w;
			n -= (size_t)w;
		}
	}
	queue_out(c, p, n);
	return flush_out(c) < 0 ? -1 : 0;
}

/* Answer every whole line in p[0..n); returns the bytes used, -1 on a
 * write error. */
static ssize_t answer_lines(struct conn *c, const char *p, size_t n)
{
	size_t start = 0;
	const char *nl;

	while ((nl = memchr(p + start, '\n', n - start)) != NULL) {
		const char *line = p + start;
		size_t len = (size_t)(nl - line) + 1;
		int rc;

		if (len >= 6 && memcmp(line, "echo:", 5) == 0)
			rc = reply(c, line + 5, len - 5);
		else
			rc = reply(c, "unknown_cmd\n", 12);
		if (rc < 0)
			return -1;
		start += len;
	}
	return (ssize_t)start;
}

/* Keep the unanswered tail of a read for the next one. */
static int keep_tail(struct conn *c, const char *p, size_t n)
{
	if (c->len + n > FLOOR_LINE_MAX)
		return -1;
	if (c->len + n > c->cap) {
		c->cap = (c->len + n) * 2;
		if (c->cap < FLOOR_BUF_MIN)
			c->cap = FLOOR_BUF_MIN;
		c->in = xrealloc(c->in, c->cap);
	}
	memmove(c->in + c->len, p, n);
	c->len += n;
	return 0;
}

/*
 * Read what the client sent and answer it.  Reads go to one shared
 * buffer (there is one thread); a connection holds bytes of its own only
 * while a line is incomplete, so the usual request costs no allocation.
 * Returns 0 to keep the connection, -1 to close it.
 */
static int serve(struct conn *c)
{
	static char rbuf[FLOOR_READ];

	for (;;) {
		ssize_t n = read(c->fd, rbuf, sizeof(rbuf));

		if (n > 0) {
			const char *p = rbuf;
			size_t have = (size_t)n;
			ssize_t used;

			if (c->len > 0) {
				if (keep_tail(c, rbuf, have) < 0)
					return -1;
				p = c->in;
				have = c->len;
			}
			used = answer_lines(c, p, have);
			if (used < 0)
				return -1;
			if (p == c->in) {
				memmove(c->in, c->in + used, have - (size_t)used);
				c->len = have - (size_t)used;
			} else if ((size_t)used < have &&
				   keep_tail(c, p + used, have - (size_t)used) < 0) {
				return -1;
			}
			if ((size_t)n < sizeof(rbuf))
				return 0; /* the socket is drained */
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		return -1; /* end of file or error */
	}
}

static int listen_unix(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "floor: socket path too long\n");
		return -1;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	unlink(path);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(fd, FLOOR_BACKLOG) < 0) {
		perror("floor: bind/listen");
		close(fd);
		return -1;
	}
	return fd;
}

static void accept_all(int ep, int lfd)
{
	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EINTR)
				continue;
			return; /* EAGAIN, or out of descriptors: retry later */
		}
		struct conn *c = calloc(1, sizeof(*c));
		if (!c) {
			close(fd);
			continue;
		}
		c->fd = fd;
		/* The request usually arrives with the connection. */
		if (serve(c) < 0) {
			conn_free(c);
			continue;
		}
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
		if (c->out_len)
			ev.events |= EPOLLOUT;
		if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
			conn_free(c);
	}
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "socket", required_argument, NULL, 's' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = NULL;
	struct epoll_event evs[FLOOR_EVENTS];
	struct sigaction sa = { .sa_handler = on_signal };
	int opt, lfd, ep;
	char lmark;

	while ((opt = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		if (opt != 's') {
			fprintf(stderr, "usage: floor --socket PATH\n");
			return 2;
		}
		path = optarg;
	}
	if (!path) {
		fprintf(stderr, "usage: floor --socket PATH\n");
		return 2;
	}
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	lfd = listen_unix(path);
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (lfd < 0 || ep < 0)
		return 1;
	/* The listener's event carries a pointer no connection can have. */
	struct epoll_event lev = { .events = EPOLLIN, .data.ptr = &lmark };
	if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev) < 0)
		return 1;
	printf("ready\n");
	fflush(stdout);
	while (!stop_signal) {
		int n = epoll_wait(ep, evs, FLOOR_EVENTS, -1);

		for (int i = 0; i < n; i++) {
			if (evs[i].data.ptr == &lmark) {
				accept_all(ep, lfd);
				continue;
			}
			struct conn *c = evs[i].data.ptr;
			int rc = 0;

			if (evs[i].events & EPOLLOUT) {
				rc = flush_out(c);
				if (rc == 1) {
					struct epoll_event ev = { .events = EPOLLIN,
								  .data.ptr = c };
					epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
				}
			}
			if (rc >= 0 && (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
				rc = serve(c);
			if (rc >= 0 && c->out_len) {
				struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT,
							  .data.ptr = c };
				epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
			}
			if (rc < 0)
				conn_free(c); /* close() also removes it from epoll */
		}
	}
	close(lfd);
	unlink(path);
	return 0;
}

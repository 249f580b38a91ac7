/*
 * Unit test for net.c on socket pairs and loopback TCP: reads and writes
 * bounded by deadlines, and the worker's blocking receive.  The point
 * of most checks is that a helper that must not block does not, whatever
 * the descriptor's mode: a worker's lond socket is blocking after the
 * handshake, and only net_recv_slice may wait on it.
 *
 * Timing: return codes and errno are asserted, never elapsed times,
 * except that a call that must give up does so before a generous bound
 * (LIMIT_MS) instead of hanging; an alarm ends the program if one hangs.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "net.h"
#include "tap.h"

#define SHORT_MS 50
#define LIMIT_MS 5000

static void pair(int sv[2])
{
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		perror("socketpair");
		exit(2);
	}
}

static bool is_blocking(int fd)
{
	return (fcntl(fd, F_GETFL) & O_NONBLOCK) == 0;
}

static void check_read(void)
{
	int sv[2];
	char buf[16];

	pair(sv);   /* blocking descriptors */
	is_int(write(sv[1], "abc", 3), 3, "read: peer wrote 3 bytes");
	is_int(net_read(sv[0], buf, sizeof(buf), now_ms() + LIMIT_MS), 3,
	       "read: what is there, at once");
	ok(memcmp(buf, "abc", 3) == 0, "read: the bytes");

	int64_t t0 = now_ms();
	errno = 0;
	is_int(net_read(sv[0], buf, sizeof(buf), now_ms() + SHORT_MS), -1,
	       "read: nothing to read on a blocking socket: gives up");
	is_int(errno, ETIMEDOUT, "read: with ETIMEDOUT");
	ok(now_ms() - t0 < LIMIT_MS, "read: at its deadline, not blocked in read(2)");

	close(sv[1]);
	is_int(net_read(sv[0], buf, sizeof(buf), now_ms() + LIMIT_MS), 0,
	       "read: 0 at end of file");
	close(sv[0]);
}

static void check_write(void)
{
	int sv[2];
	static char big[1 << 20];

	pair(sv);
	ok(is_blocking(sv[0]), "write: the descriptor is blocking");
	is_int(net_write_all(sv[0], "hello", 5, now_ms() + LIMIT_MS), 0,
	       "write: a short write completes");
	/* The peer never reads: a megabyte cannot fit in the socket
	 * buffers, and the send must not block on a blocking socket. */
	int64_t t0 = now_ms();
	errno = 0;
	is_int(net_write_all(sv[0], big, sizeof(big), now_ms() + SHORT_MS), -1,
	       "write: a peer that does not read: gives up");
	is_int(errno, ETIMEDOUT, "write: with ETIMEDOUT");
	ok(now_ms() - t0 < LIMIT_MS, "write: at its deadline, not blocked in send(2)");
	close(sv[1]);
	errno = 0;
	is_int(net_write_all(sv[0], "x", 1, now_ms() + LIMIT_MS), -1,
	       "write: to a closed peer fails");
	is_int(errno, EPIPE, "write: with EPIPE (and no SIGPIPE)");
	close(sv[0]);
}

/* A reader that takes 8 KiB every 20 ms: about 2.5 s for 1 MiB, far
 * longer than the idle limit, with no pause near it. */
static void check_write_steady(void)
{
	int sv[2];
	static char big[1 << 20];

	pair(sv);
	int sz = 16384;
	setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	pid_t pid = fork();
	if (pid == 0) {
		char buf[8192];
		size_t got = 0;
		ssize_t r;

		close(sv[0]);
		while ((r = read(sv[1], buf, sizeof(buf))) > 0) {
			got += (size_t)r;
			usleep(20000);
		}
		_exit(got == sizeof(big) ? 0 : 1);
	}
	close(sv[1]);
	is_int(net_write_steady(sv[0], big, sizeof(big), 1000), 0,
	       "write_steady: a slow but steady reader gets all of it, though it takes longer than the idle limit");
	close(sv[0]);
	int status = -1;
	waitpid(pid, &status, 0);
	ok(WIFEXITED(status) && WEXITSTATUS(status) == 0, "write_steady: the reader got every byte");

	pair(sv);
	int64_t t0 = now_ms();
	errno = 0;
	is_int(net_write_steady(sv[0], big, sizeof(big), SHORT_MS), -1,
	       "write_steady: a reader that stops: gives up");
	is_int(errno, ETIMEDOUT, "write_steady: with ETIMEDOUT");
	ok(now_ms() - t0 < LIMIT_MS, "write_steady: after its idle limit, not blocked");
	close(sv[0]);
	close(sv[1]);
}

static void check_recv_slice(void)
{
	int sv[2];
	char buf[16];

	pair(sv);
	int fl = fcntl(sv[0], F_GETFL);
	ok(fcntl(sv[0], F_SETFL, fl | O_NONBLOCK) == 0, "slice: start non-blocking");
	is_int(net_set_recv_slice(sv[0], SHORT_MS), 0, "slice: set");
	ok(is_blocking(sv[0]), "slice: the descriptor is now blocking");

	int64_t t0 = now_ms();
	errno = 0;
	is_int(net_recv_slice(sv[0], buf, sizeof(buf)), -1,
	       "slice: nothing comes: the receive gives up");
	ok(errno == EAGAIN || errno == EWOULDBLOCK, "slice: with EAGAIN");
	ok(now_ms() - t0 < LIMIT_MS, "slice: after its slice");

	is_int(write(sv[1], "reply\n", 6), 6, "slice: peer answers");
	is_int(net_recv_slice(sv[0], buf, sizeof(buf)), 6, "slice: the answer in one call");
	ok(memcmp(buf, "reply\n", 6) == 0, "slice: the bytes");

	/* The other helpers keep their deadlines on it. */
	errno = 0;
	is_int(net_read(sv[0], buf, sizeof(buf), now_ms() + SHORT_MS), -1,
	       "slice: net_read on it still gives up at its deadline");
	is_int(errno, ETIMEDOUT, "slice: with ETIMEDOUT");
	ok(net_wait_readable(sv[0], now_ms() + SHORT_MS) < 0 && errno == ETIMEDOUT,
	   "slice: net_wait_readable too");

	close(sv[1]);
	is_int(net_recv_slice(sv[0], buf, sizeof(buf)), 0, "slice: 0 at end of file");
	close(sv[0]);
}

static void check_tcp(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	const char *why = NULL;

	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(lfd, 4) < 0 || getsockname(lfd, (struct sockaddr *)&sa, &len) < 0) {
		perror("listen");
		exit(2);
	}
	int port = ntohs(sa.sin_port);
	int fd = net_connect_tcp("127.0.0.1", port, now_ms() + LIMIT_MS, &why);
	ok(fd >= 0, "tcp: connect to a loopback listener");
	ok(fd >= 0 && !is_blocking(fd), "tcp: the new socket is non-blocking");
	int peer = accept(lfd, NULL, NULL);
	ok(peer >= 0, "tcp: accepted");
	is_int(net_set_recv_slice(fd, SHORT_MS), 0, "tcp: receive slice set");
	is_int(net_write_all(fd, "ping\n", 5, now_ms() + LIMIT_MS), 0, "tcp: request sent");
	char buf[8];
	is_int(read(peer, buf, sizeof(buf)), 5, "tcp: peer got it");
	is_int(write(peer, "pong\n", 5), 5, "tcp: peer answers");
	is_int(net_recv_slice(fd, buf, sizeof(buf)), 5, "tcp: answer received");
	close(peer);
	close(fd);
	close(lfd);

	/* Nobody listens: refused, not a hang. */
	int dead = net_connect_tcp("127.0.0.1", port, now_ms() + LIMIT_MS, &why);
	ok(dead < 0 && errno == ECONNREFUSED, "tcp: a closed port is refused");
}

int main(void)
{
	alarm(60);
	check_read();
	check_write();
	check_write_steady();
	check_recv_slice();
	check_tcp();
	done_testing();
}

/*
 * net.c - connect with a deadline, deadline-bounded reads and writes on
 * non-blocking sockets, and UNIX listening sockets.  Each call first
 * tries the operation and polls only on EAGAIN, so a ready socket costs
 * one system call.  No locks, no shared state.
 * May call: util.
 */
#include "net.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

int net_set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -1;
	return fcntl(fd, F_SETFD, FD_CLOEXEC);
}

/* poll fd for `events` until deadline; 1 ready, -1 (errno). */
static int wait_fd(int fd, short events, int64_t deadline)
{
	struct pollfd p = { .fd = fd, .events = events };

	for (;;) {
		int64_t left = deadline - now_ms();

		if (left <= 0) {
			errno = ETIMEDOUT;
			return -1;
		}
		int rc = poll(&p, 1, left > 1000000 ? 1000000 : (int)left);
		if (rc > 0)
			return 1;
		if (rc < 0 && errno != EINTR)
			return -1;
	}
}

int net_wait_readable(int fd, int64_t deadline)
{
	return wait_fd(fd, POLLIN, deadline) > 0 ? 0 : -1;
}

int net_wait_writable(int fd, int64_t deadline)
{
	return wait_fd(fd, POLLOUT, deadline) > 0 ? 0 : -1;
}


/* Close fd after a failure, keeping the failure's errno; returns -1. */
static int close_failed(int fd)
{
	int err = errno;

	close(fd);
	errno = err;
	return -1;
}

static int connect_one(const struct addrinfo *ai, int64_t deadline)
{
	int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK |
			SOCK_CLOEXEC, ai->ai_protocol);
	int one = 1, err = 0;
	socklen_t len = sizeof(err);

	if (fd < 0)
		return -1;
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
		if (errno != EINPROGRESS)
			goto fail;
		if (wait_fd(fd, POLLOUT, deadline) < 0)
			goto fail;
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			goto fail;
		if (err) {
			errno = err;
			goto fail;
		}
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
fail:
	return close_failed(fd);
}

int net_connect_tcp(const char *host, int port, int64_t deadline,
		    const char **why)
{
	struct addrinfo hints = {
		.ai_family = AF_UNSPEC,
		.ai_socktype = SOCK_STREAM,
		.ai_flags = AI_NUMERICSERV | AI_ADDRCONFIG,
	};
	struct addrinfo *res, *ai;
	char service[16];
	int fd = -1, err = EADDRNOTAVAIL;

	snprintf(service, sizeof(service), "%d", port);
	int rc = getaddrinfo(host, service, &hints, &res);
	if (rc == EAI_ADDRFAMILY || rc == EAI_NONAME) {
		/* AI_ADDRCONFIG hides loopback-only families; ask again. */
		hints.ai_flags = AI_NUMERICSERV;
		rc = getaddrinfo(host, service, &hints, &res);
	}
	if (rc != 0) {
		int e = rc == EAI_SYSTEM ? errno : rc == EAI_MEMORY ? ENOMEM : EADDRNOTAVAIL;

		*why = rc == EAI_SYSTEM ? strerror(e) : gai_strerror(rc);
		errno = e;
		return -1;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		fd = connect_one(ai, deadline);
		if (fd >= 0)
			break;
		err = errno;
		if (err == ETIMEDOUT)
			break;
	}
	freeaddrinfo(res);
	if (fd < 0) {
		*why = err == ETIMEDOUT ? "connect timed out" : strerror(err);
		errno = err;
	}
	return fd;
}

/* Write all of buf; wait for room until deadline, or (idle_ms >= 0)
 * until idle_ms without progress. */
static int write_all(int fd, const void *buf, size_t len, int64_t deadline, int idle_ms)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n > 0) {
			p += n;
			len -= (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == ENOTSOCK) {
			n = write(fd, p, len);
			if (n > 0) {
				p += n;
				len -= (size_t)n;
				continue;
			}
		}
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if (wait_fd(fd, POLLOUT, idle_ms >= 0 ? now_ms() + idle_ms : deadline) < 0)
				return -1;
			continue;
		}
		return -1;
	}
	return 0;
}

int net_write_all(int fd, const void *buf, size_t len, int64_t deadline)
{
	return write_all(fd, buf, len, deadline, -1);
}

int net_write_steady(int fd, const void *buf, size_t len, int idle_ms)
{
	return write_all(fd, buf, len, 0, idle_ms < 0 ? 0 : idle_ms);
}

ssize_t net_read(int fd, void *buf, size_t len, int64_t deadline)
{
	for (;;) {
		ssize_t n = recv(fd, buf, len, MSG_DONTWAIT);

		if (n < 0 && errno == ENOTSOCK)
			n = read(fd, buf, len);
		if (n >= 0)
			return n;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return -1;
		if (wait_fd(fd, POLLIN, deadline) < 0)
			return -1;
	}
}

int net_set_recv_slice(int fd, int slice_ms)
{
	struct timeval tv = {
		.tv_sec = slice_ms / 1000,
		.tv_usec = (slice_ms % 1000) * 1000,
	};
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0)
		return -1;
	return setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}

ssize_t net_recv_slice(int fd, void *buf, size_t len)
{
	ssize_t n;

	do
		n = recv(fd, buf, len, 0);
	while (n < 0 && errno == EINTR);
	return n;
}

int net_listen_unix(const char *path, int mode, int backlog)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	/* A socket file someone still listens on is not ours to replace
	 * (another lonc with the same socket_dir): refuse.  A stale one,
	 * left by a crash, is removed. */
	int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (probe >= 0) {
		int in_use = connect(probe, (struct sockaddr *)&sa, sizeof(sa)) == 0;

		close(probe);
		if (in_use) {
			errno = EADDRINUSE;
			goto fail;
		}
	}
	if (unlink(path) < 0 && errno != ENOENT)
		goto fail;
	/* The socket file gets its mode from the umask as bind makes it:
	 * no chmod by name afterwards, which would follow a symlink put in
	 * its place meanwhile.  (Every file lonc makes names its own mode,
	 * so the moment's umask changes nothing else.) */
	mode_t old = umask(0777 & ~(mode_t)mode);
	int rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (rc < 0)
		goto fail;
	/* What is at the path now must be that socket, or nothing we use
	 * it for is trusted (a racer may have swapped it). */
	struct stat st;
	if (lstat(path, &st) < 0 || !S_ISSOCK(st.st_mode) ||
	    (st.st_mode & 0777) != ((mode_t)mode & 0777) || st.st_uid != geteuid()) {
		errno = EEXIST;
		goto fail;
	}
	if (listen(fd, backlog) < 0)
		goto fail;
	return fd;
fail:
	return close_failed(fd);
}

int net_peer_closed(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	/* A UNIX peer that closed gives POLLHUP; one that only shut down
	 * its writing side (it still wants the reply) gives POLLRDHUP,
	 * which is deliberately not counted here. */
	if (poll(&p, 1, 0) <= 0)
		return 0;
	return (p.revents & (POLLHUP | POLLERR)) != 0;
}

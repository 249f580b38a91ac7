/*
 * client.c - a local client's socket and request buffer.  Called by the
 * acceptor and worker threads, one at a time per client (see client.h);
 * no locks.
 * May call: linebuf, net, reply, util.
 */
#include "client.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "net.h"
#include "reply.h"

struct client *client_new(int fd, struct acceptor *acc, size_t max_request)
{
	struct client *c = xcalloc(1, sizeof(*c));

	c->fd = fd;
	c->acc = acc;
	c->epfd = -1;
	c->slot = SIZE_MAX;
	linebuf_init(&c->in, max_request);
	return c;
}

void client_free(struct client *c)
{
	if (!c)
		return;
	if (c->fd >= 0)
		close(c->fd);
	linebuf_free(&c->in);
	free(c);
}

/* The longest request that is peeked at (longer ones are read). */
#define PEEK_BYTES 4096

ssize_t client_fill(struct client *c)
{
	ssize_t n;

	if (c->in.len == 0 && c->unread == 0) {
		char peek[PEEK_BYTES];
		size_t want = c->in.max < sizeof(peek) ? c->in.max + 1 : sizeof(peek);

		do
			n = recv(c->fd, peek, want, MSG_PEEK | MSG_DONTWAIT);
		while (n < 0 && errno == EINTR);
		if (n <= 0)
			return n;
		char *nl = memchr(peek, '\n', (size_t)n);
		if (nl) {
			c->unread = (size_t)(nl - peek) + 1;
			linebuf_append(&c->in, peek, c->unread);
			return (ssize_t)c->unread;
		}
		/* Not a whole line yet: take what is there. */
	}

	size_t room;
	char *p = linebuf_space(&c->in, &room);

	if (!p)
		return LINEBUF_FULL;
	do
		n = recv(c->fd, p, room, MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	if (n > 0)
		linebuf_commit(&c->in, (size_t)n);
	return n;
}

void client_settle(struct client *c)
{
	char sink[4096];

	while (c->unread > 0) {
		size_t want = c->unread < sizeof(sink) ? c->unread : sizeof(sink);
		ssize_t n = recv(c->fd, sink, want, MSG_DONTWAIT);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			/* Cannot happen while the bytes are there; a broken
			 * socket fails the write that follows. */
			c->unread = 0;
			return;
		}
		c->unread -= (size_t)n;
	}
}

int client_write(struct client *c, const void *p, size_t n, int64_t deadline)
{
	client_settle(c);
	return net_write_all(c->fd, p, n, deadline);
}

int client_send_reply(struct client *c, struct reply *r, int idle_ms)
{
	client_settle(c);
	return reply_send(r, c->fd, idle_ms);
}

int client_send_line(struct client *c, const char *text, int64_t deadline)
{
	size_t len = strlen(text);
	char buf[256];

	if (len < sizeof(buf)) {
		memcpy(buf, text, len);
		buf[len] = '\n';
		return client_write(c, buf, len + 1, deadline);
	}
	if (client_write(c, text, len, deadline) < 0)
		return -1;
	return client_write(c, "\n", 1, deadline);
}

int client_send_now(struct client *c, const char *text)
{
	size_t len = strlen(text);
	struct iovec iov[2] = {
		{ .iov_base = (void *)(uintptr_t)text, .iov_len = len },
		{ .iov_base = (void *)(uintptr_t)"\n", .iov_len = 1 },
	};
	struct msghdr msg = { .msg_iov = iov, .msg_iovlen = 2 };

	client_settle(c);
	ssize_t n = sendmsg(c->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);

	return n == (ssize_t)(len + 1) ? 0 : -1;
}

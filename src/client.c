/*
 * client.c - a local client's socket and request buffer.  Called by the
 * acceptor and worker threads, one at a time per client (see client.h);
 * no locks.
 */
#include "client.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "net.h"

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

int client_send_line(struct client *c, const char *text, int64_t deadline)
{
	size_t len = strlen(text);
	char buf[256];

	if (len < sizeof(buf)) {
		memcpy(buf, text, len);
		buf[len] = '\n';
		return net_write_all(c->fd, buf, len + 1, deadline);
	}
	if (net_write_all(c->fd, text, len, deadline) < 0)
		return -1;
	return net_write_all(c->fd, "\n", 1, deadline);
}

int client_send_now(struct client *c, const char *text)
{
	size_t len = strlen(text);
	struct iovec iov[2] = {
		{ .iov_base = (void *)(uintptr_t)text, .iov_len = len },
		{ .iov_base = (void *)(uintptr_t)"\n", .iov_len = 1 },
	};
	struct msghdr msg = { .msg_iov = iov, .msg_iovlen = 2 };
	ssize_t n = sendmsg(c->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);

	return n == (ssize_t)(len + 1) ? 0 : -1;
}

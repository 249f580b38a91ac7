/*
 * libFuzzer target: the client side of lonc.  Arbitrary bytes arrive on
 * a client socket in arbitrary pieces and are read as the acceptor reads
 * them (client_fill: a whole line is peeked at, a partial one read);
 * every complete line is classified (local command, sethost:/encrypt:
 * split) the way the acceptor and worker do it, then answered, which
 * takes its bytes out of the socket.  The lines taken must be exactly
 * the input, in order, each byte once: a request read twice or lost
 * traps.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client.h"
#include "lond.h"
#include "net.h"

#define MAX_LINE 256

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Read what the peer (the client's own end) got, so that answers never
 * fill the socket. */
static void drain(int fd)
{
	char buf[4096];

	while (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) > 0)
		;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int sv[2];
	size_t off = 0, taken = 0;
	bool overflowed = false;

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		return 0;
	if (net_set_nonblock(sv[0]) < 0) {
		close(sv[0]);
		close(sv[1]);
		return 0;
	}
	struct client *c = client_new(sv[0], NULL, MAX_LINE);
	/* The first byte picks the piece size, so the fuzzer explores
	 * lines split across reads. */
	size_t piece = size ? (size_t)data[0] % 17 + 1 : 1;
	while (off < size && !overflowed) {
		size_t n = size - off < piece ? size - off : piece;

		if (write(sv[1], data + off, n) != (ssize_t)n)
			break;
		off += n;
		for (;;) {
			ssize_t r = client_fill(c);
			size_t len;

			while (linebuf_has_line(&c->in, &len)) {
				struct lond_request req;

				(void)lond_local_command(c->in.data, len);
				lond_parse_request(c->in.data, len, &req);
				if (req.prefix_len > len || req.cmd < c->in.data ||
				    req.cmd + req.cmd_len > c->in.data + len)
					__builtin_trap();
				/* The line is the input's next len + 1 bytes. */
				if (taken + len + 1 > size ||
				    memcmp(c->in.data, data + taken, len + 1) != 0)
					__builtin_trap();
				taken += len + 1;
				linebuf_consume(&c->in, len + 1);
				if (client_send_now(c, "ok") < 0 || c->unread != 0)
					__builtin_trap();
				drain(sv[1]);
			}
			if (linebuf_overflowed(&c->in)) {
				/* The acceptor answers and closes here. */
				overflowed = true;
				break;
			}
			if (r <= 0 && r != LINEBUF_FULL)
				break;
		}
	}
	/* Every byte written is taken, held, or (after an overflow) left. */
	if (!overflowed && taken + c->in.len != off)
		__builtin_trap();
	client_free(c);
	close(sv[1]);
	return 0;
}

/*
 * libFuzzer target: the client side of lonc.  Arbitrary bytes arrive on
 * a client socket in arbitrary pieces; every complete line is
 * classified (local command, sethost:/encrypt: split) the way the
 * acceptor and worker do it.
 */
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "linebuf.h"
#include "lond.h"
#include "net.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct linebuf lb;
	int sv[2];
	size_t off = 0;

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		return 0;
	if (net_set_nonblock(sv[0]) < 0)
		goto out;
	linebuf_init(&lb, 256);
	/* The first byte picks the piece size, so the fuzzer explores
	 * lines split across reads. */
	size_t piece = size ? (size_t)data[0] % 17 + 1 : 1;
	while (off < size) {
		size_t n = size - off < piece ? size - off : piece;

		if (write(sv[1], data + off, n) != (ssize_t)n)
			break;
		off += n;
		for (;;) {
			ssize_t r = linebuf_fill(&lb, sv[0]);
			size_t len;

			while (linebuf_has_line(&lb, &len)) {
				struct lond_request req;

				(void)lond_local_command(lb.data, len);
				lond_parse_request(lb.data, len, &req);
				if (req.prefix_len > len || req.cmd < lb.data ||
				    req.cmd + req.cmd_len > lb.data + len)
					__builtin_trap();
				linebuf_consume(&lb, len + 1);
			}
			if (linebuf_overflowed(&lb))
				linebuf_consume(&lb, lb.len);
			if (r <= 0 && r != LINEBUF_FULL)
				break;
		}
	}
	linebuf_free(&lb);
out:
	close(sv[0]);
	close(sv[1]);
	return 0;
}

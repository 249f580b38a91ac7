/*
 * lonc-ctl - talk to a running lonc through its admin socket.
 *
 *   lonc-ctl [-s SOCKET] status | status json | metrics | hosts |
 *            reset HOST | reload
 *
 * Sends the command as one line, prints the answer, exits 0 unless the
 * answer starts with "error" (1) or the daemon cannot be reached (2).
 * The socket defaults to /var/run/lonc/admin.sock, or $LONC_ADMIN_SOCKET.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static void usage(void)
{
	fprintf(stderr,
		"usage: lonc-ctl [-s SOCKET] COMMAND\n"
		"commands: status, status json, metrics, hosts, reset HOST, reload\n");
	exit(2);
}

int main(int argc, char **argv)
{
	const char *path = getenv("LONC_ADMIN_SOCKET");
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char line[1024] = "", buf[65536];
	size_t len = 0;
	int i = 1, fd;

	if (!path)
		path = "/var/run/lonc/admin.sock";
	/* -s SOCKET may stand anywhere (lonc-ctl status -s X); the other
	 * words make the command. */
	for (; i < argc; i++) {
		if (!strcmp(argv[i], "-s")) {
			if (++i >= argc)
				usage();
			path = argv[i];
			continue;
		}
		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help"))
			usage();
		int n = snprintf(line + len, sizeof(line) - len, "%s%s",
				 len ? " " : "", argv[i]);
		if (n < 0 || (size_t)n >= sizeof(line) - len - 1)
			usage();
		len += (size_t)n;
	}
	if (len == 0)
		usage();
	line[len++] = '\n';
	if (strlen(path) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "lonc-ctl: socket path too long\n");
		return 2;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		fprintf(stderr, "lonc-ctl: cannot reach lonc at %s: %s\n", path,
			strerror(errno));
		return 2;
	}
	if (write(fd, line, len) != (ssize_t)len) {
		fprintf(stderr, "lonc-ctl: write: %s\n", strerror(errno));
		return 2;
	}
	int rc = 0;
	bool first = true;
	ssize_t n;
	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		if (first && n >= 5 && !memcmp(buf, "error", 5))
			rc = 1;
		first = false;
		fwrite(buf, 1, (size_t)n, stdout);
	}
	if (first) {
		fprintf(stderr, "lonc-ctl: no answer from lonc\n");
		return 2;
	}
	close(fd);
	return rc;
}

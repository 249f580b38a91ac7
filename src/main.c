/*
 * main.c - lonc's entry point: parse arguments, load the configuration,
 * start everything in a fixed order, wait for signals, and shut down in
 * the exact reverse order.
 *
 * Start-up: config -> the daemon's user -> the configuration files'
 * owners -> logging -> crypto -> directories (fsafe.h) -> detach -> pid
 * file (root's, in root's directory) -> signal mask -> sockets (bound
 * with the user's effective ids in the user's directories) -> admin
 * socket -> privilege drop -> (a pid file in the user's directory) ->
 * acceptor threads -> admin thread -> watchdog -> "ready".
 * Shutdown: broker_drain (stop accepting, finish within
 * shutdown_timeout, join) -> admin stops -> sockets and pid file
 * removed (or emptied, where lonc may no longer remove it).
 * The main thread is the signal thread (sigtimedwait); a second SIGTERM
 * or SIGINT during the drain exits at once.
 * May call: admin, broker, config, crypto, daemon, delayed, fsafe, log,
 * notify, outage, probe, proctitle, worker (handshake slots), util.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "admin.h"
#include "broker.h"
#include "config.h"
#include "crypto.h"
#include "daemon.h"
#include "delayed.h"
#include "fsafe.h"
#include "log.h"
#include "notify.h"
#include "outage.h"
#include "probe.h"
#include "proctitle.h"
#include "util.h"
#include "worker.h"

#define EXIT_CONFIG 2

struct opts {
	const char *path;
	const char *probe;       /* --probe HOST */
	bool foreground, test;
};

/* Everything start-up makes, for the shutdown to undo. */
struct lonc {
	struct opts o;
	struct config *cfg;
	char *path;              /* the config file, absolute */
	struct fsafe_user user;  /* whom lonc runs as, after start-up */
	bool root;               /* started as root */
	struct crypto_tls *tls;
	struct broker *b;
	int pid_fd;
	int dir_lock;            /* the flock on socket_dir (one lonc there) */
	int pid_place, admin_place; /* FSAFE_RUN: root's; FSAFE_OWN: the user's */
	sigset_t set;
	int status;              /* exit status of a failed start */
};

static void usage(FILE *out)
{
	fprintf(out,
		"usage: lonc [-c FILE] [--foreground] [-t] [--probe HOST] [--version]\n"
		"  -c, --config FILE  configuration (default /etc/lonc/lonc.yaml)\n"
		"  -f, --foreground   do not detach; log to stderr\n"
		"  -t, --test         check the configuration and directories, print a\n"
		"                     summary, exit\n"
		"      --probe HOST   find the protocol settings HOST's lond needs, exit\n"
		"  -V, --version      print the version and exit\n"
		"      --list-options print every configuration key and exit\n");
}

/* 1 to go on, 0 to exit 0, -1 to exit EXIT_CONFIG. */
static int parse_args(int argc, char **argv, struct opts *o)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "foreground", no_argument, NULL, 'f' },
		{ "test", no_argument, NULL, 't' },
		{ "probe", required_argument, NULL, 'P' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ "list-options", no_argument, NULL, 'L' },
		{ NULL, 0, NULL, 0 },
	};
	int opt;

	*o = (struct opts){ .path = "/etc/lonc/lonc.yaml" };
	while ((opt = getopt_long(argc, argv, "c:ftVh", longopts, NULL)) != -1) {
		switch (opt) {
		case 'c': o->path = optarg; break;
		case 'f': o->foreground = true; break;
		case 't': o->test = true; break;
		case 'P': o->probe = optarg; break;
		case 'V': printf("lonc %s\n", LONC_VERSION); return 0;
		case 'h': usage(stdout); return 0;
		case 'L':
			for (const char *const *n = config_option_names(); *n; n++)
				printf("%s\n", *n);
			return 0;
		default: usage(stderr); return -1;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return -1;
	}
	return 1;
}

/* Start-up failed: the reason to the log and to whoever started lonc. */
static int fail(struct lonc *l, const char *fmt, ...) PRINTF_LIKE(2, 3);

static int fail(struct lonc *l, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_msg(LOG_ERR, "event=start_failed reason=\"%s\"", msg);
	if (l->o.foreground)
		return -1;   /* the log is stderr already */
	daemon_fail_reason(msg);
	if (!l->o.test)
		fprintf(stderr, "lonc: %s\n", msg);
	return -1;
}

static bool uses_mode(const struct config *cfg, enum key_mode m)
{
	for (size_t i = 0; i < cfg->n_hosts; i++)
		if (cfg->hosts[i].key_mode == m)
			return true;
	return false;
}

/* Whom lonc runs as once started: the configured user when started as
 * root, else itself.  0, or -1 with a message in err. */
static int find_user(const struct config *cfg, struct fsafe_user *u, char *err, size_t n)
{
	if (geteuid() == 0) {
		u->name = cfg->user;
		return daemon_lookup_user(cfg->user, cfg->group, &u->uid, &u->gid, err, n);
	}
	const struct passwd *pw = getpwuid(geteuid());
	u->name = pw ? pw->pw_name : "this user";
	u->uid = geteuid();
	u->gid = getegid();
	return 0;
}

/* The TLS context, as root where the way to every file is root's alone,
 * else with the user's ids (a symlink the user planted gets nothing the
 * user could not read).  NULL with a message in err. */
static struct crypto_tls *load_tls(const struct config *cfg, const struct fsafe_user *u,
				   char *err, size_t n)
{
	bool as_user = !fsafe_trusted_file(cfg->tls_ca_file) ||
		       !fsafe_trusted_file(cfg->tls_cert_file) ||
		       !fsafe_trusted_file(cfg->tls_key_file);

	if (as_user && fsafe_as_user(u) < 0) {
		snprintf(err, n, "cannot act as %s: %s", u->name, strerror(errno));
		return NULL;
	}
	struct crypto_tls *tls = crypto_tls_new(cfg->tls_ca_file, cfg->tls_cert_file,
						cfg->tls_key_file, cfg->tls_verify_hostname,
						err, n);
	if (as_user && fsafe_as_root() < 0) {
		crypto_tls_free(tls);
		snprintf(err, n, "cannot act as root again: %s", strerror(errno));
		return NULL;
	}
	return tls;
}

/* One directory check; a warning is logged, a refusal is the result.
 * `fatal_warning` turns a warning into a refusal. */
static int dir_ok(struct lonc *l, const char *path, const char *what,
		  enum fsafe_role role, int mode, bool fatal_warning, bool prepare)
{
	char msg[1024];
	enum fsafe_rc rc = fsafe_dir(path, what, role, mode, &l->user, prepare, msg,
				     sizeof(msg));

	if (rc == FSAFE_BAD || (rc == FSAFE_WARN && fatal_warning))
		return l->o.test ? (printf("error: %s\n", msg), -1) : fail(l, "%s", msg);
	if (rc == FSAFE_WARN) {
		if (l->o.test)
			printf("warning: %s\n", msg);
		else
			log_msg(LOG_WARNING, "event=start_warning reason=\"%s\"", msg);
	}
	return 0;
}

/* Where the pid file and the admin socket go (root's own directory, or
 * the user's). */
static int places(struct lonc *l, bool prepare)
{
	const struct config *cfg = l->cfg;
	char msg[1024];
	const char *files[2] = { cfg->pid_file, cfg->admin_socket };
	const char *what[2] = { "pid_file", "admin_socket" };
	int *place[2] = { &l->pid_place, &l->admin_place };

	for (int i = 0; i < 2; i++) {
		*place[i] = fsafe_place_of(files[i], what[i], &l->user, msg, sizeof(msg));
		if (*place[i] < 0)
			return l->o.test ? (printf("error: %s\n", msg), -1) : fail(l, "%s", msg);
		if (prepare && *place[i] == FSAFE_RUN) {
			char *dir = xstrdup(files[i]);
			char *slash = strrchr(dir, '/');

			if (slash && slash != dir)
				*slash = '\0';
			int rc = slash && slash != dir ?
				 dir_ok(l, dir, what[i], FSAFE_RUN, 0755, true, true) : 0;
			free(dir);
			if (rc < 0)
				return -1;
		}
	}
	return 0;
}

/* Every directory lonc uses, checked (and, at start-up, made or handed
 * to the user): doc/security.md has the table. */
static int directories(struct lonc *l, bool prepare)
{
	const struct config *cfg = l->cfg;
	char *ddir = delayed_dir(cfg->socket_dir);
	int rc = places(l, prepare);

	if (rc == 0)
		rc = dir_ok(l, cfg->socket_dir, "socket_dir", FSAFE_OWN, -1, false, prepare);
	if (rc == 0)
		/* lonnet (the web server's user) writes the files, lonc
		 * deletes them: without write access they wait (said so). */
		rc = dir_ok(l, ddir, "delayed directory", FSAFE_SHARED, 0755, false, prepare);
	if (rc == 0)
		/* Without it a replayed transaction's S: record is lost. */
		rc = dir_ok(l, cfg->log_dir, "log_dir", FSAFE_SHARED, 0755, true, prepare);
	if (rc == 0)
		rc = dir_ok(l, cfg->spool_dir, "spool_dir", FSAFE_OWN, 0700, false, prepare);
	if (rc == 0 && uses_mode(cfg, KEY_LOCAL))
		rc = dir_ok(l, cfg->local_key_dir, "local_key_dir", FSAFE_OWN, 0700, false,
			    prepare);
	free(ddir);
	return rc;
}

/* lonc -t: the configuration, the user, the files and directories;
 * changes nothing, never blocks.  The exit status. */
static int check_only(struct lonc *l)
{
	char err[1024];
	int rc = 0;

	/* The files first: nothing of one that is refused is printed. */
	if (find_user(l->cfg, &l->user, err, sizeof(err)) < 0) {
		printf("error: %s\nconfig %s: NOT usable\n", err, l->cfg->path);
		return EXIT_CONFIG;
	}
	config_print(l->cfg, stdout);
	if (directories(l, false) < 0)
		rc = EXIT_CONFIG;
	/* The TLS files, loaded as the start loads them (a FIFO, a key
	 * that does not match its certificate, one root may not read). */
	if (uses_mode(l->cfg, KEY_SSL)) {
		struct crypto_tls *tls = NULL;

		if (crypto_init() < 0)
			snprintf(err, sizeof(err), "libgcrypt or OpenSSL failed to initialise");
		else
			tls = load_tls(l->cfg, &l->user, err, sizeof(err));
		if (tls)
			printf("tls files: OK\n");
		else
			printf("error: tls: %s\n", err);
		rc = tls ? rc : EXIT_CONFIG;
		crypto_tls_free(tls);
	}
	printf(rc ? "config %s: NOT usable\n" : "files and directories: OK (user %s)\n",
	       rc ? l->cfg->path : l->user.name);
	return rc;
}

/* lonc --probe HOST: the exit status (probe.h).  As root it reads the
 * TLS files and then becomes the daemon's user, so that what it leaves
 * (a local-mode key file) is what the daemon's would be. */
static int probe(struct lonc *l)
{
	char err[512];

	log_open("lonc", l->cfg->syslog_facility, true, l->cfg->log_level);
	if (find_user(l->cfg, &l->user, err, sizeof(err)) < 0) {
		fprintf(stderr, "lonc: %s\n", err);
		return EXIT_CONFIG;
	}
	if (crypto_init() < 0) {
		fprintf(stderr, "lonc: libgcrypt or OpenSSL failed to initialise\n");
		return 1;
	}
	if (uses_mode(l->cfg, KEY_SSL)) {
		l->tls = load_tls(l->cfg, &l->user, err, sizeof(err));
		if (!l->tls) {
			fprintf(stderr, "lonc: tls: %s\n", err);
			return EXIT_CONFIG;
		}
	}
	/* The key files of the local mode go where the daemon's do. */
	if (uses_mode(l->cfg, KEY_LOCAL) &&
	    dir_ok(l, l->cfg->local_key_dir, "local_key_dir", FSAFE_OWN, 0700, false, true) < 0) {
		crypto_tls_free(l->tls);
		return EXIT_CONFIG;
	}
	if (geteuid() == 0 && daemon_drop_privileges(l->user.name, l->user.uid, l->user.gid,
						     err, sizeof(err)) < 0) {
		fprintf(stderr, "lonc: %s\n", err);
		crypto_tls_free(l->tls);
		return EXIT_CONFIG;
	}
	int rc = probe_run(l->cfg, l->tls, l->o.probe, stdout);
	crypto_tls_free(l->tls);
	l->tls = NULL;
	log_close();
	return rc;
}

/* Before detaching: the user, the files, crypto, the directories. */
static int prepare(struct lonc *l)
{
	const struct config *cfg = l->cfg;
	char err[1024];

	if (find_user(cfg, &l->user, err, sizeof(err)) < 0)
		return fail(l, "%s", err);
	if (crypto_init() < 0)
		return fail(l, "libgcrypt or OpenSSL failed to initialise");
	if (uses_mode(cfg, KEY_SSL)) {
		l->tls = load_tls(cfg, &l->user, err, sizeof(err));
		if (!l->tls) {
			l->status = EXIT_CONFIG;
			return fail(l, "tls: %s", err);
		}
	}
	return directories(l, true);
}

static int open_pid_file(struct lonc *l)
{
	char err[1024];

	l->pid_fd = pidfile_open(l->cfg->pid_file, err, sizeof(err));
	return l->pid_fd < 0 ? fail(l, "%s", err) : 0;
}

/* The sockets: the hosts' (in the user's socket_dir, made with the
 * user's effective ids: the kernel keeps root from touching anything
 * there) and the admin socket (root's directory: made by root, given to
 * the user; the user's: made by the user). */
static int bind_sockets(struct lonc *l)
{
	const struct config *cfg = l->cfg;
	int rc;

	char msg[1024];

	if (fsafe_as_user(&l->user) < 0)
		return fail(l, "cannot act as user %s: %s", l->user.name, strerror(errno));
	/* One lonc per socket_dir: two would both replay its delayed files. */
	l->dir_lock = fsafe_lock_dir(cfg->socket_dir, ".lonc.lock", msg, sizeof(msg));
	rc = l->dir_lock < 0 ? -1 : broker_bind(l->b);
	if (rc == 0 && l->admin_place == FSAFE_OWN)
		rc = admin_open(l->b, cfg->admin_socket);
	if (fsafe_as_root() < 0)
		return fail(l, "cannot act as root again: %s", strerror(errno));
	if (rc == 0 && l->admin_place == FSAFE_RUN &&
	    (admin_open(l->b, cfg->admin_socket) < 0 ||
	     (l->root && admin_give(l->user.uid, l->user.gid) < 0)))
		rc = -1;
	if (l->dir_lock < 0)
		return fail(l, "%s", msg);
	return rc < 0 ? fail(l, "cannot create the sockets (see the log)") : 0;
}

/* Started as root: become the daemon's user for good. */
static int drop_root(struct lonc *l)
{
	char err[512];

	if (!l->root)
		return 0;
	if (daemon_drop_privileges(l->user.name, l->user.uid, l->user.gid, err,
				   sizeof(err)) < 0)
		return fail(l, "%s", err);
	log_msg(LOG_INFO, "event=privileges_dropped user=%s uid=%ld gid=%ld",
		l->user.name, (long)l->user.uid, (long)l->user.gid);
	return 0;
}

/* As the daemon's user now: what only it can tell. */
static int after_drop(struct lonc *l)
{
	const struct config *cfg = l->cfg;

	if (l->pid_place == FSAFE_OWN && open_pid_file(l) < 0)
		return -1;
	/* Only now: root opens nothing in the user's directories. */
	log_set_file(cfg->log_file);
	if (fsafe_tmpfile_works(cfg->spool_dir) < 0)
		return fail(l, "spool_dir %s cannot hold unnamed files (O_TMPFILE): %s",
			    cfg->spool_dir, strerror(errno));
	char *ddir = delayed_dir(cfg->socket_dir);
	(void)delayed_dir_usable(ddir);   /* says so if lonc may not delete there */
	delayed_keep_state(cfg->socket_dir);
	free(ddir);
	return 0;
}

static _Atomic int64_t beat;   /* the signal loop's latest round */

/* The watchdog's question: do the signal loop and every acceptor still
 * go round? */
static bool alive(void *arg)
{
	int64_t late = now_ms() - atomic_load(&beat);

	return broker_acceptors_alive(arg) && late < 2 * notify_watchdog_ms() + 2000;
}

/* From detaching to "ready". */
static int start(struct lonc *l)
{
	const struct config *cfg = l->cfg;

	if (!l->o.foreground && daemon_detach() < 0)
		return fail(l, "cannot detach: %s", strerror(errno));
	if (l->pid_place == FSAFE_RUN && open_pid_file(l) < 0)
		return -1;
	outage_configure(cfg->outage_window_ms, cfg->outage_min_hosts);
	worker_limit_handshakes(cfg->max_handshakes);
	delayed_set_log_dir(cfg->log_dir);
	log_msg(LOG_INFO, "event=nofile_limit open_files=%ld", daemon_raise_nofile());
	daemon_tune_malloc();
	daemon_block_signals(&l->set);
	l->b = broker_new(l->path, config_ref(l->cfg), l->tls);
	l->tls = NULL;
	if (bind_sockets(l) < 0 || drop_root(l) < 0 || after_drop(l) < 0)
		return -1;
	if (broker_start(l->b) < 0 || admin_start() < 0)
		return fail(l, "cannot start the threads (see the log)");
	atomic_store(&beat, now_ms());
	if (notify_watchdog_start(alive, l->b) < 0)
		return fail(l, "cannot start the watchdog");
	log_msg(LOG_NOTICE, "event=ready version=%s hosts=%zu socket_dir=%s pid=%ld",
		LONC_VERSION, cfg->n_hosts, cfg->socket_dir, (long)getpid());
	daemon_ready(0);
	notify("READY=1");
	return 0;
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

	thread_name("drain", NULL);
	broker_drain(d->b);
	atomic_store(&d->done, true);
	return NULL;
}

/* The process title, once a second: what loncron and ps show. */
static void show_title(struct broker *b)
{
	struct broker_summary s;

	broker_summary(b, &s);
	proctitle_set("lonc: %zu host%s, %d connection%s, %zu dead", s.hosts,
		      s.hosts == 1 ? "" : "s", s.connections, s.connections == 1 ? "" : "s",
		      s.dead);
}

/* A SIGTERM or SIGINT: the drain starts, or (a second one) lonc exits
 * at once.  True when draining now. */
static bool on_stop(struct lonc *l, struct drain *d, pthread_t *drainer, int sig,
		    bool draining)
{
	const char *name = sig == SIGTERM ? "TERM" : "INT";

	if (draining) {
		log_msg(LOG_WARNING, "event=shutdown_forced signal=%s", name);
		pidfile_close(l->cfg->pid_file, l->pid_fd);
		_exit(1);
	}
	log_msg(LOG_NOTICE, "event=shutdown signal=%s", name);
	notify("STOPPING=1");
	if (pthread_create(drainer, NULL, drain_main, d) != 0) {
		broker_drain(l->b);
		atomic_store(&d->done, true);
		return false;
	}
	return true;
}

/* Wait for signals until the daemon has stopped.  Returns the exit
 * status.  Wakes at least once a second: the process title, the
 * watchdog's heartbeat. */
static int signal_loop(struct lonc *l)
{
	struct drain d = { .b = l->b };
	pthread_t drainer;
	bool draining = false;
	char msg[1024];
	int64_t next_delayed = now_ms();

	for (;;) {
		int64_t now = now_ms();
		atomic_store(&beat, now);
		if (!draining && now >= next_delayed) {
			next_delayed = now + broker_check_delayed(l->b);
			/* As often: freed memory goes back, so that RSS
			 * settles after a busy spell. */
			daemon_trim_memory();
		}
		show_title(l->b);
		int64_t wait = draining ? 100 : next_delayed - now;
		if (wait > 1000)
			wait = 1000;
		struct timespec tick = { .tv_sec = wait / 1000,
					 .tv_nsec = (wait % 1000) * 1000000 };
		int sig = sigtimedwait(&l->set, NULL, &tick);

		if (atomic_load(&d.done)) {
			if (draining)
				pthread_join(drainer, NULL);
			return 0;
		}
		if (sig == SIGUSR1)
			broker_log_status(l->b);
		else if ((sig == SIGHUP || sig == SIGUSR2) && !draining)
			(void)broker_reload(l->b, msg, sizeof(msg));
		else if (sig == SIGTERM || sig == SIGINT)
			draining = on_stop(l, &d, &drainer, sig, draining);
	}
}

/* An imported file as root (config_opener): where the way to it is
 * root's alone, opened as root; hosts_tab elsewhere with the user's ids
 * (the configuration's user and group), so that root reads, parses and
 * quotes nothing through a symlink the user planted that the user could
 * not read itself; loncapa_conf says where root works: root's way only.
 * Who may write the file (fsafe_config_file) is judged on what was
 * opened, before a byte of it is read. */
static int open_import_as_fit(const char *path, const char *key, const struct config *cfg,
			      struct stat *st, char *msg, size_t n)
{
	bool roots = strcmp(key, "hosts_tab") != 0;
	struct fsafe_user u = { .name = cfg->user };

	if (geteuid() != 0)
		return config_open_regular(path, st, msg, n);
	if (daemon_lookup_user(cfg->user, cfg->group, &u.uid, &u.gid, msg, n) < 0)
		return -1;
	bool as_user = !(roots ? fsafe_trusted_way(path) : fsafe_trusted_file(path));

	if (as_user && roots) {
		snprintf(msg, n, "'%s' lies where users other than root can change the way to it: lonc runs as root and takes %s from root alone",
			 path, key);
		return -1;
	}
	if (as_user && fsafe_as_user(&u) < 0) {
		snprintf(msg, n, "cannot act as user %s: %s", u.name, strerror(errno));
		return -1;
	}
	int fd = config_open_regular(path, st, msg, n), err = errno;

	if (as_user && fsafe_as_root() < 0) {
		snprintf(msg, n, "cannot act as root again: %s", strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	if (fd < 0 && as_user && (err == EACCES || err == EPERM))
		snprintf(msg, n, "'%s' lies on a way %s may change, and %s cannot read it: lonc reads it with %s's rights",
			 path, u.name, u.name, u.name);
	if (fd >= 0 && fsafe_config_file(path, fd, key, st, &u, msg, n) == FSAFE_BAD) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Load the configuration.  As root, the YAML file only on root's way
 * alone (a relative name judged from the working directory), checked
 * before it is read: root parses and quotes nothing the user chose. */
static int load_config(struct lonc *l, char *err, size_t n)
{
	const char *path = l->o.path;
	char cwd[4096], abs[8192];

	if (geteuid() == 0) {

		if (path[0] != '/' && getcwd(cwd, sizeof(cwd))) {
			snprintf(abs, sizeof(abs), "%s/%s", cwd, path);
			path = abs;
		}
		if (!fsafe_trusted_way(path)) {
			snprintf(err, n, "configuration file %s: the way to it may be changed by users other than root (a directory or symlink not root's alone); lonc runs as root and takes its configuration from root alone",
				 l->o.path);
			return -1;
		}
		/* Who may write it, before it is read (the way is root's:
		 * what stat sees is what config_load opens).  The daemon's
		 * user plays no part for the YAML file. */
		struct stat st;
		struct fsafe_user none = { .name = "-" };

		if (stat(path, &st) == 0 && S_ISREG(st.st_mode) &&
		    fsafe_config_file(path, -1, NULL, &st, &none, err, n) == FSAFE_BAD)
			return -1;
		config_set_opener(open_import_as_fit);
	}
	return config_load(path, &l->cfg, err, n);
}

/* Everything start-up made, in reverse. */
static void stop(struct lonc *l, int status)
{
	notify_watchdog_stop();
	admin_stop();
	broker_free(l->b);
	daemon_ready(status);
	if (l->cfg)
		pidfile_close(l->cfg->pid_file, l->pid_fd);
	crypto_tls_free(l->tls);
	config_unref(l->cfg);
	free(l->path);
	log_close();
}

int main(int argc, char **argv)
{
	struct lonc l = { .pid_fd = -1, .dir_lock = -1, .status = 1 };
	char err[1024];
	int status = 1;

	/* Nothing inherited but the standard three: a descriptor handed
	 * down (the lock file, a socket) would make another process look
	 * like this lonc, or keep one of its files open. */
	close_range(3, ~0U, 0);
	proctitle_init(argc, argv);
	int go = parse_args(argc, argv, &l.o);
	if (go <= 0)
		return go == 0 ? 0 : EXIT_CONFIG;
	if (load_config(&l, err, sizeof(err)) < 0) {
		/* One line per error; lonc -t says it as it says the rest. */
		for (char *line = strtok(err, "\n"); line; line = strtok(NULL, "\n"))
			fprintf(l.o.test ? stdout : stderr, "%s%s\n", l.o.test ? "error: " : "lonc: ",
				line);
		if (l.o.test)
			printf("config %s: NOT usable\n", l.o.path);
		return EXIT_CONFIG;
	}
	/* Reloads read the file again after the daemon moved to "/". */
	l.path = realpath(l.o.path, NULL);
	if (!l.path)
		l.path = xstrdup(l.o.path);
	if (l.o.test || l.o.probe) {
		status = l.o.test ? check_only(&l) : probe(&l);
		config_unref(l.cfg);
		free(l.path);
		return status;
	}
	l.root = geteuid() == 0;
	log_open("lonc", l.cfg->syslog_facility, l.o.foreground, l.cfg->log_level);
	if (prepare(&l) < 0 || start(&l) < 0) {
		status = l.status;
	} else {
		status = signal_loop(&l);
		log_msg(LOG_NOTICE, "event=stopped");
	}
	stop(&l, status);
	return status;
}

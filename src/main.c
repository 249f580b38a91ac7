/*
 * main.c - lonc's entry point: parse arguments, load the configuration,
 * start everything in a fixed order, wait for signals, and shut down in
 * the exact reverse order.
 *
 * Start-up: config -> logging -> crypto -> detach -> pid file -> signal
 * mask -> hosts (sockets) -> acceptor threads -> "ready".
 * Shutdown: acceptors stop -> queues close and drain -> managers and
 * workers joined -> sockets removed -> pid file removed.
 * The main thread is the signal thread (sigwait).
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "crypto.h"
#include "daemon.h"
#include "host.h"
#include "log.h"
#include "outage.h"
#include "util.h"

#define EXIT_CONFIG 2

struct lonc {
	struct config *cfg;
	struct crypto_tls *tls;
	struct host **hosts;
	size_t n_hosts;
	int pid_fd;
};

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

static bool needs_tls(const struct config *cfg)
{
	return uses_mode(cfg, KEY_SSL);
}

static bool needs_local(const struct config *cfg)
{
	return uses_mode(cfg, KEY_LOCAL);
}

static void stop_hosts(struct lonc *l)
{
	for (size_t i = 0; i < l->n_hosts; i++)
		host_stop_accepting(l->hosts[i]);
	for (size_t i = 0; i < l->n_hosts; i++)
		host_shutdown(l->hosts[i]);
	for (size_t i = 0; i < l->n_hosts; i++)
		host_free(l->hosts[i]);
	free(l->hosts);
	l->hosts = NULL;
	l->n_hosts = 0;
}

static int start_hosts(struct lonc *l)
{
	l->hosts = xcalloc(l->cfg->n_hosts, sizeof(*l->hosts));
	for (size_t i = 0; i < l->cfg->n_hosts; i++) {
		struct host *h = host_new(l->cfg, &l->cfg->hosts[i], l->tls);

		if (!h)
			return -1;
		l->hosts[l->n_hosts++] = h;
	}
	for (size_t i = 0; i < l->n_hosts; i++)
		if (host_start(l->hosts[i]) < 0)
			return -1;
	return 0;
}

static void dump_status(struct lonc *l)
{
	size_t dead = 0;

	for (size_t i = 0; i < l->n_hosts; i++) {
		struct host *h = l->hosts[i];

		host_log_status(h);
		if (atomic_load(&h->dead)) {
			dead++;
			host_reset(h);
		}
	}
	log_msg(LOG_NOTICE, "status summary hosts=%zu dead_reset=%zu version=%s",
		l->n_hosts, dead, LONC_VERSION);
}

/* Wait for signals until asked to stop. */
static void signal_loop(struct lonc *l, const sigset_t *set)
{
	for (;;) {
		int sig;

		if (sigwait(set, &sig) != 0)
			continue;
		switch (sig) {
		case SIGUSR1:
			dump_status(l);
			break;
		case SIGHUP:
		case SIGUSR2:
			log_msg(LOG_WARNING,
				"event=reload_unsupported signal=%s detail=\"restart lonc to apply a new configuration\"",
				sig == SIGHUP ? "HUP" : "USR2");
			break;
		default:
			log_msg(LOG_NOTICE, "event=shutdown signal=%s",
				sig == SIGTERM ? "TERM" : "INT");
			return;
		}
	}
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
	struct lonc l = { .pid_fd = -1 };
	char err[1024];
	sigset_t set;
	int opt, status = 1;

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
	if (config_load(path, &l.cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "lonc: %s\n", err);
		return EXIT_CONFIG;
	}
	if (test) {
		config_print(l.cfg, stdout);
		config_free(l.cfg);
		return 0;
	}
	log_open("lonc", l.cfg->syslog_facility, foreground, l.cfg->log_level);
	if (crypto_init() < 0) {
		log_msg(LOG_ERR, "event=start_failed reason=\"libgcrypt version mismatch\"");
		goto out;
	}
	if (needs_tls(l.cfg)) {
		l.tls = crypto_tls_new(l.cfg->tls_ca_file, l.cfg->tls_cert_file,
				       l.cfg->tls_key_file, l.cfg->tls_verify_hostname,
				       err, sizeof(err));
		if (!l.tls) {
			log_msg(LOG_ERR, "event=start_failed reason=\"tls: %s\"", err);
			if (!foreground)
				fprintf(stderr, "lonc: tls: %s\n", err);
			status = EXIT_CONFIG;
			goto out;
		}
	}
	if (needs_local(l.cfg) && (make_dirs(l.cfg->local_key_dir) < 0 ||
				   chmod(l.cfg->local_key_dir, 0700) < 0)) {
		log_errno(LOG_ERR, "event=start_failed reason=\"cannot create local_key_dir %s\"",
			  l.cfg->local_key_dir);
		goto out;
	}
	if (make_dirs(l.cfg->socket_dir) < 0) {
		log_errno(LOG_ERR, "event=start_failed reason=\"cannot create socket_dir %s\"",
			  l.cfg->socket_dir);
		goto out;
	}
	if (!foreground && daemon_detach() < 0) {
		log_errno(LOG_ERR, "event=start_failed reason=\"cannot detach\"");
		goto out;
	}
	l.pid_fd = pidfile_open(l.cfg->pid_file, err, sizeof(err));
	if (l.pid_fd < 0) {
		log_msg(LOG_ERR, "event=start_failed reason=\"%s\"", err);
		if (foreground)
			fprintf(stderr, "lonc: %s\n", err);
		goto out;
	}
	outage_configure(l.cfg->outage_window_ms, l.cfg->outage_min_hosts);
	daemon_block_signals(&set);
	if (start_hosts(&l) < 0) {
		log_msg(LOG_ERR, "event=start_failed reason=\"cannot start hosts\"");
		stop_hosts(&l);
		goto out;
	}
	log_msg(LOG_NOTICE, "event=ready version=%s hosts=%zu socket_dir=%s pid=%ld",
		LONC_VERSION, l.n_hosts, l.cfg->socket_dir, (long)getpid());
	daemon_ready(0);
	signal_loop(&l, &set);
	stop_hosts(&l);
	status = 0;
	log_msg(LOG_NOTICE, "event=stopped");
out:
	daemon_ready(status);
	pidfile_close(l.cfg->pid_file, l.pid_fd);
	crypto_tls_free(l.tls);
	config_free(l.cfg);
	log_close();
	return status;
}

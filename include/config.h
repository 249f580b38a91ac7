/*
 * config.h - the daemon's configuration, read from a YAML file.
 *
 * A struct config is immutable once loaded: threads share it read-only,
 * and a reload builds a new one.  Durations are kept in milliseconds,
 * sizes in bytes.
 */
#ifndef LONC_CONFIG_H
#define LONC_CONFIG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/stat.h>

#include "util.h"

/* How a connection gets its session key (doc/protocol.md, "lond side"). */
enum key_mode { KEY_AUTO, KEY_SSL, KEY_INSECURE, KEY_LOCAL };

/* The protocol points reconstructed rather than confirmed, each a switch
 * (doc/protocol.md, "Switches"): how a request reaches one of the
 * machine's host IDs; the order of the IDs in the insecure key; whether
 * lond's close_notify is waited for after the TLS key exchange. */
enum sethost_mode { SETHOST_INLINE, SETHOST_SEPARATE, SETHOST_OFF };
enum key_id_order { KEY_ID_REMOTE_FIRST, KEY_ID_LOCAL_FIRST };
enum close_notify { CLOSE_NOTIFY_REQUIRED, CLOSE_NOTIFY_LENIENT };

struct host_conf {
	char *hostname;         /* socket name and DNS name */
	char **ids;             /* LON-CAPA host IDs served there; ids[0] is
				   the one the handshake names */
	size_t n_ids;
	char *address;          /* literal address, or NULL to resolve */
	char **aliases;         /* extra socket names */
	size_t n_aliases;
	int port;               /* lond's TCP port */
	int max_connections;    /* pool bound for this host */
	enum key_mode key_mode; /* resolved: never KEY_AUTO after loading */
	char *tls_name;         /* name lond's certificate must carry */
	bool version_step;      /* send version:<v> after the key mode */
	bool sethost_step;      /* send sethost:<id> after the key mode */
	int sethost_mode;       /* enum sethost_mode */
	char *init_version;     /* "" or v: init::v, init:ssl:v */
	int key_id_order;       /* enum key_id_order */
	char *version_string;   /* what the version: step sends */
	int tls_close_notify;   /* enum close_notify */
	bool imported;          /* from hosts_tab, not from hosts: */
	int line;               /* where the entry starts in the file (for
				   an imported host: its hosts.tab line) */
};

struct config {
	atomic_int refs;        /* config_ref/config_unref; 1 after loading */
	char *path;
	char *host_id;
	char *socket_dir;
	char *pid_file;
	char *log_dir;
	char *log_file;         /* a loncnew-shaped lonc.log too ("" = none) */
	char *user;
	int log_level;          /* LOG_* priority */
	int syslog_facility;    /* LOG_* facility */
	int lond_port;
	int max_connections;
	int max_queue;
	int retry_attempts;
	int max_handshakes;     /* handshakes under way at once, process-wide */
	size_t max_request_bytes;
	size_t max_reply_bytes;
	size_t reply_buffer;    /* reply bytes a worker keeps in memory */
	char *spool_dir;        /* longer replies: unnamed files here */
	int idle_timeout_ms;
	int connect_timeout_ms;
	int handshake_timeout_ms;
	int transaction_timeout_ms;     /* longest silence from lond */
	int max_transaction_ms;         /* longest whole transaction */
	int client_timeout_ms;
	int client_write_timeout_ms;
	int queue_timeout_ms;
	int backoff_initial_ms;
	int backoff_max_ms;
	int outage_window_ms;   /* many hosts dead within it: one alarm */
	int outage_min_hosts;
	bool version_step;
	bool sethost_step;
	int sethost_mode;       /* the switches' global defaults (host_conf) */
	char *init_version;
	int key_id_order;
	char *version_string;
	int tls_close_notify;
	int key_mode;           /* enum key_mode */
	bool batch_workers;     /* workers run under SCHED_BATCH */
	bool allow_insecure;    /* auto may pick insecure; ssl may fall back */
	char *tls_ca_file;      /* tls: ca_file */
	char *tls_cert_file;    /* tls: cert_file */
	char *tls_key_file;     /* tls: key_file */
	bool tls_verify_hostname;
	char *local_key_dir;    /* where local-mode key files are written */
	char *group;            /* group of the sockets ("" = user's) */
	int socket_mode;        /* permissions of the host sockets */
	int shutdown_timeout_ms;
	char *admin_socket;     /* the admin/status UNIX socket */
	int delayed_scan_ms;    /* how often <socket_dir>/delayed is checked */
	char *hosts_tab;        /* LON-CAPA host table to import ("" = none) */
	char *loncapa_conf;     /* PerlSetVar defaults ("" = none) */
	struct host_conf *hosts;
	size_t n_hosts;
};

/* Load and validate `path`.  On success returns 0 and stores a new
 * config in *out.  On failure returns -1 and writes one message naming
 * the file, the line and the key into err.  The files named by
 * loncapa_conf and hosts_tab (relative to the directory of `path`) are
 * read as well, every time: their errors name their own file and line. */
int config_load(const char *path, struct config **out, char *err,
		size_t errlen) WUR;

struct stat;

/* How config_load opens an imported file (loncapa_conf, hosts_tab: the
 * option `key`) for `cfg` as loaded so far (its user and group known):
 * a descriptor of a regular file (st: what it is), or -1 with a message
 * in msg.  Without one set, config_open_regular.  lonc started as root
 * sets one (before any thread starts) that opens a file on a way the
 * user could change with the user's ids. */
typedef int config_opener(const char *path, const char *key, const struct config *cfg,
			  struct stat *st, char *msg, size_t n);
void config_set_opener(config_opener *fn);

/* open_regular (util.h) with a message naming the file. */
int config_open_regular(const char *path, struct stat *st, char *msg, size_t n);

/* Free a config from config_load (NULL is fine), whatever its count. */
void config_free(struct config *cfg);

/* Reference counting: every host holds a reference to the config it
 * was built from, so a reload can replace the config while old hosts
 * drain.  config_unref frees at zero (NULL is fine). */
struct config *config_ref(struct config *cfg);
void config_unref(struct config *cfg);

/* Reload rules.  config_check_reload: -1 (message in err) when an option
 * that needs a restart differs.  config_host_same: true when a host's
 * entry and every host-shaping global are equal, so its pool can stay. */
int config_check_reload(const struct config *old, const struct config *new,
			char *err, size_t errlen) WUR;
bool config_host_same(const struct config *a, const struct host_conf *ha,
		      const struct config *b, const struct host_conf *hb);

/* The entry of `hostname`, or NULL. */
const struct host_conf *config_find_host(const struct config *cfg,
					 const char *hostname);

/* "auto", "ssl", "insecure", "local". */
const char *config_key_mode_name(enum key_mode m);

/* The names of the switches' values, as in the configuration file. */
const char *config_sethost_mode_name(int m);
const char *config_key_id_order_name(int o);
const char *config_close_notify_name(int c);

/* Print a human summary (for `lonc -t`). */
void config_print(const struct config *cfg, FILE *out);

/* The option table as "name" strings, NULL-terminated, for the check
 * that every option is documented. */
const char *const *config_option_names(void);

#endif

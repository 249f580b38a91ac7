/*
 * Unit test for config.c: a valid file with every kind of value, the
 * defaults, and one fixture per kind of error (t/fixtures/config/bad_*),
 * each of which names its expected message in its first line.  The
 * migration keys (loncapa_conf, hosts_tab) read the LON-CAPA files in
 * t/fixtures/loncapa/: what they import, the order defaults <
 * loncapa.conf < YAML, and their errors (bad_conf_*, bad_tab_*).
 */
#include <dirent.h>
#include <stdlib.h>
#include <syslog.h>
#include <unistd.h>

#include "config.h"
#include "tap.h"

#define FIXTURES "t/fixtures/config"

static struct config *load(const char *name)
{
	struct config *cfg = NULL;
	char path[256], err[1024] = "";

	snprintf(path, sizeof(path), FIXTURES "/%s", name);
	if (config_load(path, &cfg, err, sizeof(err)) < 0)
		printf("# %s\n", err);
	return cfg;
}

static void check_valid(void)
{
	struct config *cfg;
	char err[512] = "";

	ok(config_load(FIXTURES "/valid.yaml", &cfg, err, sizeof(err)) == 0,
	   "valid.yaml loads");
	if (!cfg) {
		printf("# %s\n", err);
		return;
	}
	is_str(cfg->host_id, "msul1", "host_id");
	is_str(cfg->socket_dir, "/tmp/lonc-sockets", "socket_dir");
	is_int(cfg->max_connections, 8, "max_connections");
	is_int(cfg->connect_timeout_ms, 2500, "fractional seconds become ms");
	is_int(cfg->max_request_bytes, 64 * 1024, "size with K suffix");
	is_int(cfg->max_queue, 500, "max_queue");
	is_int(cfg->n_hosts, 3, "three hosts");
	is_int(cfg->hosts[0].key_mode, KEY_INSECURE, "auto without tls: insecure (allowed)");
	is_int(cfg->hosts[2].key_mode, KEY_LOCAL, "auto for our own host ID: local");
	is_str(cfg->hosts[0].tls_name, "lon1.example.edu", "tls_name defaults to hostname");
	is_str(cfg->hosts[0].hostname, "lon1.example.edu", "first hostname");
	is_int(cfg->hosts[0].n_ids, 2, "first host has two ids");
	is_str(cfg->hosts[0].ids[1], "msul3", "second id");
	is_int(cfg->hosts[0].n_aliases, 1, "one alias");
	is_int(cfg->hosts[0].port, 5663, "port defaults to lond_port");
	is_int(cfg->hosts[0].max_connections, 8, "pool bound defaults to global");
	ok(cfg->hosts[0].address == NULL, "no address: resolve the hostname");
	is_str(cfg->hosts[1].address, "127.0.0.1", "literal address");
	is_int(cfg->hosts[1].port, 6000, "per-host port");
	is_int(cfg->hosts[1].max_connections, 3, "per-host max_connections");
	ok(!cfg->hosts[1].version_step, "per-host version_step off");
	ok(cfg->hosts[1].sethost_step, "sethost_step defaults on");
	config_free(cfg);
}

static void check_defaults(void)
{
	struct config *cfg;
	char err[512] = "";

	ok(config_load(FIXTURES "/minimal.yaml", &cfg, err, sizeof(err)) == 0,
	   "minimal.yaml loads");
	if (!cfg)
		return;
	is_int(cfg->lond_port, 5663, "default lond_port");
	is_int(cfg->max_connections, 10, "default max_connections");
	is_int(cfg->idle_timeout_ms, 300000, "default idle_timeout 300 s");
	is_int(cfg->log_level, LOG_INFO, "default log level");
	is_str(cfg->pid_file, "/var/run/lonc/lonc.pid", "default pid_file");
	config_free(cfg);
}

static void check_tls(void)
{
	struct config *cfg;
	char err[512] = "";

	ok(config_load(FIXTURES "/tls.yaml", &cfg, err, sizeof(err)) == 0,
	   "tls.yaml loads");
	if (!cfg) {
		printf("# %s\n", err);
		return;
	}
	is_str(cfg->tls_ca_file, "/ca.pem", "tls: ca_file");
	is_str(cfg->tls_key_file, "/key.pem", "tls: key_file");
	ok(!cfg->tls_verify_hostname, "tls: verify_hostname false");
	is_int(cfg->hosts[0].key_mode, KEY_SSL, "auto with certificates: ssl");
	is_int(cfg->hosts[1].key_mode, KEY_INSECURE, "explicit per-host insecure is kept");
	is_str(cfg->hosts[1].tls_name, "other.name", "per-host tls_name");
	config_free(cfg);
}

/* hosts.tab and loncapa.conf with keys of the YAML file on both sides
 * of loncapa_conf: the YAML keys win, loncapa.conf beats the defaults,
 * hosts: replaces one imported machine and adds one. */
static void check_import(void)
{
	struct config *cfg = load("import.yaml");
	const struct host_conf *h;

	ok(cfg != NULL, "import.yaml loads");
	if (!cfg)
		return;
	is_str(cfg->host_id, "msu1", "lonHostID gives host_id (the last PerlSetVar wins)");
	is_str(cfg->socket_dir, "/tmp/lonc-import", "socket_dir before loncapa_conf beats lonSockDir");
	is_int(cfg->lond_port, 6663, "lond_port after loncapa_conf beats londPort");
	is_str(cfg->pid_file, "/home/httpd/perl/logs/lonc.pid", "lonDaemons gives pid_file");
	is_str(cfg->log_dir, "/home/httpd/perl/logs", "lonDaemons gives log_dir");
	ok(cfg->allow_insecure, "loncAllowInsecure 1 gives allow_insecure");
	is_int(cfg->n_hosts, 5, "two hosts: entries and three imported machines");
	is_str(cfg->hosts[0].hostname, "lon2.example.edu", "hosts: entries come first");
	ok(!cfg->hosts[0].imported, "the replaced machine is the hosts: entry");
	is_int(cfg->hosts[0].n_ids, 1, "... with its own ids only");
	is_str(cfg->hosts[0].ids[0], "yaml2", "... yaml2");
	is_str(cfg->hosts[0].address, "127.0.0.2", "... and its own address");
	is_str(cfg->hosts[1].hostname, "extra.example.edu", "an added hosts: entry");

	h = config_find_host(cfg, "lon1.example.edu");
	ok(h && h->imported, "lon1 imported");
	if (h) {
		is_int(h->n_ids, 2, "lon1: every id of the name");
		is_str(h->ids[0], "msu1", "lon1: ids in file order (1)");
		is_str(h->ids[1], "msul1", "lon1: ids in file order (2)");
		is_str(h->address, "35.8.63.51", "lon1: old form gives the address");
		is_int(h->line, 2, "lon1: its hosts.tab line");
		is_int(h->port, 6663, "lon1: port from lond_port");
		is_int(h->key_mode, KEY_LOCAL, "lon1 has our lonHostID: local key mode");
		is_str(h->tls_name, "lon1.example.edu", "lon1: tls_name is the name");
		is_int(h->max_connections, 10, "lon1: global max_connections");
		ok(h->version_step && h->sethost_step, "lon1: global handshake steps");
	}
	h = config_find_host(cfg, "lon3.example.edu");
	ok(h && h->imported, "lon3 imported");
	if (h) {
		is_int(h->n_ids, 2, "lon3: a repeated line adds no id");
		is_str(h->ids[0], "msu3", "lon3: trimmed id");
		is_str(h->ids[1], "other1", "lon3: id of a line with more fields");
		ok(h->address == NULL, "lon3: later form, resolve the name");
		is_int(h->line, 6, "lon3: first line naming it");
		is_int(h->key_mode, KEY_INSECURE, "lon3: insecure (allowed by loncapa.conf)");
	}
	h = config_find_host(cfg, "lon4.example.edu");
	ok(h && h->imported && h->address == NULL, "lon4: empty fifth field, no address");
	ok(!config_find_host(cfg, "msu"), "a default: line is no host");
	config_free(cfg);
}

/* loncapa_conf and hosts_tab alone make a complete configuration. */
static void check_import_minimal(void)
{
	struct config *cfg = load("import_minimal.yaml");

	ok(cfg != NULL, "import_minimal.yaml loads");
	if (!cfg)
		return;
	is_str(cfg->host_id, "msu1", "host_id from loncapa.conf");
	is_str(cfg->socket_dir, "/home/httpd/sockets", "socket_dir from a quoted lonSockDir");
	is_int(cfg->lond_port, 5663, "lond_port from londPort");
	is_int(cfg->n_hosts, 4, "four machines imported");
	is_str(cfg->hosts[1].hostname, "lon2.example.edu", "imported in file order");
	is_str(cfg->hosts[1].address, "35.8.63.52", "lon2 keeps its address");
	is_int(cfg->hosts[1].port, 5663, "imported port from londPort");
	config_free(cfg);
}

/* The later form only, CRLF line ends. */
static void check_import_later(void)
{
	struct config *cfg = load("import_later.yaml");

	ok(cfg != NULL, "import_later.yaml loads");
	if (!cfg)
		return;
	is_int(cfg->n_hosts, 2, "two machines");
	is_str(cfg->hosts[0].hostname, "later1.example.edu", "name without the CR");
	ok(cfg->hosts[0].address == NULL, "protocol field is not an address");
	is_str(cfg->hosts[1].ids[0], "later2", "id of the second line");
	config_free(cfg);
}

static void check_import_overridden(void)
{
	struct config *cfg = load("import_overridden.yaml");

	ok(cfg != NULL, "a bad loncapa.conf value the YAML file overrides is not used");
	if (cfg)
		is_int(cfg->lond_port, 5663, "lond_port from the YAML file");
	config_free(cfg);
}

static void check_import_none(void)
{
	struct config *cfg = load("import_none.yaml");

	ok(cfg != NULL, "import_none.yaml loads: \"\" is no file");
	if (!cfg)
		return;
	is_int(cfg->n_hosts, 1, "only the hosts: entry");
	ok(!cfg->hosts[0].imported, "not imported");
	config_free(cfg);
}

/* Both paths need a restart; the files behind them are re-read by
 * every load, which is what a reload does. */
static void check_import_reload(void)
{
	struct config *a = load("import_minimal.yaml");
	struct config *b = load("import_later.yaml");
	struct config *c = load("import_conf_path.yaml");
	struct config *d = load("import_minimal.yaml");
	char err[512] = "";

	ok(a && b && c && d, "reload fixtures load");
	if (a && b && c && d) {
		ok(config_check_reload(a, d, err, sizeof(err)) == 0,
		   "same paths: reload allowed");
		ok(config_check_reload(a, b, err, sizeof(err)) < 0,
		   "another hosts_tab: refused");
		ok(strstr(err, "key 'hosts_tab' changed; it takes effect only at a restart") != NULL,
		   "... naming hosts_tab");
		ok(config_check_reload(a, c, err, sizeof(err)) < 0,
		   "another loncapa_conf: refused");
		ok(strstr(err, "key 'loncapa_conf' changed") != NULL,
		   "... naming loncapa_conf");
		ok(config_host_same(a, &a->hosts[0], d, &d->hosts[0]),
		   "an unchanged imported host keeps its pool");
	}
	config_free(a);
	config_free(b);
	config_free(c);
	config_free(d);
}

/* Load a configuration given as text (written to a temporary file). */
static struct config *load_text(const char *yaml)
{
	const char *dir = getenv("TMPDIR");
	char path[512], err[1024] = "";
	struct config *cfg = NULL;

	snprintf(path, sizeof(path), "%s/lonc-config-XXXXXX.yaml",
		 dir && *dir ? dir : "/tmp");
	int fd = mkstemps(path, 5);
	if (fd < 0)
		return NULL;
	FILE *f = fdopen(fd, "w");
	if (!f) {
		close(fd);
		unlink(path);
		return NULL;
	}
	fputs(yaml, f);
	fclose(f);
	if (config_load(path, &cfg, err, sizeof(err)) < 0)
		printf("# %s\n", err);
	unlink(path);
	return cfg;
}

#define HOST_SAME_BASE(globals, a_port, a_ids) \
	"host_id: t1\nsocket_dir: /tmp/lonc-t\nallow_insecure: true\n" globals \
	"hosts:\n" \
	"  - hostname: a.example.edu\n    ids: [" a_ids "]\n    address: 127.0.0.1\n" \
	"    port: " a_port "\n" \
	"  - hostname: b.example.edu\n    ids: [b1]\n    address: 127.0.0.1\n" \
	"    port: 6001\n"

/* A reload keeps a host's pool only when nothing it uses changed. */
static void check_host_same(void)
{
	struct config *base = load_text(HOST_SAME_BASE("log_level: info\n", "6000", "a1"));
	struct config *port = load_text(HOST_SAME_BASE("log_level: info\n", "6002", "a1"));
	struct config *ids = load_text(HOST_SAME_BASE("log_level: info\n", "6000", "a1, a2"));
	struct config *global = load_text(HOST_SAME_BASE("log_level: info\ntransaction_timeout: 30\n",
							 "6000", "a1"));
	struct config *live = load_text(HOST_SAME_BASE("log_level: debug\n", "6000", "a1"));

	ok(base && port && ids && global && live, "host comparison fixtures load");
	if (base && port && ids && global && live) {
		ok(config_host_same(base, &base->hosts[0], base, &base->hosts[0]),
		   "a host equals itself");
		ok(!config_host_same(base, &base->hosts[0], port, &port->hosts[0]),
		   "another port: not the same host");
		ok(config_host_same(base, &base->hosts[1], port, &port->hosts[1]),
		   "... while the other host is unchanged");
		ok(!config_host_same(base, &base->hosts[0], ids, &ids->hosts[0]),
		   "other ids: not the same host");
		ok(!config_host_same(base, &base->hosts[0], global, &global->hosts[0]) &&
		   !config_host_same(base, &base->hosts[1], global, &global->hosts[1]),
		   "a changed global (transaction_timeout) changes every host");
		ok(config_host_same(base, &base->hosts[0], live, &live->hosts[0]),
		   "a live key (log_level) changes no host");
	}
	config_free(base);
	config_free(port);
	config_free(ids);
	config_free(global);
	config_free(live);
}

/* Every key of a hosts: entry counts in the comparison (it is derived
 * from the key table): one change each, each makes another host. */
static void check_host_keys_compared(void)
{
	static const char *const extra[] = {
		"    tls_name: other.example.edu\n", "    aliases: [a-alias]\n",
		"    version_step: false\n", "    sethost_step: false\n",
		"    max_connections: 3\n", "    key_mode: local\n", "    address: 127.0.0.9\n",
	};
	const char *base_text =
		"host_id: t1\nsocket_dir: /tmp/lonc-t\nallow_insecure: true\nkey_mode: auto\n"
		"hosts:\n  - hostname: a.example.edu\n    ids: [a1]\n";
	struct config *base = load_text(base_text);

	ok(base != NULL, "host key fixtures: base loads");
	for (size_t i = 0; base && i < sizeof(extra) / sizeof(extra[0]); i++) {
		char text[512], name[160];

		snprintf(text, sizeof(text), "%s%s", base_text, extra[i]);
		struct config *c = load_text(text);
		snprintf(name, sizeof(name), "changing '%.*s' makes another host",
			 (int)strcspn(extra[i] + 4, ":"), extra[i] + 4);
		ok(c && !config_host_same(base, &base->hosts[0], c, &c->hosts[0]), name);
		config_free(c);
	}
	config_free(base);
}

/* The expectation is the first line: "# expect: <text>". */
/* The "# expect: " lines at the top of a fixture, each an error the
 * file must give; returns how many (0 when none). */
static int read_expects(const char *path, char out[][512], int max)
{
	FILE *f = fopen(path, "r");
	char line[512];
	int n = 0;

	if (!f)
		return 0;
	while (n < max && fgets(line, sizeof(line), f) && !strncmp(line, "# expect: ", 10)) {
		line[strcspn(line, "\n")] = '\0';
		snprintf(out[n++], 512, "%s", line + 10);
	}
	fclose(f);
	return n;
}

static void check_errors(void)
{
	DIR *d = opendir(FIXTURES);
	struct dirent *e;
	int seen = 0;

	ok(d != NULL, "fixture directory opens");
	if (!d)
		return;
	while ((e = readdir(d))) {
		char path[1024], expect[8][512], err[4096] = "", name[600];
		struct config *cfg = NULL;

		if (strncmp(e->d_name, "bad_", 4) != 0)
			continue;
		seen++;
		snprintf(path, sizeof(path), FIXTURES "/%s", e->d_name);
		snprintf(name, sizeof(name), "%s: has an expectation", e->d_name);
		int n = read_expects(path, expect, 8);
		ok(n > 0, name);
		int rc = config_load(path, &cfg, err, sizeof(err));
		snprintf(name, sizeof(name), "%s: refused", e->d_name);
		ok(rc == -1 && cfg == NULL, name);
		for (int i = 0; i < n; i++) {
			snprintf(name, sizeof(name), "%s: message %d names file, line and key",
				 e->d_name, i + 1);
			ok(strstr(err, expect[i]) != NULL, name);
			if (!strstr(err, expect[i]))
				printf("#          got: '%s'\n#     expected: '%s'\n", err, expect[i]);
		}
		/* Every error once, none that only follows from another. */
		int lines = 1;
		for (const char *c = err; *c; c++)
			lines += *c == '\n';
		snprintf(name, sizeof(name), "%s: %d error(s), no more", e->d_name, n);
		is_int(lines, n, name);
		config_free(cfg);
	}
	closedir(d);
	ok(seen >= 40, "every error fixture was tried");
}

static void check_missing_file(void)
{
	struct config *cfg = NULL;
	char err[512] = "";

	ok(config_load(FIXTURES "/does-not-exist.yaml", &cfg, err, sizeof(err)) < 0,
	   "a missing file is an error");
	ok(strstr(err, "does-not-exist.yaml: cannot open") != NULL,
	   "the message names the file");
}

/* Every option of the table appears as "name:" in the example config. */
static void check_documented(void)
{
	FILE *f = fopen("etc/lonc.yaml", "r");
	static char text[65536];
	size_t n = f ? fread(text, 1, sizeof(text) - 1, f) : 0;

	if (f)
		fclose(f);
	text[n] = '\0';
	ok(n > 0, "etc/lonc.yaml is readable");
	for (const char *const *o = config_option_names(); *o; o++) {
		char key[128], name[160];

		const char *dot = strchr(*o, '.');

		/* tls.ca_file is "ca_file:" indented under "tls:", a hosts
		 * key is indented in an entry. */
		if (dot)
			snprintf(key, sizeof(key), " %s:", dot + 1);
		else
			snprintf(key, sizeof(key), "\n%s:", *o);
		snprintf(name, sizeof(name), "option %s is in etc/lonc.yaml", *o);
		ok(strstr(text, key) != NULL, name);
	}
}

int main(void)
{
	check_valid();
	check_defaults();
	check_tls();
	check_import();
	check_import_minimal();
	check_import_later();
	check_import_none();
	check_import_overridden();
	check_import_reload();
	check_host_same();
	check_host_keys_compared();
	check_errors();
	check_missing_file();
	check_documented();
	done_testing();
}

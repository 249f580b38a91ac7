/*
 * Unit test for config.c: a valid file with every kind of value, the
 * defaults, and one fixture per kind of error (t/fixtures/config/bad_*),
 * each of which names its expected message in its first line.
 */
#include <dirent.h>
#include <syslog.h>

#include "config.h"
#include "tap.h"

#define FIXTURES "t/fixtures/config"

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
	is_str(cfg->pid_file, "/var/run/lonc.pid", "default pid_file");
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

/* The expectation is the first line: "# expect: <text>". */
static int read_expect(const char *path, char *out, size_t n)
{
	FILE *f = fopen(path, "r");
	char line[512];

	if (!f)
		return -1;
	if (!fgets(line, sizeof(line), f)) {
		fclose(f);
		return -1;
	}
	fclose(f);
	line[strcspn(line, "\n")] = '\0';
	if (strncmp(line, "# expect: ", 10) != 0)
		return -1;
	snprintf(out, n, "%s", line + 10);
	return 0;
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
		char path[1024], expect[512], err[1024] = "", name[600];
		struct config *cfg = NULL;

		if (strncmp(e->d_name, "bad_", 4) != 0)
			continue;
		seen++;
		snprintf(path, sizeof(path), FIXTURES "/%s", e->d_name);
		snprintf(name, sizeof(name), "%s: has an expectation", e->d_name);
		ok(read_expect(path, expect, sizeof(expect)) == 0, name);
		int rc = config_load(path, &cfg, err, sizeof(err));
		snprintf(name, sizeof(name), "%s: refused", e->d_name);
		ok(rc == -1 && cfg == NULL, name);
		snprintf(name, sizeof(name), "%s: message names file, line and key", e->d_name);
		ok(strstr(err, expect) != NULL, name);
		if (!strstr(err, expect))
			printf("#          got: '%s'\n#     expected: '%s'\n", err, expect);
		config_free(cfg);
	}
	closedir(d);
	ok(seen >= 15, "every error fixture was tried");
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
	check_errors();
	check_missing_file();
	check_documented();
	done_testing();
}

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
	is_int(cfg->n_hosts, 2, "two hosts");
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

int main(void)
{
	check_valid();
	check_defaults();
	check_errors();
	check_missing_file();
	done_testing();
}

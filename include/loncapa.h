/*
 * loncapa.h - readers for the two LON-CAPA files loncnew took its setup
 * from: the host table (hosts.tab) and the PerlSetVar lines of
 * loncapa.conf.  Pure parsing into plain structs; config.c decides what
 * the values mean for lonc and applies them.  No locks, no globals.
 */
#ifndef LONC_LONCAPA_H
#define LONC_LONCAPA_H

#include <stddef.h>
#include <stdio.h>

#include "util.h"

/* One machine of hosts.tab: every line naming it adds an id. */
struct loncapa_host {
	char *name;             /* the machine's DNS name */
	char **ids;             /* LON-CAPA host IDs, in file order */
	size_t n_ids;
	char *address;          /* IPv4 of the old form, or NULL */
	int line;               /* first line that names this machine */
	int address_line;       /* the line that gave the address */
};

struct loncapa_hosts {
	struct loncapa_host *hosts;  /* in order of first appearance */
	size_t n;
};

/* Read a host table from f; `path` is only for messages.  Lines are
 * id:domain:role:name[:ip[:...]]; '#' comments, blank lines and
 * "default:" lines are skipped.  On failure returns -1 with
 * "PATH:LINE: problem" in err and *out empty. */
int loncapa_read_hosts_tab(FILE *f, const char *path,
			   struct loncapa_hosts *out, char *err,
			   size_t errlen) WUR;

/* Free what loncapa_read_hosts_tab stored (an empty struct is fine). */
void loncapa_hosts_free(struct loncapa_hosts *h);

/* One PerlSetVar: the last line that set it wins. */
struct loncapa_var {
	char *name;
	char *value;            /* unquoted */
	int line;
};

struct loncapa_conf {
	struct loncapa_var *vars;
	size_t n;
};

/* Read the PerlSetVar lines of an Apache config file whose variable
 * is in `names` (NULL-terminated, case-sensitive as in LON-CAPA);
 * every other line is ignored.  A wanted line without a value, with an
 * unclosed quote or with more than one value is an error:
 * -1 with "PATH:LINE: key 'NAME': problem" in err. */
int loncapa_read_conf(FILE *f, const char *path, const char *const *names,
		      struct loncapa_conf *out, char *err,
		      size_t errlen) WUR;

/* The variable `name`, or NULL when the file did not set it. */
const struct loncapa_var *loncapa_conf_get(const struct loncapa_conf *c,
					   const char *name);

void loncapa_conf_free(struct loncapa_conf *c);

#endif

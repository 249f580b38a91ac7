/*
 * loncapa.c - the LON-CAPA files loncnew was configured by, read into
 * plain structs: the host table (hosts.tab) and the PerlSetVar lines of
 * loncapa.conf.  Only syntax and consistency within one file are
 * checked here; what a value means for lonc (socket names, ports,
 * booleans) is config.c's business, so every rule lives in one place.
 * Called through config_load (main or admin thread, one at a time); no
 * locks, no globals.
 * May call: util.
 */
#include "loncapa.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int fail_line(char *err, size_t errlen, const char *path, int line,
		     const char *fmt, ...) PRINTF_LIKE(5, 6);

static int fail_line(char *err, size_t errlen, const char *path, int line,
		     const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(err, errlen, "%s:%d: %s", path, line, msg);
	return -1;
}

static char *skip_space(char *s)
{
	while (*s && isspace((unsigned char)*s))
		s++;
	return s;
}

static char *trim(char *s)
{
	char *e;

	s = skip_space(s);
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		e--;
	*e = '\0';
	return s;
}

static bool has_space(const char *s)
{
	for (; *s; s++)
		if (isspace((unsigned char)*s) || iscntrl((unsigned char)*s))
			return true;
	return false;
}

/*
 * hosts.tab
 * ---------
 * One line per LON-CAPA host ID:
 *
 *     msu1:msu:library:lon1.msu.edu:35.8.63.51     (old form, with IP)
 *     msu1:msu:library:lon1.msu.edu                (later form)
 *     msu1:msu:library:lon1.msu.edu:https:msu.edu  (later, more fields)
 *
 * A fifth field made of digits and dots is the old form's IP address
 * and must be a valid IPv4 address; any other fifth field belongs to
 * the later form (protocol, internet domain, ...) and is ignored.
 * Several IDs may name one machine (a LON-CAPA server in several
 * domains): they become the ids of one entry, in file order.  One ID
 * naming two machines is an error, as is one machine with two
 * different addresses.  lonnet skips "default:" lines; so do we.
 */

#define TAB_FIELDS 5

static struct loncapa_host *find_name(struct loncapa_hosts *t,
				      const char *name)
{
	for (size_t i = 0; i < t->n; i++)
		if (!strcmp(t->hosts[i].name, name))
			return &t->hosts[i];
	return NULL;
}

static const struct loncapa_host *find_id(const struct loncapa_hosts *t,
					  const char *id)
{
	for (size_t i = 0; i < t->n; i++)
		for (size_t j = 0; j < t->hosts[i].n_ids; j++)
			if (!strcmp(t->hosts[i].ids[j], id))
				return &t->hosts[i];
	return NULL;
}

static bool dotted_digits(const char *s)
{
	for (; *s; s++)
		if (!(*s == '.' || (*s >= '0' && *s <= '9')))
			return false;
	return true;
}

/* One non-comment line, split into trimmed fields; adds to t. */
static int tab_line(struct loncapa_hosts *t, char *text, const char *path,
		    int line, char *err, size_t errlen)
{
	char *f[TAB_FIELDS] = { NULL };
	size_t n = 0;
	char *p = text;

	for (;;) {
		char *colon = strchr(p, ':');

		if (colon)
			*colon = '\0';
		if (n < TAB_FIELDS)
			f[n] = trim(p);
		n++;
		if (!colon)
			break;
		p = colon + 1;
	}
	if (n >= 1 && !strcmp(f[0], "default"))
		return 0;
	if (n < 4)
		return fail_line(err, errlen, path, line,
				 "expected id:domain:role:name[:ip], found %zu field%s",
				 n, n == 1 ? "" : "s");
	const char *id = f[0], *name = f[3];
	const char *ip = n >= 5 && *f[4] && dotted_digits(f[4]) ? f[4] : NULL;
	struct in_addr a;

	if (!*id)
		return fail_line(err, errlen, path, line, "empty host ID");
	if (has_space(id))
		return fail_line(err, errlen, path, line,
				 "host ID '%s' contains white space", id);
	if (!*name)
		return fail_line(err, errlen, path, line, "empty host name");
	if (ip && inet_pton(AF_INET, ip, &a) != 1)
		return fail_line(err, errlen, path, line,
				 "'%s' is not an IPv4 address", ip);

	const struct loncapa_host *owner = find_id(t, id);
	if (owner && strcmp(owner->name, name))
		return fail_line(err, errlen, path, line,
				 "host ID '%s' already names '%s' (line %d)",
				 id, owner->name, owner->line);

	struct loncapa_host *h = find_name(t, name);
	if (!h) {
		t->hosts = xrealloc(t->hosts, (t->n + 1) * sizeof(*t->hosts));
		h = &t->hosts[t->n++];
		memset(h, 0, sizeof(*h));
		h->name = xstrdup(name);
		h->line = line;
	}
	if (ip) {
		if (h->address && strcmp(h->address, ip))
			return fail_line(err, errlen, path, line,
					 "'%s' has address %s here but %s at line %d",
					 name, ip, h->address, h->address_line);
		if (!h->address) {
			h->address = xstrdup(ip);
			h->address_line = line;
		}
	}
	if (!owner) {
		h->ids = xrealloc(h->ids, (h->n_ids + 1) * sizeof(char *));
		h->ids[h->n_ids++] = xstrdup(id);
	}
	return 0;
}

/* Call fn for every line of f that is neither blank nor a comment,
 * trimmed, with its line number; stop at the first failure.  0 or -1. */
static int each_line(FILE *f, const char *path,
		     int (*fn)(void *ctx, char *text, int line), void *ctx,
		     char *err, size_t errlen)
{
	char *buf = NULL;
	size_t cap = 0;
	int line = 0, rc = 0;

	while (getline(&buf, &cap, f) >= 0) {
		char *s = trim(buf);

		line++;
		if (!*s || *s == '#')
			continue;
		if ((rc = fn(ctx, s, line)) < 0)
			break;
	}
	if (rc == 0 && ferror(f))
		rc = fail_line(err, errlen, path, line + 1, "read error");
	free(buf);
	return rc;
}

struct tab_ctx {
	struct loncapa_hosts *t;
	const char *path;
	char *err;
	size_t errlen;
};

static int tab_line_cb(void *ctx, char *text, int line)
{
	struct tab_ctx *x = ctx;

	return tab_line(x->t, text, x->path, line, x->err, x->errlen);
}

int loncapa_read_hosts_tab(FILE *f, const char *path,
			   struct loncapa_hosts *out, char *err, size_t errlen)
{
	struct loncapa_hosts t = { NULL, 0 };
	struct tab_ctx x = { &t, path, err, errlen };

	if (each_line(f, path, tab_line_cb, &x, err, errlen) < 0) {
		loncapa_hosts_free(&t);
		return -1;
	}
	*out = t;
	return 0;
}

void loncapa_hosts_free(struct loncapa_hosts *t)
{
	for (size_t i = 0; i < t->n; i++) {
		struct loncapa_host *h = &t->hosts[i];

		for (size_t j = 0; j < h->n_ids; j++)
			free(h->ids[j]);
		free(h->ids);
		free(h->name);
		free(h->address);
	}
	free(t->hosts);
	t->hosts = NULL;
	t->n = 0;
}

/*
 * loncapa.conf
 * ------------
 * Apache syntax, of which only one directive matters:
 *
 *     PerlSetVar  lonSockDir  /home/httpd/sockets
 *     perlsetvar  lonHostID   "msu1"
 *
 * The directive name is case-insensitive (as in Apache); the variable
 * name is matched exactly (LON-CAPA reads these into a Perl hash).  A
 * value may be quoted with " or ', where \" (\') and \\ stand for the
 * character.  Sections (<IfModule> ...) are not interpreted: every
 * PerlSetVar counts and the last one of a name wins, as in
 * LONCAPA::Configuration.  Lines of variables nobody asked for are
 * skipped without a look, so a file full of other directives is fine.
 * Apache's line continuation (a trailing backslash) is not supported.
 */

static bool listed(const char *const *names, const char *name)
{
	for (; *names; names++)
		if (!strcmp(*names, name))
			return true;
	return false;
}

static void conf_set(struct loncapa_conf *c, const char *name,
		     const char *value, int line)
{
	for (size_t i = 0; i < c->n; i++) {
		if (!strcmp(c->vars[i].name, name)) {
			free(c->vars[i].value);
			c->vars[i].value = xstrdup(value);
			c->vars[i].line = line;
			return;
		}
	}
	c->vars = xrealloc(c->vars, (c->n + 1) * sizeof(*c->vars));
	c->vars[c->n].name = xstrdup(name);
	c->vars[c->n].value = xstrdup(value);
	c->vars[c->n].line = line;
	c->n++;
}

/* Cut the next white-space-delimited word out of *p. */
static char *word(char **p)
{
	char *s = skip_space(*p), *e = s;

	while (*e && !isspace((unsigned char)*e))
		e++;
	*p = *e ? e + 1 : e;
	*e = '\0';
	return s;
}

static int conf_line(struct loncapa_conf *c, char *p,
		     const char *const *names, const char *path, int line,
		     char *err, size_t errlen)
{
	char *value;

	if (strcasecmp(word(&p), "PerlSetVar"))
		return 0;
	const char *name = word(&p);
	if (!*name || !listed(names, name))
		return 0;
	p = skip_space(p);
	if (!*p)
		return fail_line(err, errlen, path, line,
				 "key '%s': PerlSetVar without a value", name);
	if (*p == '"' || *p == '\'') {
		char q = *p++, *o = p;

		value = p;
		for (;;) {
			if (!*p)
				return fail_line(err, errlen, path, line,
						 "key '%s': the quoted value has no closing %c",
						 name, q);
			if (*p == '\\' && (p[1] == q || p[1] == '\\')) {
				*o++ = p[1];
				p += 2;
			} else if (*p == q) {
				p++;
				break;
			} else {
				*o++ = *p++;
			}
		}
		*o = '\0';
	} else {
		value = word(&p);
	}
	p = skip_space(p);
	if (*p)
		return fail_line(err, errlen, path, line,
				 "key '%s': expected one value, found more: '%s'",
				 name, p);
	conf_set(c, name, value, line);
	return 0;
}

struct conf_ctx {
	struct loncapa_conf *c;
	const char *const *names;
	const char *path;
	char *err;
	size_t errlen;
};

static int conf_line_cb(void *ctx, char *text, int line)
{
	struct conf_ctx *x = ctx;

	return conf_line(x->c, text, x->names, x->path, line, x->err, x->errlen);
}

int loncapa_read_conf(FILE *f, const char *path, const char *const *names,
		      struct loncapa_conf *out, char *err, size_t errlen)
{
	struct loncapa_conf c = { NULL, 0 };
	struct conf_ctx x = { &c, names, path, err, errlen };

	if (each_line(f, path, conf_line_cb, &x, err, errlen) < 0) {
		loncapa_conf_free(&c);
		return -1;
	}
	*out = c;
	return 0;
}

const struct loncapa_var *loncapa_conf_get(const struct loncapa_conf *c,
					   const char *name)
{
	for (size_t i = 0; i < c->n; i++)
		if (!strcmp(c->vars[i].name, name))
			return &c->vars[i];
	return NULL;
}

void loncapa_conf_free(struct loncapa_conf *c)
{
	for (size_t i = 0; i < c->n; i++) {
		free(c->vars[i].name);
		free(c->vars[i].value);
	}
	free(c->vars);
	c->vars = NULL;
	c->n = 0;
}

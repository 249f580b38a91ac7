/*
 * Unit tests of reply.c: a reply held in memory up to its limit, the
 * rest spooled to an unnamed file; sent whole; the buffer shrinks back.
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "crypto.h"
#include "lond.h"
#include "net.h"
#include "reply.h"
#include "tap.h"

/* Feed wire[0..n) to r in pieces of at most `piece` bytes, as the worker
 * does.  Returns the last reply_commit code, or -1 when reply_space
 * failed (errno). */
static int feed(struct reply *r, const char *wire, size_t n, size_t piece)
{
	size_t at = 0;
	int rc = REPLY_MORE;

	while (at < n && rc == REPLY_MORE) {
		size_t room;
		char *p = reply_space(r, &room);

		if (!p)
			return -1;
		size_t k = n - at < room ? n - at : room;
		if (k > piece)
			k = piece;
		memcpy(p, wire + at, k);
		at += k;
		rc = reply_commit(r, k);
	}
	return rc;
}

/* Everything a socket pair's other end receives until EOF. */
static char *drain(int fd, size_t *len)
{
	size_t cap = 1 << 16, have = 0;
	char *buf = xmalloc(cap);
	ssize_t n;

	while ((n = read(fd, buf + have, cap - have)) > 0) {
		have += (size_t)n;
		if (have == cap)
			buf = xrealloc(buf, cap *= 2);
	}
	*len = have;
	return buf;
}

static int entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

/* Send r through a socket pair (the reader in a child) and compare. */
static void check_sent(struct reply *r, const char *want, size_t want_len,
		       const char *name)
{
	int sv[2];
	char label[200];

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0 || net_set_nonblock(sv[0]) < 0) {
		ok(0, "socketpair");
		return;
	}
	pid_t pid = fork();
	if (pid == 0) {
		close(sv[0]);
		size_t len;
		char *got = drain(sv[1], &len);
		_exit(len == want_len && !memcmp(got, want, len) ? 0 : 1);
	}
	close(sv[1]);
	int rc = reply_send(r, sv[0], 5000);
	close(sv[0]);
	int status = -1;
	waitpid(pid, &status, 0);
	snprintf(label, sizeof(label), "%s: sent", name);
	is_int(rc, 0, label);
	snprintf(label, sizeof(label), "%s: the peer got the line and its newline", name);
	ok(WIFEXITED(status) && WEXITSTATUS(status) == 0, label);
}

static char *pattern(size_t n)
{
	char *p = xmalloc(n + 1);

	for (size_t i = 0; i < n; i++)
		p[i] = (char)('a' + i % 26);
	p[n] = '\n';
	return p;
}

static void check_small(const char *spool)
{
	struct reply r;
	size_t len;

	reply_init(&r, 1024, 8192, spool);
	reply_begin(&r, NULL, 1 << 20);
	is_int(feed(&r, "pong\nx", 6, 100), REPLY_DONE, "small: done");
	ok(r.extra, "small: data after the newline noticed");
	const char *t = reply_text(&r, &len);
	ok(t && len == 4 && !memcmp(t, "pong", 4), "small: the text in memory");
	is_int(reply_size(&r), 4, "small: size");
	check_sent(&r, "pong\n", 5, "small");
	reply_end(&r);
	reply_begin(&r, NULL, 1 << 20);
	is_int(feed(&r, "ok\n", 3, 1), REPLY_DONE, "a second reply on the same buffer");
	ok(!r.extra, "no extra data this time");
	reply_end(&r);
	reply_destroy(&r);
}

static void check_spooled(const char *spool)
{
	struct reply r;
	size_t n = 100000, len;
	char *wire = pattern(n);

	reply_init(&r, 1024, 8192, spool);
	reply_begin(&r, NULL, 1 << 20);
	/* Fed and checked in two halves: the spool in use, nothing named. */
	is_int(feed(&r, wire, n / 2, 3000), REPLY_MORE, "big: first half taken");
	ok(r.spool_fd >= 0, "big: spooled beyond the limit");
	is_int(entries(spool), 0, "big: the spool directory shows no file");
	ok(r.cap <= 8192, "big: memory stays within the limit");
	is_int(feed(&r, wire + n / 2, n + 1 - n / 2, 3000), REPLY_DONE, "big: done");
	is_int(reply_size(&r), n, "big: size counts spool and memory");
	ok(reply_text(&r, &len) == NULL, "big: no in-memory text once spooled");
	check_sent(&r, wire, n + 1, "big");
	reply_end(&r);
	is_int(r.cap, 1024, "big: the buffer shrank back");
	is_int(r.spooled, 0, "big: the spool emptied");

	/* The spool is reused for the next big reply. */
	int fd = r.spool_fd;
	reply_begin(&r, NULL, 1 << 20);
	is_int(feed(&r, wire, n + 1, 65536), REPLY_DONE, "big again: done");
	is_int(r.spool_fd, fd, "big again: the same spool file");
	check_sent(&r, wire, n + 1, "big again");
	reply_end(&r);
	reply_destroy(&r);
	free(wire);
}

static void check_limits(const char *spool)
{
	struct reply r;
	char *wire = pattern(20000);

	reply_init(&r, 1024, 4096, NULL);
	reply_begin(&r, NULL, 1 << 20);
	is_int(feed(&r, wire, 20001, 4096), -1, "no spool: a line over the limit fails");
	is_int(errno, EMSGSIZE, "no spool: with EMSGSIZE");
	reply_end(&r);
	reply_destroy(&r);

	reply_init(&r, 1024, 4096, spool);
	reply_begin(&r, NULL, 5000);
	is_int(feed(&r, wire, 20001, 4096), REPLY_TOO_LONG, "a line over max_line");
	reply_end(&r);
	reply_begin(&r, NULL, 20000);
	is_int(feed(&r, wire, 20001, 4096), REPLY_DONE, "a line of exactly max_line");
	reply_end(&r);
	reply_begin(&r, NULL, 19999);
	is_int(feed(&r, wire, 20001, 4096), REPLY_TOO_LONG, "max_line - 1: too long");
	reply_end(&r);
	reply_destroy(&r);

	reply_init(&r, 1024, 4096, "/nonexistent-spool-dir");
	reply_begin(&r, NULL, 1 << 20);
	is_int(feed(&r, wire, 20001, 4096), -1, "an unusable spool fails the line");
	is_int(errno, ENOENT, "with the spool's error");
	reply_end(&r);
	reply_destroy(&r);
	free(wire);
}

static void check_enc(const char *spool)
{
	static const unsigned char key[16] = "0123456789abcdef";
	struct crypto_idea *c;
	size_t n = 30000;
	char *text = pattern(n);

	is_int(crypto_init(), 0, "crypto_init");
	c = crypto_idea_new(key);
	char *wire = xmalloc(lond_enc_size(0, n));
	long w = lond_enc_encode(c, "", 0, text, n, wire);
	struct reply r;

	reply_init(&r, 1024, 4096, spool);
	reply_begin(&r, c, 1 << 20);
	is_int(feed(&r, wire, (size_t)w, 777), REPLY_DONE, "enc: decoded in pieces");
	is_int(reply_size(&r), n, "enc: the plain length");
	ok(r.spooled > 0, "enc: the plain text outgrew memory and was spooled");
	check_sent(&r, text, n + 1, "enc");
	reply_end(&r);
	ok(!memmem(r.buf, r.cap, "abcdefghijklmnopqrstuvwxyz", 26),
	   "enc: no plain text left in the buffer afterwards");
	reply_begin(&r, c, 1 << 20);
	is_int(feed(&r, "enc:3:zz\n", 9, 100), REPLY_BAD, "enc: a malformed line");
	reply_end(&r);
	reply_destroy(&r);
	crypto_idea_free(c);
	free(wire);
	free(text);
}

int main(void)
{
	char spool[] = "/tmp/lonc-reply-XXXXXX";

	signal(SIGPIPE, SIG_IGN);
	if (!mkdtemp(spool)) {
		ok(0, "mkdtemp");
		done_testing();
	}
	check_small(spool);
	check_spooled(spool);
	check_limits(spool);
	check_enc(spool);
	is_int(entries(spool), 0, "nothing left in the spool directory");
	rmdir(spool);
	done_testing();
}

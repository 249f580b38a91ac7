/*
 * Unit test for linebuf.c: line assembly from a non-blocking socket
 * across partial reads (1-byte pieces), several lines in one read taken
 * one by one, the max line length (exactly max accepted, max + 1 without
 * '\n' overflowed and LINEBUF_FULL), end of file, EAGAIN, a '\n' beyond
 * max reported as overflow, and appends split across the '\n' search.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "linebuf.h"
#include "tap.h"

/* fds[0]: non-blocking read end; fds[1]: write end. */
static void make_pair(int fds[2])
{
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) < 0) {
		perror("socketpair");
		exit(2);
	}
	fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK);
}

static void close_pair(int fds[2])
{
	close(fds[0]);
	if (fds[1] >= 0)
		close(fds[1]);
}

static bool write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w <= 0)
			return false;
		p += w;
		n -= (size_t)w;
	}
	return true;
}

/* Fill until no more data is there (EAGAIN), FULL, EOF or error.
 * Returns the last linebuf_fill result; bounded. */
static ssize_t drain(struct linebuf *lb, int fd)
{
	ssize_t n = -1;

	for (int i = 0; i < 10000; i++) {
		n = linebuf_fill(lb, fd);
		if (n <= 0)
			break;
	}
	return n;
}

/* True when the held line of length len equals want. */
static bool line_is(const struct linebuf *lb, size_t len, const char *want)
{
	return len == strlen(want) && memcmp(lb->data, want, len) == 0;
}

static void check_partial_reads(void)
{
	static const char line[] = "get:msul1:some/key\n";
	int fds[2];
	struct linebuf lb;
	size_t len = 99;
	bool early = false, sizes_ok = true;

	make_pair(fds);
	linebuf_init(&lb, 1024);
	for (size_t i = 0; i + 1 < sizeof(line); i++) {
		if (!write_all(fds[1], &line[i], 1))
			sizes_ok = false;
		if (linebuf_fill(&lb, fds[0]) != 1)
			sizes_ok = false;
		if (line[i] != '\n' && linebuf_has_line(&lb, &len))
			early = true;
	}
	ok(sizes_ok, "partial: each 1-byte write is read as 1 byte");
	ok(!early, "partial: no line reported before its '\\n'");
	ok(linebuf_has_line(&lb, &len), "partial: line complete after '\\n'");
	ok(line_is(&lb, len, "get:msul1:some/key"), "partial: line content");
	ok(linebuf_has_line(&lb, &len) && len == sizeof(line) - 2,
	   "partial: has_line is repeatable before consume");
	linebuf_consume(&lb, len + 1);
	is_int(lb.len, 0, "partial: consume leaves nothing");
	ok(!linebuf_has_line(&lb, &len), "partial: no line after consume");
	errno = 0;
	is_int(linebuf_fill(&lb, fds[0]), -1, "partial: then EAGAIN");
	linebuf_free(&lb);
	close_pair(fds);
}

static void check_many_lines(void)
{
	static const char data[] = "one\ntwo\n\nthree\npart";
	int fds[2];
	struct linebuf lb;
	size_t len = 99;

	make_pair(fds);
	linebuf_init(&lb, 64);
	ok(write_all(fds[1], data, strlen(data)), "many: write");
	is_int(linebuf_fill(&lb, fds[0]), strlen(data), "many: one read takes all");
	ok(linebuf_has_line(&lb, &len) && line_is(&lb, len, "one"), "many: one");
	linebuf_consume(&lb, len + 1);
	ok(linebuf_has_line(&lb, &len) && line_is(&lb, len, "two"), "many: two");
	linebuf_consume(&lb, len + 1);
	ok(linebuf_has_line(&lb, &len) && len == 0, "many: empty line");
	linebuf_consume(&lb, len + 1);
	ok(linebuf_has_line(&lb, &len) && line_is(&lb, len, "three"), "many: three");
	linebuf_consume(&lb, len + 1);
	ok(!linebuf_has_line(&lb, &len), "many: partial tail is not a line");
	ok(lb.len == 4 && memcmp(lb.data, "part", 4) == 0, "many: tail kept");
	ok(write_all(fds[1], "ial\n", 4), "many: write the rest");
	is_int(linebuf_fill(&lb, fds[0]), 4, "many: read the rest");
	ok(linebuf_has_line(&lb, &len) && line_is(&lb, len, "partial"),
	   "many: tail completed");
	linebuf_free(&lb);
	close_pair(fds);
}

static void check_eagain_eof(void)
{
	int fds[2];
	struct linebuf lb;
	size_t len;

	make_pair(fds);
	linebuf_init(&lb, 64);
	errno = 0;
	is_int(linebuf_fill(&lb, fds[0]), -1, "eagain: empty fd gives -1");
	ok(errno == EAGAIN || errno == EWOULDBLOCK, "eagain: errno is EAGAIN");
	ok(write_all(fds[1], "abc", 3), "eof: write a partial line");
	close(fds[1]);
	fds[1] = -1;
	is_int(linebuf_fill(&lb, fds[0]), 3, "eof: partial data first");
	is_int(linebuf_fill(&lb, fds[0]), 0, "eof: then 0");
	ok(!linebuf_has_line(&lb, &len), "eof: partial line is no line");
	is_int(lb.len, 3, "eof: partial bytes still held");
	linebuf_free(&lb);
	close_pair(fds);

	/* A bad descriptor is an error, not EOF. */
	linebuf_init(&lb, 64);
	errno = 0;
	is_int(linebuf_fill(&lb, -1), -1, "ebadf: fill on fd -1 gives -1");
	is_int(errno, EBADF, "ebadf: errno EBADF");
	linebuf_free(&lb);
}

/* A line of exactly max bytes (max above the initial allocation, so the
 * buffer must grow) is accepted. */
static void check_exact_max(size_t max)
{
	int fds[2];
	struct linebuf lb;
	size_t len = 0;
	char *line = xmalloc(max + 1);
	char name[128];

	for (size_t i = 0; i < max; i++)
		line[i] = (char)('a' + i % 26);
	line[max] = '\n';
	make_pair(fds);
	linebuf_init(&lb, max);
	ok(write_all(fds[1], line, max + 1), "max: write");
	/* All max + 1 bytes fit; whether the fill after them answers EAGAIN
	 * or LINEBUF_FULL (the buffer is at its limit) is left open. */
	ssize_t n = drain(&lb, fds[0]);
	snprintf(name, sizeof(name), "max %zu: all bytes read, no EOF", max);
	ok(n != 0 && lb.len == max + 1, name);
	snprintf(name, sizeof(name), "max %zu: line of exactly max bytes accepted", max);
	ok(linebuf_has_line(&lb, &len) && len == max, name);
	snprintf(name, sizeof(name), "max %zu: content intact", max);
	ok(len == max && memcmp(lb.data, line, max) == 0, name);
	snprintf(name, sizeof(name), "max %zu: not overflowed", max);
	ok(!linebuf_overflowed(&lb), name);
	linebuf_consume(&lb, len + 1);
	snprintf(name, sizeof(name), "max %zu: a second max line after consume", max);
	ok(write_all(fds[1], line, max + 1) && drain(&lb, fds[0]) != 0 &&
	   linebuf_has_line(&lb, &len) && len == max &&
	   memcmp(lb.data, line, max) == 0, name);
	free(line);
	linebuf_free(&lb);
	close_pair(fds);
}

/* max + 1 bytes without '\n': overflowed, then LINEBUF_FULL. */
static void check_over_max(size_t max)
{
	int fds[2];
	struct linebuf lb;
	size_t len;
	char *data = xmalloc(max + 1);
	char name[128];

	memset(data, 'x', max + 1);
	make_pair(fds);
	linebuf_init(&lb, max);
	ok(write_all(fds[1], data, max), "over: write max bytes");
	errno = 0;
	ssize_t n = drain(&lb, fds[0]);
	snprintf(name, sizeof(name), "over %zu: max bytes read, then EAGAIN", max);
	ok(n == -1 && errno == EAGAIN && lb.len == max, name);
	snprintf(name, sizeof(name), "over %zu: max bytes without '\\n' not yet overflowed", max);
	ok(!linebuf_overflowed(&lb) && !linebuf_has_line(&lb, &len), name);
	/* One more byte, then a newline and more: only max + 1 are taken. */
	ok(write_all(fds[1], data, 1) && write_all(fds[1], "yy\nzz", 5),
	   "over: write the extra bytes");
	n = drain(&lb, fds[0]);
	snprintf(name, sizeof(name), "over %zu: fill returns LINEBUF_FULL", max);
	is_int(n, LINEBUF_FULL, name);
	snprintf(name, sizeof(name), "over %zu: holds exactly max + 1 bytes", max);
	is_int(lb.len, max + 1, name);
	snprintf(name, sizeof(name), "over %zu: overflowed", max);
	ok(linebuf_overflowed(&lb), name);
	snprintf(name, sizeof(name), "over %zu: no line reported", max);
	ok(!linebuf_has_line(&lb, &len), name);
	snprintf(name, sizeof(name), "over %zu: FULL again, nothing more read", max);
	ok(linebuf_fill(&lb, fds[0]) == LINEBUF_FULL && lb.len == max + 1, name);
	free(data);
	linebuf_free(&lb);
	close_pair(fds);
}

/* A '\n' beyond max (only reachable through linebuf_append) is an
 * overflow, not a line. */
static void check_newline_beyond_max(void)
{
	struct linebuf lb;
	size_t len = 0;

	linebuf_init(&lb, 8);
	linebuf_append(&lb, "0123456789\n", 11);
	ok(!linebuf_has_line(&lb, &len), "beyond: '\\n' at 10 > max 8 is no line");
	ok(linebuf_overflowed(&lb), "beyond: reported overflowed");
	ok(!linebuf_has_line(&lb, &len) && linebuf_overflowed(&lb),
	   "beyond: still overflowed on a second look");
	linebuf_free(&lb);

	linebuf_init(&lb, 8);
	linebuf_append(&lb, "012345678\n", 10);
	ok(!linebuf_has_line(&lb, &len), "beyond: '\\n' at max + 1 is no line");
	ok(linebuf_overflowed(&lb), "beyond: max + 1 overflowed");
	linebuf_free(&lb);

	linebuf_init(&lb, 8);
	linebuf_append(&lb, "01234567\n", 9);
	ok(linebuf_has_line(&lb, &len) && len == 8, "beyond: '\\n' at max is a line");
	ok(!linebuf_overflowed(&lb), "beyond: '\\n' at max is not overflowed");
	linebuf_free(&lb);

	/* A short line first, then an over-long one. */
	linebuf_init(&lb, 8);
	linebuf_append(&lb, "ab\n0123456789abc\nzz", 19);
	ok(linebuf_has_line(&lb, &len) && line_is(&lb, len, "ab"),
	   "beyond: short line before the long one is returned");
	ok(!linebuf_overflowed(&lb), "beyond: not overflowed while a line is held");
	linebuf_consume(&lb, len + 1);
	ok(!linebuf_has_line(&lb, &len), "beyond: long line not returned");
	ok(linebuf_overflowed(&lb), "beyond: long line overflowed");
	linebuf_free(&lb);

	/* Overflow without any '\n' via append. */
	linebuf_init(&lb, 4);
	linebuf_append(&lb, "abcd", 4);
	ok(!linebuf_overflowed(&lb), "append: max bytes without '\\n' not overflowed");
	linebuf_append(&lb, "e", 1);
	ok(linebuf_overflowed(&lb), "append: max + 1 bytes without '\\n' overflowed");
	linebuf_free(&lb);
}

/* The '\n' search resumes correctly across appends and consumes. */
static void check_append_scan(void)
{
	struct linebuf lb;
	size_t len = 0;

	linebuf_init(&lb, 100);
	linebuf_append(&lb, "abc", 3);
	ok(!linebuf_has_line(&lb, &len), "scan: no line in 'abc'");
	linebuf_append(&lb, "def\nxyz", 7);
	ok(linebuf_has_line(&lb, &len) && line_is(&lb, len, "abcdef"),
	   "scan: line found after a later append");
	linebuf_consume(&lb, len + 1);
	ok(!linebuf_has_line(&lb, &len), "scan: rest 'xyz' is no line");
	linebuf_append(&lb, "\n", 1);
	ok(linebuf_has_line(&lb, &len) && line_is(&lb, len, "xyz"),
	   "scan: second line after consume and append");
	linebuf_consume(&lb, len + 1);
	is_int(lb.len, 0, "scan: empty");

	/* Append more than the initial allocation in one go. */
	char big[3000];

	memset(big, 'q', sizeof(big));
	big[sizeof(big) - 1] = '\n';
	linebuf_free(&lb);
	linebuf_init(&lb, sizeof(big));
	linebuf_append(&lb, big, sizeof(big));
	ok(linebuf_has_line(&lb, &len) && len == sizeof(big) - 1 &&
	   memcmp(lb.data, big, len) == 0, "scan: big append holds the line");
	linebuf_free(&lb);
}

int main(void)
{
	check_partial_reads();
	check_many_lines();
	check_eagain_eof();
	check_exact_max(16);
	check_exact_max(2000);
	check_over_max(16);
	check_over_max(2000);
	check_newline_beyond_max();
	check_append_scan();
	done_testing();
}

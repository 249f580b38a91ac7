/*
 * Unit test for client.c on socket pairs: how a request is read and when
 * its bytes leave the socket.  A whole request found in an empty buffer
 * is only peeked at; its bytes are taken out of the socket right before
 * the first byte of the answer, so the client, asleep in read(2) for its
 * reply, is not woken when lonc reads the request (Linux wakes a UNIX
 * socket's readers when its peer drains the send buffer).
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "net.h"
#include "tap.h"

#define MAX_REQUEST 64
#define LIMIT_MS 5000

/* A client on sv[0] (non-blocking, as accepted) taking requests of up
 * to max bytes; sv[1] is its peer. */
static struct client *make_client_max(int sv[2], size_t max)
{
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		perror("socketpair");
		exit(2);
	}
	if (net_set_nonblock(sv[0]) < 0) {
		perror("nonblock");
		exit(2);
	}
	return client_new(sv[0], NULL, max);
}

static struct client *make_client(int sv[2])
{
	return make_client_max(sv, MAX_REQUEST);
}

/* Bytes waiting to be read on fd. */
static int pending(int fd)
{
	int n = -1;

	if (ioctl(fd, FIONREAD, &n) < 0)
		return -1;
	return n;
}

static void put(int fd, const char *s)
{
	size_t n = strlen(s);

	if (write(fd, s, n) != (ssize_t)n) {
		perror("write");
		exit(2);
	}
}

static void check_whole_line(void)
{
	int sv[2];
	struct client *c = make_client(sv);
	char buf[16];

	put(sv[1], "ping\n");
	is_int(client_fill(c), 5, "whole: the line is read");
	is_int(c->in.len, 5, "whole: it is in the buffer");
	ok(memcmp(c->in.data, "ping\n", 5) == 0, "whole: the bytes");
	is_int(c->unread, 5, "whole: and still in the socket");
	is_int(pending(sv[0]), 5, "whole: the socket still holds 5 bytes");

	ok(client_send_line(c, "pong", now_ms() + LIMIT_MS) == 0,
	   "whole: answer sent");
	is_int(c->unread, 0, "whole: answering took the request out");
	is_int(pending(sv[0]), 0, "whole: the socket is empty");
	is_int(read(sv[1], buf, sizeof(buf)), 5, "whole: peer reads 5 bytes");
	ok(memcmp(buf, "pong\n", 5) == 0, "whole: the answer");
	client_free(c);
	close(sv[1]);
}

static void check_partial(void)
{
	int sv[2];
	struct client *c = make_client(sv);
	size_t len;

	put(sv[1], "pa");
	is_int(client_fill(c), 2, "partial: a piece is read");
	is_int(c->unread, 0, "partial: a piece is taken out of the socket");
	is_int(pending(sv[0]), 0, "partial: nothing left in the socket");
	ok(!linebuf_has_line(&c->in, &len), "partial: no line yet");
	errno = 0;
	is_int(client_fill(c), -1, "partial: then nothing");
	is_int(errno, EAGAIN, "partial: EAGAIN");
	put(sv[1], "rt\n");
	is_int(client_fill(c), 3, "partial: the rest is read");
	is_int(c->unread, 0, "partial: and taken out (buffer was not empty)");
	ok(linebuf_has_line(&c->in, &len) && len == 4, "partial: a 4-byte line");
	client_free(c);
	close(sv[1]);
}

static void check_pipelined(void)
{
	int sv[2];
	struct client *c = make_client(sv);
	char buf[16];

	put(sv[1], "a\nbb\n");
	is_int(client_fill(c), 2, "pipelined: only the first line is taken");
	is_int(c->unread, 2, "pipelined: it stays in the socket");
	is_int(pending(sv[0]), 5, "pipelined: both lines are in the socket");
	/* What request_done does once the request is answered. */
	linebuf_consume(&c->in, 2);
	ok(client_send_now(c, "A") == 0, "pipelined: first answer sent");
	is_int(pending(sv[0]), 3, "pipelined: the first line left the socket");
	is_int(client_fill(c), 3, "pipelined: the second line is read");
	ok(memcmp(c->in.data, "bb\n", 3) == 0, "pipelined: its bytes");
	is_int(c->unread, 3, "pipelined: peeked too");
	linebuf_consume(&c->in, 3);
	ok(client_write(c, "B\n", 2, now_ms() + LIMIT_MS) == 0,
	   "pipelined: second answer sent");
	is_int(pending(sv[0]), 0, "pipelined: the socket is empty");
	is_int(read(sv[1], buf, sizeof(buf)), 4, "pipelined: peer reads both answers");
	ok(memcmp(buf, "A\nB\n", 4) == 0, "pipelined: in order");
	client_free(c);
	close(sv[1]);
}

static void check_end(void)
{
	int sv[2];
	struct client *c = make_client(sv);

	close(sv[1]);
	is_int(client_fill(c), 0, "eof: end of file");
	client_free(c);

	c = make_client(sv);
	char big[MAX_REQUEST + 10];
	memset(big, 'x', sizeof(big));
	if (write(sv[1], big, sizeof(big)) != (ssize_t)sizeof(big))
		exit(2);
	ssize_t n = client_fill(c);
	ok(n > 0 && c->unread == 0, "long: a line without '\\n' is taken out");
	while (n > 0)
		n = client_fill(c);
	is_int(n, LINEBUF_FULL, "long: the buffer fills at max + 1");
	ok(linebuf_overflowed(&c->in), "long: and overflows");
	client_free(c);
	close(sv[1]);
}

/* Lines are peeked at up to 4 KiB; longer ones are read as they come. */
static void check_sizes(void)
{
	static char line[6001];
	int sv[2];
	struct client *c = make_client_max(sv, 8192);
	size_t len;

	memset(line, 'y', sizeof(line));
	line[1500] = '\n';
	if (write(sv[1], line, 1501) != 1501)
		exit(2);
	is_int(client_fill(c), 1501, "sizes: a 1500-byte line is read whole");
	is_int(c->unread, 1501, "sizes: and only peeked at");
	ok(linebuf_has_line(&c->in, &len) && len == 1500, "sizes: a 1500-byte line");
	linebuf_consume(&c->in, 1501);
	ok(client_send_now(c, "ok") == 0, "sizes: answered");
	is_int(pending(sv[0]), 0, "sizes: the socket is empty");

	line[1500] = 'y';
	line[6000] = '\n';
	if (write(sv[1], line, 6001) != 6001)
		exit(2);
	ssize_t n, total = 0;
	while ((n = client_fill(c)) > 0)
		total += n;
	is_int(total, 6001, "sizes: a 6000-byte line is read");
	is_int(c->unread, 0, "sizes: and taken out of the socket");
	ok(linebuf_has_line(&c->in, &len) && len == 6000, "sizes: a 6000-byte line");
	client_free(c);
	close(sv[1]);
}

/* The point of peeking: the client, asleep in read(2), is not woken. */
struct sleeper {
	int fd;
	atomic_int tid;
	char buf[16];
	ssize_t got;
};

static void *sleeper_main(void *arg)
{
	struct sleeper *s = arg;

	atomic_store(&s->tid, (int)syscall(SYS_gettid));
	s->got = read(s->fd, s->buf, sizeof(s->buf));
	return NULL;
}

/* A field of /proc/self/task/TID/status, or -1. */
static long task_status(pid_t tid, const char *field)
{
	char path[64], line[128];
	long v = -1;
	size_t flen = strlen(field);

	snprintf(path, sizeof(path), "/proc/self/task/%d/status", (int)tid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, field, flen) == 0 && line[flen] == ':')
			v = strtol(line + flen + 1, NULL, 10);
	fclose(f);
	return v;
}

/* The thread's state letter (R, S, ...), or '?'. */
static char task_state(pid_t tid)
{
	char path[64], line[128];
	char st = '?';

	snprintf(path, sizeof(path), "/proc/self/task/%d/status", (int)tid);
	FILE *f = fopen(path, "r");
	if (!f)
		return st;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, "State:", 6) == 0)
			sscanf(line + 6, " %c", &st);
	fclose(f);
	return st;
}

static void pause_ms(long ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

static void check_no_wake(void)
{
	int sv[2];
	struct client *c = make_client(sv);
	struct sleeper s = { .fd = sv[1], .got = -1 };
	pthread_t t;

	put(sv[1], "req\n");
	if (pthread_create(&t, NULL, sleeper_main, &s) != 0)
		exit(2);
	/* Wait (bounded) until the client sleeps in its read. */
	bool asleep = false;
	for (int i = 0; i < 500 && !asleep; i++) {
		pause_ms(2);
		pid_t tid = atomic_load(&s.tid);
		asleep = tid > 0 && task_state(tid) == 'S';
	}
	ok(asleep, "wake: the client sleeps in read(2) for its reply");
	pause_ms(20);
	pid_t tid = atomic_load(&s.tid);
	long before = task_status(tid, "voluntary_ctxt_switches");
	is_int(client_fill(c), 4, "wake: lonc reads the request");
	pause_ms(50);
	long after = task_status(tid, "voluntary_ctxt_switches");
	ok(before >= 0 && after == before,
	   "wake: reading the request did not wake the client");
	if (after != before)
		printf("# voluntary context switches %ld -> %ld\n", before, after);
	ok(client_send_line(c, "ok", now_ms() + LIMIT_MS) == 0, "wake: answer sent");
	pthread_join(t, NULL);
	is_int(s.got, 3, "wake: the client got its answer");
	client_free(c);
	close(sv[1]);
}

int main(void)
{
	check_whole_line();
	check_partial();
	check_pipelined();
	check_end();
	check_sizes();
	check_no_wake();
	done_testing();
}

/*
 * acceptor.c - one thread per host: accept local clients on the host's
 * sockets and assemble their request lines.
 *
 * The thread waits in epoll: an eventfd (stop, and hand-backs that need
 * prompt attention), the listeners, and every client (one-shot, armed
 * while we expect bytes from it).  A complete request is either answered
 * here (lonc-local commands, fast failures) or pushed into the host
 * queue, after which a worker owns the client until it calls
 * acceptor_return(), which re-arms the client in this epoll set and puts
 * it on the hand-back list: the thread is woken by the client's next
 * bytes (or hang-up), not by the hand-back itself.  Locks: a->mu (the
 * hand-back list and the stopping flag), a leaf taken for a
 * few instructions and at most one epoll_ctl at a time.
 * May call: client, log, net, util.
 */
#include "acceptor.h"

#include <errno.h>
#include <limits.h>
#include <sys/epoll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client.h"
#include "log.h"
#include "net.h"

#define ACCEPT_BACKLOG 512
#define EMFILE_PAUSE_MS 100

struct acceptor {
	const char *name;          /* the host's, for logs */
	const struct acceptor_ops *ops;
	void *owner;
	int socket_mode;
	size_t max_request;
	int client_timeout_ms;
	int nlisten;
	int *listen_fds;
	char **paths;
	int wake_fd;
	pthread_t thread;
	atomic_bool started;       /* the watchdog reads it (acceptor_ping) */

	int epfd;

	pthread_mutex_t mu;
	struct client *returned;   /* protected by mu */
	atomic_bool stopping;      /* written under mu; the thread reads it bare */
	struct acceptor *successor; /* protected by mu; set by handover */
	bool close_requested;      /* protected by mu: acceptor_close ran */
	atomic_bool closing;       /* acceptor_close: the host is going away */
	atomic_bool final;         /* acceptor_finish: no hand-back will come */
	atomic_uint ping, pong;    /* the watchdog's question, the thread's answer */

	/* Owned by the acceptor thread. */
	struct client **reading;   /* clients whose request we are reading */
	size_t nreading, capreading;
	int64_t listen_paused_until;
	bool listen_paused;
};

/* epoll data: a client pointer (8-aligned, tag 0), or a tag. */
#define TAG_WAKE 1
#define TAG_LISTEN 2   /* | (index << 3) */
#define TAG_MASK 7

static const char *host_name(const struct acceptor *a)
{
	return a->name;
}

static char *socket_path(const char *dir, const char *name)
{
	size_t len = strlen(dir) + strlen(name) + 2;
	char *path = xmalloc(len);

	snprintf(path, len, "%s/%s", dir, name);
	return path;
}

/* An acceptor with its paths set and every listener closed (-1). */
static struct acceptor *alloc_acceptor(const struct acceptor_conf *conf,
				       const struct acceptor_ops *ops, void *owner)
{
	struct acceptor *a = xcalloc(1, sizeof(*a));

	a->name = conf->name;
	a->ops = ops;
	a->owner = owner;
	a->socket_mode = conf->socket_mode;
	a->max_request = conf->max_request;
	a->client_timeout_ms = conf->client_timeout_ms;
	a->wake_fd = a->epfd = -1;
	pthread_mutex_init(&a->mu, NULL);
	a->nlisten = (int)conf->n_sockets;
	a->listen_fds = xcalloc((size_t)a->nlisten, sizeof(int));
	a->paths = xcalloc((size_t)a->nlisten, sizeof(char *));
	for (int i = 0; i < a->nlisten; i++) {
		a->listen_fds[i] = -1;
		a->paths[i] = socket_path(conf->socket_dir, conf->sockets[i]);
	}
	a->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	a->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (a->wake_fd < 0 || a->epfd < 0) {
		log_errno(LOG_ERR, "host=%s event=eventfd_failed", a->name);
		acceptor_free(a);
		return NULL;
	}
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = TAG_WAKE };
	if (epoll_ctl(a->epfd, EPOLL_CTL_ADD, a->wake_fd, &ev) < 0) {
		log_errno(LOG_ERR, "host=%s event=epoll_failed", a->name);
		acceptor_free(a);
		return NULL;
	}
	return a;
}

static int bind_one(struct acceptor *a, int i)
{
	int fd = net_listen_unix(a->paths[i], a->socket_mode, ACCEPT_BACKLOG);

	if (fd < 0) {
		log_errno(LOG_ERR, "host=%s event=listen_failed socket=%s",
			  host_name(a), a->paths[i]);
		return -1;
	}
	a->listen_fds[i] = fd;
	return 0;
}

struct acceptor *acceptor_new(const struct acceptor_conf *conf,
			      const struct acceptor_ops *ops, void *owner)
{
	struct acceptor *a = alloc_acceptor(conf, ops, owner);

	for (int i = 0; a && i < a->nlisten; i++) {
		if (bind_one(a, i) < 0) {
			acceptor_free(a);
			return NULL;
		}
	}
	return a;
}

static int find_path(const struct acceptor *a, const char *path)
{
	for (int i = 0; i < a->nlisten; i++)
		if (a->paths[i] && !strcmp(a->paths[i], path))
			return i;
	return -1;
}

struct acceptor *acceptor_new_successor(const struct acceptor_conf *conf,
					const struct acceptor_ops *ops, void *owner,
					const struct acceptor *old)
{
	struct acceptor *a = alloc_acceptor(conf, ops, owner);

	/* Names the old acceptor listens on are taken over at handover;
	 * only new names are bound now, so a failure leaves old intact. */
	for (int i = 0; a && i < a->nlisten; i++) {
		if (find_path(old, a->paths[i]) >= 0)
			continue;
		if (bind_one(a, i) < 0) {
			acceptor_free(a);
			return NULL;
		}
	}
	return a;
}

const char *acceptor_path(const struct acceptor *a, int i)
{
	return i < a->nlisten ? a->paths[i] : NULL;
}

static void wake(struct acceptor *a)
{
	uint64_t one = 1;
	ssize_t n = write(a->wake_fd, &one, sizeof(one));

	(void)n; /* a full counter already means "wake up" */
}

/* Wait for the client's next bytes (one-shot): the first event after
 * this disarms it again.  0 or -1 (errno). */
static int arm(struct acceptor *a, struct client *c)
{
	struct epoll_event ev = {
		.events = EPOLLIN | EPOLLRDHUP | EPOLLONESHOT,
		.data.ptr = c,
	};

	if (c->epfd == a->epfd)
		return epoll_ctl(a->epfd, EPOLL_CTL_MOD, c->fd, &ev);
	c->epfd = a->epfd;
	return epoll_ctl(a->epfd, EPOLL_CTL_ADD, c->fd, &ev);
}

/* c back to a (or to a's successor, after a reload's hand-over), to
 * be read on: on the hand-back list, armed for its next bytes. */
static void give_back(struct acceptor *a, struct client *c)
{
	bool need_wake;

	/* A no-op for an answered client: the answer settled it. */
	client_settle(c);
	pthread_mutex_lock(&a->mu);
	if (a->successor) {
		struct acceptor *next = a->successor;

		pthread_mutex_unlock(&a->mu);
		c->acc = next;
		give_back(next, c);
		return;
	}
	if (a->stopping) {
		pthread_mutex_unlock(&a->mu);
		client_free(c);
		return;
	}
	/* On the list and armed in one critical section: the thread drains
	 * the list (under mu) before it looks at events, so any event for c
	 * finds c already handed back. */
	c->next = a->returned;
	a->returned = c;
	/* A client with bytes already buffered (a pipelined request) is not
	 * armed here: the acceptor may hand it to a worker at once, and an
	 * armed client could then be read by both.  take_returned arms it
	 * if it stays; wake the thread for it.  Any other client waits for
	 * its next event: the thread never sleeps longer than
	 * client_timeout, so it sees the client's read deadline in time
	 * without being woken for every hand-back. */
	if (c->in.len == 0 && arm(a, c) < 0)
		log_errno(LOG_WARNING, "host=%s event=epoll_failed", host_name(a));
	need_wake = c->in.len > 0;
	pthread_mutex_unlock(&a->mu);
	if (need_wake)
		wake(a);
}

void acceptor_return(struct client *c)
{
	struct acceptor *a = c->acc;

	/* The request is done: its line leaves the buffer, and the
	 * client's read deadline runs from now (the thread, which is not
	 * woken for a hand-back, keeps it when it takes c back). */
	linebuf_consume(&c->in, c->req_len + 1);
	c->req_len = 0;
	c->deadline = now_ms() + a->client_timeout_ms;
	give_back(a, c);
}

bool acceptor_answer(struct client *c, const char *text, int timeout_ms)
{
	if (net_peer_closed(c->fd) ||
	    client_send_line(c, text, now_ms() + timeout_ms) < 0) {
		client_free(c);
		return false;
	}
	acceptor_return(c);
	return true;
}

/* Put c in the reading set with its read deadline. */
static void add_reading(struct acceptor *a, struct client *c, int64_t deadline)
{
	if (a->nreading == a->capreading) {
		a->capreading = a->capreading ? 2 * a->capreading : 16;
		a->reading = xrealloc(a->reading,
				      a->capreading * sizeof(*a->reading));
	}
	c->deadline = deadline;
	c->slot = a->nreading;
	a->reading[a->nreading++] = c;
}

/* Take c out of the reading set (it went to a worker, or is closed). */
static void remove_reading(struct acceptor *a, struct client *c)
{
	size_t i = c->slot;

	if (i >= a->nreading || a->reading[i] != c)
		return;
	a->reading[i] = a->reading[--a->nreading];
	a->reading[i]->slot = i;
	c->slot = SIZE_MAX;
}

/* Keep reading c: in the set with its deadline, armed for its next
 * bytes; a client that cannot be armed is closed. */
static void keep_reading(struct acceptor *a, struct client *c, int64_t deadline)
{
	add_reading(a, c, deadline);
	if (arm(a, c) < 0) {
		log_errno(LOG_WARNING, "host=%s event=epoll_failed", host_name(a));
		remove_reading(a, c);
		client_free(c);
	}
}

static void pause_listeners(struct acceptor *a, bool pause);

/* Answer a lonc-generated line; a client that cannot take it at once is
 * dropped (the acceptor never waits on one client).  Returns false when
 * the client was closed. */
static bool answer_now(struct acceptor *a, struct client *c, const char *text)
{
	if (client_send_now(c, text) == 0)
		return true;
	log_msg(LOG_INFO, "host=%s event=client_write_failed answer=%s",
		host_name(a), text);
	client_free(c);
	return false;
}

/* Handle the complete request line held by c: the owner takes it, or
 * gives the answer.  Returns true when the acceptor still owns the
 * client (answered here), false when the owner took it or it was
 * closed. */
static bool dispatch(struct acceptor *a, struct client *c, size_t len)
{
	const char *answer = a->ops->request(a->owner, c, len);

	if (!answer)
		return false;
	linebuf_consume(&c->in, len + 1);
	return answer_now(a, c, answer);
}

/* Act on whatever complete lines c holds.  Returns true when the client
 * should stay in the reading set. */
static bool process(struct acceptor *a, struct client *c)
{
	size_t len;

	for (;;) {
		if (linebuf_has_line(&c->in, &len)) {
			if (!dispatch(a, c, len))
				return false;
			continue;
		}
		if (linebuf_overflowed(&c->in)) {
			a->ops->too_long(a->owner);
			log_msg(LOG_WARNING,
				"host=%s event=request_too_long max_request_bytes=%zu",
				host_name(a), a->max_request);
			/* The rest of the line cannot be told from a next
			 * request: answer and close. */
			if (client_send_now(c, "error:request_too_long") < 0)
				log_msg(LOG_INFO, "host=%s event=client_write_failed",
					host_name(a));
			client_free(c);
			return false;
		}
		return true;
	}
}

/* Read what a client sent.  Returns true when it stays in the set. */
static bool read_client(struct acceptor *a, struct client *c)
{
	for (;;) {
		ssize_t n = client_fill(c);

		if (n > 0 || n == LINEBUF_FULL) {
			if (!process(a, c))
				return false;
			if (n == LINEBUF_FULL)
				return true;
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return true;
		if (n < 0)
			log_errno(LOG_DEBUG, "host=%s event=client_read_failed",
				  host_name(a));
		else if (c->in.len > 0)
			log_msg(LOG_INFO, "host=%s event=client_eof_partial bytes=%zu",
				host_name(a), c->in.len);
		client_free(c);
		return false;
	}
}

static void accept_clients(struct acceptor *a, int lfd, int budget)
{
	for (int i = 0; i < budget; i++) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE ||
			    errno == ENOBUFS || errno == ENOMEM) {
				log_errno(LOG_ERR, "host=%s event=accept_failed pause_ms=%d",
					  host_name(a), EMFILE_PAUSE_MS);
				a->listen_paused_until = now_ms() + EMFILE_PAUSE_MS;
				pause_listeners(a, true);
			} else if (errno != EAGAIN && errno != EWOULDBLOCK &&
				   errno != EINTR && errno != ECONNABORTED) {
				log_errno(LOG_WARNING, "host=%s event=accept_failed",
					  host_name(a));
			}
			return;
		}
		struct client *c = client_new(fd, a, a->max_request);
		/* The request usually follows the connect at once: try to
		 * read it now and save a trip through epoll. */
		c->slot = SIZE_MAX;
		if (read_client(a, c))
			keep_reading(a, c, now_ms() + a->client_timeout_ms);
	}
}

/* The socket names go and the listeners refuse new connections (from
 * any thread: both are safe while the acceptor runs); the clients already
 * in their backlogs stay there for the thread to take and answer. */
static void shut_listeners(struct acceptor *a)
{
	for (int i = 0; i < a->nlisten; i++) {
		if (a->listen_fds[i] < 0)
			continue;
		unlink(a->paths[i]);
		if (shutdown(a->listen_fds[i], SHUT_RD) < 0)
			log_errno(LOG_WARNING, "host=%s event=listener_shutdown_failed socket=%s",
				  host_name(a), a->paths[i]);
	}
}

/* The thread's part of closing: take what waits in the backlogs (each
 * will be answered), then close the listeners. */
static void drain_listeners(struct acceptor *a)
{
	for (int i = 0; i < a->nlisten; i++) {
		int fd = a->listen_fds[i];

		if (fd < 0)
			continue;
		accept_clients(a, fd, INT_MAX);
		epoll_ctl(a->epfd, EPOLL_CTL_DEL, fd, NULL);
		close(fd);
		a->listen_fds[i] = -1;
	}
}

/* Closing and told that no client will be handed back: done once every
 * client has been answered and left (or timed out).  During a shutdown
 * a client with no line begun is not waited for. */
static bool finished(struct acceptor *a)
{
	bool empty;

	if (stopping()) {
		size_t j = 0;

		for (size_t i = 0; i < a->nreading; i++) {
			struct client *c = a->reading[i];

			if (c->in.len == 0) {
				client_free(c);
				continue;
			}
			c->slot = j;
			a->reading[j++] = c;
		}
		a->nreading = j;
	}
	pthread_mutex_lock(&a->mu);
	empty = a->returned == NULL;
	pthread_mutex_unlock(&a->mu);
	return empty && a->nreading == 0;
}

/* Take back the clients that workers returned.  They are armed already;
 * a pipelined request already in a buffer is acted on now. */
static void take_returned(struct acceptor *a)
{
	struct client *list, *next;

	pthread_mutex_lock(&a->mu);
	list = a->returned;
	a->returned = NULL;
	pthread_mutex_unlock(&a->mu);
	for (struct client *c = list; c; c = next) {
		/* Its read deadline runs from the hand-back (host.c,
		 * request_done) or, for a client a reload handed over, from
		 * when it first came; it is not restarted here. */
		int64_t deadline = c->deadline;

		next = c->next;
		c->next = NULL;
		if (c->in.len == 0)
			add_reading(a, c, deadline);   /* armed by acceptor_return */
		else if (process(a, c))
			keep_reading(a, c, deadline);
	}
}

static void pause_listeners(struct acceptor *a, bool pause)
{
	for (int i = 0; i < a->nlisten; i++) {
		struct epoll_event ev = {
			.events = pause ? 0 : EPOLLIN,
			.data.u64 = TAG_LISTEN | ((uint64_t)i << 3),
		};

		if (a->listen_fds[i] >= 0)
			epoll_ctl(a->epfd, EPOLL_CTL_MOD, a->listen_fds[i], &ev);
	}
	a->listen_paused = pause;
}

/* A client's read deadline; a shutdown may bring it closer. */
static int64_t read_deadline(const struct client *c)
{
	int64_t stop = stop_deadline();

	return c->deadline < stop ? c->deadline : stop;
}

static int64_t next_deadline(struct acceptor *a)
{
	int64_t next = -1;

	for (size_t i = 0; i < a->nreading; i++)
		if (next < 0 || read_deadline(a->reading[i]) < next)
			next = read_deadline(a->reading[i]);
	if (a->listen_paused && (next < 0 || a->listen_paused_until < next))
		next = a->listen_paused_until;
	return next;
}

static void expire_clients(struct acceptor *a, int64_t now)
{
	size_t j = 0;

	for (size_t i = 0; i < a->nreading; i++) {
		struct client *c = a->reading[i];

		if (read_deadline(c) <= now) {
			log_msg(LOG_INFO,
				"host=%s event=client_timeout reason=client_read bytes=%zu",
				host_name(a), c->in.len);
			client_free(c);
			continue;
		}
		c->slot = j;
		a->reading[j++] = c;
	}
	a->nreading = j;
}

/* Handle one epoll event. */
static void on_event(struct acceptor *a, const struct epoll_event *ev, int budget)
{
	uint64_t tag = ev->data.u64 & TAG_MASK;

	if (tag == TAG_WAKE) {
		uint64_t v;
		ssize_t n = read(a->wake_fd, &v, sizeof(v));

		(void)n;
	} else if (tag == TAG_LISTEN) {
		accept_clients(a, a->listen_fds[ev->data.u64 >> 3], budget);
	} else {
		struct client *c = ev->data.ptr;

		/* Out of the set first: read_client may hand c to a worker
		 * or free it.  One-shot: c is disarmed now; re-armed if it
		 * stays, with its first deadline (trickling bytes do not
		 * extend it). */
		int64_t deadline = c->deadline;

		remove_reading(a, c);
		/* Hung up (a UNIX peer that closed; one that only shut down
		 * its writing side gives EPOLLRDHUP alone) with nothing
		 * buffered: close without reading the end of file.  Almost
		 * always a client that read its reply and left; a request it
		 * may have written just before closing has nobody to answer
		 * and is dropped unread, as a worker drops the request of a
		 * client that hung up while it waited (check_ends). */
		if ((ev->events & EPOLLHUP) && c->in.len == 0) {
			client_free(c);
			return;
		}
		if (read_client(a, c))
			keep_reading(a, c, deadline);
	}
}

static void *acceptor_main(void *arg)
{
	struct acceptor *a = arg;
	struct epoll_event events[64];

	/* Thread names (top -H, ps -L) carry the host: acc:, mgr:, wrk:. */
	thread_name("acc", a->name);
	for (int i = 0; i < a->nlisten; i++) {
		struct epoll_event ev = {
			.events = EPOLLIN,
			.data.u64 = TAG_LISTEN | ((uint64_t)i << 3),
		};

		if (epoll_ctl(a->epfd, EPOLL_CTL_ADD, a->listen_fds[i], &ev) < 0)
			log_errno(LOG_ERR, "host=%s event=epoll_failed socket=%s",
				  host_name(a), a->paths[i]);
	}
	/* Hand-backs are taken once per wake-up, after epoll_wait: one that
	 * needs attention (a pipelined request) writes the eventfd, and any
	 * other waits, armed, for its client's next event. */
	while (!atomic_load(&a->stopping)) {
		int64_t now = now_ms();

		atomic_store(&a->pong, atomic_load(&a->ping));
		if (atomic_load(&a->closing))
			drain_listeners(a);
		if (atomic_load(&a->final) && finished(a))
			break;

		if (a->listen_paused && a->listen_paused_until <= now)
			pause_listeners(a, false);
		/* With nothing to time out, still wake within client_timeout:
		 * a client handed back meanwhile has a later deadline than
		 * that, and the hand-back need not wake us. */
		int64_t deadline = next_deadline(a);
		if (deadline < 0)
			deadline = now + a->client_timeout_ms;
		int timeout = deadline <= now ? 0 : (int)(deadline - now);
		int n = epoll_wait(a->epfd, events, 64, timeout);
		if (n < 0) {
			if (errno != EINTR) {
				log_errno(LOG_ERR, "host=%s event=epoll_failed", host_name(a));
				usleep(10000);
			}
			n = 0;
		}
		/* First the eventfd and new connections (their requests are
		 * what a client waits for now; closing a hung-up client can
		 * wait a few microseconds).  The eventfd is read before the
		 * hand-backs are taken, so a hand-back listed after that take
		 * leaves it readable and the next epoll_wait returns at once.
		 * Then hand-backs, before the client events (an event may be
		 * for one of them). */
		/* A quiet wake-up (a few events) accepts one connection per
		 * listener: the listener is level-triggered, so another that
		 * waits makes the next epoll_wait return at once, and the
		 * common case saves an accept4 that would fail with EAGAIN. */
		int budget = n > 4 ? 64 : 1;

		for (int i = 0; i < n; i++)
			if ((events[i].data.u64 & TAG_MASK) != 0)
				on_event(a, &events[i], budget);
		take_returned(a);
		for (int i = 0; i < n; i++)
			if ((events[i].data.u64 & TAG_MASK) == 0)
				on_event(a, &events[i], budget);
		expire_clients(a, now_ms());
	}
	/* Stopped for a hand-over: the reading clients stay, and
	 * acceptor_handover passes them on. */
	return NULL;
}

int acceptor_start(struct acceptor *a)
{
	pthread_attr_t attr;
	int rc;

	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 128 * 1024);
	rc = pthread_create(&a->thread, &attr, acceptor_main, a);
	pthread_attr_destroy(&attr);
	if (rc) {
		log_msg(LOG_ERR, "host=%s event=thread_failed thread=acceptor error=\"%s\"",
			host_name(a), strerror(rc));
		return -1;
	}
	atomic_store(&a->started, true);
	return 0;
}

static void stop_thread(struct acceptor *a)
{
	if (!atomic_load(&a->started))
		return;
	pthread_mutex_lock(&a->mu);
	a->stopping = true;
	pthread_mutex_unlock(&a->mu);
	wake(a);
	pthread_join(a->thread, NULL);
	atomic_store(&a->started, false);
}

/* Close listener i and remove its socket file. */
static void drop_listener(struct acceptor *a, int i)
{
	if (a->listen_fds[i] >= 0) {
		close(a->listen_fds[i]);
		a->listen_fds[i] = -1;
		unlink(a->paths[i]);
	}
}

bool acceptor_ping(struct acceptor *a)
{
	if (!atomic_load(&a->started) || atomic_load(&a->final))
		return true;
	unsigned sent = atomic_load(&a->ping);
	bool answered = atomic_load(&a->pong) == sent;

	atomic_store(&a->ping, sent + 1);
	wake(a);
	return answered;
}

void acceptor_close(struct acceptor *a)
{
	pthread_mutex_lock(&a->mu);
	bool first = !a->close_requested;
	a->close_requested = true;
	pthread_mutex_unlock(&a->mu);
	if (!first)
		return;
	/* Before the thread is told: it closes the listeners then. */
	shut_listeners(a);
	atomic_store(&a->closing, true);
	wake(a);
}

void acceptor_finish(struct acceptor *a)
{
	acceptor_close(a);
	if (!atomic_load(&a->started))
		return;
	atomic_store(&a->final, true);
	wake(a);
	pthread_join(a->thread, NULL);
	atomic_store(&a->started, false);
}

/* A name the host no longer has, at a hand-over: the name goes and the
 * listener refuses new connections at once; the clients already in its
 * backlog are taken for the successor to answer (they asked the same
 * host), then the listener is closed.  Called with old's thread
 * stopped.  Returns the list with the taken clients in front. */
static struct client *retire_listener(struct acceptor *old, int i,
				      struct acceptor *succ, struct client *list)
{
	int fd = old->listen_fds[i], cfd;

	unlink(old->paths[i]);
	if (shutdown(fd, SHUT_RD) < 0)
		log_errno(LOG_WARNING, "host=%s event=listener_shutdown_failed socket=%s",
			  host_name(old), old->paths[i]);
	while ((cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
		struct client *c = client_new(cfd, succ, succ->max_request);

		c->deadline = now_ms() + succ->client_timeout_ms;
		c->next = list;
		list = c;
	}
	close(fd);
	old->listen_fds[i] = -1;
	return list;
}

void acceptor_handover(struct acceptor *old, struct acceptor *succ)
{
	struct client *list = NULL, *back;

	/* From now on hand-backs go to succ (even while old's thread
	 * stops); the old thread ends; what it was reading is not lost. */
	pthread_mutex_lock(&old->mu);
	old->successor = succ;
	pthread_mutex_unlock(&old->mu);
	stop_thread(old);
	for (int i = 0; i < old->nlisten; i++) {
		int j = find_path(succ, old->paths[i]);

		if (j >= 0 && succ->listen_fds[j] < 0) {
			succ->listen_fds[j] = old->listen_fds[i];
			old->listen_fds[i] = -1;
		} else if (old->listen_fds[i] >= 0) {
			list = retire_listener(old, i, succ, list);
		}
	}
	pthread_mutex_lock(&old->mu);
	old->stopping = false;
	back = old->returned;
	old->returned = NULL;
	pthread_mutex_unlock(&old->mu);
	while (back) {
		struct client *c = back;

		back = c->next;
		c->next = list;
		list = c;
	}
	for (size_t i = 0; i < old->nreading; i++) {
		old->reading[i]->next = list;
		list = old->reading[i];
	}
	old->nreading = 0;
	for (struct client *c = list, *next; c; c = next) {
		next = c->next;
		c->acc = succ;
		give_back(succ, c);
	}
}

void acceptor_free(struct acceptor *a)
{
	if (!a)
		return;
	acceptor_finish(a);
	/* Listeners of an acceptor that never ran (a failed start or
	 * reload) or that handed over: close what is still ours. */
	for (int i = 0; i < a->nlisten; i++) {
		drop_listener(a, i);
		free(a->paths[i]);
	}
	for (size_t i = 0; i < a->nreading; i++)
		client_free(a->reading[i]);
	/* Clients returned after the thread ended. */
	for (struct client *c = a->returned, *next; c; c = next) {
		next = c->next;
		client_free(c);
	}
	if (a->wake_fd >= 0)
		close(a->wake_fd);
	if (a->epfd >= 0)
		close(a->epfd);
	pthread_mutex_destroy(&a->mu);
	free(a->listen_fds);
	free(a->paths);
	free(a->reading);
	free(a);
}

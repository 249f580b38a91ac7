/*
 * net.h - socket helpers.  These give the calling thread blocking
 * semantics bounded by a deadline (a now_ms() value), waiting in poll(2);
 * they never block in a read or write themselves (MSG_DONTWAIT), whatever
 * the descriptor's mode.  The one exception is net_recv_slice, for a
 * worker waiting on lond's reply.  No locks.
 */
#ifndef LONC_NET_H
#define LONC_NET_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "util.h"

/* Set O_NONBLOCK and FD_CLOEXEC.  0 or -1. */
int net_set_nonblock(int fd) WUR;

/* Resolve `host` (name or literal; resolved on every call) and connect
 * to `port` by TCP, trying each address until deadline.  Returns a
 * non-blocking fd with TCP_NODELAY, or -1 with errno (ETIMEDOUT,
 * ECONNREFUSED, EHOSTUNREACH, ... ; EADDRNOTAVAIL when resolution failed)
 * and a short reason in *why. */
int net_connect_tcp(const char *host, int port, int64_t deadline,
		    const char **why) WUR;

/* Write all of buf before deadline.  0, or -1 with errno (ETIMEDOUT,
 * EPIPE, ...). */
int net_write_all(int fd, const void *buf, size_t len, int64_t deadline) WUR;

/* The same for a reader that may be slow: fails only after idle_ms
 * without any progress, however long the whole takes. */
int net_write_steady(int fd, const void *buf, size_t len, int idle_ms) WUR;

/* Read what is there (at most len), waiting until deadline.  Bytes read,
 * 0 at end of file, -1 with errno (ETIMEDOUT, ECONNRESET, ...). */
ssize_t net_read(int fd, void *buf, size_t len, int64_t deadline) WUR;

/* Wait until fd is readable (or hung up) before deadline.  0, or -1
 * with errno ETIMEDOUT. */
int net_wait_readable(int fd, int64_t deadline) WUR;

/* Wait until fd can take more bytes (or has failed) before deadline.
 * 0, or -1 with errno ETIMEDOUT. */
int net_wait_writable(int fd, int64_t deadline) WUR;

/* Make a connected socket blocking for net_recv_slice, each call of which
 * then waits at most slice_ms (SO_RCVTIMEO).  0 or -1. */
int net_set_recv_slice(int fd, int slice_ms) WUR;

/* One blocking recv(2) on such a socket: waiting and reading in one
 * system call, where poll and read take two.  Bytes read, 0 at end of
 * file, -1 with errno (EAGAIN: the slice passed with nothing to read;
 * the caller checks its deadlines and calls again). */
ssize_t net_recv_slice(int fd, void *buf, size_t len) WUR;

/* Create a listening UNIX stream socket at path (an old socket file
 * there is replaced), with permissions `mode` given as it is made (a
 * umask around bind, never a chmod by name), and owned by the effective
 * user; checked afterwards.  Non-blocking fd or -1 (EEXIST when what
 * is at the path is not the socket just made). */
int net_listen_unix(const char *path, int mode, int backlog) WUR;

/* True when the peer of a connected socket has hung up (EOF or error
 * pending and nothing left to read); never blocks. */
int net_peer_closed(int fd);

#endif

/*
 * testlond -- the test lond for lonc.
 *
 * A small, fast stand-in for LON-CAPA's lond: it speaks the lond side of the
 * lonc -> lond wire protocol (doc: /work/shared/protocol.md section 2), plus
 * a set of test commands (echo, delay, bytes, hang, ...) and switchable
 * faults, so that lonc's tests, demo and benchmark have a peer to talk to.
 *
 * Threads:
 *   - the main thread parses the command line, listens, prints
 *     "ready port=<N>" on stdout and accepts connections; it waits in
 *     poll() on the listening socket and on a wake-up pipe, and returns
 *     (exit status 0) once the pipe becomes readable;
 *   - the signal thread waits in sigwait() for SIGTERM/SIGINT (blocked in
 *     every thread, so no asynchronous handler runs anywhere) and writes
 *     one byte to the wake-up pipe;
 *   - every accepted TCP connection is served by its own detached thread
 *     (small stack, blocking I/O); with --fork, by its own child process
 *     instead, as the real lond forks per connection (the signal thread
 *     then also takes SIGCHLD and reaps the children).
 * Shared state is limited to the read-only configuration (set before the
 * first thread starts; this includes the OpenSSL server context, which
 * OpenSSL allows to be shared once set up) and one shared mapping
 * (MAP_SHARED, so that --fork children share it too) with the global fault
 * and the statistics counters (atomic), the log ids (atomic) and the
 * record: counts (process-shared mutex).
 *
 * Per connection: the first line is either "ctl:<cmd>" (one answer, close)
 * or an init line that selects a handshake mode from the mode table (ssl,
 * local, insecure). After the handshake, setup commands (version:, sethost:,
 * ekey) and normal commands are served one line at a time. With
 * --no-handshake every line but a first "ctl:" is a command (no key).
 *
 * ssl mode (protocol.md 2.4), when --tls-cert/--tls-key/--tls-ca are given:
 * "ok:ssl", then a TLS server handshake on the same socket (TLS 1.2 or
 * newer, client certificate required and verified against --tls-ca), one
 * line over TLS with a fresh key (32 lower-case hex digits), the
 * close_notify exchange in both directions, then plain text again with
 * key = pack("H32", line). The socket is non-blocking only during TLS (with
 * a deadline); OpenSSL's read-ahead is off, so it reads exactly one record
 * at a time and the plain text after the peer's close_notify stays in the
 * socket for the line reader. Without certificates (or under fault
 * no_certificates) init:ssl gets a challenge, as a lond without
 * certificates answers. local mode reads and deletes the key file, which
 * must be a regular file of mode 0600.
 *
 * Faults are global and checked where they act: at the init line
 * (refusals, hangs), inside the TLS exchange (tls_no_close_notify), after
 * each reply (close_after_reply; extra_after_reply: one more line,
 * unasked, after each reply), before each read() of a served connection
 * (stop_reading: the thread stops reading, polls the fault every 100 ms
 * and closes once it is cleared). Control connections are never affected.
 *
 * Protocol settings (struct settings: --sethost, --init, --key-id-order,
 * --require-version, --tls-close-notify, --delay, and their ctl:
 * commands) make it a lond that needs one value of each of lonc's
 * protocol switches and answers the other as such a lond would.
 *
 * Keys never appear in the log.
 */

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/sockios.h>

#include <gcrypt.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

/* ------------------------------------------------------------------------ */
/* Constants                                                                */
/* ------------------------------------------------------------------------ */

#define TESTLOND_VERSION "testlond-1.0"

#define THREAD_STACK_SIZE   (256u * 1024u)
#define READ_BUF_INITIAL    (16u * 1024u)
#define READ_BUF_MAX        (256u * 1024u * 1024u) /* longest line: 256 MiB - 1 */
#define BUF_TRIM_THRESHOLD  (1u * 1024u * 1024u)
#define BUF_TRIM_IDLE_MS    1000          /* free big buffers after this idle time */
#define PATTERN_CHUNK       (26u * 2520u) /* multiple of 26: chunks start at 'a' */
#define BYTES_MAX           (1ull << 30)  /* bytes:/closemid:/... up to 1 GiB */
#define SLEEP_MS_MAX        86400000ull   /* delay:/drip: up to one day */
#define HOST_ID_MAX         255u
#define PEER_VERSION_MAX    63u
#define GARBAGE_LEN         64u
#define BUILDKEY_DIGITS     10u
#define IDEA_KEY_LEN        16u
#define IDEA_BLOCK_LEN      8u
#define LISTEN_BACKLOG      4096
#define TLS_TIMEOUT_MS      10000ull      /* default --tls-timeout */
#define STOP_POLL_MS        100           /* fault stop_reading: fault poll */
#define LOCAL_KEY_MODE      0600
#define STEADY_SLICE_MS     50ull         /* steady: one piece every 50 ms */
#define RESET_DRAIN_MS      10000ull      /* resetmid: wait for the peer's ack */
#define RESET_POLL_MS       5ull
#define ENC_ENDLESS_LEN     (1ull << 40)  /* encendless: the length it claims */

/* ------------------------------------------------------------------------ */
/* Configuration (written by main before any thread starts, then read-only) */
/* ------------------------------------------------------------------------ */

struct config {
    const char *port;
    const char *bind_addr;
    const char *host_id;
    const char *client_id;
    const char *tls_cert;  /* --tls-cert/--tls-key/--tls-ca: all or none */
    const char *tls_key;
    const char *tls_ca;
    unsigned long long tls_timeout_ms;
    bool no_handshake;
    bool fork_mode; /* --fork: a child process per connection */
    bool quiet;
};

static struct config g_config = {
    .port = "0",
    .bind_addr = "127.0.0.1",
    .host_id = "testlond",
    .client_id = "lonc-test",
    .tls_timeout_ms = TLS_TIMEOUT_MS,
    .quiet = false,
};

/* The TLS server context, NULL without certificates (read-only once set). */
static SSL_CTX *g_tls_ctx;

static char g_pattern[PATTERN_CHUNK];

/* ------------------------------------------------------------------------ */
/* Shared state                                                             */
/* ------------------------------------------------------------------------ */

/*
 * Everything a ctl: command reads or changes (the fault, the statistics,
 * the record: counts) and the log ids live in one MAP_SHARED|MAP_ANONYMOUS
 * mapping, made before anything else: with --fork every child process
 * updates the same totals, so a ctl: command served by any child sees them
 * all; in thread mode the mapping is just memory. The fault and the
 * counters are atomics, which must be lock-free to work across processes
 * (checked at start-up under --fork); the record: table has a
 * process-shared, robust mutex.
 */
#define RECORD_SLOTS 256
#define RECORD_TOKEN 64

struct stats {
    atomic_ullong connections;
    atomic_llong active;
    atomic_llong max_active;
    atomic_ullong handshakes;
    atomic_ullong requests;
    atomic_ullong encrypted;
    atomic_ullong tls;        /* completed TLS key exchanges */
    atomic_ullong tls_failed; /* TLS key exchanges that failed */
    atomic_ullong local;      /* completed local key exchanges */
    atomic_ullong accepted;   /* TCP connections accepted, ctl: ones not */
    atomic_llong handshaking; /* connections inside their handshake now */
    atomic_llong max_handshaking;
    atomic_ullong sethosts;   /* bare sethost:<id> lines answered ok */
};

/*
 * How this lond speaks the points of the protocol that lonc has switches
 * for (lonc.yaml(5): sethost_mode, init_version, key_id_order,
 * version_string, tls_close_notify), plus the per-line delay. Set by the
 * command line, changed by ctl: commands; each is read where it acts
 * (the init line, each sethost: line, ekey, version:, the TLS exchange,
 * each line read), so a change reaches connections already open at
 * their next such step.
 */
enum sethost_policy {
    SETHOST_INLINE, /* sethost:<id> and sethost:<id>:<rest> */
    SETHOST_BARE,   /* only sethost:<id>; the in-line form: unknown_cmd */
    SETHOST_NONE,   /* no sethost: at all (a lond with one host ID) */
};
enum init_policy {
    INIT_ANY,       /* init, init::<v>, init:ssl, init:ssl:<v> */
    INIT_PLAIN,     /* init::<v> and init:ssl:<v> refused */
    INIT_VERSIONED, /* init and init:ssl refused (and an empty <v>) */
};
enum key_order {
    KEY_REMOTE_FIRST, /* ekey key from <this lond's ID><client ID> */
    KEY_LOCAL_FIRST,  /* <client ID><this lond's ID> */
};
enum close_notify_policy {
    CLOSE_NOTIFY_SEND, /* close_notify both ways */
    CLOSE_NOTIFY_OMIT, /* read the client's, send none, go on in plain text */
};

#define REQUIRE_VERSION_MAX 63u

struct settings {
    atomic_int sethost;      /* enum sethost_policy */
    atomic_int init;         /* enum init_policy */
    atomic_int key_order;    /* enum key_order */
    atomic_int close_notify; /* enum close_notify_policy */
    atomic_ullong delay_ms;  /* every line held this long before it is handled */
    /* version: must announce exactly this ("": anything); settings_mu */
    char require_version[REQUIRE_VERSION_MAX + 1];
};

struct record {
    char token[RECORD_TOKEN];
    unsigned long count;
};

struct shared {
    atomic_int fault;       /* enum fault */
    atomic_ullong conn_ids; /* log ids, never reset */
    struct stats stats;
    struct settings settings;
    pthread_mutex_t settings_mu;
    pthread_mutex_t records_mu;
    struct record records[RECORD_SLOTS];
};

static struct shared *g_shared;

/* The mapping starts zero-filled: every lock-free atomic in it holds 0. */
static bool shared_init(void)
{
    void *p = mmap(NULL, sizeof *g_shared, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return false;
    g_shared = p;
    pthread_mutexattr_t attr;
    int err = pthread_mutexattr_init(&attr);
    if (err == 0)
        err = pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    if (err == 0)
        err = pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
    if (err == 0)
        err = pthread_mutex_init(&g_shared->records_mu, &attr);
    if (err == 0)
        err = pthread_mutex_init(&g_shared->settings_mu, &attr);
    pthread_mutexattr_destroy(&attr);
    if (err != 0) {
        errno = err;
        return false;
    }
    return true;
}

/* Whether the shared atomics work across processes (needed by --fork). */
static bool shared_lock_free(void)
{
    struct stats *st = &g_shared->stats;
    return atomic_is_lock_free(&g_shared->fault) &&
           atomic_is_lock_free(&g_shared->conn_ids) &&
           atomic_is_lock_free(&st->connections) &&
           atomic_is_lock_free(&st->active);
}

/* A holder that died (a child killed mid-update) leaves the lock usable. */
static void shared_lock(pthread_mutex_t *mu)
{
    if (pthread_mutex_lock(mu) == EOWNERDEAD)
        pthread_mutex_consistent(mu);
}

static void records_lock(void)
{
    shared_lock(&g_shared->records_mu);
}

static void records_unlock(void)
{
    pthread_mutex_unlock(&g_shared->records_mu);
}

/* ------------------------------------------------------------------------ */
/* Faults                                                                   */
/* ------------------------------------------------------------------------ */

enum fault {
    FAULT_NONE,
    FAULT_REFUSE,
    FAULT_HANG_HANDSHAKE,
    FAULT_GARBAGE_HANDSHAKE,
    FAULT_CLOSE_HANDSHAKE,
    FAULT_CLOSE_AFTER_REPLY,
    FAULT_NO_INSECURE,
    FAULT_NOT_IN_HOST_TABLE,
    FAULT_NO_CERTIFICATES,
    FAULT_STOP_READING,
    FAULT_TLS_NO_CLOSE_NOTIFY,
    FAULT_EXTRA_AFTER_REPLY,
};

struct fault_name {
    const char *name;
    enum fault fault;
};

static const struct fault_name fault_names[] = {
    { "none", FAULT_NONE },
    { "refuse", FAULT_REFUSE },
    { "hang_handshake", FAULT_HANG_HANDSHAKE },
    { "garbage_handshake", FAULT_GARBAGE_HANDSHAKE },
    { "close_handshake", FAULT_CLOSE_HANDSHAKE },
    { "close_after_reply", FAULT_CLOSE_AFTER_REPLY },
    { "no_insecure", FAULT_NO_INSECURE },
    { "not_in_host_table", FAULT_NOT_IN_HOST_TABLE },
    { "no_certificates", FAULT_NO_CERTIFICATES },
    { "stop_reading", FAULT_STOP_READING },
    { "tls_no_close_notify", FAULT_TLS_NO_CLOSE_NOTIFY },
    { "extra_after_reply", FAULT_EXTRA_AFTER_REPLY },
};

static bool fault_lookup(const char *name, size_t len, enum fault *out)
{
    for (size_t i = 0; i < sizeof fault_names / sizeof fault_names[0]; i++) {
        if (strlen(fault_names[i].name) == len &&
            memcmp(fault_names[i].name, name, len) == 0) {
            *out = fault_names[i].fault;
            return true;
        }
    }
    return false;
}

static enum fault current_fault(void)
{
    return (enum fault)atomic_load(&g_shared->fault);
}

/* ------------------------------------------------------------------------ */
/* Protocol settings (struct settings)                                      */
/* ------------------------------------------------------------------------ */

struct setting_name {
    const char *name;
    int value;
};

static const struct setting_name sethost_names[] = {
    { "inline", SETHOST_INLINE }, { "bare", SETHOST_BARE }, { "none", SETHOST_NONE },
};
static const struct setting_name init_names[] = {
    { "any", INIT_ANY }, { "plain", INIT_PLAIN }, { "versioned", INIT_VERSIONED },
};
static const struct setting_name key_order_names[] = {
    { "remote_first", KEY_REMOTE_FIRST }, { "local_first", KEY_LOCAL_FIRST },
};
static const struct setting_name close_notify_names[] = {
    { "send", CLOSE_NOTIFY_SEND }, { "omit", CLOSE_NOTIFY_OMIT },
};
#define NAMES(t) (t), sizeof(t) / sizeof((t)[0])

static bool setting_lookup(const struct setting_name *t, size_t n,
                           const char *s, size_t len, int *out)
{
    for (size_t i = 0; i < n; i++) {
        if (strlen(t[i].name) == len && memcmp(t[i].name, s, len) == 0) {
            *out = t[i].value;
            return true;
        }
    }
    return false;
}

static const char *setting_name(const struct setting_name *t, size_t n, int v)
{
    for (size_t i = 0; i < n; i++) {
        if (t[i].value == v)
            return t[i].name;
    }
    return "?";
}

static int setting(atomic_int *s)
{
    return atomic_load(s);
}

/* Set the required version ("" for any); false when too long. */
static bool set_require_version(const char *v, size_t len)
{
    if (len > REQUIRE_VERSION_MAX || memchr(v, '\0', len))
        return false;
    shared_lock(&g_shared->settings_mu);
    memcpy(g_shared->settings.require_version, v, len);
    g_shared->settings.require_version[len] = '\0';
    pthread_mutex_unlock(&g_shared->settings_mu);
    return true;
}

/* Copy of the required version into buf ("" for any). */
static void get_require_version(char buf[REQUIRE_VERSION_MAX + 1])
{
    shared_lock(&g_shared->settings_mu);
    memcpy(buf, g_shared->settings.require_version, REQUIRE_VERSION_MAX + 1);
    pthread_mutex_unlock(&g_shared->settings_mu);
}

static int settings_format(char *buf, size_t size)
{
    struct settings *st = &g_shared->settings;
    char version[REQUIRE_VERSION_MAX + 1];
    get_require_version(version);
    return snprintf(buf, size,
                    "sethost=%s init=%s key_id_order=%s tls_close_notify=%s "
                    "delay=%llu require_version=%s",
                    setting_name(NAMES(sethost_names), setting(&st->sethost)),
                    setting_name(NAMES(init_names), setting(&st->init)),
                    setting_name(NAMES(key_order_names), setting(&st->key_order)),
                    setting_name(NAMES(close_notify_names),
                                 setting(&st->close_notify)),
                    (unsigned long long)atomic_load(&st->delay_ms), version);
}

/* ------------------------------------------------------------------------ */
/* Statistics                                                               */
/* ------------------------------------------------------------------------ */

static void max_update(atomic_llong *max, long long now);

static void stats_conn_opened(void)
{
    struct stats *st = &g_shared->stats;
    atomic_fetch_add(&st->connections, 1);
    max_update(&st->max_active, atomic_fetch_add(&st->active, 1) + 1);
}

static void stats_conn_closed(void)
{
    atomic_fetch_sub(&g_shared->stats.active, 1);
}

static void max_update(atomic_llong *max, long long now)
{
    long long m = atomic_load(max);
    while (now > m && !atomic_compare_exchange_weak(max, &m, now)) {
    }
}

static void stats_reset(void)
{
    struct stats *st = &g_shared->stats;
    atomic_store(&st->connections, 0);
    atomic_store(&st->handshakes, 0);
    atomic_store(&st->requests, 0);
    atomic_store(&st->encrypted, 0);
    atomic_store(&st->tls, 0);
    atomic_store(&st->tls_failed, 0);
    atomic_store(&st->local, 0);
    atomic_store(&st->accepted, 0);
    atomic_store(&st->sethosts, 0);
    atomic_store(&st->max_active, atomic_load(&st->active));
    atomic_store(&st->max_handshaking, atomic_load(&st->handshaking));
}

static int stats_format(char *buf, size_t size)
{
    struct stats *st = &g_shared->stats;
    return snprintf(buf, size,
                    "connections=%llu active=%lld max_active=%lld "
                    "handshakes=%llu requests=%llu encrypted=%llu "
                    "tls=%llu tls_failed=%llu local=%llu accepted=%llu "
                    "handshaking=%lld max_handshaking=%lld sethosts=%llu",
                    atomic_load(&st->connections),
                    atomic_load(&st->active),
                    atomic_load(&st->max_active),
                    atomic_load(&st->handshakes),
                    atomic_load(&st->requests),
                    atomic_load(&st->encrypted),
                    atomic_load(&st->tls),
                    atomic_load(&st->tls_failed),
                    atomic_load(&st->local),
                    atomic_load(&st->accepted),
                    atomic_load(&st->handshaking),
                    atomic_load(&st->max_handshaking),
                    atomic_load(&st->sethosts));
}

/* ------------------------------------------------------------------------ */
/* Logging: one write() per line, to stderr                                 */
/* ------------------------------------------------------------------------ */

static void log_event(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void log_event(const char *fmt, ...)
{
    if (g_config.quiet)
        return;
    char buf[512];
    int n = snprintf(buf, sizeof buf, "testlond[%ld]: ", (long)getpid());
    if (n < 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(buf + n, sizeof buf - (size_t)n, fmt, ap);
    va_end(ap);
    if (m < 0)
        return;
    size_t len = (size_t)n + (size_t)m;
    if (len > sizeof buf - 2)
        len = sizeof buf - 2;
    buf[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, buf, len);
    (void)w;
}

/* ------------------------------------------------------------------------ */
/* Small helpers                                                            */
/* ------------------------------------------------------------------------ */

static bool has_prefix(const char *s, size_t len, const char *prefix)
{
    size_t plen = strlen(prefix);
    return len >= plen && memcmp(s, prefix, plen) == 0;
}

static bool equals(const char *s, size_t len, const char *word)
{
    return strlen(word) == len && memcmp(s, word, len) == 0;
}

/* Strict decimal: digits only, at least one, value <= max. */
static bool parse_u64(const char *s, size_t len, unsigned long long max,
                      unsigned long long *out)
{
    if (len == 0)
        return false;
    unsigned long long v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (max - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static bool hex_decode(const char *hex, size_t hex_len, unsigned char *out)
{
    for (size_t i = 0; i < hex_len / 2; i++) {
        int hi = hex_value(hex[2 * i]);
        int lo = hex_value(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    return true;
}

static void hex_encode(const unsigned char *in, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 0x0F];
    }
}

static unsigned long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (unsigned long long)ts.tv_sec * 1000ull +
           (unsigned long long)ts.tv_nsec / 1000000ull;
}

static void sleep_ms(unsigned long long ms)
{
    struct timespec ts = {
        .tv_sec = (time_t)(ms / 1000),
        .tv_nsec = (long)(ms % 1000) * 1000000L,
    };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* ------------------------------------------------------------------------ */
/* Growable buffer                                                          */
/* ------------------------------------------------------------------------ */

struct growbuf {
    char *data;
    size_t cap;
};

static bool growbuf_reserve(struct growbuf *b, size_t need)
{
    if (need <= b->cap)
        return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) {
        if (cap > SIZE_MAX / 2)
            return false;
        cap *= 2;
    }
    char *p = realloc(b->data, cap);
    if (!p)
        return false;
    b->data = p;
    b->cap = cap;
    return true;
}

static bool growbuf_is_big(const struct growbuf *b)
{
    return b->cap > BUF_TRIM_THRESHOLD;
}

static void growbuf_trim(struct growbuf *b)
{
    if (growbuf_is_big(b)) {
        free(b->data);
        b->data = NULL;
        b->cap = 0;
    }
}

/* ------------------------------------------------------------------------ */
/* Buffered line reader                                                     */
/* ------------------------------------------------------------------------ */

struct line_reader {
    char *buf;
    size_t cap;
    size_t start; /* first unconsumed byte */
    size_t scan;  /* bytes before this were searched for '\n' already */
    size_t end;   /* end of buffered data */
    bool stoppable; /* READ_STOPPED instead of read() under stop_reading */
};

enum read_status {
    READ_OK, READ_EOF, READ_ERROR, READ_TOO_LONG, READ_NOMEM, READ_STOPPED
};

static bool reader_init(struct line_reader *r)
{
    memset(r, 0, sizeof *r);
    r->buf = malloc(READ_BUF_INITIAL);
    if (!r->buf)
        return false;
    r->cap = READ_BUF_INITIAL;
    return true;
}

static void reader_free(struct line_reader *r)
{
    free(r->buf);
    r->buf = NULL;
}

static bool reader_is_big(const struct line_reader *r)
{
    return r->cap > BUF_TRIM_THRESHOLD;
}

/* Give back a large buffer once it holds no pending data. */
static void reader_trim(struct line_reader *r)
{
    if (!reader_is_big(r) || r->start != r->end)
        return;
    char *p = malloc(READ_BUF_INITIAL);
    if (!p)
        return;
    free(r->buf);
    r->buf = p;
    r->cap = READ_BUF_INITIAL;
    r->start = r->scan = r->end = 0;
}

/* Make room for more input: compact, or grow up to READ_BUF_MAX. */
static enum read_status reader_make_room(struct line_reader *r)
{
    if (r->start > 0) {
        size_t pending = r->end - r->start;
        memmove(r->buf, r->buf + r->start, pending);
        r->scan -= r->start;
        r->end = pending;
        r->start = 0;
        if (r->end < r->cap)
            return READ_OK;
    }
    if (r->cap >= READ_BUF_MAX)
        return READ_TOO_LONG;
    size_t cap = r->cap * 2 > READ_BUF_MAX ? READ_BUF_MAX : r->cap * 2;
    char *p = realloc(r->buf, cap);
    if (!p)
        return READ_NOMEM;
    r->buf = p;
    r->cap = cap;
    return READ_OK;
}

/*
 * Read one line. On READ_OK *line points into the reader's buffer, is
 * NUL-terminated in place of its '\n' (a trailing '\r' is dropped too) and
 * stays valid until the next call. A partial line before EOF is dropped.
 * A stoppable reader checks fault stop_reading before every read() and then
 * returns READ_STOPPED without reading (whatever it buffered stays there).
 */
static enum read_status read_line(int fd, struct line_reader *r,
                                  char **line, size_t *len)
{
    for (;;) {
        char *nl = memchr(r->buf + r->scan, '\n', r->end - r->scan);
        if (nl) {
            char *s = r->buf + r->start;
            size_t n = (size_t)(nl - s);
            r->start = r->scan = (size_t)(nl - r->buf) + 1;
            if (n > 0 && s[n - 1] == '\r')
                n--;
            s[n] = '\0';
            *line = s;
            *len = n;
            return READ_OK;
        }
        r->scan = r->end;
        if (r->start == r->end)
            r->start = r->scan = r->end = 0;
        if (r->end == r->cap) {
            enum read_status st = reader_make_room(r);
            if (st != READ_OK)
                return st;
        }
        if (r->stoppable && current_fault() == FAULT_STOP_READING)
            return READ_STOPPED;
        ssize_t got = read(fd, r->buf + r->end, r->cap - r->end);
        if (got == 0)
            return READ_EOF;
        if (got < 0) {
            if (errno == EINTR)
                continue;
            return READ_ERROR;
        }
        r->end += (size_t)got;
    }
}

/* ------------------------------------------------------------------------ */
/* Writing                                                                  */
/* ------------------------------------------------------------------------ */

static bool write_iov(int fd, struct iovec *iov, int count)
{
    while (count > 0) {
        ssize_t n = writev(fd, iov, count);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return false;
        }
        size_t done = (size_t)n;
        while (count > 0 && done >= iov->iov_len) {
            done -= iov->iov_len;
            iov++;
            count--;
        }
        if (count > 0) {
            iov->iov_base = (char *)iov->iov_base + done;
            iov->iov_len -= done;
        }
    }
    return true;
}

static bool write_all(int fd, const void *data, size_t len)
{
    struct iovec iov = { .iov_base = (void *)(uintptr_t)data, .iov_len = len };
    return write_iov(fd, &iov, 1);
}

/* Send data followed by '\n' with a single writev(). */
static bool send_line(int fd, const char *data, size_t len)
{
    struct iovec iov[2] = {
        { .iov_base = (void *)(uintptr_t)data, .iov_len = len },
        { .iov_base = (void *)"\n", .iov_len = 1 },
    };
    return write_iov(fd, iov, 2);
}

static bool send_str(int fd, const char *s)
{
    return send_line(fd, s, strlen(s));
}

/* n bytes of "abc...z" repeated, optionally followed by '\n'. */
static bool send_pattern(int fd, unsigned long long n, bool newline)
{
    while (n > PATTERN_CHUNK) {
        if (!write_all(fd, g_pattern, PATTERN_CHUNK))
            return false;
        n -= PATTERN_CHUNK;
    }
    struct iovec iov[2] = {
        { .iov_base = g_pattern, .iov_len = (size_t)n },
        { .iov_base = (void *)"\n", .iov_len = 1 },
    };
    return write_iov(fd, iov, newline ? 2 : 1);
}

/* n bytes of the pattern as they stand from offset `from` of an endless
 * "abc...z" (so that a reply sent in pieces is one pattern). */
static bool send_pattern_from(int fd, unsigned long long from, unsigned long long n)
{
    size_t skew = (size_t)(from % 26);
    while (n > 0) {
        size_t k = n < PATTERN_CHUNK - skew ? (size_t)n : PATTERN_CHUNK - skew;
        if (!write_all(fd, g_pattern + skew, k))
            return false;
        n -= k;
        skew = (skew + k) % 26;
    }
    return true;
}

/* Wait (bounded) until the peer acknowledged every byte sent. */
static void wait_all_acked(int fd, unsigned long long limit_ms)
{
    unsigned long long end = now_ms() + limit_ms;
    int pending = 0;
    while (ioctl(fd, SIOCOUTQ, &pending) == 0 && pending > 0 && now_ms() < end)
        sleep_ms(RESET_POLL_MS);
}

/* Writes at most a fixed number of bytes in all (a reply cut short). */
struct capped {
    int fd;
    unsigned long long left; /* bytes still allowed */
};

/* Write data, or as much of it as the cap allows; false once the cap cut
 * it short, or on a write error. */
static bool capped_write(struct capped *w, const void *data, size_t len)
{
    size_t n = len < w->left ? len : (size_t)w->left;
    if (n > 0 && !write_all(w->fd, data, n)) {
        w->left = 0;
        return false;
    }
    w->left -= n;
    return n == len;
}

/* 64 random bytes without '\n', then '\n'. */
static bool send_garbage(int fd)
{
    unsigned char raw[GARBAGE_LEN];
    char out[GARBAGE_LEN];
    size_t n = 0;
    gcry_create_nonce(raw, sizeof raw);
    for (size_t i = 0; i < sizeof raw; i++) {
        if (raw[i] != '\n')
            out[n++] = (char)raw[i];
    }
    return send_line(fd, out, n);
}

/* Read and discard until the peer closes. */
static void drain_until_eof(int fd)
{
    char tmp[4096];
    for (;;) {
        ssize_t n = read(fd, tmp, sizeof tmp);
        if (n > 0)
            continue;
        if (n < 0 && errno == EINTR)
            continue;
        return;
    }
}

/* ------------------------------------------------------------------------ */
/* Session key derivation (protocol.md 2.3 step 4)                          */
/* ------------------------------------------------------------------------ */

static bool is_ascii_letter(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

/* Upper-case, then G..P -> 0..9 and Q..Z -> 0..9. */
static char map_host_char(char ch)
{
    unsigned char c = (unsigned char)ch;
    if (c >= 'a' && c <= 'z')
        c = (unsigned char)(c - 'a' + 'A');
    if (c >= 'G' && c <= 'P')
        return (char)('0' + (c - 'G'));
    if (c >= 'Q' && c <= 'Z')
        return (char)('0' + (c - 'Q'));
    return (char)c;
}

/* Perl's pack("H*") nibble of one character. */
static unsigned char pack_h_nibble(char ch)
{
    unsigned char c = (unsigned char)ch;
    if (is_ascii_letter(c))
        return (unsigned char)(((c & 0x0F) + 9) & 0x0F);
    return (unsigned char)(c & 0x0F);
}

/* Perl's pack("H32", s): s may be shorter (zero nibbles) or longer. */
static void pack_h32(const char *s, size_t len, unsigned char key[IDEA_KEY_LEN])
{
    memset(key, 0, IDEA_KEY_LEN);
    for (size_t i = 0; i < len && i < 2 * IDEA_KEY_LEN; i++) {
        unsigned char nib = pack_h_nibble(s[i]);
        key[i / 2] |= (unsigned char)((i % 2 == 0) ? nib << 4 : nib);
    }
}

/*
 * t = map(uc(lond_id . client_id)) . buildkey; u = t.t.t; key = pack("H32",
 * first 32 chars of u). Built without allocation: char i of u is t[i % |t|].
 */
static void derive_session_key(const char *lond_id, size_t lond_len,
                               const char *client_id, size_t client_len,
                               const char *buildkey, size_t build_len,
                               unsigned char key[IDEA_KEY_LEN])
{
    char u[2 * IDEA_KEY_LEN];
    size_t host_len = lond_len + client_len;
    size_t t_len = host_len + build_len;
    size_t u_len = 0;
    if (t_len > 0) {
        size_t three_t = t_len > SIZE_MAX / 3 ? SIZE_MAX : 3 * t_len;
        u_len = three_t < sizeof u ? three_t : sizeof u;
    }
    for (size_t i = 0; i < u_len; i++) {
        size_t j = i % t_len;
        if (j < lond_len)
            u[i] = map_host_char(lond_id[j]);
        else if (j < host_len)
            u[i] = map_host_char(client_id[j - lond_len]);
        else
            u[i] = buildkey[j - host_len];
    }
    pack_h32(u, u_len, key);
}

/* ------------------------------------------------------------------------ */
/* IDEA (libgcrypt, ECB)                                                    */
/* ------------------------------------------------------------------------ */

static bool cipher_set_key(gcry_cipher_hd_t *hd, bool *have,
                           const unsigned char key[IDEA_KEY_LEN])
{
    if (!*have) {
        if (gcry_cipher_open(hd, GCRY_CIPHER_IDEA, GCRY_CIPHER_MODE_ECB, 0))
            return false;
    }
    if (gcry_cipher_setkey(*hd, key, IDEA_KEY_LEN)) {
        gcry_cipher_close(*hd);
        *have = false;
        return false;
    }
    *have = true;
    return true;
}

/* Published IDEA test vector; proves the cipher setup at startup. */
static bool idea_self_test(void)
{
    static const unsigned char key[IDEA_KEY_LEN] = {
        0x00, 0x01, 0x00, 0x02, 0x00, 0x03, 0x00, 0x04,
        0x00, 0x05, 0x00, 0x06, 0x00, 0x07, 0x00, 0x08,
    };
    static const unsigned char plain[IDEA_BLOCK_LEN] = {
        0x00, 0x00, 0x00, 0x01, 0x00, 0x02, 0x00, 0x03,
    };
    static const unsigned char expect[IDEA_BLOCK_LEN] = {
        0x11, 0xfb, 0xed, 0x2b, 0x01, 0x98, 0x6d, 0xe5,
    };
    gcry_cipher_hd_t hd;
    bool have = false;
    unsigned char out[IDEA_BLOCK_LEN];
    if (!cipher_set_key(&hd, &have, key))
        return false;
    bool ok = gcry_cipher_encrypt(hd, out, sizeof out, plain, sizeof plain) == 0 &&
              memcmp(out, expect, sizeof out) == 0;
    gcry_cipher_close(hd);
    return ok;
}

static bool crypto_init(void)
{
    if (!gcry_check_version(GCRYPT_VERSION))
        return false;
    gcry_control(GCRYCTL_DISABLE_SECMEM, 0);
    gcry_control(GCRYCTL_INITIALIZATION_FINISHED, 0);
    return idea_self_test();
}

/* ------------------------------------------------------------------------ */
/* Connection state                                                         */
/* ------------------------------------------------------------------------ */

struct conn {
    int fd;
    unsigned long long id;
    char peer[INET6_ADDRSTRLEN + 8];
    struct line_reader in;
    struct growbuf out;     /* encrypted replies */
    struct growbuf scratch; /* padded plaintext for encryption */
    struct growbuf plain;   /* decrypted requests */
    char selected_host[HOST_ID_MAX + 1];
    const char *req_host;   /* sethost:<id>:<rest> override, or NULL */
    size_t req_host_len;
    char peer_version[PEER_VERSION_MAX + 1];
    bool extra_line;   /* fault extra_after_reply: the reply gets company */
    bool handshaking;  /* counted in stats.handshaking */
    const char *mode;  /* key mode of the handshake, for conninfo */
    char init_version[PEER_VERSION_MAX + 1]; /* <v> of init::<v>/init:ssl:<v> */
    bool init_versioned;
    bool have_key;
    gcry_cipher_hd_t cipher;
    unsigned long long requests;
};

static struct conn *conn_new(int fd, const struct sockaddr_storage *addr,
                             socklen_t addr_len)
{
    struct conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    if (!reader_init(&c->in)) {
        free(c);
        return NULL;
    }
    c->fd = fd;
    c->id = atomic_fetch_add(&g_shared->conn_ids, 1) + 1;
    snprintf(c->selected_host, sizeof c->selected_host, "%s", g_config.host_id);
    char host[INET6_ADDRSTRLEN] = "?";
    char serv[8] = "?";
    getnameinfo((const struct sockaddr *)addr, addr_len, host, sizeof host,
                serv, sizeof serv, NI_NUMERICHOST | NI_NUMERICSERV);
    snprintf(c->peer, sizeof c->peer, "%s:%s", host, serv);
    return c;
}

static void conn_free(struct conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    if (c->have_key)
        gcry_cipher_close(c->cipher);
    reader_free(&c->in);
    free(c->out.data);
    free(c->scratch.data);
    free(c->plain.data);
    free(c);
}

/*
 * Handshakes under way (ctl:stats handshaking, max_handshaking): from the
 * first line of a connection that is not ctl: to the end of its handshake
 * (hs_end: see the README for the exact points). hs_end is called before
 * the answer that ends the handshake is written, so that a client which
 * bounds its handshakes in flight never sees this count above its bound.
 */
static void hs_begin(struct conn *c)
{
    struct stats *st = &g_shared->stats;
    c->handshaking = true;
    max_update(&st->max_handshaking, atomic_fetch_add(&st->handshaking, 1) + 1);
}

static void hs_end(struct conn *c)
{
    if (c->handshaking) {
        c->handshaking = false;
        atomic_fetch_sub(&g_shared->stats.handshaking, 1);
    }
}

/* The per-line delay: every line read is held this long before it is
 * handled (--delay, ctl:delay=MS). */
static void line_delay(void)
{
    unsigned long long ms = atomic_load(&g_shared->settings.delay_ms);
    if (ms > 0)
        sleep_ms(ms);
}

static void conn_effective_host(const struct conn *c, const char **id, size_t *len)
{
    if (c->req_host) {
        *id = c->req_host;
        *len = c->req_host_len;
    } else {
        *id = c->selected_host;
        *len = strlen(c->selected_host);
    }
}

/*
 * Large buffers are kept while big requests keep coming (regrowing them per
 * request is slow) and given back once the connection is idle for a while.
 * The poll() happens only while some buffer is large.
 */
static void conn_trim_when_idle(struct conn *c)
{
    if (c->in.start != c->in.end)
        return; /* a request is already buffered */
    if (!reader_is_big(&c->in) && !growbuf_is_big(&c->out) &&
        !growbuf_is_big(&c->scratch) && !growbuf_is_big(&c->plain))
        return;
    struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
    int n;
    do {
        n = poll(&pfd, 1, BUF_TRIM_IDLE_MS);
    } while (n < 0 && errno == EINTR);
    if (n != 0)
        return;
    reader_trim(&c->in);
    growbuf_trim(&c->out);
    growbuf_trim(&c->scratch);
    growbuf_trim(&c->plain);
}

/* ------------------------------------------------------------------------ */
/* Commands                                                                 */
/* ------------------------------------------------------------------------ */

enum action { ACT_CONTINUE, ACT_CLOSE };

typedef enum action (*command_fn)(struct conn *c, char *arg, size_t len, int depth);

static enum action dispatch(struct conn *c, char *cmd, size_t len, int depth);

static enum action reply(struct conn *c, const char *data, size_t len)
{
    if (c->extra_line) {
        /* One write, so that the unasked line arrives with the reply. */
        struct iovec iov[2] = {
            { .iov_base = (void *)(uintptr_t)data, .iov_len = len },
            { .iov_base = (void *)"\nunasked\n", .iov_len = 9 },
        };
        c->extra_line = false;
        return write_iov(c->fd, iov, 2) ? ACT_CONTINUE : ACT_CLOSE;
    }
    return send_line(c->fd, data, len) ? ACT_CONTINUE : ACT_CLOSE;
}

static enum action reply_str(struct conn *c, const char *s)
{
    return reply(c, s, strlen(s));
}

/* Split "<num>:<rest>" with num <= max. */
static bool split_number(char *arg, size_t len, unsigned long long max,
                         unsigned long long *num, char **rest, size_t *rest_len)
{
    char *colon = memchr(arg, ':', len);
    if (!colon)
        return false;
    size_t num_len = (size_t)(colon - arg);
    if (!parse_u64(arg, num_len, max, num))
        return false;
    *rest = colon + 1;
    *rest_len = len - num_len - 1;
    return true;
}

static enum action cmd_ping(struct conn *c, char *arg, size_t len, int depth)
{
    (void)arg, (void)len, (void)depth;
    return reply_str(c, "pong");
}

static enum action cmd_echo(struct conn *c, char *arg, size_t len, int depth)
{
    (void)depth;
    return reply(c, arg, len);
}

static enum action cmd_delay(struct conn *c, char *arg, size_t len, int depth)
{
    (void)depth;
    unsigned long long ms;
    char *rest;
    size_t rest_len;
    if (!split_number(arg, len, SLEEP_MS_MAX, &ms, &rest, &rest_len))
        return reply_str(c, "error:bad_arg");
    sleep_ms(ms);
    return reply(c, rest, rest_len);
}

static enum action cmd_bytes(struct conn *c, char *arg, size_t len, int depth)
{
    (void)depth;
    unsigned long long n;
    if (!parse_u64(arg, len, BYTES_MAX, &n))
        return reply_str(c, "error:bad_arg");
    return send_pattern(c->fd, n, true) ? ACT_CONTINUE : ACT_CLOSE;
}

static enum action cmd_hang(struct conn *c, char *arg, size_t len, int depth)
{
    (void)arg, (void)len, (void)depth;
    drain_until_eof(c->fd);
    return ACT_CLOSE;
}

static enum action cmd_close(struct conn *c, char *arg, size_t len, int depth)
{
    (void)c, (void)arg, (void)len, (void)depth;
    return ACT_CLOSE;
}

static enum action cmd_closemid(struct conn *c, char *arg, size_t len, int depth)
{
    (void)depth;
    unsigned long long n;
    if (!parse_u64(arg, len, BYTES_MAX, &n))
        return reply_str(c, "error:bad_arg");
    send_pattern(c->fd, n, false);
    return ACT_CLOSE;
}

static enum action cmd_garbage(struct conn *c, char *arg, size_t len, int depth)
{
    (void)arg, (void)len, (void)depth;
    return send_garbage(c->fd) ? ACT_CONTINUE : ACT_CLOSE;
}

static enum action cmd_drip(struct conn *c, char *arg, size_t len, int depth)
{
    (void)depth;
    unsigned long long ms;
    char *rest;
    size_t rest_len;
    if (!split_number(arg, len, SLEEP_MS_MAX, &ms, &rest, &rest_len))
        return reply_str(c, "error:bad_arg");
    rest[rest_len] = '\n'; /* the byte after rest is the line's NUL: in bounds */
    for (size_t i = 0; i <= rest_len; i++) {
        if (i > 0)
            sleep_ms(ms);
        if (!write_all(c->fd, rest + i, 1))
            return ACT_CLOSE;
    }
    return ACT_CONTINUE;
}

static enum action cmd_whoami(struct conn *c, char *arg, size_t len, int depth)
{
    (void)arg, (void)len, (void)depth;
    const char *id;
    size_t id_len;
    conn_effective_host(c, &id, &id_len);
    return reply(c, id, id_len);
}

/* record:<token>: count deliveries per token (delayed-transaction tests
 * check that each one arrived exactly once), and per host ID in effect
 * and token (under "<id>/<token>": which sethost it came with);
 * ctl:recorded=<token> or ctl:recorded=<id>/<token>. The table is in the
 * shared mapping (records_lock() held). */

static unsigned long *record_slot(const char *tok, size_t len, bool create)
{
    if (len == 0 || len >= RECORD_TOKEN)
        return NULL;
    struct record *records = g_shared->records;
    for (size_t i = 0; i < RECORD_SLOTS; i++) {
        if (!records[i].token[0]) {
            if (!create)
                return NULL;
            memcpy(records[i].token, tok, len);
            records[i].token[len] = '\0';
            return &records[i].count;
        }
        if (strlen(records[i].token) == len && !memcmp(records[i].token, tok, len))
            return &records[i].count;
    }
    return NULL;
}

static unsigned long records_get(const char *tok, size_t len)
{
    records_lock();
    unsigned long *n = record_slot(tok, len, false);
    unsigned long v = n ? *n : 0;
    records_unlock();
    return v;
}

static void records_reset(void)
{
    records_lock();
    memset(g_shared->records, 0, sizeof g_shared->records);
    records_unlock();
}

static enum action cmd_record(struct conn *c, char *arg, size_t len, int depth)
{
    (void)depth;
    const char *id;
    size_t id_len;
    char key[RECORD_TOKEN];
    conn_effective_host(c, &id, &id_len);
    int key_len = snprintf(key, sizeof key, "%.*s/%.*s", (int)id_len, id, (int)len, arg);
    records_lock();
    unsigned long *n = record_slot(arg, len, true);
    if (n)
        (*n)++;
    unsigned long *by_host = key_len > 0 && (size_t)key_len < sizeof key ?
        record_slot(key, (size_t)key_len, true) : NULL;
    if (by_host)
        (*by_host)++;
    records_unlock();
    return reply_str(c, n ? "ok" : "error:bad_token");
}

/* conninfo: how this connection was set up, and the host ID in effect. */
static enum action cmd_conninfo(struct conn *c, char *arg, size_t len, int depth)
{
    (void)arg, (void)len, (void)depth;
    char buf[HOST_ID_MAX + 3 * PEER_VERSION_MAX + 64];
    const char *id;
    size_t id_len;
    conn_effective_host(c, &id, &id_len);
    int n = snprintf(buf, sizeof buf, "mode=%s init_version=%s peer_version=%s host=%.*s",
                     c->mode ? c->mode : "-",
                     c->init_versioned ? c->init_version : "-",
                     c->peer_version[0] ? c->peer_version : "-", (int)id_len, id);
    if (n < 0 || (size_t)n >= sizeof buf)
        n = (int)sizeof buf - 1;
    return reply(c, buf, (size_t)n);
}

static enum action cmd_refused(struct conn *c, char *arg, size_t len, int depth)
{
    (void)arg, (void)len, (void)depth;
    return reply_str(c, "refused");
}

/* version:<v>: our version; with a required version (--require-version)
 * another <v> is answered "refused" and the connection closed. */
static enum action cmd_version(struct conn *c, char *arg, size_t len, int depth)
{
    (void)depth;
    char required[REQUIRE_VERSION_MAX + 1];
    size_t keep = len < PEER_VERSION_MAX ? len : PEER_VERSION_MAX;
    memcpy(c->peer_version, arg, keep);
    c->peer_version[keep] = '\0';
    log_event("conn %llu peer version %s", c->id, c->peer_version);
    get_require_version(required);
    if (required[0] && !equals(arg, len, required)) {
        log_event("conn %llu version %.*s is not the required %s: refused",
                  c->id, (int)keep, arg, required);
        hs_end(c);
        send_str(c->fd, "refused");
        return ACT_CLOSE;
    }
    return reply_str(c, TESTLOND_VERSION);
}

static enum action cmd_ekey(struct conn *c, char *arg, size_t len, int depth)
{
    (void)arg, (void)len, (void)depth;
    char buildkey[BUILDKEY_DIGITS];
    unsigned char rnd[BUILDKEY_DIGITS];
    unsigned char key[IDEA_KEY_LEN];
    const char *id;
    size_t id_len;
    conn_effective_host(c, &id, &id_len);
    gcry_create_nonce(rnd, sizeof rnd);
    for (size_t i = 0; i < sizeof rnd; i++)
        buildkey[i] = (char)('0' + rnd[i] % 10);
    const char *client = g_config.client_id;
    bool local_first = setting(&g_shared->settings.key_order) == KEY_LOCAL_FIRST;
    if (local_first)
        derive_session_key(client, strlen(client), id, id_len,
                           buildkey, sizeof buildkey, key);
    else
        derive_session_key(id, id_len, client, strlen(client),
                           buildkey, sizeof buildkey, key);
    bool ok = cipher_set_key(&c->cipher, &c->have_key, key);
    memset(key, 0, sizeof key);
    hs_end(c);
    if (!ok)
        return reply_str(c, "error:key");
    log_event("conn %llu session key set (ekey, host %.*s, %s)", c->id,
              (int)id_len, id, local_first ? "local_first" : "remote_first");
    return reply(c, buildkey, sizeof buildkey);
}

/*
 * sethost:<id> selects the host; sethost:<id>:<rest> answers <rest> as <id>.
 * --sethost bare: the in-line form is unknown_cmd; none: both are. The
 * answer to a bare sethost:<id> on a connection that has its key ends the
 * handshake (ssl and local modes, where it is lonc's last step).
 */
static enum action cmd_sethost(struct conn *c, char *arg, size_t len, int depth)
{
    char *colon = memchr(arg, ':', len);
    size_t id_len = colon ? (size_t)(colon - arg) : len;
    int policy = setting(&g_shared->settings.sethost);
    if (policy == SETHOST_NONE || (colon && policy == SETHOST_BARE)) {
        log_event("conn %llu %s sethost: refused as unknown (--sethost %s)",
                  c->id, colon ? "in-line" : "bare",
                  setting_name(NAMES(sethost_names), policy));
        return reply_str(c, "unknown_cmd");
    }
    if (id_len == 0 || id_len > HOST_ID_MAX)
        return reply_str(c, "error:bad_host");
    if (!colon) {
        memcpy(c->selected_host, arg, id_len);
        c->selected_host[id_len] = '\0';
        log_event("conn %llu sethost %s", c->id, c->selected_host);
        atomic_fetch_add(&g_shared->stats.sethosts, 1);
        if (c->have_key)
            hs_end(c);
        return reply_str(c, "ok");
    }
    const char *saved = c->req_host;
    size_t saved_len = c->req_host_len;
    c->req_host = arg;
    c->req_host_len = id_len;
    enum action a = dispatch(c, colon + 1, len - id_len - 1, depth);
    c->req_host = saved;
    c->req_host_len = saved_len;
    return a;
}

/* Decode and decrypt enc:<len>:<hex> into c->plain; NULL on bad framing. */
static char *decrypt_request(struct conn *c, const char *arg, size_t len,
                             size_t *plain_len)
{
    const char *colon = memchr(arg, ':', len);
    if (!colon)
        return NULL;
    unsigned long long n;
    size_t hex_len = len - (size_t)(colon - arg) - 1;
    if (!parse_u64(arg, (size_t)(colon - arg), hex_len / 2, &n))
        return NULL;
    size_t blocks = (size_t)n / IDEA_BLOCK_LEN + 1;
    size_t bytes = blocks * IDEA_BLOCK_LEN;
    if (hex_len != 2 * bytes || !growbuf_reserve(&c->plain, bytes + 1))
        return NULL;
    unsigned char *p = (unsigned char *)c->plain.data;
    if (!hex_decode(colon + 1, hex_len, p) ||
        gcry_cipher_decrypt(c->cipher, p, bytes, NULL, 0) != 0)
        return NULL;
    for (size_t i = (size_t)n; i < bytes; i++) {
        if (p[i] != ' ')
            return NULL; /* padding must be spaces: catches a wrong key */
    }
    p[n] = '\0';
    *plain_len = (size_t)n;
    return c->plain.data;
}

static enum action cmd_enc(struct conn *c, char *arg, size_t len, int depth)
{
    if (depth > 0)
        return reply_str(c, "error:bad_enc"); /* no nested enc: */
    if (!c->have_key)
        return reply_str(c, "error:no_key");
    size_t plain_len;
    char *plain = decrypt_request(c, arg, len, &plain_len);
    if (!plain)
        return reply_str(c, "error:bad_enc");
    atomic_fetch_add(&g_shared->stats.encrypted, 1);
    return dispatch(c, plain, plain_len, depth + 1);
}

/* Answer enc:<len>:<hex>, framed like a request (protocol.md 2.7). */
static enum action cmd_encecho(struct conn *c, char *arg, size_t len, int depth)
{
    (void)depth;
    if (!c->have_key)
        return reply_str(c, "error:no_key");
    size_t bytes = (len / IDEA_BLOCK_LEN + 1) * IDEA_BLOCK_LEN;
    char head[32];
    int head_len = snprintf(head, sizeof head, "enc:%zu:", len);
    if (head_len < 0 || !growbuf_reserve(&c->scratch, bytes) ||
        !growbuf_reserve(&c->out, (size_t)head_len + 2 * bytes))
        return reply_str(c, "error:no_memory");
    unsigned char *p = (unsigned char *)c->scratch.data;
    memcpy(p, arg, len);
    memset(p + len, ' ', bytes - len);
    if (gcry_cipher_encrypt(c->cipher, p, bytes, NULL, 0) != 0)
        return reply_str(c, "error:key");
    memcpy(c->out.data, head, (size_t)head_len);
    hex_encode(p, bytes, c->out.data + head_len);
    return reply(c, c->out.data, (size_t)head_len + 2 * bytes);
}

/* ------------------------------------------------------------------------ */
/* Big, slow and broken replies (lonc's all-or-nothing reply tests)         */
/* ------------------------------------------------------------------------ */

/* resetmid:<n>: n pattern bytes, no newline; once the peer acknowledged
 * them (bounded wait), a reset (SO_LINGER 0, then close) instead of a FIN. */
static enum action cmd_resetmid(struct conn *c, char *arg, size_t len, int depth)
{
    (void)depth;
    unsigned long long n;
    if (!parse_u64(arg, len, BYTES_MAX, &n))
        return reply_str(c, "error:bad_arg");
    if (send_pattern(c->fd, n, false))
        wait_all_acked(c->fd, RESET_DRAIN_MS);
    struct linger lg = { .l_onoff = 1, .l_linger = 0 };
    setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    return ACT_CLOSE;
}

/* stallmid:<n>: n pattern bytes, no newline, then silence until the peer
 * closes. */
static enum action cmd_stallmid(struct conn *c, char *arg, size_t len, int depth)
{
    (void)depth;
    unsigned long long n;
    if (!parse_u64(arg, len, BYTES_MAX, &n))
        return reply_str(c, "error:bad_arg");
    if (send_pattern(c->fd, n, false))
        drain_until_eof(c->fd);
    return ACT_CLOSE;
}

/* steady:<n>:<ms>: n pattern bytes in even pieces, one every
 * STEADY_SLICE_MS, the last at about ms, then '\n' at ms. */
static enum action cmd_steady(struct conn *c, char *arg, size_t len, int depth)
{
    (void)depth;
    unsigned long long n, ms;
    char *rest;
    size_t rest_len;
    if (!split_number(arg, len, BYTES_MAX, &n, &rest, &rest_len) ||
        !parse_u64(rest, rest_len, SLEEP_MS_MAX, &ms))
        return reply_str(c, "error:bad_arg");
    unsigned long long slices = ms / STEADY_SLICE_MS;
    if (slices == 0)
        slices = 1;
    unsigned long long start = now_ms(), sent = 0;
    for (unsigned long long i = 0; i <= slices; i++) {
        unsigned long long due = start + i * ms / slices;
        unsigned long long now = now_ms();
        if (due > now)
            sleep_ms(due - now);
        if (i == slices)
            break;
        unsigned long long upto = n * (i + 1) / slices;
        if (!send_pattern_from(c->fd, sent, upto - sent))
            return ACT_CLOSE;
        sent = upto;
    }
    return write_all(c->fd, "\n", 1) ? ACT_CONTINUE : ACT_CLOSE;
}

/* endless: pattern bytes, never a newline, until a write fails. */
static enum action cmd_endless(struct conn *c, char *arg, size_t len, int depth)
{
    (void)arg, (void)len, (void)depth;
    while (write_all(c->fd, g_pattern, PATTERN_CHUNK)) {
    }
    return ACT_CLOSE;
}

/* What can be wrong with an enc: reply (encbad:<flaw>:<n>). */
enum enc_flaw {
    FLAW_NONE,
    FLAW_HEX, /* the last hex digit is 'g' */
    FLAW_ODD, /* the last hex digit is missing (not whole blocks) */
    FLAW_LEN, /* the length claims more than the blocks hold */
    FLAW_PAD, /* the padding is 'x', not spaces */
};

static const struct {
    const char *name;
    enum enc_flaw flaw;
} enc_flaws[] = {
    { "hex", FLAW_HEX },
    { "odd", FLAW_ODD },
    { "len", FLAW_LEN },
    { "pad", FLAW_PAD },
};

/*
 * enc:<n>:<hex>, framed like a request (encecho), whose plain text is n
 * pattern bytes, then '\n'; at most `limit` bytes of it are sent (a cut
 * reply); with `endless` the hex never ends (until a write fails). ECB over
 * a pattern chunk that starts at 'a' and is a whole number of blocks gives
 * the same cipher text for every chunk: it is encrypted once, into the
 * first half of c->out; the last, padded blocks into the second half.
 * Returns false when it stopped before the end (cut, or a write failed).
 */
static bool send_enc_pattern(struct conn *c, unsigned long long n,
                             unsigned long long limit, bool endless,
                             enum enc_flaw flaw)
{
    const size_t chunk_hex = 2 * PATTERN_CHUNK;
    if (!growbuf_reserve(&c->scratch, PATTERN_CHUNK + IDEA_BLOCK_LEN) ||
        !growbuf_reserve(&c->out, 2 * chunk_hex + 2 * IDEA_BLOCK_LEN))
        return false;
    unsigned char *p = (unsigned char *)c->scratch.data;
    char *hex = c->out.data, *tail_hex = c->out.data + chunk_hex;
    memcpy(p, g_pattern, PATTERN_CHUNK);
    if (gcry_cipher_encrypt(c->cipher, p, PATTERN_CHUNK, NULL, 0) != 0)
        return false;
    hex_encode(p, PATTERN_CHUNK, hex);

    unsigned long long blocks = n / IDEA_BLOCK_LEN + 1;
    unsigned long long claimed = endless ? ENC_ENDLESS_LEN :
        flaw == FLAW_LEN ? blocks * IDEA_BLOCK_LEN + 1 : n;
    char head[48];
    int head_len = snprintf(head, sizeof head, "enc:%llu:", claimed);
    struct capped w = { .fd = c->fd, .left = limit };
    if (head_len < 0 || !capped_write(&w, head, (size_t)head_len))
        return false;
    if (endless) {
        while (capped_write(&w, hex, chunk_hex)) {
        }
        return false;
    }
    for (unsigned long long i = n / PATTERN_CHUNK; i > 0; i--) {
        if (!capped_write(&w, hex, chunk_hex))
            return false;
    }
    size_t r = (size_t)(n % PATTERN_CHUNK);
    size_t tail = (r / IDEA_BLOCK_LEN + 1) * IDEA_BLOCK_LEN;
    memcpy(p, g_pattern, r);
    memset(p + r, flaw == FLAW_PAD ? 'x' : ' ', tail - r);
    if (gcry_cipher_encrypt(c->cipher, p, tail, NULL, 0) != 0)
        return false;
    hex_encode(p, tail, tail_hex);
    size_t tail_len = 2 * tail;
    if (flaw == FLAW_HEX)
        tail_hex[tail_len - 1] = 'g';
    if (flaw == FLAW_ODD)
        tail_len--;
    return capped_write(&w, tail_hex, tail_len) && capped_write(&w, "\n", 1);
}

/* encbytes:<n>: an enc: reply whose plain text is n pattern bytes. */
static enum action cmd_encbytes(struct conn *c, char *arg, size_t len, int depth)
{
    (void)depth;
    unsigned long long n;
    if (!parse_u64(arg, len, BYTES_MAX, &n))
        return reply_str(c, "error:bad_arg");
    if (!c->have_key)
        return reply_str(c, "error:no_key");
    return send_enc_pattern(c, n, ULLONG_MAX, false, FLAW_NONE) ?
        ACT_CONTINUE : ACT_CLOSE;
}

/* encmid:<n>:<cut>: the reply of encbytes:<n>, only its first cut bytes
 * (counted on the wire, from the 'e' of enc:), then close. */
static enum action cmd_encmid(struct conn *c, char *arg, size_t len, int depth)
{
    (void)depth;
    unsigned long long n, cut;
    char *rest;
    size_t rest_len;
    if (!split_number(arg, len, BYTES_MAX, &n, &rest, &rest_len) ||
        !parse_u64(rest, rest_len, ULLONG_MAX, &cut))
        return reply_str(c, "error:bad_arg");
    if (!c->have_key)
        return reply_str(c, "error:no_key");
    send_enc_pattern(c, n, cut, false, FLAW_NONE);
    return ACT_CLOSE;
}

/* encbad:<flaw>:<n>: the reply of encbytes:<n> with one flaw (enc_flaws). */
static enum action cmd_encbad(struct conn *c, char *arg, size_t len, int depth)
{
    (void)depth;
    char *colon = memchr(arg, ':', len);
    unsigned long long n;
    if (!colon || !parse_u64(colon + 1, len - (size_t)(colon - arg) - 1,
                             BYTES_MAX, &n))
        return reply_str(c, "error:bad_arg");
    enum enc_flaw flaw = FLAW_NONE;
    for (size_t i = 0; i < sizeof enc_flaws / sizeof enc_flaws[0]; i++) {
        if (equals(arg, (size_t)(colon - arg), enc_flaws[i].name))
            flaw = enc_flaws[i].flaw;
    }
    if (flaw == FLAW_NONE)
        return reply_str(c, "error:bad_arg");
    if (!c->have_key)
        return reply_str(c, "error:no_key");
    return send_enc_pattern(c, n, ULLONG_MAX, false, flaw) ?
        ACT_CONTINUE : ACT_CLOSE;
}

/* encendless: enc:<2^40>: and hex that never ends, until a write fails. */
static enum action cmd_encendless(struct conn *c, char *arg, size_t len, int depth)
{
    (void)arg, (void)len, (void)depth;
    if (!c->have_key)
        return reply_str(c, "error:no_key");
    send_enc_pattern(c, 0, ULLONG_MAX, true, FLAW_NONE);
    return ACT_CLOSE;
}

struct command {
    const char *name; /* exact name, or prefix when it ends in ':' */
    command_fn fn;
};

static const struct command commands[] = {
    { "ping", cmd_ping },
    { "echo:", cmd_echo },
    { "delay:", cmd_delay },
    { "bytes:", cmd_bytes },
    { "hang", cmd_hang },
    { "close", cmd_close },
    { "closemid:", cmd_closemid },
    { "garbage", cmd_garbage },
    { "drip:", cmd_drip },
    { "whoami", cmd_whoami },
    { "conninfo", cmd_conninfo },
    { "enc:", cmd_enc },
    { "encecho:", cmd_encecho },
    { "sethost:", cmd_sethost },
    { "resetmid:", cmd_resetmid },
    { "stallmid:", cmd_stallmid },
    { "steady:", cmd_steady },
    { "endless", cmd_endless },
    { "encbytes:", cmd_encbytes },
    { "encmid:", cmd_encmid },
    { "encbad:", cmd_encbad },
    { "encendless", cmd_encendless },
    { "refused_cmd", cmd_refused },
    { "record:", cmd_record },
    { "version:", cmd_version },
    { "ekey", cmd_ekey },
};

/* cmd[len] must be writable (it is the line's terminating NUL). */
static enum action dispatch(struct conn *c, char *cmd, size_t len, int depth)
{
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        const char *name = commands[i].name;
        size_t name_len = strlen(name);
        bool prefix = name[name_len - 1] == ':';
        if (prefix ? has_prefix(cmd, len, name) : equals(cmd, len, name))
            return commands[i].fn(c, cmd + name_len, len - name_len, depth);
    }
    return reply_str(c, "unknown_cmd");
}

/* Setup steps (version:, ekey, sethost:<id>) are not counted as requests. */
static bool is_setup_command(const char *cmd, size_t len)
{
    if (has_prefix(cmd, len, "version:") || equals(cmd, len, "ekey"))
        return true;
    return has_prefix(cmd, len, "sethost:") &&
           memchr(cmd + 8, ':', len - 8) == NULL;
}

/* Fault stop_reading: read nothing more; close once the fault is cleared. */
static const char *stop_reading(struct conn *c)
{
    log_event("conn %llu fault stop_reading: not reading any more", c->id);
    while (current_fault() == FAULT_STOP_READING)
        sleep_ms(STOP_POLL_MS);
    return "fault stop_reading, then cleared";
}

/* Serve one command line; false (with *why) when the connection ends. */
static bool serve_line(struct conn *c, char *line, size_t len, const char **why)
{
    bool setup = is_setup_command(line, len);
    c->extra_line = !setup && current_fault() == FAULT_EXTRA_AFTER_REPLY;
    if (!setup) {
        hs_end(c); /* a request: the handshake is over, if it was not */
        atomic_fetch_add(&g_shared->stats.requests, 1);
        c->requests++;
    }
    if (dispatch(c, line, len, 0) == ACT_CLOSE) {
        *why = "closed by command or write error";
        return false;
    }
    if (!setup && current_fault() == FAULT_CLOSE_AFTER_REPLY) {
        *why = "fault close_after_reply";
        return false;
    }
    return true;
}

/*
 * Command lines until the connection ends; first (if not NULL, the line
 * already read in --no-handshake mode) is served before reading. Under
 * fault stop_reading a line that was read is dropped unanswered (and not
 * counted) and nothing more is read.
 */
static const char *serve_requests(struct conn *c, char *first, size_t first_len)
{
    const char *why;
    c->in.stoppable = true;
    if (first) {
        if (current_fault() == FAULT_STOP_READING)
            return stop_reading(c);
        if (!serve_line(c, first, first_len, &why))
            return why;
    }
    for (;;) {
        char *line;
        size_t len;
        conn_trim_when_idle(c);
        enum read_status st = read_line(c->fd, &c->in, &line, &len);
        if (st == READ_OK && current_fault() == FAULT_STOP_READING)
            st = READ_STOPPED;
        switch (st) {
        case READ_OK:
            break;
        case READ_STOPPED:
            return stop_reading(c);
        case READ_EOF:
            return "eof";
        case READ_TOO_LONG:
            send_str(c->fd, "error:request_too_long");
            return "request too long";
        case READ_NOMEM:
            return "out of memory";
        case READ_ERROR:
        default:
            return "read error";
        }
        line_delay();
        if (!serve_line(c, line, len, &why))
            return why;
    }
}

/* ------------------------------------------------------------------------ */
/* TLS server side (OpenSSL)                                                */
/* ------------------------------------------------------------------------ */

/* The oldest queued OpenSSL error's reason into buf, or NULL; clears all. */
static const char *tls_error_text(char *buf, size_t size)
{
    unsigned long e = ERR_get_error();
    ERR_clear_error();
    if (e == 0)
        return NULL;
    const char *reason = ERR_reason_error_string(e);
    if (reason)
        snprintf(buf, size, "%s", reason);
    else
        ERR_error_string_n(e, buf, size);
    return buf;
}

/*
 * The server context: TLS 1.2 or newer, our certificate chain and key, a
 * client certificate required and verified against ca (whose names are
 * also sent in the CertificateRequest). No server-side session cache;
 * session tickets stay at OpenSSL's server default (TLS 1.3: two
 * NewSessionTicket messages right after the handshake, before the key
 * line), so the client's handling of them is exercised too. Read-ahead
 * stays off (the default, set explicitly): OpenSSL then reads a record's
 * header and body and not one byte more, so the plain text that follows
 * the peer's close_notify stays in the socket.
 */
static SSL_CTX *tls_ctx_new(const char *cert, const char *key, const char *ca)
{
    static const unsigned char sid_ctx[] = "testlond";
    char why[256];
    const char *what = "cannot create the TLS context";
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx)
        goto fail;
    what = "cannot require TLS 1.2";
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1)
        goto fail;
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                       NULL);
    SSL_CTX_set_read_ahead(ctx, 0);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    what = "cannot configure the TLS context";
    if (SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof sid_ctx - 1) != 1)
        goto fail;
    what = ca;
    if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1)
        goto fail;
    STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(ca);
    if (!names)
        goto fail;
    SSL_CTX_set_client_CA_list(ctx, names);
    what = cert;
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1)
        goto fail;
    what = key;
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
        goto fail;
    what = "--tls-key does not match --tls-cert";
    if (SSL_CTX_check_private_key(ctx) != 1)
        goto fail;
    return ctx;
fail:;
    const char *reason = tls_error_text(why, sizeof why);
    fprintf(stderr, "testlond: %s: %s\n", what, reason ? reason : "failed");
    SSL_CTX_free(ctx);
    return NULL;
}

static bool set_blocking(int fd, bool blocking)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0)
        return false;
    fl = blocking ? fl & ~O_NONBLOCK : fl | O_NONBLOCK;
    return fcntl(fd, F_SETFL, fl) == 0;
}

/* One TLS key exchange on a non-blocking socket, under one deadline. */
struct tls_io {
    SSL *ssl;
    int fd;
    unsigned long long deadline;
    const char *step; /* for the log line on failure */
    char why[256];
};

/* Why the last SSL call failed, into t->why. */
static void tls_explain(struct tls_io *t, int ssl_err, int sys_errno)
{
    char buf[200];
    long vr = SSL_get_verify_result(t->ssl);
    const char *reason = tls_error_text(buf, sizeof buf);
    if (vr != X509_V_OK)
        snprintf(t->why, sizeof t->why, "client certificate rejected: %s",
                 X509_verify_cert_error_string(vr));
    else if (reason)
        snprintf(t->why, sizeof t->why, "%s", reason);
    else if (ssl_err == SSL_ERROR_ZERO_RETURN)
        snprintf(t->why, sizeof t->why, "the peer sent close_notify");
    else if (ssl_err == SSL_ERROR_SYSCALL && sys_errno != 0)
        snprintf(t->why, sizeof t->why, "%s", strerror(sys_errno));
    else if (ssl_err == SSL_ERROR_SYSCALL)
        snprintf(t->why, sizeof t->why, "the peer closed the connection");
    else
        snprintf(t->why, sizeof t->why, "SSL error %d", ssl_err);
}

/* After an SSL call returned rc: wait for what it wants; false on failure. */
static bool tls_retry(struct tls_io *t, int rc)
{
    int sys_errno = errno;
    int err = SSL_get_error(t->ssl, rc);
    struct pollfd pfd = { .fd = t->fd };
    if (err == SSL_ERROR_WANT_READ) {
        pfd.events = POLLIN;
    } else if (err == SSL_ERROR_WANT_WRITE) {
        pfd.events = POLLOUT;
    } else {
        tls_explain(t, err, sys_errno);
        return false;
    }
    for (;;) {
        unsigned long long now = now_ms();
        if (now >= t->deadline) {
            snprintf(t->why, sizeof t->why, "timed out after %llu ms",
                     g_config.tls_timeout_ms);
            return false;
        }
        unsigned long long left = t->deadline - now;
        int n = poll(&pfd, 1, left > INT_MAX ? INT_MAX : (int)left);
        if (n > 0)
            return true;
        if (n < 0 && errno != EINTR) {
            snprintf(t->why, sizeof t->why, "poll: %s", strerror(errno));
            return false;
        }
    }
}

static void tls_log_session(const struct conn *c, SSL *ssl)
{
    if (g_config.quiet)
        return;
    char subject[256] = "-";
    X509 *peer = SSL_get0_peer_certificate(ssl);
    if (peer)
        X509_NAME_oneline(X509_get_subject_name(peer), subject, sizeof subject);
    log_event("conn %llu tls %s %s client=%s", c->id, SSL_get_version(ssl),
              SSL_get_cipher_name(ssl), subject);
}

/*
 * After "ok:ssl": TLS handshake, the key line, close_notify both ways, then
 * the socket is back to blocking plain text and the connection has its key.
 */
static bool tls_key_exchange(struct conn *c, enum fault f)
{
    struct tls_io t = {
        .fd = c->fd,
        .deadline = now_ms() + g_config.tls_timeout_ms,
        .step = "setup",
        .why = "cannot set up the connection",
    };
    char line[2 * IDEA_KEY_LEN + 1];
    unsigned char raw[IDEA_KEY_LEN];
    unsigned char key[IDEA_KEY_LEN];
    bool ok = false;
    int r;

    ERR_clear_error();
    t.ssl = SSL_new(g_tls_ctx);
    if (!t.ssl || SSL_set_fd(t.ssl, c->fd) != 1 || !set_blocking(c->fd, false))
        goto out;
    t.step = "handshake";
    while ((r = SSL_accept(t.ssl)) != 1) {
        if (!tls_retry(&t, r))
            goto out;
    }
    tls_log_session(c, t.ssl);
    t.step = "sending the key";
    if (RAND_bytes(raw, sizeof raw) != 1) {
        snprintf(t.why, sizeof t.why, "no random bytes");
        goto out;
    }
    hex_encode(raw, sizeof raw, line);
    line[2 * IDEA_KEY_LEN] = '\n';
    while ((r = SSL_write(t.ssl, line, (int)sizeof line)) <= 0) {
        if (!tls_retry(&t, r))
            goto out;
    }
    if (f == FAULT_TLS_NO_CLOSE_NOTIFY) {
        log_event("conn %llu fault tls_no_close_notify: no close_notify, "
                  "waiting for the peer to close", c->id);
        t.step = NULL; /* a fault, not a failure */
        if (set_blocking(c->fd, true))
            drain_until_eof(c->fd);
        goto out;
    }
    bool omit = setting(&g_shared->settings.close_notify) == CLOSE_NOTIFY_OMIT;
    if (omit) {
        /* A lond that sends no close_notify: it takes the client's (one
         * record: read-ahead is off) and goes on in plain text. */
        t.step = "reading the client's close_notify (--tls-close-notify omit)";
        char extra;
        while ((r = SSL_read(t.ssl, &extra, 1)) <= 0) {
            if (SSL_get_error(t.ssl, r) == SSL_ERROR_ZERO_RETURN)
                break;
            if (!tls_retry(&t, r))
                goto out;
        }
        if (r > 0) {
            snprintf(t.why, sizeof t.why, "data over TLS after the key line");
            goto out;
        }
        log_event("conn %llu close_notify read, none sent (--tls-close-notify omit)",
                  c->id);
    } else {
        t.step = "close_notify exchange";
    }
    while (!omit && (r = SSL_shutdown(t.ssl)) != 1) {
        if (r == 0 && now_ms() < t.deadline)
            continue; /* ours is sent; the next call reads the peer's */
        if (r == 0) {
            snprintf(t.why, sizeof t.why, "timed out after %llu ms",
                     g_config.tls_timeout_ms);
            goto out;
        }
        if (!tls_retry(&t, r))
            goto out;
    }
    if (SSL_has_pending(t.ssl)) {
        snprintf(t.why, sizeof t.why, "TLS data left after close_notify");
        goto out;
    }
    t.step = "switching back to plain text";
    if (!set_blocking(c->fd, true)) {
        snprintf(t.why, sizeof t.why, "fcntl: %s", strerror(errno));
        goto out;
    }
    pack_h32(line, 2 * IDEA_KEY_LEN, key);
    ok = cipher_set_key(&c->cipher, &c->have_key, key);
    if (!ok)
        snprintf(t.why, sizeof t.why, "cannot set the IDEA key");
out:
    memset(line, 0, sizeof line);
    memset(raw, 0, sizeof raw);
    memset(key, 0, sizeof key);
    SSL_free(t.ssl);
    ERR_clear_error();
    if (ok) {
        atomic_fetch_add(&g_shared->stats.tls, 1);
    } else if (t.step) {
        atomic_fetch_add(&g_shared->stats.tls_failed, 1);
        log_event("conn %llu TLS %s failed: %s", c->id, t.step, t.why);
    }
    return ok;
}

/* ------------------------------------------------------------------------ */
/* Handshake (table-driven: one entry per key mode)                         */
/* ------------------------------------------------------------------------ */

enum hs_result { HS_OK, HS_CLOSE };

struct hs_mode {
    const char *name;
    const char *exact;   /* init line equal to this ... */
    const char *prefix;  /* ... or starting with this (argument follows) */
    bool insecure;       /* refused at once under fault no_insecure */
    bool versioned;      /* the prefix form is the versioned init (--init) */
    /* f: the fault in effect when the init line arrived */
    enum hs_result (*run)(struct conn *c, const char *arg, size_t len,
                          enum fault f);
};

/* "refused" to a handshake line: the handshake ends before the answer. */
static void hs_refuse(struct conn *c)
{
    hs_end(c);
    send_str(c->fd, "refused");
}

static void handshake_done(struct conn *c, const char *mode)
{
    atomic_fetch_add(&g_shared->stats.handshakes, 1);
    log_event("conn %llu handshake ok mode=%s", c->id, mode);
}

/*
 * Challenge, echoed back by the peer, answered "ok" -- or "refused" when
 * refuse_echo (fault no_insecure after an init:ssl without certificates).
 */
static enum hs_result challenge_exchange(struct conn *c, const char *mode,
                                         bool refuse_echo)
{
    char challenge[64];
    snprintf(challenge, sizeof challenge, "%ld%lld", (long)getpid(),
             (long long)time(NULL));
    if (!send_str(c->fd, challenge))
        return HS_CLOSE;
    char *line;
    size_t line_len;
    if (read_line(c->fd, &c->in, &line, &line_len) != READ_OK)
        return HS_CLOSE;
    line_delay();
    if (!equals(line, line_len, challenge)) {
        log_event("conn %llu challenge answered wrongly: refused", c->id);
        hs_refuse(c);
        return HS_CLOSE;
    }
    if (refuse_echo) {
        log_event("conn %llu fault no_insecure: insecure continuation of "
                  "init:ssl refused", c->id);
        hs_refuse(c);
        return HS_CLOSE;
    }
    handshake_done(c, mode);
    return send_str(c->fd, "ok") ? HS_OK : HS_CLOSE;
}

static enum hs_result hs_insecure(struct conn *c, const char *arg, size_t len,
                                  enum fault f)
{
    (void)arg, (void)len, (void)f;
    return challenge_exchange(c, "insecure", false);
}

/*
 * init:ssl: with certificates "ok:ssl" and the TLS key exchange; without
 * (or under fault no_certificates) a challenge, as a lond without
 * certificates answers, and then the insecure handshake.
 */
static enum hs_result hs_ssl(struct conn *c, const char *arg, size_t len,
                             enum fault f)
{
    (void)arg, (void)len;
    if (!g_tls_ctx || f == FAULT_NO_CERTIFICATES) {
        log_event("conn %llu init:ssl without certificates%s: challenge",
                  c->id, g_tls_ctx ? " (fault no_certificates)" : "");
        c->mode = "ssl->insecure";
        return challenge_exchange(c, "ssl->insecure", f == FAULT_NO_INSECURE);
    }
    if (c->in.start != c->in.end) {
        /* The peer did not wait for ok:ssl; its bytes are not TLS's. */
        atomic_fetch_add(&g_shared->stats.tls_failed, 1);
        log_event("conn %llu data after init:ssl before ok:ssl: closing", c->id);
        return HS_CLOSE;
    }
    if (!send_str(c->fd, "ok:ssl") || !tls_key_exchange(c, f))
        return HS_CLOSE;
    handshake_done(c, "ssl");
    return HS_OK;
}

/*
 * Read the key file (32 hex digits, optional newline; a regular file of
 * mode 0600) and unlink it. NULL on success, else why it is refused (a
 * refused file is left in place).
 */
static const char *read_local_key(const char *path, unsigned char key[IDEA_KEY_LEN],
                                  char *why, size_t why_size)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        snprintf(why, why_size, "cannot open it: %s", strerror(errno));
        return why;
    }
    struct stat sb;
    char buf[40];
    ssize_t n = -1;
    const char *err = NULL;
    if (fstat(fd, &sb) != 0) {
        err = "cannot stat it";
    } else if (!S_ISREG(sb.st_mode)) {
        err = "not a regular file";
    } else if ((sb.st_mode & 07777) != LOCAL_KEY_MODE) {
        snprintf(why, why_size, "mode %04o, not %04o",
                 (unsigned)(sb.st_mode & 07777), (unsigned)LOCAL_KEY_MODE);
        err = why;
    } else {
        n = read(fd, buf, sizeof buf);
        unlink(path);
    }
    close(fd);
    if (err)
        return err;
    size_t len = n > 0 ? (size_t)n : 0;
    if (len > 0 && buf[len - 1] == '\n')
        len--;
    if (len > 0 && buf[len - 1] == '\r')
        len--;
    if (len != 2 * IDEA_KEY_LEN || !hex_decode(buf, len, key)) {
        memset(buf, 0, sizeof buf);
        return "not 32 hex digits";
    }
    memset(buf, 0, sizeof buf);
    return NULL;
}

static enum hs_result hs_local(struct conn *c, const char *arg, size_t len,
                               enum fault f)
{
    (void)f;
    unsigned char key[IDEA_KEY_LEN];
    char why[64];
    const char *err = "bad path";
    if (len > 0 && memchr(arg, '\0', len) == NULL)
        err = read_local_key(arg, key, why, sizeof why);
    if (!err && !cipher_set_key(&c->cipher, &c->have_key, key))
        err = "cannot set the IDEA key";
    memset(key, 0, sizeof key);
    if (err) {
        log_event("conn %llu local key file %s: %s: refused", c->id, arg, err);
        hs_refuse(c);
        return HS_CLOSE;
    }
    atomic_fetch_add(&g_shared->stats.local, 1);
    handshake_done(c, "local");
    return send_str(c->fd, "ok:local") ? HS_OK : HS_CLOSE;
}

/* Order matters: the first matching entry wins. */
static const struct hs_mode hs_modes[] = {
    { "ssl", "init:ssl", "init:ssl:", false, true, hs_ssl },
    { "local", NULL, "init:local:", false, false, hs_local },
    { "insecure", "init", "init::", true, true, hs_insecure },
};

/* *prefixed: the line is the prefix form (init::<v>, init:ssl:<v>, ...). */
static const struct hs_mode *hs_lookup(const char *line, size_t len,
                                       const char **arg, size_t *arg_len,
                                       bool *prefixed)
{
    for (size_t i = 0; i < sizeof hs_modes / sizeof hs_modes[0]; i++) {
        const struct hs_mode *m = &hs_modes[i];
        if (m->exact && equals(line, len, m->exact)) {
            *arg = line + len;
            *arg_len = 0;
            *prefixed = false;
            return m;
        }
        if (m->prefix && has_prefix(line, len, m->prefix)) {
            size_t plen = strlen(m->prefix);
            *arg = line + plen;
            *arg_len = len - plen;
            *prefixed = true;
            return m;
        }
    }
    return NULL;
}

/* --init: why this init line is refused, or NULL. The versioned form
 * needs a version: init:: (empty) counts as neither. */
static const char *init_refusal(const struct hs_mode *m, bool prefixed, size_t v_len)
{
    if (!m->versioned)
        return NULL;
    switch (setting(&g_shared->settings.init)) {
    case INIT_PLAIN:
        return prefixed ? "versioned init refused (--init plain)" : NULL;
    case INIT_VERSIONED:
        return prefixed && v_len > 0 ? NULL :
               "init without a version refused (--init versioned)";
    default:
        return NULL;
    }
}

/* Answer garbage instead of the handshake; refuse whatever comes back. */
static enum hs_result hs_garbage(struct conn *c)
{
    if (!send_garbage(c->fd))
        return HS_CLOSE;
    char *line;
    size_t len;
    if (read_line(c->fd, &c->in, &line, &len) == READ_OK) {
        line_delay();
        hs_refuse(c);
    }
    return HS_CLOSE;
}

static enum hs_result run_handshake(struct conn *c, const char *line, size_t len)
{
    enum fault f = current_fault();
    switch (f) {
    case FAULT_CLOSE_HANDSHAKE:
        log_event("conn %llu fault close_handshake", c->id);
        return HS_CLOSE;
    case FAULT_HANG_HANDSHAKE:
        log_event("conn %llu fault hang_handshake", c->id);
        drain_until_eof(c->fd);
        return HS_CLOSE;
    case FAULT_REFUSE:
        log_event("conn %llu fault refuse: refused", c->id);
        hs_refuse(c);
        return HS_CLOSE;
    case FAULT_NOT_IN_HOST_TABLE:
        log_event("conn %llu fault not_in_host_table: client not in the host "
                  "table: refused", c->id);
        hs_refuse(c);
        return HS_CLOSE;
    default:
        break;
    }
    const char *arg;
    size_t arg_len;
    bool prefixed;
    const struct hs_mode *m = hs_lookup(line, len, &arg, &arg_len, &prefixed);
    if (!m) {
        log_event("conn %llu bad init line: refused", c->id);
        hs_refuse(c);
        return HS_CLOSE;
    }
    c->mode = m->name;
    if (m->versioned && prefixed) {
        size_t keep = arg_len < PEER_VERSION_MAX ? arg_len : PEER_VERSION_MAX;
        memcpy(c->init_version, arg, keep);
        c->init_version[keep] = '\0';
        c->init_versioned = true;
    }
    log_event("conn %llu init mode=%s%s%s", c->id, m->name,
              c->init_versioned ? " version=" : "", c->init_version);
    const char *refusal = init_refusal(m, prefixed, arg_len);
    if (refusal) {
        log_event("conn %llu %s: refused", c->id, refusal);
        hs_refuse(c);
        return HS_CLOSE;
    }
    if (f == FAULT_NO_INSECURE && m->insecure) {
        log_event("conn %llu fault no_insecure: refused", c->id);
        hs_refuse(c);
        return HS_CLOSE;
    }
    if (f == FAULT_GARBAGE_HANDSHAKE) {
        log_event("conn %llu fault garbage_handshake", c->id);
        return hs_garbage(c);
    }
    return m->run(c, arg, arg_len, f);
}

/* ------------------------------------------------------------------------ */
/* Control connections                                                      */
/* ------------------------------------------------------------------------ */

/* ctl:<name>=<value> for a setting: "ok", "error:bad_value", or NULL
 * when cmd names no setting. */
static const char *control_setting(const char *cmd, size_t len)
{
    struct settings *st = &g_shared->settings;
    const struct {
        const char *name;
        const struct setting_name *names;
        size_t n;
        atomic_int *slot;
    } enums[] = {
        { "sethost=", NAMES(sethost_names), &st->sethost },
        { "init=", NAMES(init_names), &st->init },
        { "key_id_order=", NAMES(key_order_names), &st->key_order },
        { "tls_close_notify=", NAMES(close_notify_names), &st->close_notify },
    };
    for (size_t i = 0; i < sizeof enums / sizeof enums[0]; i++) {
        if (!has_prefix(cmd, len, enums[i].name))
            continue;
        size_t nl = strlen(enums[i].name);
        int v;
        if (!setting_lookup(enums[i].names, enums[i].n, cmd + nl, len - nl, &v))
            return "error:bad_value";
        atomic_store(enums[i].slot, v);
        return "ok";
    }
    if (has_prefix(cmd, len, "delay=")) {
        unsigned long long ms;
        if (!parse_u64(cmd + 6, len - 6, SLEEP_MS_MAX, &ms))
            return "error:bad_value";
        atomic_store(&g_shared->settings.delay_ms, ms);
        return "ok";
    }
    if (has_prefix(cmd, len, "require_version=")) {
        if (!set_require_version(cmd + 16, len - 16))
            return "error:bad_value";
        return "ok";
    }
    return NULL;
}

static void serve_control(struct conn *c, const char *cmd, size_t len)
{
    char buf[512];
    const char *answer = control_setting(cmd, len);
    enum fault f;
    if (answer) {
        if (!strcmp(answer, "ok"))
            log_event("ctl %.*s", (int)len, cmd);
        send_str(c->fd, answer);
        return;
    }
    answer = buf;
    if (equals(cmd, len, "settings")) {
        settings_format(buf, sizeof buf);
    } else if (equals(cmd, len, "stats")) {
        stats_format(buf, sizeof buf);
    } else if (equals(cmd, len, "reset")) {
        stats_reset();
        records_reset();
        answer = "ok";
    } else if (has_prefix(cmd, len, "recorded=")) {
        snprintf(buf, sizeof buf, "%lu", records_get(cmd + 9, len - 9));
    } else if (equals(cmd, len, "ping")) {
        answer = "pong";
    } else if (has_prefix(cmd, len, "fault=")) {
        if (fault_lookup(cmd + 6, len - 6, &f)) {
            atomic_store(&g_shared->fault, (int)f);
            log_event("ctl fault=%.*s", (int)(len - 6), cmd + 6);
            answer = "ok";
        } else {
            answer = "error:unknown_fault";
        }
    } else {
        answer = "error:unknown_ctl";
    }
    send_str(c->fd, answer);
}

/* ------------------------------------------------------------------------ */
/* Connection thread or process                                             */
/* ------------------------------------------------------------------------ */

static void serve_connection(struct conn *c)
{
    char *line;
    size_t len;
    atomic_fetch_add(&g_shared->stats.accepted, 1);
    if (read_line(c->fd, &c->in, &line, &len) != READ_OK)
        return; /* closed or garbage before any line: not a connection */
    if (has_prefix(line, len, "ctl:")) {
        atomic_fetch_sub(&g_shared->stats.accepted, 1);
        serve_control(c, line + 4, len - 4);
        return;
    }
    stats_conn_opened();
    log_event("conn %llu open peer=%s", c->id, c->peer);
    const char *why = "handshake failed";
    if (g_config.no_handshake) {
        c->mode = "none";
        line_delay();
        why = serve_requests(c, line, len);
    } else {
        hs_begin(c);
        line_delay();
        if (run_handshake(c, line, len) == HS_OK)
            why = serve_requests(c, NULL, 0);
    }
    hs_end(c);
    stats_conn_closed();
    log_event("conn %llu closed (%s) requests=%llu peer_version=%s", c->id, why,
              c->requests, c->peer_version[0] ? c->peer_version : "-");
}

static void *conn_thread(void *arg)
{
    struct conn *c = arg;
    serve_connection(c);
    conn_free(c);
    return NULL;
}

static void set_socket_options(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static void start_connection(const pthread_attr_t *attr, int fd,
                             const struct sockaddr_storage *addr, socklen_t addr_len)
{
    set_socket_options(fd);
    struct conn *c = conn_new(fd, addr, addr_len);
    if (!c) {
        log_event("out of memory: dropping connection");
        close(fd);
        return;
    }
    pthread_t tid;
    int err = pthread_create(&tid, attr, conn_thread, c);
    if (err != 0) {
        log_event("pthread_create: %s: dropping connection", strerror(err));
        conn_free(c);
    }
}

/* ------------------------------------------------------------------------ */
/* Listening socket, signals, accept loop                                   */
/* ------------------------------------------------------------------------ */

/*
 * Stop signals: SIGTERM/SIGINT stay blocked in every thread and are taken
 * synchronously by the signal thread, which wakes the accept loop through a
 * pipe. Without an asynchronous handler this also works under the
 * sanitizers (TSan defers asynchronous handlers). With --fork, SIGCHLD is
 * in the set too: the signal thread reaps the exited children with
 * waitpid() (not SIG_IGN/SA_NOCLDWAIT, which would leave their CPU time
 * out of the parent's cutime/cstime).
 */
struct stop_signal {
    sigset_t set;
    int wake_fd;      /* write end of the wake-up pipe */
    atomic_int signo; /* the signal that arrived, 0 until then */
};

static struct stop_signal g_stop = { .wake_fd = -1 };

/* Reap every child that has exited; signals coalesce, so loop. */
static void reap_children(void)
{
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
}

static void *signal_thread(void *arg)
{
    (void)arg;
    int sig = 0;
    for (;;) {
        if (sigwait(&g_stop.set, &sig) != 0)
            continue;
        if (sig != SIGCHLD)
            break;
        reap_children();
    }
    atomic_store(&g_stop.signo, sig);
    ssize_t w;
    do {
        w = write(g_stop.wake_fd, "x", 1);
    } while (w < 0 && errno == EINTR);
    return NULL;
}

/*
 * Ignore SIGPIPE, block SIGTERM/SIGINT (and SIGCHLD with --fork; inherited
 * by every later thread) and start the signal thread. Returns the read end
 * of the wake-up pipe, or -1.
 */
static int setup_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    sigemptyset(&g_stop.set);
    sigaddset(&g_stop.set, SIGTERM);
    sigaddset(&g_stop.set, SIGINT);
    if (g_config.fork_mode)
        sigaddset(&g_stop.set, SIGCHLD);
    pthread_sigmask(SIG_BLOCK, &g_stop.set, NULL);
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0)
        return -1;
    g_stop.wake_fd = fds[1];
    pthread_t tid;
    int err = pthread_create(&tid, NULL, signal_thread, NULL);
    if (err != 0) {
        errno = err;
        return -1;
    }
    pthread_detach(tid);
    return fds[0];
}

static int open_listener(const char *addr, const char *port)
{
    struct addrinfo hints, *res, *ai;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int err = getaddrinfo(addr, port, &hints, &res);
    if (err != 0) {
        fprintf(stderr, "testlond: %s port %s: %s\n", addr, port, gai_strerror(err));
        return -1;
    }
    int fd = -1;
    for (ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0)
            continue;
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
            listen(fd, LISTEN_BACKLOG) == 0)
            break;
        close(fd);
        fd = -1;
    }
    if (fd < 0)
        fprintf(stderr, "testlond: cannot listen on %s port %s: %s\n", addr, port,
                strerror(errno));
    freeaddrinfo(res);
    return fd;
}

static int bound_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        return -1;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return -1;
}

static pid_t g_main_pid; /* the listening process (--fork: the parent) */

/*
 * --fork, in the child: keep nothing of the parent's but the connection
 * (close the listening socket and both ends of the wake-up pipe), take
 * the default action for SIGTERM/SIGINT again, and die with the parent
 * (PR_SET_PDEATHSIG), as connection threads end when the process exits.
 */
static void child_setup(int listen_fd, int wake_fd)
{
    close(listen_fd);
    close(wake_fd);
    close(g_stop.wake_fd);
    sigset_t none;
    sigemptyset(&none);
    pthread_sigmask(SIG_SETMASK, &none, NULL);
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != g_main_pid)
        _exit(0); /* the parent is gone already */
}

/*
 * --fork: serve the connection in a child process, as lond does. The
 * parent's signal thread reaps every child (waitpid), so the children's
 * CPU time is counted in the parent's cutime/cstime. A child counts and
 * logs as a thread would, through the shared mapping.
 */
static void start_connection_fork(int fd, const struct sockaddr_storage *addr,
                                  socklen_t addr_len, int listen_fd, int wake_fd)
{
    set_socket_options(fd);
    pid_t pid = fork();
    if (pid < 0) {
        int err = errno;
        log_event("fork: %s: dropping connection", strerror(err));
        close(fd);
        if (err == EAGAIN || err == ENOMEM)
            sleep_ms(10); /* at the process limit: let some children end */
        return;
    }
    if (pid > 0) {
        close(fd);
        return;
    }
    child_setup(listen_fd, wake_fd);
    struct conn *c = conn_new(fd, addr, addr_len);
    if (!c) {
        log_event("out of memory: dropping connection");
        _exit(1);
    }
    serve_connection(c);
    conn_free(c);
    _exit(0);
}

/* Wait for a connection or a stop signal; false once a signal arrived. */
static bool wait_readable(int listen_fd, int wake_fd)
{
    for (;;) {
        struct pollfd pfd[2] = {
            { .fd = listen_fd, .events = POLLIN },
            { .fd = wake_fd, .events = POLLIN },
        };
        int n = poll(pfd, 2, -1);
        if (n > 0 && pfd[1].revents != 0)
            return false;
        if (n > 0)
            return true;
        if (n < 0 && errno != EINTR)
            return true; /* let accept() report the problem */
    }
}

static void accept_loop(int listen_fd, int wake_fd)
{
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    size_t stack = THREAD_STACK_SIZE;
    if (stack < (size_t)PTHREAD_STACK_MIN)
        stack = (size_t)PTHREAD_STACK_MIN;
    pthread_attr_setstacksize(&attr, stack);

    while (wait_readable(listen_fd, wake_fd)) {
        struct sockaddr_storage addr;
        socklen_t addr_len = sizeof addr;
        int fd = accept4(listen_fd, (struct sockaddr *)&addr, &addr_len,
                         SOCK_CLOEXEC);
        if (fd >= 0 && g_config.fork_mode) {
            start_connection_fork(fd, &addr, addr_len, listen_fd, wake_fd);
            continue;
        }
        if (fd >= 0) {
            start_connection(&attr, fd, &addr, addr_len);
            continue;
        }
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
            errno == ENOMEM) {
            log_event("accept: %s", strerror(errno));
            sleep_ms(10);
        }
    }
    pthread_attr_destroy(&attr);
}

/* ------------------------------------------------------------------------ */
/* Command line                                                             */
/* ------------------------------------------------------------------------ */

static void usage(FILE *out)
{
    fprintf(out,
            "usage: testlond [--port N] [--bind ADDR] [--host-id ID] "
            "[--client-id ID]\n"
            "                [--tls-cert FILE --tls-key FILE --tls-ca FILE]\n"
            "                [--tls-timeout MS] [--no-handshake] [--fork] "
            "[--fault NAME]\n"
            "                [--quiet] [--sethost MODE] [--init MODE]\n"
            "                [--key-id-order ORDER] [--require-version V]\n"
            "                [--tls-close-notify send|omit] [--delay MS]\n"
            "  --port N          TCP port, 0 (default) picks a free one\n"
            "  --bind ADDR       listen address (default 127.0.0.1; ::1 works)\n"
            "  --host-id ID      this lond's host ID (default testlond)\n"
            "  --client-id ID    the lonc's host ID, for ekey (default lonc-test)\n"
            "  --tls-cert FILE   lond's certificate (chain), PEM\n"
            "  --tls-key FILE    its private key, PEM\n"
            "  --tls-ca FILE     CA that client certificates must chain to\n"
            "                    (all three: ssl mode; none: init:ssl gets a\n"
            "                    challenge, as from a lond without certificates)\n"
            "  --tls-timeout MS  limit for the whole TLS exchange (default %llu)\n"
            "  --no-handshake    no init line, no key: every line is a command\n"
            "  --fork            serve each connection in a forked child process,\n"
            "                    as lond does (default: a thread per connection);\n"
            "                    faults, ctl:stats and record: counts are shared\n"
            "                    by all children; children are reaped\n"
            "  --fault NAME      initial fault: none refuse hang_handshake\n"
            "                    garbage_handshake close_handshake\n"
            "                    close_after_reply no_insecure not_in_host_table\n"
            "                    no_certificates stop_reading tls_no_close_notify\n"
            "                    extra_after_reply\n"
            "  --quiet           no log lines on stderr\n"
            "Protocol settings (each also a ctl:<name>=<value> command):\n"
            "  --sethost MODE    inline (default): sethost:<id> and\n"
            "                    sethost:<id>:<cmd>; bare: the in-line form is\n"
            "                    unknown_cmd; none: every sethost: is unknown_cmd\n"
            "  --init MODE       any (default); plain: init::<v>, init:ssl:<v>\n"
            "                    refused; versioned: init, init:ssl refused\n"
            "  --key-id-order O  remote_first (default): ekey key from this\n"
            "                    lond's ID then the client's; local_first\n"
            "  --require-version V  version:<other> is refused (and closed)\n"
            "  --tls-close-notify send (default) | omit: read the client's\n"
            "                    close_notify, send none, go on in plain text\n"
            "  --delay MS        hold every line read MS ms before handling it\n"
            "Prints \"ready port=<N>\" on stdout once listening.\n",
            TLS_TIMEOUT_MS);
}

/* A protocol setting from the command line: the same as its ctl: command. */
static bool option_setting(int opt, const char *value)
{
    static const struct {
        int opt;
        const char *option;
        const char *ctl;
    } map[] = {
        { 's', "--sethost", "sethost=" },
        { 'i', "--init", "init=" },
        { 'K', "--key-id-order", "key_id_order=" },
        { 'V', "--require-version", "require_version=" },
        { 'N', "--tls-close-notify", "tls_close_notify=" },
        { 'D', "--delay", "delay=" },
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        if (map[i].opt != opt)
            continue;
        char cmd[128];
        int n = snprintf(cmd, sizeof cmd, "%s%s", map[i].ctl, value);
        const char *answer = n > 0 && (size_t)n < sizeof cmd ?
            control_setting(cmd, (size_t)n) : NULL;
        if (answer && !strcmp(answer, "ok"))
            return true;
        fprintf(stderr, "testlond: bad %s: %s\n", map[i].option, value);
        return false;
    }
    return false;
}

static bool parse_args(int argc, char **argv)
{
    static const struct option options[] = {
        { "port", required_argument, NULL, 'p' },
        { "bind", required_argument, NULL, 'b' },
        { "host-id", required_argument, NULL, 'H' },
        { "client-id", required_argument, NULL, 'C' },
        { "fault", required_argument, NULL, 'f' },
        { "tls-cert", required_argument, NULL, 'c' },
        { "tls-key", required_argument, NULL, 'k' },
        { "tls-ca", required_argument, NULL, 'a' },
        { "tls-timeout", required_argument, NULL, 'T' },
        { "no-handshake", no_argument, NULL, 'n' },
        { "fork", no_argument, NULL, 'F' },
        { "quiet", no_argument, NULL, 'q' },
        { "sethost", required_argument, NULL, 's' },
        { "init", required_argument, NULL, 'i' },
        { "key-id-order", required_argument, NULL, 'K' },
        { "require-version", required_argument, NULL, 'V' },
        { "tls-close-notify", required_argument, NULL, 'N' },
        { "delay", required_argument, NULL, 'D' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    unsigned long long port, ms;
    enum fault f;
    int opt;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (opt) {
        case 'p':
            if (!parse_u64(optarg, strlen(optarg), 65535, &port)) {
                fprintf(stderr, "testlond: bad port: %s\n", optarg);
                return false;
            }
            g_config.port = optarg;
            break;
        case 'b':
            g_config.bind_addr = optarg;
            break;
        case 'H':
            if (strlen(optarg) == 0 || strlen(optarg) > HOST_ID_MAX) {
                fprintf(stderr, "testlond: bad host id\n");
                return false;
            }
            g_config.host_id = optarg;
            break;
        case 'C':
            g_config.client_id = optarg;
            break;
        case 'f':
            if (!fault_lookup(optarg, strlen(optarg), &f)) {
                fprintf(stderr, "testlond: unknown fault: %s\n", optarg);
                return false;
            }
            atomic_store(&g_shared->fault, (int)f);
            break;
        case 'c':
            g_config.tls_cert = optarg;
            break;
        case 'k':
            g_config.tls_key = optarg;
            break;
        case 'a':
            g_config.tls_ca = optarg;
            break;
        case 'T':
            if (!parse_u64(optarg, strlen(optarg), SLEEP_MS_MAX, &ms) || ms == 0) {
                fprintf(stderr, "testlond: bad --tls-timeout: %s\n", optarg);
                return false;
            }
            g_config.tls_timeout_ms = ms;
            break;
        case 'n':
            g_config.no_handshake = true;
            break;
        case 'F':
            g_config.fork_mode = true;
            break;
        case 'q':
            g_config.quiet = true;
            break;
        case 's':
        case 'i':
        case 'K':
        case 'N':
        case 'D':
        case 'V':
            if (!option_setting(opt, optarg))
                return false;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            return false;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "testlond: unexpected argument: %s\n", argv[optind]);
        return false;
    }
    int tls_opts = !!g_config.tls_cert + !!g_config.tls_key + !!g_config.tls_ca;
    if (tls_opts != 0 && tls_opts != 3) {
        fprintf(stderr, "testlond: --tls-cert, --tls-key and --tls-ca go "
                        "together\n");
        return false;
    }
    return true;
}

int main(int argc, char **argv)
{
    /* Before parse_args: --fault stores into the shared mapping. */
    if (!shared_init()) {
        fprintf(stderr, "testlond: cannot set up the shared state: %s\n",
                strerror(errno));
        return 1;
    }
    if (!parse_args(argc, argv)) {
        usage(stderr);
        return 2;
    }
    if (g_config.fork_mode && !shared_lock_free()) {
        fprintf(stderr, "testlond: --fork: the counters are not lock-free "
                        "atomics on this platform, so child processes "
                        "cannot share them; run without --fork\n");
        return 1;
    }
    g_main_pid = getpid();
    if (!crypto_init()) {
        fprintf(stderr, "testlond: libgcrypt IDEA unavailable or self-test failed\n");
        return 1;
    }
    /* No atexit cleanup: connection threads may still be inside OpenSSL
     * when main returns (and --fork children leave with _exit()). */
    if (OPENSSL_init_ssl(OPENSSL_INIT_NO_ATEXIT, NULL) != 1) {
        fprintf(stderr, "testlond: cannot initialise OpenSSL\n");
        return 1;
    }
    if (g_config.tls_cert) {
        g_tls_ctx = tls_ctx_new(g_config.tls_cert, g_config.tls_key,
                                g_config.tls_ca);
        if (!g_tls_ctx)
            return 1;
    }
    for (size_t i = 0; i < sizeof g_pattern; i++)
        g_pattern[i] = (char)('a' + i % 26);

    int wake_fd = setup_signals();
    if (wake_fd < 0) {
        fprintf(stderr, "testlond: cannot set up signal handling: %s\n",
                strerror(errno));
        return 1;
    }
    int listen_fd = open_listener(g_config.bind_addr, g_config.port);
    if (listen_fd < 0)
        return 1;
    printf("ready port=%d\n", bound_port(listen_fd));
    fflush(stdout);
    log_event("listening on %s port %d, host id %s, %s, %s per connection",
              g_config.bind_addr, bound_port(listen_fd), g_config.host_id,
              g_config.no_handshake ? "no handshake" :
              g_tls_ctx ? "ssl mode available" : "no certificates",
              g_config.fork_mode ? "a process" : "a thread");

    accept_loop(listen_fd, wake_fd);

    log_event("signal %d: exiting", atomic_load(&g_stop.signo));
    close(listen_fd);
    return 0;
}

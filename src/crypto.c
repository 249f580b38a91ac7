/*
 * crypto.c - the only file that includes OpenSSL or libgcrypt.
 * IDEA-ECB through libgcrypt; TLS client contexts, the TLS part of the
 * ssl key exchange and random bytes through OpenSSL.  A cipher handle
 * and an SSL object belong to one worker (one lond connection); an
 * SSL_CTX is shared read-only.  Both libraries are thread-safe once
 * initialised by crypto_init(); no locks of our own.
 * May call: net (waiting on the socket), util.
 */
#include "crypto.h"

#include <errno.h>
#include <gcrypt.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "net.h"

struct crypto_idea {
	gcry_cipher_hd_t hd;
};

int crypto_init(void)
{
	if (!gcry_check_version(GCRYPT_VERSION))
		return -1;
	/* Session keys live in ordinary memory in lond too; secure memory
	 * would need privileges and buys nothing here. */
	gcry_control(GCRYCTL_DISABLE_SECMEM, 0);
	gcry_control(GCRYCTL_INITIALIZATION_FINISHED, 0);
	if (OPENSSL_init_ssl(0, NULL) != 1)
		return -1;
	return 0;
}

struct crypto_idea *crypto_idea_new(const unsigned char key[CRYPTO_IDEA_KEY])
{
	struct crypto_idea *c = xcalloc(1, sizeof(*c));

	if (gcry_cipher_open(&c->hd, GCRY_CIPHER_IDEA, GCRY_CIPHER_MODE_ECB, 0))
		goto fail;
	if (gcry_cipher_setkey(c->hd, key, CRYPTO_IDEA_KEY)) {
		gcry_cipher_close(c->hd);
		goto fail;
	}
	return c;
fail:
	free(c);
	return NULL;
}

void crypto_idea_free(struct crypto_idea *c)
{
	if (!c)
		return;
	gcry_cipher_close(c->hd);
	free(c);
}

int crypto_idea_encrypt(struct crypto_idea *c, unsigned char *buf, size_t n)
{
	if (n % CRYPTO_IDEA_BLOCK)
		return -1;
	return gcry_cipher_encrypt(c->hd, buf, n, NULL, 0) ? -1 : 0;
}

int crypto_idea_decrypt(struct crypto_idea *c, unsigned char *buf, size_t n)
{
	if (n % CRYPTO_IDEA_BLOCK)
		return -1;
	return gcry_cipher_decrypt(c->hd, buf, n, NULL, 0) ? -1 : 0;
}

int crypto_random(void *buf, size_t n)
{
	return RAND_bytes(buf, (int)n) == 1 ? 0 : -1;
}

struct crypto_tls {
	SSL_CTX *ctx;
	bool verify_hostname;
	atomic_int refs;
};

/* The newest OpenSSL error as text ("" when none). */
static void ssl_error(char *out, size_t n)
{
	unsigned long e = ERR_get_error();

	if (e)
		ERR_error_string_n(e, out, n);
	else
		snprintf(out, n, "%s", errno ? strerror(errno) : "unknown");
	ERR_clear_error();
}

/* Pin each of the n files (pin_regular: a FIFO at the end of someone's
 * symlink must not hang the start, a device is never opened) and name
 * it by its pin for OpenSSL.  0, or -1 with a message (pins closed). */
static int pin_files(const char *const *paths, int *pins, char (*names)[32], int n,
		     char *err, size_t errlen)
{
	for (int i = 0; i < n; i++) {
		struct stat st;

		pins[i] = pin_regular(paths[i], &st);
		if (pins[i] < 0) {
			snprintf(err, errlen, "%s: %s", paths[i],
				 errno == EINVAL ? "not a regular file" : strerror(errno));
			while (i-- > 0)
				close(pins[i]);
			return -1;
		}
		pinned_name(pins[i], names[i], sizeof(names[i]));
	}
	return 0;
}

/* OpenSSL fills a certificate's cached extensions (key IDs, flags)
 * the first time a verification needs them, under the certificate's
 * lock, and reads them afterwards without it: workers verifying at once
 * would race on the CA's.  Filled here, before any worker runs. */
static void cache_extensions(SSL_CTX *ctx)
{
	STACK_OF(X509_OBJECT) *objs = X509_STORE_get0_objects(SSL_CTX_get_cert_store(ctx));
	X509 *own = SSL_CTX_get0_certificate(ctx);

	for (int i = 0; objs && i < sk_X509_OBJECT_num(objs); i++) {
		X509 *x = X509_OBJECT_get0_X509(sk_X509_OBJECT_value(objs, i));

		if (x)
			(void)X509_check_purpose(x, -1, 0);
	}
	if (own)
		(void)X509_check_purpose(own, -1, 0);
}

/* Load the CA, certificate chain and key through their pinned names.
 * NULL, or the file (or check) that failed. */
static const char *load_files(SSL_CTX *ctx, const char *const *paths, char (*names)[32])
{
	if (SSL_CTX_load_verify_locations(ctx, names[0], NULL) != 1)
		return paths[0];
	if (SSL_CTX_use_certificate_chain_file(ctx, names[1]) != 1)
		return paths[1];
	if (SSL_CTX_use_PrivateKey_file(ctx, names[2], SSL_FILETYPE_PEM) != 1)
		return paths[2];
	if (SSL_CTX_check_private_key(ctx) != 1)
		return "the key does not match the certificate";
	cache_extensions(ctx);
	return NULL;
}

struct crypto_tls *crypto_tls_new(const char *ca_file, const char *cert_file,
				  const char *key_file, bool verify_hostname,
				  char *err, size_t errlen)
{
	const char *const paths[3] = { ca_file, cert_file, key_file };
	char names[3][32], why[256];
	int pins[3];

	if (pin_files(paths, pins, names, 3, err, errlen) < 0)
		return NULL;

	struct crypto_tls *t = xcalloc(1, sizeof(*t));
	const char *what = "cannot create a TLS context";

	t->verify_hostname = verify_hostname;
	atomic_init(&t->refs, 1);
	t->ctx = SSL_CTX_new(TLS_client_method());
	if (t->ctx) {
		SSL_CTX_set_min_proto_version(t->ctx, TLS1_2_VERSION);
		SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER, NULL);
		/* No session tickets or resumption: each key exchange is fresh. */
		SSL_CTX_set_session_cache_mode(t->ctx, SSL_SESS_CACHE_OFF);
		SSL_CTX_set_options(t->ctx, SSL_OP_NO_TICKET);
		what = load_files(t->ctx, paths, names);
	}
	for (int i = 0; i < 3; i++)
		close(pins[i]);
	if (!what)
		return t;
	ssl_error(why, sizeof(why));
	snprintf(err, errlen, "%s: %s", what, why);
	crypto_tls_free(t);
	return NULL;
}

struct crypto_tls *crypto_tls_ref(struct crypto_tls *t)
{
	atomic_fetch_add(&t->refs, 1);
	return t;
}

void crypto_tls_free(struct crypto_tls *t)
{
	if (!t || atomic_fetch_sub(&t->refs, 1) != 1)
		return;
	SSL_CTX_free(t->ctx);
	free(t);
}

/* After an SSL call returned rc <= 0: wait for what it wants.  0 to
 * retry, -1 on a real error or the deadline. */
static int tls_wait(SSL *ssl, int fd, int rc, int64_t deadline)
{
	switch (SSL_get_error(ssl, rc)) {
	case SSL_ERROR_WANT_READ: return net_wait_readable(fd, deadline);
	case SSL_ERROR_WANT_WRITE: return net_wait_writable(fd, deadline);
	default: return -1;
	}
}

static void tls_fail(SSL *ssl, const char *step, char *err, size_t errlen)
{
	char why[256];
	long vr = SSL_get_verify_result(ssl);

	if (errno == ETIMEDOUT) {
		snprintf(err, errlen, "TLS %s: timed out", step);
	} else if (vr != X509_V_OK) {
		snprintf(err, errlen, "TLS %s: certificate verification failed: %s",
			 step, X509_verify_cert_error_string(vr));
	} else {
		ssl_error(why, sizeof(why));
		snprintf(err, errlen, "TLS %s: %s", step, why);
	}
	ERR_clear_error();
}

/* How long a lenient close waits for lond's close_notify. */
#define LENIENT_WAIT_MS 250

/* Is what lond sends next a TLS record (its close_notify), rather than
 * plain text?  Waits until `until` for anything to arrive; false when
 * nothing came.  Looks without taking (MSG_PEEK): a plain-text byte is
 * left for the plain-text reader. */
static bool tls_record_next(int fd, int64_t until)
{
	unsigned char h[3];
	struct pollfd p = { .fd = fd, .events = POLLIN };
	int64_t left = until - now_ms();

	if (left <= 0 || poll(&p, 1, (int)left) <= 0)
		return false;
	ssize_t n = recv(fd, h, sizeof(h), MSG_PEEK | MSG_DONTWAIT);
	/* A record header: type 20..24, then version 3.x. */
	return n >= 1 && h[0] >= 20 && h[0] <= 24 && (n < 2 || h[1] == 3);
}

/* close_notify both ways: ours, then lond's.  Lenient: lond's is waited
 * for LENIENT_WAIT_MS only, and not read at all when plain text comes
 * first.  0, or -1 with a reason in err. */
static int tls_shutdown(SSL *ssl, int fd, int64_t deadline, bool lenient,
			char *err, size_t errlen)
{
	int64_t until = now_ms() + LENIENT_WAIT_MS;
	int r;

	if (until > deadline)
		until = deadline;
	while ((r = SSL_shutdown(ssl)) != 1) {
		if (lenient && (r == 0 || SSL_get_error(ssl, r) == SSL_ERROR_WANT_READ) &&
		    !tls_record_next(fd, until))
			return 0;   /* ours went; lond sends none: plain text now */
		if (r == 0 && now_ms() < deadline)
			continue;   /* ours sent; call again to read lond's */
		if (r == 0) {
			errno = ETIMEDOUT;
			tls_fail(ssl, "close_notify exchange", err, errlen);
			return -1;
		}
		if (tls_wait(ssl, fd, r, deadline) < 0) {
			tls_fail(ssl, "close_notify exchange", err, errlen);
			return -1;
		}
	}
	return 0;
}

int crypto_tls_key_exchange(struct crypto_tls *t, int fd, const char *peer_name,
			    int64_t deadline, bool lenient, char *line, size_t n,
			    size_t *len, char *err, size_t errlen)
{
	SSL *ssl = SSL_new(t->ctx);
	size_t have = 0;
	int rc = -1, r;

	if (!ssl) {
		snprintf(err, errlen, "TLS: cannot create a connection object");
		return -1;
	}
	ERR_clear_error();
	errno = 0;
	if (SSL_set_fd(ssl, fd) != 1)
		goto out;
	if (peer_name) {
		/* The SNI macro casts away const: give it our own copy. */
		char sni[256];

		str_copy(sni, peer_name, sizeof(sni));
		SSL_set_tlsext_host_name(ssl, sni);
		if (t->verify_hostname && SSL_set1_host(ssl, peer_name) != 1)
			goto out;
	}
	while ((r = SSL_connect(ssl)) != 1) {
		if (tls_wait(ssl, fd, r, deadline) < 0) {
			tls_fail(ssl, "handshake", err, errlen);
			goto out;
		}
	}
	/* The key line. */
	for (;;) {
		if (have + 1 >= n) {
			snprintf(err, errlen, "TLS: key line too long");
			goto out;
		}
		r = SSL_read(ssl, line + have, (int)(n - 1 - have));
		if (r <= 0) {
			if (tls_wait(ssl, fd, r, deadline) < 0) {
				tls_fail(ssl, "reading the key", err, errlen);
				goto out;
			}
			continue;
		}
		char *nl = memchr(line + have, '\n', (size_t)r);
		have += (size_t)r;
		if (nl) {
			if ((size_t)(nl - line) + 1 != have) {
				snprintf(err, errlen, "TLS: data after the key line");
				goto out;
			}
			*len = (size_t)(nl - line);
			if (*len && line[*len - 1] == '\r')
				(*len)--;
			break;
		}
	}
	if (tls_shutdown(ssl, fd, deadline, lenient, err, errlen) < 0)
		goto out;
	rc = 0;
out:
	if (rc < 0 && !*err)
		tls_fail(ssl, "setup", err, errlen);
	SSL_free(ssl);
	return rc;
}

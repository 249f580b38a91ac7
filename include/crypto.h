/*
 * crypto.h - the cryptography lonc needs: IDEA (ECB, 128-bit key) from
 * libgcrypt, because Debian's OpenSSL is built without IDEA; TLS and
 * random numbers from OpenSSL.
 */
#ifndef LONC_CRYPTO_H
#define LONC_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define CRYPTO_IDEA_BLOCK 8
#define CRYPTO_IDEA_KEY 16

struct crypto_idea;
struct crypto_tls;

/* Initialise the libraries once, before any thread starts.  0 or -1. */
int crypto_init(void) WUR;

/* A cipher for one session key (16 bytes).  NULL on failure. */
struct crypto_idea *crypto_idea_new(const unsigned char key[CRYPTO_IDEA_KEY]);
void crypto_idea_free(struct crypto_idea *c);

/* Encrypt / decrypt n bytes in place, n a multiple of 8 (ECB).  0 or -1. */
int crypto_idea_encrypt(struct crypto_idea *c, unsigned char *buf, size_t n) WUR;
int crypto_idea_decrypt(struct crypto_idea *c, unsigned char *buf, size_t n) WUR;

/* Fill buf with n bytes from OpenSSL's RNG.  0 or -1. */
int crypto_random(void *buf, size_t n) WUR;

/* A TLS client context: our certificate and key, and the CA that
 * lond's certificate must chain to.  TLS 1.2 or newer.  NULL on failure
 * with a message in err. */
struct crypto_tls *crypto_tls_new(const char *ca_file, const char *cert_file,
				  const char *key_file, bool verify_hostname,
				  char *err, size_t errlen);
/* Reference counting: crypto_tls_free drops one reference. */
struct crypto_tls *crypto_tls_ref(struct crypto_tls *t);
void crypto_tls_free(struct crypto_tls *t);

/* The TLS part of the ssl key exchange on a connected non-blocking fd:
 * handshake (lond's certificate verified against the CA and, if the
 * context says so, against `peer_name`), read one line (the key), then
 * the close_notify exchange in both directions, so that the socket goes
 * on in plain text with no TLS record left in it (lenient: lond's
 * close_notify is waited for briefly and, if none comes, the socket goes
 * on without it; no plain-text byte is taken for TLS).  Everything
 * before deadline.  0 with the line (no '\n') in line[0..*len), or -1
 * with a reason in err. */
int crypto_tls_key_exchange(struct crypto_tls *t, int fd, const char *peer_name,
			    int64_t deadline, bool lenient, char *line, size_t n,
			    size_t *len, char *err, size_t errlen) WUR;

#endif

/*
 * crypto.h - the ciphers lonc needs.  IDEA (ECB, 128-bit key) comes from
 * libgcrypt, because Debian's OpenSSL is built without IDEA.
 */
#ifndef LONC_CRYPTO_H
#define LONC_CRYPTO_H

#include <stddef.h>

#include "util.h"

#define CRYPTO_IDEA_BLOCK 8
#define CRYPTO_IDEA_KEY 16

struct crypto_idea;

/* Initialise the libraries once, before any thread starts.  0 or -1. */
int crypto_init(void) WUR;

/* A cipher for one session key (16 bytes).  NULL on failure. */
struct crypto_idea *crypto_idea_new(const unsigned char key[CRYPTO_IDEA_KEY]);
void crypto_idea_free(struct crypto_idea *c);

/* Encrypt / decrypt n bytes in place, n a multiple of 8 (ECB).  0 or -1. */
int crypto_idea_encrypt(struct crypto_idea *c, unsigned char *buf, size_t n) WUR;
int crypto_idea_decrypt(struct crypto_idea *c, unsigned char *buf, size_t n) WUR;

/* Fill buf with n bytes from a cryptographic RNG.  0 or -1. */
int crypto_random(void *buf, size_t n) WUR;

#endif

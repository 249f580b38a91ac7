/*
 * crypto.c - IDEA-ECB through libgcrypt, and random bytes.  A cipher
 * handle belongs to one worker (one lond connection), so no locks;
 * libgcrypt itself is thread-safe once initialised by crypto_init().
 */
#include "crypto.h"

#include <gcrypt.h>
#include <stdlib.h>
#include <sys/random.h>

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
	gcry_randomize(buf, n, GCRY_STRONG_RANDOM);
	return 0;
}

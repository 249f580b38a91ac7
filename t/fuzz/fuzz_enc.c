/*
 * libFuzzer target: the enc: reply decoder.  Any line must be refused or
 * decoded to at most as many bytes as it had, never read or write out
 * of bounds; and encode/decode of the same bytes must round-trip.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "lond.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct crypto_idea *cipher(void)
{
	static struct crypto_idea *c;
	static const unsigned char key[16] = "0123456789abcdef";

	if (!c) {
		if (crypto_init() < 0)
			abort();
		c = crypto_idea_new(key);
	}
	return c;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct crypto_idea *c = cipher();
	char *line = malloc(size + 1);
	size_t plain;

	memcpy(line, data, size);
	if (lond_enc_decode(c, line, size, &plain) == 0 && plain > size)
		__builtin_trap();
	free(line);

	char *out = malloc(lond_enc_size(0, size));
	long n = lond_enc_encode(c, "", 0, (const char *)data, size, out);
	if (n < 1 || out[n - 1] != '\n')
		__builtin_trap();
	if (lond_enc_decode(c, out, (size_t)n - 1, &plain) < 0 || plain != size ||
	    memcmp(out, data, size) != 0)
		__builtin_trap();
	free(out);
	return 0;
}

/*
 * libFuzzer target: the reply reader and its enc: decoding.  Any line
 * must be refused or decoded to at most as many bytes as it had, never
 * read or write out of bounds; fed in two pieces (split where the first
 * byte says) it must give what it gives whole; and encode/decode of the
 * same bytes must round-trip.
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

/* Feed data + '\n' to a reader whole or split at `split`, the way the
 * worker does (unconsumed bytes go before the next piece).  Returns the
 * final code; the plain text is out[0..*len). */
static enum lond_reply_rc feed(struct crypto_idea *c, const uint8_t *data, size_t size,
			       size_t split, char *out, size_t *len)
{
	struct lond_reply r;
	char *buf = malloc(size + 2);
	size_t have = 0, raw = 0, at = 0, produced, consumed;
	enum lond_reply_rc rc = LOND_REPLY_MORE;

	lond_reply_init(&r, c);
	while (at <= size && rc == LOND_REPLY_MORE) {
		size_t end = at < split ? split : size + 1;

		/* The next piece arrives behind what is still unread. */
		for (; at < end; at++)
			buf[have + raw++] = at < size ? (char)data[at] : '\n';
		rc = lond_reply_feed(&r, buf + have, raw, &produced, &consumed);
		if (produced > consumed)
			__builtin_trap();
		memmove(buf + have + produced, buf + have + consumed, raw - consumed);
		have += produced;
		raw -= consumed;
	}
	memcpy(out, buf, have);
	*len = have;
	free(buf);
	return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct crypto_idea *c = cipher();

	if (size > 0) {
		char *whole = malloc(size + 1), *split = malloc(size + 1);
		size_t wl, sl;
		enum lond_reply_rc a = feed(c, data, size, 0, whole, &wl);
		enum lond_reply_rc b = feed(c, data, size, data[0] % size, split, &sl);

		if (a != b || (a == LOND_REPLY_DONE && (wl != sl || memcmp(whole, split, wl))))
			__builtin_trap();
		free(whole);
		free(split);
	}
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

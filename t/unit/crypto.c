/*
 * Unit test for crypto.c: the published IDEA test vector (protocol.md
 * 2.7) both ways, multi-block ECB equal to block-by-block, lengths that
 * are not a multiple of 8 refused (buffer untouched), the key mattering,
 * and crypto_random filling its buffer.
 */
#include "crypto.h"
#include "tap.h"

static const unsigned char vector_key[CRYPTO_IDEA_KEY] = {
	0x00, 0x01, 0x00, 0x02, 0x00, 0x03, 0x00, 0x04,
	0x00, 0x05, 0x00, 0x06, 0x00, 0x07, 0x00, 0x08,
};
static const unsigned char vector_plain[8] = {
	0x00, 0x00, 0x00, 0x01, 0x00, 0x02, 0x00, 0x03,
};
static const unsigned char vector_cipher[8] = {
	0x11, 0xfb, 0xed, 0x2b, 0x01, 0x98, 0x6d, 0xe5,
};

static void check_vector(void)
{
	struct crypto_idea *c = crypto_idea_new(vector_key);
	unsigned char buf[8];
	char hex[17];

	ok(c != NULL, "vector: cipher created");
	if (!c)
		return;
	memcpy(buf, vector_plain, 8);
	is_int(crypto_idea_encrypt(c, buf, 8), 0, "vector: encrypt succeeds");
	to_hex(buf, 8, hex);
	is_str(hex, "11fbed2b01986de5", "vector: published ciphertext");
	is_int(crypto_idea_decrypt(c, buf, 8), 0, "vector: decrypt succeeds");
	to_hex(buf, 8, hex);
	is_str(hex, "0000000100020003", "vector: decrypts to the plaintext");

	memcpy(buf, vector_cipher, 8);
	is_int(crypto_idea_decrypt(c, buf, 8), 0, "vector: decrypt the ciphertext");
	ok(memcmp(buf, vector_plain, 8) == 0, "vector: ciphertext decrypts to plaintext");
	crypto_idea_free(c);
}

static void check_multi_block(void)
{
	struct crypto_idea *c = crypto_idea_new(vector_key);
	unsigned char plain[48], whole[48], each[48];

	if (!c) {
		ok(0, "multi: cipher created");
		return;
	}
	for (size_t i = 0; i < sizeof(plain); i++)
		plain[i] = (unsigned char)(i * 37 + 11);
	memcpy(plain + 16, plain, 8);     /* blocks 0 and 2 equal */
	memcpy(plain + 40, vector_plain, 8);
	memcpy(whole, plain, sizeof(plain));
	memcpy(each, plain, sizeof(plain));
	is_int(crypto_idea_encrypt(c, whole, sizeof(whole)), 0, "multi: encrypt 6 blocks");
	int rc = 0;
	for (size_t i = 0; i < sizeof(each); i += 8)
		rc |= crypto_idea_encrypt(c, each + i, 8);
	is_int(rc, 0, "multi: encrypt block by block");
	ok(memcmp(whole, each, sizeof(whole)) == 0, "multi: ECB equals block by block");
	ok(memcmp(whole, plain, sizeof(whole)) != 0, "multi: ciphertext differs from plaintext");
	ok(memcmp(whole, whole + 16, 8) == 0, "multi: equal blocks, equal ciphertext (ECB)");
	ok(memcmp(whole + 40, vector_cipher, 8) == 0, "multi: vector block inside a buffer");
	is_int(crypto_idea_decrypt(c, whole, sizeof(whole)), 0, "multi: decrypt 6 blocks");
	ok(memcmp(whole, plain, sizeof(whole)) == 0, "multi: round trip");
	rc = 0;
	for (size_t i = 0; i < sizeof(each); i += 8)
		rc |= crypto_idea_decrypt(c, each + i, 8);
	ok(rc == 0 && memcmp(each, plain, sizeof(each)) == 0,
	   "multi: block-by-block decrypt round trip");
	crypto_idea_free(c);
}

static void check_bad_length(void)
{
	struct crypto_idea *c = crypto_idea_new(vector_key);
	static const size_t bad[] = { 1, 7, 9, 15, 17, 23 };
	unsigned char buf[24], copy[24];
	char name[96];

	if (!c) {
		ok(0, "bad length: cipher created");
		return;
	}
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (unsigned char)i;
	memcpy(copy, buf, sizeof(buf));
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
		snprintf(name, sizeof(name), "bad length: encrypt of %zu bytes refused", bad[k]);
		is_int(crypto_idea_encrypt(c, buf, bad[k]), -1, name);
		snprintf(name, sizeof(name), "bad length: decrypt of %zu bytes refused", bad[k]);
		is_int(crypto_idea_decrypt(c, buf, bad[k]), -1, name);
	}
	ok(memcmp(buf, copy, sizeof(buf)) == 0, "bad length: buffer untouched");
	crypto_idea_free(c);
}

static void check_key_matters(void)
{
	unsigned char key2[CRYPTO_IDEA_KEY];
	unsigned char a[8], b[8];

	memcpy(key2, vector_key, sizeof(key2));
	key2[15] ^= 1;
	struct crypto_idea *c1 = crypto_idea_new(vector_key);
	struct crypto_idea *c2 = crypto_idea_new(key2);

	ok(c1 && c2, "key: two ciphers created");
	if (!c1 || !c2) {
		crypto_idea_free(c1);
		crypto_idea_free(c2);
		return;
	}
	memcpy(a, vector_plain, 8);
	memcpy(b, vector_plain, 8);
	ok(crypto_idea_encrypt(c1, a, 8) == 0 && crypto_idea_encrypt(c2, b, 8) == 0,
	   "key: both encrypt");
	ok(memcmp(a, b, 8) != 0, "key: a one-bit key change changes the ciphertext");
	crypto_idea_free(c1);
	crypto_idea_free(c2);
	crypto_idea_free(NULL);   /* must be harmless (a crash fails the run) */
}

static void check_random(void)
{
	unsigned char a[32], b[32], zero[32] = { 0 };

	memset(a, 0, sizeof(a));
	memset(b, 0, sizeof(b));
	is_int(crypto_random(a, sizeof(a)), 0, "random: first draw");
	is_int(crypto_random(b, sizeof(b)), 0, "random: second draw");
	ok(memcmp(a, zero, sizeof(a)) != 0, "random: buffer filled");
	ok(memcmp(a, b, sizeof(a)) != 0, "random: two draws differ");
}

int main(void)
{
	is_int(crypto_init(), 0, "crypto_init");
	check_vector();
	check_multi_block();
	check_bad_length();
	check_key_matters();
	check_random();
	done_testing();
}

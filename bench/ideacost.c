/*
 * ideacost - what lonc's encryption costs per KiB on this machine, with
 * lonc's own code (build/liblonc.a): IDEA-ECB through crypto.c, the
 * enc: framing of an encrypt: request (lond_enc_encode: IDEA and the
 * hex expansion), and the decoding of an enc: reply (lond_enc_decode:
 * hex and IDEA).  Scenario 8 of bench/run reads its encrypted ÷ plain
 * throughput against these figures.
 *
 * Each figure is the median of --batches batches, each timing --kib
 * KiB in pieces of --size bytes (default 1024, scenario 8's command),
 * in microseconds per KiB of plain text, on one thread.
 *
 * Usage: ideacost [--size BYTES] [--kib N] [--batches N].  Prints one
 * line:  size=B idea_us_per_kib=X encode_us_per_kib=X decode_us_per_kib=X
 *        idea_mib_per_s=X
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crypto.h"
#include "lond.h"

#define IC_MAX_BATCHES 101

static double clock_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void fail(const char *what)
{
	fprintf(stderr, "ideacost: %s failed\n", what);
	exit(1);
}

enum what { RAW, ENCODE, DECODE };

struct bufs {
	struct crypto_idea *c;
	size_t size;              /* plain bytes per piece */
	unsigned char *raw;       /* size rounded up to whole blocks */
	char *cmd, *wire, *line;  /* a command, its enc: framing, a copy */
	long wire_len;
};

/* Time `rounds` pieces of one kind; microseconds per KiB of plain text. */
static double batch(struct bufs *b, enum what w, long rounds)
{
	size_t blocks = (b->size + CRYPTO_IDEA_BLOCK - 1) / CRYPTO_IDEA_BLOCK;
	size_t out_len;
	double t0 = clock_us();

	for (long i = 0; i < rounds; i++) {
		if (w == RAW) {
			if (crypto_idea_encrypt(b->c, b->raw, blocks * CRYPTO_IDEA_BLOCK) < 0)
				fail("IDEA");
		} else if (w == ENCODE) {
			if (lond_enc_encode(b->c, "", 0, b->cmd, b->size, b->wire) < 0)
				fail("encode");
		} else {
			/* The line without its '\n', decoded in place. */
			memcpy(b->line, b->wire, (size_t)b->wire_len - 1);
			if (lond_enc_decode(b->c, b->line, (size_t)b->wire_len - 1, &out_len) < 0 ||
			    out_len != b->size)
				fail("decode");
		}
	}
	return (clock_us() - t0) / ((double)rounds * (double)b->size / 1024.0);
}

static void usage(void)
{
	fprintf(stderr, "usage: ideacost [--size BYTES] [--kib N] [--batches N]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "size", required_argument, NULL, 's' },
		{ "kib", required_argument, NULL, 'k' },
		{ "batches", required_argument, NULL, 'b' },
		{ NULL, 0, NULL, 0 },
	};
	long size = 1024, kib = 4096, batches = 7;
	int opt;

	while ((opt = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		char *end;
		long v = strtol(optarg, &end, 10);

		if (*end || v < 1)
			usage();
		if (opt == 's' && v <= 16 * 1024 * 1024)
			size = v;
		else if (opt == 'k' && v <= 1024 * 1024)
			kib = v;
		else if (opt == 'b' && v <= IC_MAX_BATCHES)
			batches = v;
		else
			usage();
	}
	if (optind != argc)
		usage();
	if (crypto_init() < 0)
		fail("crypto_init");
	static const unsigned char key[CRYPTO_IDEA_KEY] = "lonc-bench-key!";
	struct bufs b = { .c = crypto_idea_new(key), .size = (size_t)size };
	if (!b.c)
		fail("IDEA key");
	b.raw = calloc(1, (size_t)size + CRYPTO_IDEA_BLOCK);
	b.cmd = malloc((size_t)size);
	b.wire = malloc(lond_enc_size(0, (size_t)size));
	b.line = malloc(lond_enc_size(0, (size_t)size));
	if (!b.raw || !b.cmd || !b.wire || !b.line)
		fail("malloc");
	for (long i = 0; i < size; i++)
		b.cmd[i] = (char)('a' + i % 26);
	b.wire_len = lond_enc_encode(b.c, "", 0, b.cmd, b.size, b.wire);
	if (b.wire_len < 0)
		fail("encode");
	long rounds = kib * 1024 / size;
	if (rounds < 1)
		rounds = 1;
	double fig[3], v[IC_MAX_BATCHES];
	for (int w = RAW; w <= DECODE; w++) {
		(void)batch(&b, (enum what)w, rounds / 8 + 1);   /* warm the caches */
		for (long i = 0; i < batches; i++)
			v[i] = batch(&b, (enum what)w, rounds);
		fig[w] = median(v, (int)batches);
	}
	printf("size=%ld idea_us_per_kib=%.2f encode_us_per_kib=%.2f decode_us_per_kib=%.2f "
	       "idea_mib_per_s=%.1f\n", size, fig[RAW], fig[ENCODE], fig[DECODE],
	       1e6 / 1024.0 / fig[RAW]);
	crypto_idea_free(b.c);
	free(b.raw);
	free(b.cmd);
	free(b.wire);
	free(b.line);
	return 0;
}

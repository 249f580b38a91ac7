/*
 * Runs a libFuzzer target over files, without libFuzzer: used by the
 * test suite to replay the seed corpus and every input that ever crashed
 * (t/fuzz/corpus/<target>/), as regression tests under any compiler.
 * Prints TAP, one test per file.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int main(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		FILE *f = fopen(argv[i], "rb");
		static uint8_t buf[1 << 20];
		size_t n = 0;

		if (f) {
			n = fread(buf, 1, sizeof(buf), f);
			fclose(f);
		}
		/* A crash ends the process, which prove reports. */
		LLVMFuzzerTestOneInput(buf, n);
		printf("%sok %d - %s\n", f ? "" : "not ", i, argv[i]);
	}
	printf("1..%d\n", argc - 1);
	return 0;
}

/*
 * libFuzzer target: what a lond (or anything pretending to be one) may
 * answer during the handshake.  The input is split into lines and fed,
 * one line per step, to a handshake plan chosen by the first byte.
 */
#include <stdint.h>
#include <string.h>

#include "lond.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct lond_handshake hs;
	char line[LOND_LINE_MAX];

	if (size == 0)
		return 0;
	enum lond_mode mode = (enum lond_mode)(data[0] % 3);
	lond_handshake_init(&hs, mode, "msul1", "msul3", "0.1.0", data[0] & 4,
			    data[0] & 8);
	hs.allow_insecure = data[0] & 16;
	hs.local_path = "/tmp/k";
	memcpy(hs.local_key, "00112233445566778899aabbccddeeff", 33);
	const char *p = (const char *)data + 1, *end = (const char *)data + size;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);

		if (lond_handshake_request(&hs, line, sizeof(line)) < 0)
			break;
		int rc = lond_handshake_reply(&hs, p, len);
		if (rc != 0)
			break;
		p += len + 1;
	}
	return 0;
}

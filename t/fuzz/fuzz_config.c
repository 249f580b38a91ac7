/*
 * libFuzzer target: the YAML config loader.  Any file must load or be
 * refused with a message; never crash or leak.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[] = "/tmp/lonc-fuzz-config-XXXXXX";
	int fd = mkstemp(path);
	struct config *cfg = NULL;
	char err[1024];

	if (fd < 0)
		return 0;
	if (write(fd, data, size) == (ssize_t)size) {
		if (config_load(path, &cfg, err, sizeof(err)) == 0)
			config_free(cfg);
		else if (err[0] == '\0')
			__builtin_trap();
	}
	close(fd);
	unlink(path);
	return 0;
}

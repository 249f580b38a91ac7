/*
 * Unit test for util.c's file helpers: pin_regular and open_regular
 * take a regular file, refuse a FIFO (without blocking: the test would
 * hang), a directory and /dev/null with EINVAL, pass on ENOENT, and open
 * the very inode pinned even after the name points elsewhere; read_all
 * reads exactly max bytes and refuses max + 1 with EFBIG, empty files
 * and ones bigger than its first buffer included.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tap.h"
#include "util.h"

static char dir[] = "/tmp/lonc-unit-util-XXXXXX";

static const char *at(const char *name)
{
	static char path[4][256];
	static int i;

	i = (i + 1) % 4;
	snprintf(path[i], sizeof(path[i]), "%s/%s", dir, name);
	return path[i];
}

static void write_file(const char *path, size_t n)
{
	FILE *f = fopen(path, "w");

	if (!f) {
		perror(path);
		exit(2);
	}
	for (size_t i = 0; i < n; i++)
		fputc('a' + (int)(i % 26), f);
	fclose(f);
}

static void check_kinds(void)
{
	struct stat st;
	int fd;

	write_file(at("plain"), 10);
	fd = open_regular(at("plain"), &st);
	ok(fd >= 0 && S_ISREG(st.st_mode) && st.st_size == 10, "a regular file opens");
	if (fd >= 0) {
		char b[16];
		is_int(read(fd, b, sizeof(b)), 10, "and reads");
		close(fd);
	}
	if (mkfifo(at("fifo"), 0600) < 0) {
		perror("mkfifo");
		exit(2);
	}
	errno = 0;
	ok(open_regular(at("fifo"), &st) < 0 && errno == EINVAL,
	   "a FIFO is refused (EINVAL), never opened (no block)");
	errno = 0;
	ok(pin_regular(at("fifo"), &st) < 0 && errno == EINVAL, "pin_regular: likewise");
	errno = 0;
	ok(open_regular(dir, &st) < 0 && errno == EINVAL, "a directory: EINVAL");
	errno = 0;
	ok(open_regular("/dev/null", &st) < 0 && errno == EINVAL, "a device: EINVAL");
	errno = 0;
	ok(open_regular(at("missing"), &st) < 0 && errno == ENOENT, "a missing file: ENOENT");
}

/* The pin names the inode looked at: swapping the name afterwards
 * changes nothing. */
static void check_pin_holds(void)
{
	struct stat st, st2;
	char name[32];

	write_file(at("first"), 5);
	write_file(at("second"), 7);
	symlink(at("first"), at("link"));
	int pin = pin_regular(at("link"), &st);

	ok(pin >= 0, "a symlink to a regular file is pinned (its target)");
	unlink(at("link"));
	symlink(at("second"), at("link"));
	int fd = open(pinned_name(pin, name, sizeof(name)), O_RDONLY);

	ok(fd >= 0 && fstat(fd, &st2) == 0 && st2.st_ino == st.st_ino && st2.st_size == 5,
	   "opened through the pin: the file looked at, not the new target");
	if (fd >= 0)
		close(fd);
	close(pin);
}

static void check_read_all(size_t size, size_t max, bool fits)
{
	char name[64], what[128];
	size_t len = 12345;

	snprintf(name, sizeof(name), "r%zu", size);
	write_file(at(name), size);
	int fd = open(at(name), O_RDONLY);

	errno = 0;
	char *buf = read_all(fd, max, &len);

	snprintf(what, sizeof(what), "read_all of %zu bytes, max %zu: %s", size, max,
		 fits ? "whole" : "EFBIG");
	if (fits)
		ok(buf && len == size && buf[len] == '\0' && (size == 0 || buf[size - 1] ==
		   'a' + (int)((size - 1) % 26)), what);
	else
		ok(!buf && errno == EFBIG, what);
	free(buf);
	close(fd);
}

int main(void)
{
	alarm(30);      /* an open that blocked on the FIFO fails the test */
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 2;
	}
	check_kinds();
	check_pin_holds();
	check_read_all(0, 10, true);
	check_read_all(10, 10, true);
	check_read_all(11, 10, false);
	check_read_all(4096, 4096, true);
	check_read_all(4097, 4096, false);
	check_read_all(100000, 100000, true);
	check_read_all(100001, 100000, false);
	check_read_all(100000, 1 << 20, true);
	const char *names[] = { "plain", "fifo", "first", "second", "link", "r0", "r10",
				"r11", "r4096", "r4097", "r100000", "r100001" };
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		unlink(at(names[i]));
	rmdir(dir);
	done_testing();
}

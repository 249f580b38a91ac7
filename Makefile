# lonc - hand-written GNU make.  `make help` lists the targets.

PREFIX  ?= /usr/local
DESTDIR ?=
SBINDIR ?= $(PREFIX)/sbin
SYSCONFDIR ?= /etc
MANDIR  ?= $(PREFIX)/share/man
UNITDIR ?= $(PREFIX)/lib/systemd/system
# make install strips the binaries (STRIP= keeps their symbols, as the
# Debian package does: debhelper moves them to a -dbgsym package).
STRIP   ?= -s
INSTALL_INIT ?= yes
INSTALL_UNIT ?= yes
INSTALL_DEFAULT ?= yes

CC      ?= cc
BUILD   ?= build
SAN     ?=
OPT     ?= -O2
WARN    := -std=c11 -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes \
           -Wmissing-prototypes -Wformat=2 -Wcast-qual -Werror
CPPFLAGS += -Iinclude -D_GNU_SOURCE -MMD -MP
CFLAGS  += $(OPT) -g $(WARN) -pthread $(SAN)
LDFLAGS += -pthread $(SAN)
LDLIBS  := -lyaml -lgcrypt -lssl -lcrypto -lsystemd

LIB_SRCS := $(filter-out src/main.c,$(wildcard src/*.c))
LIB_OBJS := $(LIB_SRCS:src/%.c=$(BUILD)/obj/%.o)
UNIT_SRCS := $(wildcard t/unit/*.c)
UNIT_BINS := $(UNIT_SRCS:t/unit/%.c=$(BUILD)/t/unit/%.t)
TOOLS    := $(BUILD)/testlond $(BUILD)/lonc-load $(BUILD)/symlink-racer \
	    $(BUILD)/flip-racer $(BUILD)/fake-lonc
FUZZ_TARGETS := request reply enc config
FUZZ_REPLAY := $(FUZZ_TARGETS:%=$(BUILD)/t/fuzz/replay-%)
FUZZ_SECONDS ?= 30
SOAK_SECONDS ?= 600
SOAK_SEED ?=

.PHONY: all test check check-tsan demo install uninstall deb clean help deps fuzz soak

all: $(BUILD)/lonc $(BUILD)/lonc-ctl $(TOOLS) $(UNIT_BINS) $(FUZZ_REPLAY)

help:
	@echo "make            build lonc, the test lond and the tests"
	@echo "make demo       run lonc against the test lond (etc/lonc-demo.yaml)"
	@echo "make test       run the test suite (TAP, prove)"
	@echo "make check      the suite under AddressSanitizer + UBSan"
	@echo "make check-tsan the suite under ThreadSanitizer"
	@echo "make fuzz       run each libFuzzer target for FUZZ_SECONDS=$(FUZZ_SECONDS)"
	@echo "make soak       the chaos soak for SOAK_SECONDS=$(SOAK_SECONDS) (SOAK_SEED=N replays a run)"
	@echo "make install    install (PREFIX=$(PREFIX) DESTDIR=$(DESTDIR))"
	@echo "make uninstall  remove what make install put there (not edited files)"
	@echo "make deb        a Debian package in $(BUILD)/deb (debhelper, lintian)"

deps:
	@scripts/install-deps

$(BUILD)/obj/%.o: src/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

$(BUILD)/liblonc.a: $(LIB_OBJS)
	$(AR) rcs $@ $^

$(BUILD)/lonc: $(BUILD)/obj/main.o $(BUILD)/liblonc.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/lonc-ctl: src/ctl/lonc-ctl.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -o $@ $< $(LDFLAGS)

$(BUILD)/testlond: t/lond/testlond.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -o $@ $< $(LDFLAGS) -lgcrypt -lssl -lcrypto

$(BUILD)/lonc-load: t/tools/lonc-load.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -o $@ $< $(LDFLAGS)

$(BUILD)/symlink-racer: t/tools/symlink-racer.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -o $@ $< $(LDFLAGS)

$(BUILD)/flip-racer: t/tools/flip-racer.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -o $@ $< $(LDFLAGS)

$(BUILD)/fake-lonc: t/tools/fake-lonc.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -o $@ $< $(LDFLAGS)

$(BUILD)/t/unit/%.t: t/unit/%.c t/unit/tap.h $(BUILD)/liblonc.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -It/unit $(CFLAGS) -o $@ $< $(BUILD)/liblonc.a $(LDFLAGS) $(LDLIBS)

# Fuzz targets replayed over their corpus (a regression test per file).
$(BUILD)/t/fuzz/replay-%: t/fuzz/fuzz_%.c t/fuzz/replay.c $(BUILD)/liblonc.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -o $@ $< t/fuzz/replay.c $(BUILD)/liblonc.a $(LDFLAGS) $(LDLIBS)

# libFuzzer runs: clang, coverage-instrumented library, bounded time.
# New crashes land in build-fuzz/; copy them to t/fuzz/corpus/<target>/.
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=all
fuzz: deps
	@$(MAKE) --no-print-directory BUILD=build-fuzz CC=clang OPT=-O1 \
		SAN="-fsanitize=fuzzer-no-link $(FUZZ_SAN)" build-fuzz/liblonc.a
	@for t in $(FUZZ_TARGETS); do \
		clang $(CPPFLAGS) -O1 -g -fsanitize=fuzzer $(FUZZ_SAN) -pthread \
			-o build-fuzz/fuzz-$$t t/fuzz/fuzz_$$t.c build-fuzz/liblonc.a $(LDLIBS) || exit 1; \
		mkdir -p build-fuzz/corpus-$$t && cp t/fuzz/corpus/$$t/* build-fuzz/corpus-$$t/; \
		echo "== fuzz $$t ($(FUZZ_SECONDS) s)"; \
		(cd build-fuzz && ./fuzz-$$t -max_total_time=$(FUZZ_SECONDS) -max_len=4096 \
			-print_final_stats=1 corpus-$$t ../t/fuzz/corpus/$$t 2>&1 | tail -3) || exit 1; \
	done

# The suite: unit programs, then integration scripts against the real
# daemon.  LONC_BUILD tells the scripts which binaries to run.
PROVE ?= prove
test: deps
	@$(MAKE) --no-print-directory all
	LONC_BUILD=$(BUILD) $(PROVE) $(UNIT_BINS) t/integration/*.t

# The chaos soak (t/soak/README): random lond faults, reloads and abusive
# clients against the real daemon for SOAK_SECONDS, invariants as TAP.
# The seed is printed first; SOAK_SEED=N replays a run.  On failure the
# event log and lonc's log are kept under $(BUILD)/soak/.
soak: deps
	@$(MAKE) --no-print-directory all
	LONC_BUILD=$(BUILD) SOAK_SECONDS=$(SOAK_SECONDS) SOAK_SEED=$(SOAK_SEED) perl t/soak/soak

check: deps
	@$(MAKE) --no-print-directory test BUILD=build-asan OPT=-O1 \
		SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all"

check-tsan: deps
	@$(MAKE) --no-print-directory test BUILD=build-tsan OPT=-O1 \
		SAN="-fsanitize=thread -fno-omit-frame-pointer"

demo: deps
	@$(MAKE) --no-print-directory all
	scripts/demo $(BUILD)

# The init script gets the installed paths as its defaults.
INIT_SED = -e 's|^DEFAULT_DAEMON=.*|DEFAULT_DAEMON=$(SBINDIR)/lonc|' \
	   -e 's|^DEFAULT_CONFIG=.*|DEFAULT_CONFIG=$(SYSCONFDIR)/lonc/lonc.yaml|' \
	   -e 's|^DEFAULTS_FILE=.*|DEFAULTS_FILE=$(SYSCONFDIR)/default/lonc|'
UNIT_SED = -e 's|/usr/sbin/|$(SBINDIR)/|g' \
	   -e 's|/etc/lonc/lonc.yaml|$(SYSCONFDIR)/lonc/lonc.yaml|' \
	   -e 's|/etc/default/lonc|$(SYSCONFDIR)/default/lonc|'

# Files an operator may have edited (the init script, /etc/default/lonc)
# are not overwritten: a different one stays, the new one lands next to
# it as <name>.dist.
install: $(BUILD)/lonc $(BUILD)/lonc-ctl
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(SYSCONFDIR)/lonc \
		$(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8
	install -m 0755 $(STRIP) $(BUILD)/lonc $(DESTDIR)$(SBINDIR)/lonc
	install -m 0755 $(STRIP) $(BUILD)/lonc-ctl $(DESTDIR)$(SBINDIR)/lonc-ctl
	install -m 0644 etc/lonc.yaml $(DESTDIR)$(SYSCONFDIR)/lonc/lonc.yaml.example
	install -m 0644 doc/lonc.8 doc/lonc-ctl.8 $(DESTDIR)$(MANDIR)/man8
	install -m 0644 doc/lonc.yaml.5 $(DESTDIR)$(MANDIR)/man5
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	sed $(INIT_SED) scripts/lonc.init > $$tmp/lonc.init; \
	sed $(UNIT_SED) scripts/lonc.service > $$tmp/lonc.service; \
	put() { mode=$$1 src=$$2 dst=$$3; install -d "$$(dirname "$$dst")"; \
		if [ -e "$$dst" ] && ! cmp -s "$$src" "$$dst"; then \
			install -m $$mode "$$src" "$$dst.dist"; \
			echo "install: $$dst differs (edited?): kept; the new one is $$dst.dist"; \
		else install -m $$mode "$$src" "$$dst"; fi; }; \
	[ "$(INSTALL_INIT)" != yes ] || put 0755 $$tmp/lonc.init $(DESTDIR)$(SYSCONFDIR)/init.d/lonc; \
	[ "$(INSTALL_UNIT)" != yes ] || put 0644 $$tmp/lonc.service $(DESTDIR)$(UNITDIR)/lonc.service; \
	[ "$(INSTALL_DEFAULT)" != yes ] || [ -e $(DESTDIR)$(SYSCONFDIR)/default/lonc ] || \
		put 0644 scripts/lonc.default $(DESTDIR)$(SYSCONFDIR)/default/lonc

# Removes what install put there; an edited init script or defaults file
# (one that differs from what install would put) stays.
uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/lonc $(DESTDIR)$(SBINDIR)/lonc-ctl \
		$(DESTDIR)$(SYSCONFDIR)/lonc/lonc.yaml.example \
		$(DESTDIR)$(MANDIR)/man8/lonc.8 $(DESTDIR)$(MANDIR)/man8/lonc-ctl.8 \
		$(DESTDIR)$(MANDIR)/man5/lonc.yaml.5
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	sed $(INIT_SED) scripts/lonc.init > $$tmp/lonc.init; \
	sed $(UNIT_SED) scripts/lonc.service > $$tmp/lonc.service; \
	drop() { if [ -e "$$2" ] && ! cmp -s "$$1" "$$2"; then \
			echo "uninstall: $$2 was edited: kept"; else rm -f "$$2"; fi; }; \
	drop $$tmp/lonc.init $(DESTDIR)$(SYSCONFDIR)/init.d/lonc; \
	drop $$tmp/lonc.service $(DESTDIR)$(UNITDIR)/lonc.service; \
	drop scripts/lonc.default $(DESTDIR)$(SYSCONFDIR)/default/lonc

# A Debian package of this tree, built with debhelper in $(BUILD)/deb
# (the tools are installed on demand, for this target only).
deb:
	@scripts/install-deps deb
	@rm -rf $(BUILD)/deb && mkdir -p $(BUILD)/deb/lonc-src
	@tar -cf - --exclude='./build*' --exclude=./.git . | tar -xf - -C $(BUILD)/deb/lonc-src
	@cp -r scripts/debian $(BUILD)/deb/lonc-src/debian
	@sed -e 's|^DEFAULT_DAEMON=.*|DEFAULT_DAEMON=/usr/sbin/lonc|' scripts/lonc.init \
		> $(BUILD)/deb/lonc-src/debian/lonc.init
	@cp scripts/lonc.service $(BUILD)/deb/lonc-src/debian/lonc.service
	@cp scripts/lonc.default $(BUILD)/deb/lonc-src/debian/lonc.default
	cd $(BUILD)/deb/lonc-src && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL \
		dpkg-buildpackage -us -uc -b
	lintian --fail-on error $(BUILD)/deb/lonc_[0-9]*.deb
	@ls $(BUILD)/deb/*.deb

clean:
	rm -rf build build-asan build-tsan build-fuzz

-include bench/bench.mk
-include $(LIB_OBJS:.o=.d) $(BUILD)/obj/main.d $(UNIT_BINS:.t=.d)

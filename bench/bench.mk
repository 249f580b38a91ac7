# bench/bench.mk - the benchmark (issue 6), included by the top Makefile.
#
#   make bench                  build, then run every scenario (a few minutes)
#   make bench BENCH_ARGS=...   pass options to bench/run (bench/run --help)
#
# The floor servers are also part of `all`, so that the smoke test in
# t/integration/bench-smoke.t finds it after the usual build.

BENCH_FLOOR := $(BUILD)/bench/floor
BENCH_HANDOFF := $(BUILD)/bench/handoff
BENCH_HOPS  := $(BUILD)/bench/hops
BENCH_DELAY := $(BUILD)/bench/delay
BENCH_IDEACOST := $(BUILD)/bench/ideacost
BENCH_ARGS  ?=

.PHONY: bench bench-tools

all: $(BENCH_FLOOR) $(BENCH_HANDOFF) $(BENCH_HOPS) $(BENCH_DELAY) $(BENCH_IDEACOST)

$(BENCH_FLOOR): bench/floor.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -o $@ $< $(LDFLAGS)

$(BENCH_HOPS): bench/hops.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -o $@ $< $(LDFLAGS)

# The delaying TCP relay of scenario 10 (network delay without netem).
$(BENCH_DELAY): bench/delay.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -o $@ $< $(LDFLAGS)

# The design floor borrows lonc's deadline-bounded connect and write.
$(BENCH_HANDOFF): bench/handoff.c $(BUILD)/liblonc.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -o $@ $< $(BUILD)/liblonc.a $(LDFLAGS) $(LDLIBS)

# IDEA's cost per KiB with lonc's own crypto and enc: framing (scenario 8).
$(BENCH_IDEACOST): bench/ideacost.c $(BUILD)/liblonc.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -o $@ $< $(BUILD)/liblonc.a $(LDFLAGS) $(LDLIBS)

bench-tools: $(BUILD)/lonc $(BUILD)/testlond $(BUILD)/lonc-load $(BENCH_FLOOR) $(BENCH_HANDOFF) \
	$(BENCH_HOPS) $(BENCH_DELAY) $(BENCH_IDEACOST)

bench: deps
	@$(MAKE) --no-print-directory bench-tools
	LONC_BUILD=$(BUILD) bench/run $(BENCH_ARGS)

-include $(BENCH_FLOOR).d $(BENCH_HANDOFF).d $(BENCH_HOPS).d $(BENCH_DELAY).d \
	$(BENCH_IDEACOST).d

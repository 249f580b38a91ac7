#!/usr/bin/perl
# A short functional run of the benchmark harness (bench/run --smoke):
# every scenario it can run here completes with every request answered by
# its own reply, and it writes a results JSON with the expected parts.
# No speed assertions: the figures of a smoke run mean nothing.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use JSON::PP;
use Test::More;
use LoncTest;

watchdog(300);
my $run = "$FindBin::Bin/../../bench/run";
my $out = tmp_dir() . '/results.json';
local $ENV{LONC_BUILD} = build_dir();
local $ENV{TMPDIR} = tmp_dir();    # bench/run's own files go in here
my $text = `$run --smoke --out $out 2>&1`;
is($? >> 8, 0, 'bench/run --smoke exits 0') or diag $text;
like($text, qr/^Targets:$/m, 'it prints the targets');
like($text, qr/^1 +lonc, new connection per request +1 /m, 'it prints the table');

ok(-s $out, 'it writes the results JSON') or BAIL_OUT("no results:\n$text");
my $r = eval { decode_json(LoncTest::log_text($out)) };
ok($r, 'the results are valid JSON') or diag $@;
$r //= {};

my %want = map { $_ => 1 } 1, 2, 3, 5;
$want{4} = 1 unless $r->{skipped}{4};
for my $s (sort keys %want) {
    for my $k (1, 4) {
        my @runs = grep { $_->{scenario} == $s && ($_->{clients} // 0) == $k }
            @{ $r->{runs} // [] };
        is(scalar @runs, 1, "scenario $s at $k clients ran once");
        my $run1 = $runs[0] // {};
        cmp_ok($run1->{ok} // 0, '>', 0, "scenario $s at $k clients: replies");
        is(($run1->{mismatch} // -1) + ($run1->{con_lost} // -1) + ($run1->{errors} // -1),
            0, "scenario $s at $k clients: every request got its own reply");
        ok(defined $r->{summary}{$s}{$k}{p50_us}, "scenario $s at $k clients: summarised");
    }
}
ok(defined $r->{summary}{1}{1}{lond_cpu}, 'the test lond CPU share is recorded');
ok(defined $r->{added_latency}{p50_us}, 'scenario 9: added latency');
# Row 9d, the design floor (bench/handoff), runs at one client only.
my @floor = grep { ($_->{row} // '') eq '9d' } @{ $r->{reference_runs} // [] };
is(scalar @floor, 1, 'scenario 9: the design floor ran once');
is(scalar(grep { $_->{clients} != 1 } @floor), 0, 'scenario 9: at one client only');
my $f1 = $floor[0] // {};
cmp_ok($f1->{ok} // 0, '>', 0, 'scenario 9: the design floor answered');
is(($f1->{mismatch} // -1) + ($f1->{con_lost} // -1) + ($f1->{errors} // -1), 0,
    'scenario 9: every request to the design floor got its own reply');
ok(defined $r->{added_latency}{design_floor_p50_us}, 'scenario 9: the design floor is reported');
for my $when (qw(start end)) {
    my $h = $r->{machine}{hops}{$when} // {};
    is(scalar(grep { ($h->{$_} // 0) > 0 } qw(syscall thread_same_cpu process_same_cpu)), 3,
        "bench/hops at the $when: system call and same-CPU hand-offs measured");
}
like($text, qr/^    between processes: on two CPUs \S+ us, on one CPU [0-9.]+\/[0-9.]+ us$/m,
    'scenario 9: the hand-off costs are printed');
cmp_ok($r->{encryption}{lond_saw_encrypted} // 0, '>', 0,
    'scenario 8: encrypt: requests reached the lond encrypted');
is($r->{large_reply}{ok}, 1, 'scenario 7: the large reply was relayed whole');
cmp_ok($r->{large_reply}{peak_rss_kib} // 0, '>', 0, 'scenario 7: RSS measured');
is($r->{large_reply_enc}{ok}, 1, 'scenario 7: the large enc: reply was relayed whole');
is($r->{large_reply_enc}{command}, 'encbytes', 'scenario 7: ... asked for with encbytes:');
cmp_ok($r->{large_reply_enc}{peak_rss_kib} // 0, '>', 0, 'scenario 7: RSS measured (enc:)');
for my $k (qw(idea_us_per_kib encode_us_per_kib decode_us_per_kib)) {
    cmp_ok($r->{encryption}{idea}{$k} // 0, '>', 0, "scenario 8: bench/ideacost's $k");
}
ok(defined $r->{encryption}{cpu_us_per_req}{broker}{encrypted},
    "scenario 8: lonc's CPU per encrypted request");
# Scenario 10: a cold host behind bench/delay, both key modes.
my $ch = $r->{cold_host} // {};
for my $mode (qw(insecure ssl)) {
    my $x = $ch->{$mode} // {};
    my @reps = @{ $x->{reps} // [] };
    is(scalar @reps, 1, "scenario 10 ($mode): one repetition");
    is($reps[0]{ok}, $ch->{burst} * 2 + 1, "scenario 10 ($mode): every request of the bursts answered");
    is($x->{failed}, 0, "scenario 10 ($mode): each with its own reply");
    for my $f (qw(cold_burst_s warm_burst_s cold_one_s ratio)) {
        cmp_ok($x->{$f} // 0, '>', 0, "scenario 10 ($mode): $f");
    }
    # Timing-dependent in a run this small (the pool may fill only with
    # the extra bursts; on a loaded machine the handshakes may not
    # overlap): present, not judged.
    ok(exists $x->{pool_full_s}, "scenario 10 ($mode): the time until the pool is full");
    cmp_ok($x->{lond_max_handshaking} // 0, '>=', 1,
        "scenario 10 ($mode): the test lond's handshakes at once");
    cmp_ok($x->{cpu_per_connection}{cold}{handshakes} // 0, '>', 0,
        "scenario 10 ($mode): new connections for the CPU figure");
}
like($text, qr/^Scenario 10, a cold host /m, 'scenario 10 is printed');
my $mh = $r->{many_hosts} // {};
is($mh->{many}{hosts}, 20, 'scenario 6: twenty configured hosts');
cmp_ok($mh->{many}{idle_rss_kib} // 0, '>', 0, 'scenario 6: idle RSS measured');
cmp_ok($mh->{many}{startup_s} // 0, '>', 0, 'scenario 6: start-up time measured');
is($mh->{active}{hosts}, 5, 'scenario 6: five hosts active at once');
cmp_ok($mh->{active}{ok} // 0, '>', 0, 'scenario 6: the active hosts answered');
is(scalar @{ $r->{targets} // [] }, 12, 'twelve targets');
is(scalar(grep { $_->{status} =~ /^(PASS|FAIL|SKIP)$/ } @{ $r->{targets} // [] }), 12,
    'each target has a status');
my $mem = $r->{memory} // {};
ok(($mem->{rss_before_kib} // 0) > 0 && ($mem->{rss_after_kib} // 0) > 0,
    'memory: RSS before and after the load, settled, measured');
is(scalar(grep { $_->{status} eq 'SKIP' && $_->{name} =~ /scen\. 10|scenario (7|9)/ }
    @{ $r->{targets} // [] }), 0, 'the targets of scenarios 7, 9 and 10 are judged');
my @started = map { $_->{pid} } @{ $r->{started} // [] };
cmp_ok(scalar @started, '>=', 3, 'the servers it started are listed');
is(scalar(grep { kill 0, $_ } @started), 0, 'none of them is left running');

# bench/decompose: one round, every column a number, then the medians.
my $dec = "$FindBin::Bin/../../bench/decompose";
my $dtext = `$dec 1 2>&1`;
is($? >> 8, 0, 'bench/decompose exits 0') or diag $dtext;
like($dtext, qr/^round direct no-hop floor \+epoll \+hand-back \+check lonc$/m, 'decompose: header');
like($dtext, qr/^1( [0-9]+\.[0-9]+){7}$/m, 'decompose: a round of seven p50 figures');
like($dtext, qr/^median( [0-9]+\.[0-9]+){7}$/m, 'decompose: the medians');
for my $when (qw(before after)) {
    like($dtext, qr/^hops $when: syscall_us=[0-9.]+ thread_same_cpu_us=[0-9.]+ process_same_cpu_us=[0-9.]+ thread_cross_cpu_us=\S+ process_cross_cpu_us=\S+$/m,
        "decompose: the hand-off costs $when");
}

# bench/hops on one CPU has no cross-CPU figures, and says so.
SKIP: {
    skip 'taskset cannot pin to CPU 0 here', 1 unless system('taskset -c 0 true') == 0;
    my $one = `taskset -c 0 $ENV{LONC_BUILD}/bench/hops --batches 1 --rounds 20 2>&1`;
    like($one, qr/^syscall_us=[0-9.]+ thread_same_cpu_us=[0-9.]+ process_same_cpu_us=[0-9.]+ thread_cross_cpu_us=na process_cross_cpu_us=na$/,
        'hops: one allowed CPU gives "na" across CPUs');
}
is(system("$ENV{LONC_BUILD}/bench/hops --rounds 0 >/dev/null 2>&1") >> 8, 2,
    'hops: a bad option value is refused with status 2');
done_testing();

#!/usr/bin/perl
# Memory settles: after rounds of load with large requests and replies
# (plain and encrypted) on several hosts, and the pools closed, lonc's
# RSS comes back near its baseline instead of staying at its peak.  The
# figures are reported (diag); the bound is generous (a settled lonc is
# within about 2 MiB of its baseline here; one that keeps what it freed
# was 10-13 MiB over after three rounds).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use POSIX ();
use Time::HiRes qw(sleep);
use LoncTest;

watchdog(180);
my $lond = start_lond();
my @hosts = map { { hostname => "m$_", port => $lond->{port} } } 1 .. 4;
my $lonc = start_lonc(write_config(name => 'mem', hosts => \@hosts,
    max_connections => 8, reply_buffer => '256K', delayed_scan_interval => 0.5));
my $d = $lonc->{socket_dir};
my $load = build_dir() . '/lonc-load';
sub rss {
    my ($kib) = log_text("/proc/$lonc->{pid}/status") =~ /VmRSS:\s+(\d+)/;
    return $kib;
}
# lonc-load in a child, its summary line out of the TAP stream.
sub spawn_load {
    my @args = @_;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDOUT, '>', '/dev/null';
        { exec($load, @args) }
        POSIX::_exit(127);
    }
    return $pid;
}
sub settle {
    # Close every pooled connection (their threads end), let the periodic
    # trim run, read the RSS.
    request("$d/m$_", 'close_connection_exit') for 1 .. 4;
    wait_for(sub { (lond_stats($lond)->{active} // 1) == 0 }, 20, 'pools closed');
    sleep 1.2;
    return rss();
}

is(request("$d/m$_", 'ping'), 'pong', "m$_ serves") for 1 .. 4;
my $base = settle();
my @after;
for my $round (1 .. 3) {
    # Requests of 20-80 KB (each comes back: echo), 12 clients a host;
    # 2 MB replies (spooled); encrypted 50 KB requests and replies.
    my @p = map { spawn_load('--socket', "$d/m$_", '--clients', 12, '--seconds', 2,
        '--payload', $_ * 20000) } 1 .. 4;
    push @p, spawn_load('--socket', "$d/m1", '--clients', 3, '--seconds', 2,
        '--command', 'bytes:2000000', '--expect-bytes', 2000000);
    push @p, spawn_load('--socket', "$d/m2", '--clients', 4, '--seconds', 2, '--encrypt',
        '--payload', 50000);
    my $bad = 0;
    for (@p) { waitpid $_, 0; $bad++ if $? }
    is($bad, 0, "round $round: every load run got its replies");
    push @after, settle();
}
diag(sprintf 'RSS KiB: baseline %d, settled after rounds %s', $base, join(', ', @after));
SKIP: {
    # A sanitizer's allocator keeps freed memory in quarantine on purpose:
    # what lonc's allocator gives back is measured in the normal build.
    skip 'sanitizer build: its allocator keeps freed memory', 2 if build_dir() =~ /asan|tsan/;
    cmp_ok($after[-1] - $base, '<=', 4096, 'RSS settles within 4 MiB of its baseline');
    cmp_ok($after[-1] - $after[0], '<=', 2048, 'and does not creep from round to round');
}
is(stop_lonc($lonc), 0, 'clean shutdown');
done_testing();

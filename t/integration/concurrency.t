#!/usr/bin/perl
# 200 concurrent clients x 50 requests with unique payloads: every reply
# must match its own request (no cross-talk, none lost), and the pool
# toward the host must never exceed max_connections.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use LoncTest;

watchdog(600);
my $lond = start_lond();
my $max = 10;
my $cfg = write_config(
    max_connections => $max,
    max_queue => 1000,
    transaction_timeout => 120,
    queue_timeout => 300,
    client_timeout => 120,
    hosts => [ { hostname => 'lond1', port => $lond->{port} } ],
);
my $lonc = start_lonc($cfg);
my $sock = "$lonc->{socket_dir}/lond1";

for my $mode ('new connection per request', 'keep-alive') {
    lond_ctl($lond, 'reset');
    my @args = ('--socket', $sock, '--clients', 200, '--requests', 50,
        '--payload', 48);
    push @args, '--keepalive' if $mode eq 'keep-alive';
    my $out = `@{[build_dir()]}/lonc-load @args`;
    my $rc = $? >> 8;
    chomp $out;
    my %r = map { split /=/, $_, 2 } split ' ', $out;
    is($rc, 0, "$mode: load generator reports success") or diag $out;
    is($r{ok}, 200 * 50, "$mode: all 10000 requests got their own reply");
    is($r{mismatch}, 0, "$mode: no reply went to the wrong client");
    is($r{con_lost} + $r{errors}, 0, "$mode: none lost");
    my $st = lond_stats($lond);
    cmp_ok($st->{max_active}, '<=', $max, "$mode: at most $max connections at once (saw $st->{max_active})");
    # Set-up commands (the handshake, sethost) are not counted by lond.
    is($st->{requests}, 200 * 50, "$mode: lond served every request exactly once");
}
is(stop_lonc($lonc), 0, 'clean shutdown after load');
done_testing();

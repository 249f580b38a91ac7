#!/usr/bin/perl
# Many hosts failing together are reported once as a probable local
# network problem, not as one alarm per host; a single dead host still
# raises its own alarm.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use LoncTest;

watchdog(120);
my $lond = start_lond();
my @down = map { { hostname => "down$_", port => free_port() } } 1 .. 5;
my $cfg = write_config(
    retry_attempts => 1,
    backoff_initial => 30,
    backoff_max => 60,
    outage_window => 30,
    outage_min_hosts => 3,
    hosts => [ @down, { hostname => 'up', port => $lond->{port} } ],
);
my $lonc = start_lonc($cfg);
my $dir = $lonc->{socket_dir};

is(request("$dir/up", 'ping'), 'pong', 'the working host is active');
is(request("$dir/down1", 'ping'), 'con_lost', 'first failing host');
wait_for(sub { log_text($lonc->{log}) =~ /host=down1 event=host_dead/ }, 10, 'down1 dead');
like(log_text($lonc->{log}), qr/err: host=down1 event=host_dead/, 'one dead host raises its own alarm');
unlike(log_text($lonc->{log}), qr/probable_local_network_problem/, 'one host is no outage');

is(request("$dir/down$_", 'ping'), 'con_lost', "host down$_ fails too") for 2 .. 5;
wait_for(sub { log_text($lonc->{log}) =~ /host=down5 event=host_dead/ }, 10, 'all dead');
my $log = log_text($lonc->{log});
my $n = () = $log =~ /event=probable_local_network_problem/g;
is($n, 1, 'the outage is logged exactly once');
like($log, qr/probable_local_network_problem hosts_failed=3 hosts_active=4/, 'when 3 of 4 active hosts failed');
like($log, qr/info: host=down5 event=host_dead .*part_of=local_network_problem/, 'later hosts are part of it, not alarms');
is(request("$dir/up", 'ping'), 'pong', 'the working host still works');
is(stop_lonc($lonc), 0, 'clean shutdown');
done_testing();

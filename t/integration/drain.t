#!/usr/bin/perl
# SIGTERM drains: every accepted request is answered (lond's reply, or
# con_lost once shutdown_timeout passed); sockets and pid file go; exit 0.
# A second SIGTERM during the drain exits at once.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(time sleep);
use LoncTest;

watchdog(180);
my $lond = start_lond();

sub start {
    my (%o) = @_;
    my $cfg = write_config(name => $o{name}, socket_dir => tmp_dir() . "/$o{name}",
        max_connections => 4, shutdown_timeout => $o{timeout},
        hosts => [ { hostname => 'h', port => $lond->{port} } ]);
    return start_lonc($cfg);
}

# Requests in flight and queued are finished before exit.
{
    my $lonc = start(name => 'd1', timeout => 20);
    my $sock = "$lonc->{socket_dir}/h";
    my @s = map { unix_connect($sock) or die } 1 .. 12;
    print $_ "delay:400:done\n" for @s;
    # All 12 accepted: 4 in flight, 8 queued.
    wait_for(sub { lond_stats($lond)->{active} == 4 }, 10, 'pool busy');
    sleep 0.1;
    kill 'TERM', $lonc->{pid};
    my @got = map { my $l = readline($_); chomp $l if defined $l; $l // 'none' } @s;
    is(scalar(grep { $_ eq 'done' } @got), 12, 'every accepted request got its reply during the drain');
    is(wait_lonc($lonc), 0, 'exit status 0 once the drain is done');
    ok(!-e $sock, 'socket removed');
    like(log_text($lonc->{log}), qr/event=shutdown signal=TERM.*event=stopped/s, 'shutdown logged');
}

# shutdown_timeout: what cannot finish in time is answered con_lost.
{
    my $lonc = start(name => 'd2', timeout => 0.5);
    my $sock = "$lonc->{socket_dir}/h";
    my @s = map { unix_connect($sock) or die } 1 .. 6;
    print $_ "delay:10000:late\n" for @s;
    wait_for(sub { lond_stats($lond)->{active} >= 4 }, 10, 'pool busy');
    my $t0 = time;
    kill 'TERM', $lonc->{pid};
    my @got = map { my $l = readline($_); chomp $l if defined $l; $l // 'none' } @s;
    is(scalar(grep { $_ eq 'con_lost' } @got), 6, 'requests past shutdown_timeout: con_lost');
    cmp_ok(time - $t0, '<', 6, 'answered by about shutdown_timeout (0.5 s), not after the 10 s delay');
    is(wait_lonc($lonc), 0, 'exit status 0');
    my $text = log_text($lonc->{log});
    like($text, qr/event=transaction_failed reason=shutdown_timeout/,
        'the in-flight ones are logged as cut by the shutdown');
    unlike($text, qr/reason=transaction_timeout/, '... not as a transaction timeout');
}

# A reply trickling in (a byte every 30 ms, 9 s in all) is cut at the
# shutdown deadline too: the worker looks at it between the bytes.
{
    my $lonc = start(name => 'd4', timeout => 0.5);
    my $sock = "$lonc->{socket_dir}/h";
    my $s = unix_connect($sock) or die;
    print $s 'drip:30:' . ('z' x 300) . "\n";
    $s->flush;
    wait_for(sub { lond_stats($lond)->{active} >= 1 }, 10, 'dripping');
    sleep 0.1;
    my $t0 = time;
    kill 'TERM', $lonc->{pid};
    my $l = readline($s);
    chomp $l if defined $l;
    is($l, 'con_lost', 'a trickling reply past shutdown_timeout: con_lost');
    cmp_ok(time - $t0, '<', 6, 'answered by about shutdown_timeout, not after the 9 s trickle');
    is(wait_lonc($lonc), 0, 'exit status 0');
}

# A second SIGTERM exits at once.
{
    my $lonc = start(name => 'd3', timeout => 60);
    my $sock = "$lonc->{socket_dir}/h";
    my $s = unix_connect($sock) or die;
    print $s "delay:20000:slow\n";
    wait_for(sub { lond_stats($lond)->{active} >= 1 }, 10, 'busy');
    kill 'TERM', $lonc->{pid};
    wait_for(sub { log_text($lonc->{log}) =~ /event=shutdown signal=TERM/ }, 10, 'drain started');
    my $t0 = time;
    kill 'TERM', $lonc->{pid};
    my $st;
    wait_for(sub { waitpid($lonc->{pid}, WNOHANG) == $lonc->{pid} and do { $st = $?; 1 } }, 10, 'fast exit');
    cmp_ok(time - $t0, '<', 5, 'the second SIGTERM ends the drain at once');
    like(log_text($lonc->{log}), qr/event=shutdown_forced/, 'and says so');
}
done_testing();

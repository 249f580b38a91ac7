#!/usr/bin/perl
# systemd's notification protocol, against a datagram socket named in
# NOTIFY_SOCKET (with WATCHDOG_USEC): READY=1 only once the sockets
# exist, WATCHDOG=1 while lonc goes round, RELOADING=1 then READY=1
# around a reload, STOPPING=1 at the shutdown.  And the process title
# (what ps and loncron show): hosts, connections, dead hosts.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use IO::Socket::UNIX;
use IO::Select;
use Time::HiRes qw(time sleep);
use LoncTest;

watchdog(120);
my $dir = tmp_dir();
my $nsock = "$dir/notify.sock";
my $listen = IO::Socket::UNIX->new(Type => SOCK_DGRAM(), Local => $nsock)
    or die "notify socket: $!";
my $sel = IO::Select->new($listen);

# The next message within $secs, or undef.
sub next_msg {
    my ($secs) = @_;
    return undef unless $sel->can_read($secs);
    my $m;
    $listen->recv($m, 4096);
    return $m;
}
# Messages until one matches $re (bounded); returns all of them.
sub until_msg {
    my ($re, $secs) = @_;
    my @got;
    my $end = time + $secs;
    while (time < $end) {
        my $m = next_msg($end - time) // last;
        push @got, $m;
        last if $m =~ $re;
    }
    return @got;
}

my $lond = start_lond();
my $port = free_port();
my $cfg = write_config(name => 'nt', retry_attempts => 1, backoff_initial => 5, backoff_max => 5,
    hosts => [ { hostname => 'up', port => $lond->{port} }, { hostname => 'down', port => $port } ]);
my $lonc;
{
    local $ENV{NOTIFY_SOCKET} = $nsock;
    local $ENV{WATCHDOG_USEC} = 1000000;
    $lonc = start_lonc($cfg);
}
my $d = $lonc->{socket_dir};
my $ready = next_msg(10) // '';
is($ready, 'READY=1', 'READY=1 first');
ok(-S "$d/up" && -S "$d/down", 'the sockets existed by then');
my @w = until_msg(qr/^WATCHDOG=1$/, 5);
is($w[-1], 'WATCHDOG=1', 'WATCHDOG=1 while lonc runs');
@w = until_msg(qr/^WATCHDOG=1$/, 5);
is($w[-1], 'WATCHDOG=1', 'and again (every half period)');
like(log_text($lonc->{log}), qr/event=watchdog period_ms=1000/, 'the watchdog period is WATCHDOG_USEC');

kill 'HUP', $lonc->{pid};
my @r = grep { !/^WATCHDOG/ } until_msg(qr/^READY=1$/, 10);
is_deeply(\@r, [ 'RELOADING=1', 'READY=1' ], 'a reload: RELOADING=1, then READY=1');

# The process title.
sub title { my $t = log_text("/proc/$lonc->{pid}/cmdline"); $t =~ s/\0+$//; $t }
wait_for(sub { title() =~ /^lonc: 2 hosts, \d+ connections?, 0 dead$/ }, 5, 'the title');
pass('the process title: lonc: 2 hosts, N connections, 0 dead');
is(request("$d/up", 'ping'), 'pong', 'a connection');
wait_for(sub { title() =~ /^lonc: 2 hosts, 1 connection, 0 dead$/ }, 5, 'one connection');
pass('the title counts the connection');
is(request("$d/down", 'ping'), 'con_lost', 'a host goes dead');
wait_for(sub { title() eq 'lonc: 2 hosts, 1 connection, 1 dead' }, 5, 'one dead');
pass('the title shows the dead host');

kill 'TERM', $lonc->{pid};
my @s = grep { !/^WATCHDOG/ } until_msg(qr/^STOPPING=1$/, 10);
is($s[-1], 'STOPPING=1', 'STOPPING=1 at the shutdown');
is(wait_lonc($lonc), 0, 'clean exit');

# Without NOTIFY_SOCKET nothing is sent (and nothing breaks).
{
    local $ENV{NOTIFY_SOCKET};
    delete $ENV{NOTIFY_SOCKET};
    my $l2 = start_lonc(write_config(name => 'nt2', hosts => [ { hostname => 'up', port => $lond->{port} } ]));
    is(next_msg(1.5), undef, 'without NOTIFY_SOCKET: no message');
    is(stop_lonc($l2), 0, 'and lonc runs and stops as ever');
}
done_testing();

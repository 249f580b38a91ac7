#!/usr/bin/perl
# Pool life: idle connections are closed after idle_timeout (and the
# host then holds none); a queued request whose client has gone is
# dropped before it is sent.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use LoncTest;

watchdog(120);
my $lond = start_lond();
my $cfg = write_config(idle_timeout => 0.5, max_connections => 1,
    hosts => [ { hostname => 'h', port => $lond->{port} } ]);
my $lonc = start_lonc($cfg);
my $sock = "$lonc->{socket_dir}/h";

is(request($sock, 'ping'), 'pong', 'a connection is made');
is(lond_stats($lond)->{active}, 1, 'and kept in the pool');
wait_for(sub { lond_stats($lond)->{active} == 0 }, 10, 'idle close');
pass('the idle connection is closed after idle_timeout');
like(log_text($lonc->{log}), qr/host=h worker=\d+ event=disconnected reason=idle/, 'logged as idle');
is(request($sock, 'ping'), 'pong', 'a new connection is made on demand');

# One connection, busy for a while; a second client queues its request
# and hangs up before the connection is free.
lond_ctl($lond, 'reset');
my $busy = unix_connect($sock) or die;
print $busy "delay:700:busy\n";
wait_for(sub { lond_stats($lond)->{requests} >= 1 }, 10, 'busy');
{
    my $gone = unix_connect($sock) or die;
    print $gone "record:gone\n";
    $gone->flush;
    close $gone;
}
my $l = readline($busy);
is($l, "busy\n", 'the busy request is answered');
is(request($sock, 'record:after'), 'ok', 'the next request is served');
is(lond_ctl($lond, 'recorded=gone'), 0, 'the request of the client that left was never sent to lond');
is(lond_ctl($lond, 'recorded=after'), 1, 'the one after it was');
is(stop_lonc($lonc), 0, 'clean shutdown');
done_testing();

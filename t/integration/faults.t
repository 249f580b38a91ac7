#!/usr/bin/perl
# Failures answer con_lost and never hang: lond down, dead-host fast
# failure and automatic recovery, transactions that break or time out.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use Time::HiRes qw(time);
use LoncTest;

watchdog(180);
my $down_port = free_port();
my $lond = start_lond();
my $cfg = write_config(
    retry_attempts => 3,
    backoff_initial => 0.3,
    backoff_max => 0.6,
    transaction_timeout => 1,
    hosts => [
        { hostname => 'down', port => $down_port },
        { hostname => 'up', port => $lond->{port} },
    ],
);
my $lonc = start_lonc($cfg);
my $down = "$lonc->{socket_dir}/down";
my $up = "$lonc->{socket_dir}/up";

# lond down: every attempt is refused at once (not left to time out).
is(request($down, 'ping'), 'con_lost', 'lond down: con_lost');
like(log_text($lonc->{log}), qr/host=down event=connect_failed kind=refused/,
     'lond down: the first attempt was refused, not timed out');
unlike(log_text($lonc->{log}), qr/host=down event=connect_failed kind=timeout/,
     'lond down: no attempt waited for connect_timeout');
is(request($down, 'ping'), 'con_lost', 'next attempt: con_lost') for 1 .. 2;
# Bounded: a few more requests at most, each one more failed attempt.
for (1 .. 5) {
    last if log_text($lonc->{log}) =~ /host=down event=host_dead/;
    request($down, 'ping');
}
wait_for(sub { log_text($lonc->{log}) =~ /host=down event=host_dead/ }, 10, 'host_dead')
    or diag log_text($lonc->{log});
like(log_text($lonc->{log}), qr/host=down event=connect_failed kind=refused/,
     'the log says the attempts were refused');
is(request($down, 'ping'), 'con_lost', 'dead host: con_lost at once');
like(log_text($lonc->{log}), qr/host=down event=host_dead attempts=3/, 'dead after retry_attempts');
is(request($up, 'ping'), 'pong', 'another host is not affected');

# Recovery by itself: bring lond up on that port; a probe after the
# backoff finds it.
my $late = start_lond(port => $down_port);
wait_for(sub { log_text($lonc->{log}) =~ /host=down event=host_alive/ }, 20, 'automatic recovery');
is(request($down, 'ping'), 'pong', 'recovered host serves requests without a signal');

# Transactions that break.
my $t0 = time;
is(request($up, 'hang'), 'con_lost', 'lond never answers: con_lost');
cmp_ok(time - $t0, '<', 8, 'after about transaction_timeout');
like(log_text($lonc->{log}), qr/host=up worker=\d+ event=transaction_failed reason=transaction_timeout/,
     'timeout logged with its reason');
is(request($up, 'close'), 'con_lost', 'lond closes without answering: con_lost');
is(request($up, 'closemid:100'), 'con_lost', 'lond closes mid-reply: con_lost');
my $g = request($up, 'garbage');
# testlond sends 64 random bytes with any newline among them left out.
isnt($g, 'con_lost', 'a garbage reply line is relayed, not failed');
ok(defined $g && length $g >= 56 && length $g <= 64,
    'a garbage reply line is relayed whole (' . length($g // '') . ' bytes)');
is(request($up, 'echo:fine'), 'fine', 'the daemon still serves the next request');

# lond sends a line nobody asked for after its reply: the reply is
# relayed, the connection (out of step) dropped, the next request served
# on a fresh one.
lond_ctl($lond, 'fault=extra_after_reply');
is(request($up, 'echo:first'), 'first', 'a reply followed by unasked data is relayed');
lond_ctl($lond, 'fault=none');
wait_for(sub { log_text($lonc->{log}) =~ /host=up worker=\d+ event=protocol_error reason=extra_reply_data/ },
    10, 'extra data logged');
is(request($up, 'echo:next'), 'next', 'the next request is served in step');

# A client that vanishes while its request is in flight.
{
    my $s = unix_connect($up) or die;
    print $s "delay:300:late\n";
    close $s;
}
is(request($up, 'echo:next'), 'next', 'a vanished client does not disturb the next one');

is(stop_lonc($lonc), 0, 'clean shutdown');
done_testing();

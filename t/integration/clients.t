#!/usr/bin/perl
# Local clients that misbehave: slow (trickling) clients never hold up
# the others, silent and partial clients are timed out, and running out
# of file descriptors is survived.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use IO::Select;
use Time::HiRes qw(time sleep);
use LoncTest;

watchdog(240);
my $lond = start_lond();
my $cfg = write_config(
    client_timeout => 20,
    hosts => [ { hostname => 'h', port => $lond->{port} } ],
);
my $lonc = start_lonc($cfg, wrapper => [ 'prlimit', '--nofile=400:400' ]);
my $sock = "$lonc->{socket_dir}/h";

# 200 clients trickle their requests one byte at a time while 50 normal
# clients send 20 requests each.
{
    my @slow = map { unix_connect($sock) or die "connect: $!" } 1 .. 200;
    my @line = map { "echo:slow$_\n" } 0 .. 199;
    my @pos = (0) x 200;
    my $pid = open(my $load, '-|', build_dir() . '/lonc-load', '--socket', $sock,
        '--clients', 50, '--requests', 20) or die "lonc-load: $!";
    my $end = time + 60;
    # Trickle until the load run is done (its output closes), bounded.
    my $sel = IO::Select->new($load);
    my $out = '';
    while (time < $end) {
        for my $i (0 .. 199) {
            next if $pos[$i] >= length($line[$i]) - 1;   # keep the last byte
            syswrite($slow[$i], substr($line[$i], $pos[$i]++, 1));
        }
        if ($sel->can_read(0.02)) {
            my $n = sysread($load, my $buf, 4096);
            last unless $n;
            $out .= $buf;
        }
    }
    waitpid($pid, 0);
    my %r = map { split /=/, $_, 2 } split ' ', $out;
    is($r{ok}, 1000, 'all 1000 normal requests answered while 200 clients trickle');
    is($r{mismatch} + $r{con_lost} + $r{errors}, 0, 'none lost or mixed up');
    # Now the slow clients finish their lines and get their own replies.
    syswrite($slow[$_], substr($line[$_], $pos[$_])) for 0 .. 199;
    my $good = 0;
    for my $i (0 .. 199) {
        my $l = readline($slow[$i]);
        $good++ if defined $l && $l eq "slow$i\n";
    }
    is($good, 200, 'each trickling client gets its own reply');
    close $_ for @slow;
}

# Descriptor exhaustion: with a limit of 400, 450 idle clients run lonc
# out of descriptors; it logs, pauses accepting, and recovers.
{
    my @hold;
    for (1 .. 450) {
        my $s = unix_connect($sock) or last;
        push @hold, $s;
    }
    wait_for(sub { log_text($lonc->{log}) =~ /event=accept_failed pause_ms=\d+ error="Too many open files"/ },
        20, 'EMFILE logged');
    pass('EMFILE on accept is logged');
    close $_ for @hold;
    @hold = ();
    my $reply;
    wait_for(sub { ($reply = request($sock, 'echo:recovered', 5) // '') eq 'recovered' }, 30, 'recovery');
    is($reply, 'recovered', 'lonc serves again once descriptors are free');
}
is(stop_lonc($lonc), 0, 'clean shutdown');

# Silent and partial clients are closed after client_timeout.
$cfg = write_config(name => 'short', socket_dir => tmp_dir() . '/s2', client_timeout => 0.5,
    hosts => [ { hostname => 'h', port => $lond->{port} } ]);
$lonc = start_lonc($cfg);
$sock = "$lonc->{socket_dir}/h";
{
    my $silent = unix_connect($sock) or die;
    my $partial = unix_connect($sock) or die;
    print $partial 'echo:never fini';
    $partial->flush;
    my $t0 = time;
    my $a = readline($silent);
    my $b = readline($partial);
    ok(!defined $a && !defined $b, 'both are closed without an answer');
    cmp_ok(time - $t0, '<', 10, 'after about client_timeout');
    like(log_text($lonc->{log}), qr/event=client_timeout reason=client_read bytes=15/, 'the partial client is logged with its bytes');
    is(request($sock, 'echo:ok'), 'ok', 'others are served');

    # A keep-alive client that was served and then falls silent: its
    # read deadline runs from the hand-back (the acceptor is not woken
    # for it), and it is closed too.
    my $idle = unix_connect($sock) or die;
    print $idle "echo:first\n";
    $idle->flush;
    my $r = readline($idle);
    chomp $r if defined $r;
    is($r, 'first', 'the keep-alive client is served');
    $t0 = time;
    ok(!defined readline($idle), 'then, silent, it is closed');
    cmp_ok(time - $t0, '<', 10, 'after about client_timeout');
    is(request($sock, 'echo:ok2'), 'ok2', 'others are still served');
}
is(stop_lonc($lonc), 0, 'clean shutdown');
done_testing();

#!/usr/bin/perl
# The pool grows in parallel, within bounds, as the test lond sees it:
# (a) a burst on a cold host whose handshakes are slow (every line held
#     at lond) starts several connections at once: lond sees more than
#     one handshake under way together, and never more connections than
#     max_connections;
# (b) max_handshakes bounds the handshakes under way over all hosts:
#     three cold hosts bursting together (one lond serves all three, so
#     its max_handshaking covers them all) never have more than 2 at
#     once; raised by a reload (live), the bound is higher at once;
# (c) a burst on a host that is down (a lond that refuses, slowly, and
#     counts every accepted connection) costs no more connection attempts
#     than retry_attempts, and every client gets con_lost promptly; after
#     a failed attempt the next goes alone.
# All timing checks are lower bounds or generous upper bounds.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use LoncTest;
use Time::HiRes qw(time sleep);
use POSIX ();

watchdog(180);
# After a failure: what lond counted and what lonc logged, to tell why.
sub why_failed {
    my ($lond, $lonc) = @_;
    return if Test::More->builder->is_passing;
    diag('lond: ' . (lond_ctl($lond, 'stats') // '?'));
    diag(join '', grep { !/event=(connected|delayed)/ } split /^/m, log_text($lonc->{log}));
}

# ---- (a) a cold host, slow handshakes -----------------------------------
{
    # An insecure handshake is five lines (init, challenge, version,
    # sethost, ekey): about 0.75 s each at 150 ms a line.
    my $lond = start_lond(args => [ '--delay', 150 ]);
    my $cfg = write_config(name => 'ba', max_connections => 6, retry_attempts => 10,
        hosts => [ { hostname => 'cold', port => $lond->{port}, key_mode => 'insecure' } ]);
    my $lonc = start_lonc($cfg);
    my @r = burst("$lonc->{socket_dir}/cold", 12, 'ping', 60);
    is(scalar(grep { defined && $_ eq 'pong' } @r), 12, 'a: every request of the burst answered');
    my $st = lond_stats($lond);
    cmp_ok($st->{max_handshaking}, '>=', 2,
        "a: lond saw handshakes under way together ($st->{max_handshaking} at most)");
    cmp_ok($st->{max_active}, '<=', 6, "a: never more connections than max_connections ($st->{max_active})");
    cmp_ok($st->{accepted}, '<=', 6, "a: no more connection attempts than max_connections ($st->{accepted})");
    is($st->{handshakes}, $st->{accepted}, 'a: every attempt finished its handshake');
    why_failed($lond, $lonc);
    is(stop_lonc($lonc), 0, 'a: clean shutdown');
}

# ---- (b) max_handshakes over three hosts --------------------------------
{
    my $lond = start_lond(args => [ '--delay', 150 ]);
    my @hosts = map { { hostname => "h$_", port => $lond->{port}, key_mode => 'insecure' } } 1 .. 3;
    my %o = (name => 'bb', max_connections => 6, retry_attempts => 10, handshake_timeout => 30);
    my $cfg = write_config(%o, max_handshakes => 2, hosts => \@hosts);
    my $lonc = start_lonc($cfg);
    my $d = $lonc->{socket_dir};
    my $burst3 = sub {
        my @names = @_;
        # One child per host, so that the three bursts start together.
        my @pids;
        for my $h (@names) {
            my $pid = fork // die "fork: $!";
            if ($pid == 0) {
                my @r = burst("$d/$h", 6, 'ping', 90);
                POSIX::_exit(scalar(grep { defined && $_ eq 'pong' } @r) == 6 ? 0 : 1);
            }
            push @pids, $pid;
        }
        my $bad = 0;
        for my $pid (@pids) {
            waitpid $pid, 0;
            $bad++ if $?;
        }
        return $bad;
    };
    is($burst3->(qw(h1 h2 h3)), 0, 'b: three cold hosts bursting at once: every request answered');
    my $st = lond_stats($lond);
    cmp_ok($st->{max_handshaking}, '<=', 2, "b: max_handshakes 2: never more handshakes under way ($st->{max_handshaking})");
    is($st->{max_handshaking}, 2, 'b: ... and the bound was reached (the measure works)');
    cmp_ok($st->{accepted}, '>', 3, "b: the hosts grew their pools ($st->{accepted} connections)");

    # Live: a reload to max_handshakes 4 with three new (cold) hosts.
    my @new = map { { hostname => "n$_", port => $lond->{port}, key_mode => 'insecure' } } 1 .. 3;
    write_config(%o, max_handshakes => 4, hosts => [ @hosts, @new ]);
    kill 'HUP', $lonc->{pid};
    wait_for(sub { log_text($lonc->{log}) =~ /event=reload added=n1,n2,n3 / }, 20, 'the reload');
    lond_ctl($lond, 'reset');
    is($burst3->(qw(n1 n2 n3)), 0, 'b: after a reload to max_handshakes 4: every request answered');
    $st = lond_stats($lond);
    cmp_ok($st->{max_handshaking}, '<=', 4, "b: never more than 4 under way ($st->{max_handshaking})");
    cmp_ok($st->{max_handshaking}, '>', 2, 'b: ... and more than the old bound: the reload took effect');
    why_failed($lond, $lonc);
    is(stop_lonc($lonc), 0, 'b: clean shutdown');
}

# ---- (c) a host that is down --------------------------------------------
{
    # It accepts, holds the init line 500 ms, and refuses: every attempt
    # is counted (accepted) and lasts long enough to overlap others.
    my $lond = start_lond(fault => 'refuse', args => [ '--delay', 500 ]);
    my %o = (name => 'bc', max_connections => 10, backoff_initial => 60, backoff_max => 60);
    my $cfg = write_config(%o, retry_attempts => 4, hosts => [
        { hostname => 'down', port => $lond->{port}, key_mode => 'insecure' },
        { hostname => 'flaky', port => $lond->{port}, key_mode => 'insecure' },
    ]);
    my $lonc = start_lonc($cfg);
    my $d = $lonc->{socket_dir};
    my $log = sub { log_text($lonc->{log}) };

    my $t0 = time;
    my @r = burst("$d/down", 30, 'ping', 60);
    my $took = time - $t0;
    is(scalar(grep { defined && $_ eq 'con_lost' } @r), 30, 'c: all 30 clients of the burst got con_lost');
    cmp_ok($took, '<', 20, sprintf('c: promptly (%.1f s; the attempts take 0.5 s)', $took));
    my $st = lond_stats($lond);
    cmp_ok($st->{accepted}, '<=', 4, "c: no more connection attempts than retry_attempts 4 ($st->{accepted})");
    cmp_ok($st->{max_active}, '<=', 4, "c: ... nor under way at once ($st->{max_active})");
    like($log->(), qr/host=down event=host_dead attempts=4 /, 'c: the host is dead after 4');
    @r = burst("$d/down", 30, 'ping', 60);
    is(scalar(grep { defined && $_ eq 'con_lost' } @r), 30, 'c: a dead host: con_lost again');
    is(lond_stats($lond)->{accepted}, $st->{accepted}, 'c: ... without any attempt (the probe is a minute away)');

    # After a failed attempt the next goes alone: one request fails
    # first, then each burst costs one attempt (its clients get con_lost
    # when it fails), until retry_attempts (4) make the host dead.
    lond_ctl($lond, 'reset');
    is(request("$d/flaky", 'ping'), 'con_lost', 'c: one failed attempt first');
    wait_for(sub { $log->() =~ /host=flaky event=connect_failed .* attempt=1\/4/ }, 10, 'the first failure');
    for my $n (2 .. 4) {
        @r = burst("$d/flaky", 30, 'ping', 60);
        is(scalar(grep { defined && $_ eq 'con_lost' } @r), 30, "c: a burst after " . ($n - 1) . " failed attempts: con_lost for all");
        $st = lond_stats($lond);
        is("$st->{accepted} $st->{max_active}", "$n 1", "c: ... one attempt more, alone ($n attempts in all)");
    }
    like($log->(), qr/host=flaky event=host_dead attempts=4 /, 'c: the host is dead after 4');
    @r = burst("$d/flaky", 30, 'ping', 60);
    is(scalar(grep { defined && $_ eq 'con_lost' } @r), 30, 'c: then con_lost at once');
    is(lond_stats($lond)->{accepted}, 4, 'c: retry_attempts attempts in all');
    why_failed($lond, $lonc);
    is(stop_lonc($lonc), 0, 'c: clean shutdown');
}
done_testing();

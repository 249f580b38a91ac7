#!/usr/bin/perl
# Attack: resource limits.
#  1. lonc started with 48 file descriptors (prlimit) and a burst of 150
#     clients (slow replies and spooled ones): every client gets its own
#     reply, the whole reply or con_lost (accept pauses, spool files and
#     lond connections fail for want of descriptors meanwhile); lonc
#     survives and serves again afterwards.  lond never went down, so the
#     host must not be declared dead for lonc's own shortage.
#  2. max_queue full (max_connections 1, max_queue 4, 40 slow requests
#     at once): each answered, its own reply or con_lost.
#  3. queue_timeout: requests that waited longer than it behind a slow
#     one are answered con_lost, not sent.
#  4. 2000 clients at once on a daemon with its default limits: each
#     answered.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(time sleep);
use LoncTest;

watchdog(170);
$SIG{PIPE} = 'IGNORE';
my $lond = start_lond();
my $BIG = pattern(100_000);

# Clients all connected and their lines written before any reply is
# read; returns a hash of outcomes: own, whole, lost, none (nothing at
# all), and bad:<what>.
sub storm {
    my ($sock, $n, $gen) = @_;
    my @c = map { [ unix_connect($sock), $gen->($_) ] } 1 .. $n;
    for my $c (grep { $_->[0] } @c) {
        syswrite($c->[0], "$c->[1][0]\n");
    }
    my %h;
    my $connected = 0;
    for my $c (@c) {
        my ($s, $q) = @$c;
        next unless $s;
        $connected++;
        my ($b, $how) = read_reply_bytes($s, 60);
        close $s;
        my $k = !defined $b || $b eq '' ? "none($how)" : $b eq "con_lost\n" ? 'lost'
            : $b eq "$q->[1]\n" ? 'own' : 'bad:' . describe_bytes($b) . "($how) for $q->[0]";
        $h{$k}++;
    }
    $h{connected} = $connected;
    return \%h;
}
sub show { my ($h) = @_; join ' ', map { "$_=$h->{$_}" } sort keys %$h }
sub answered_all {
    my ($h) = @_;
    return !grep { /^(none|bad)/ } keys %$h;
}

# ---- 1. 48 file descriptors ------------------------------------------------
SKIP: {
    skip 'no prlimit to start lonc with 48 descriptors', 11
        unless grep { -x "$_/prlimit" } split /:/, $ENV{PATH} // '';
    my $lonc = start_lonc(write_config(name => 'nofile', socket_dir => tmp_dir() . '/s-nofile',
        spool_dir => tmp_dir() . '/spool-nofile',
        max_connections => 4, max_queue => 1000, reply_buffer => 4096,
        retry_attempts => 3, backoff_initial => 1, backoff_max => 10,
        queue_timeout => 30, client_timeout => 20,
        hosts => [ { hostname => 'h', port => $lond->{port} } ]),
        wrapper => [ 'prlimit', '--nofile=48:48', '--' ]);
    my $sock = "$lonc->{socket_dir}/h";
    like(log_text($lonc->{log}), qr/event=nofile_limit open_files=48\b/, 'lonc runs with 48 descriptors');
    is(request($sock, 'ping'), 'pong', 'and serves');
    my $h = storm($sock, 150, sub {
        my ($i) = @_;
        return $i % 3 ? [ "delay:200:r$i", "r$i" ] : [ 'bytes:100000', $BIG ];
    });
    diag('150 clients, 48 descriptors: ' . show($h));
    ok(answered_all($h), 'every client got its own reply, the whole reply or con_lost');
    my $log = log_text($lonc->{log});
    like($log, qr/Too many open files/, 'lonc did run out of descriptors');
    ok(waitpid($lonc->{pid}, WNOHANG) == 0, 'lonc is alive');
    my $ok = 0;
    for (1 .. 60) { $ok = 1, last if (request($sock, 'ping', 10) // '') eq 'pong'; sleep 0.5 }
    ok($ok, 'the host serves again after the storm');

    # The same shortage made exact: idle clients hold every descriptor
    # but one, with no lond connection in the pool; the one left goes to
    # a client whose request then needs a socket to lond.
    request($sock, 'close_connection_exit');
    wait_for(sub { lond_stats($lond)->{active} == 0 }, 10, 'pool empty');
    # Descriptors below the limit (one inherited from the harness may
    # sit above it).
    my $fds = sub {
        opendir my $d, "/proc/$lonc->{pid}/fd" or return 0;
        return scalar grep { /^\d+$/ && $_ < 48 } readdir $d;
    };
    sleep 0.5;
    my $base = $fds->();
    my @idle = map { unix_connect($sock) } 1 .. 47 - $base;
    eval { wait_for(sub { $fds->() == 47 }, 10, 'the idle clients accepted') };
    is($fds->(), 47, 'idle clients hold all descriptors but one (' . scalar(@idle) . ' of them)');
    my @answers = map { request($sock, "echo:short$_", 20) // 'nothing' } 1 .. 3;
    is_deeply(\@answers, [ ('con_lost') x 3 ], 'no descriptor for a lond connection: con_lost (answered)');
    close $_ for @idle;
    wait_for(sub { $fds->() < 20 }, 10, 'the idle clients gone');
    my $after = request($sock, 'echo:free', 20) // 'nothing';
    diag("descriptors free again, the next request gets: $after");
    $log = log_text($lonc->{log});
    {
        ok($log !~ /host=h event=host_dead/,
            'lond was up all along: the host is not declared dead for lonc\'s own lack of descriptors')
            or diag(join "\n", grep { /host_dead|connect_failed|probe/ } split /\n/, $log);
        is($after, 'free', 'descriptors free again: the next request is served');
    }
    is(stop_lonc($lonc), 0, 'clean shutdown');
}

# ---- 2. max_queue full --------------------------------------------------------
{
    my $lonc = start_lonc(write_config(name => 'qfull', socket_dir => tmp_dir() . '/s-qfull',
        max_connections => 1, max_queue => 4, queue_timeout => 30,
        hosts => [ { hostname => 'h', port => $lond->{port} } ]));
    my $sock = "$lonc->{socket_dir}/h";
    is(request($sock, 'ping'), 'pong', 'max_queue 4: lonc serves');
    my $h = storm($sock, 40, sub { [ "delay:300:q$_[0]", "q$_[0]" ] });
    diag('40 slow requests, max_queue 4: ' . show($h));
    ok(answered_all($h), 'each answered: its own reply or con_lost');
    cmp_ok($h->{own} // 0, '>=', 1, 'some were served');
    cmp_ok($h->{lost} // 0, '>=', 1, 'the rest were refused');
    like(log_text($lonc->{log}), qr/event=queue_full max_queue=4/, 'queue_full logged');
    is(request($sock, 'echo:after'), 'after', 'serves on');
    is(stop_lonc($lonc), 0, 'clean shutdown');
}

# ---- 3. queue_timeout ------------------------------------------------------------
{
    my $lonc = start_lonc(write_config(name => 'qtime', socket_dir => tmp_dir() . '/s-qtime',
        max_connections => 1, queue_timeout => 0.5,
        hosts => [ { hostname => 'h', port => $lond->{port} } ]));
    my $sock = "$lonc->{socket_dir}/h";
    is(request($sock, 'ping'), 'pong', 'queue_timeout 0.5: lonc serves');
    my $before = lond_stats($lond)->{requests};
    my $h = storm($sock, 6, sub { $_[0] == 1 ? [ 'delay:2500:slow', 'slow' ] : [ "echo:w$_[0]", "w$_[0]" ] });
    diag('a 2.5 s request, then five behind it: ' . show($h));
    ok(answered_all($h), 'each answered');
    is($h->{own}, 1, 'the slow one got its reply');
    is($h->{lost}, 5, 'the five that waited longer than queue_timeout got con_lost');
    is(lond_stats($lond)->{requests} - $before, 1, 'and were not sent to lond');
    is(stop_lonc($lonc), 0, 'clean shutdown');
}

# ---- 4. 2000 clients at once ----------------------------------------------------
SKIP: {
    my $limit = `sh -c 'ulimit -n'` // 0;
    chomp $limit;
    skip "the test itself may hold only $limit descriptors", 5
        if $limit ne 'unlimited' && $limit < 2100;
    my $lonc = start_lonc(write_config(name => 'many', socket_dir => tmp_dir() . '/s-many',
        max_connections => 4, max_queue => 256,
        hosts => [ { hostname => 'h', port => $lond->{port} } ]));
    my $sock = "$lonc->{socket_dir}/h";
    is(request($sock, 'ping'), 'pong', '2000 clients: lonc serves');
    my $h = storm($sock, 2000, sub { [ "echo:m$_[0]", "m$_[0]" ] });
    diag('2000 clients: ' . show($h));
    ok(answered_all($h), 'each of 2000 clients answered, its own reply or con_lost');
    cmp_ok($h->{connected}, '==', 2000, 'all 2000 connected');
    my $f = proc_figures($lonc->{pid});
    diag("lonc afterwards: fds=$f->{fds} threads=$f->{threads} rss_kb=$f->{rss_kb}");
    is(request($sock, 'echo:after'), 'after', 'serves on');
    is(stop_lonc($lonc), 0, 'clean shutdown');
}

done_testing();

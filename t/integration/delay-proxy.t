#!/usr/bin/perl
# bench/delay, the delaying TCP relay of the benchmark's scenario 10:
# through it lonc serves plain and encrypted requests in insecure mode
# and in ssl mode (TLS passes through, it is a byte pipe), big replies
# arrive whole, a half-close travels both ways, and an upstream that is
# down ends the client's connection (lonc answers con_lost).  The one
# timing check is a lower bound the relay guarantees by construction (no
# reply before the delay allows), never an upper one.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use IO::Socket::INET;
use POSIX ();
use Socket qw(SHUT_WR);
use Test::More;
use Time::HiRes qw(time);
use LoncTest;

watchdog(120);
my $delay_bin = build_dir() . '/bench/delay';
plan skip_all => "$delay_bin is not built" unless -x $delay_bin;

my $certs = tmp_dir() . '/certs';
system("$FindBin::Bin/../tls/mkcerts $certs >/dev/null 2>&1") == 0 or BAIL_OUT('mkcerts failed');

# Start the relay in front of 127.0.0.1:$port; returns { pid, port }.
my $n = 0;
sub start_delay {
    my ($port, $ms, @more) = @_;
    my $out = tmp_dir() . '/delay' . $n++ . '.out';
    my $pid = LoncTest::_spawn($out, "$out.err", $delay_bin, '--upstream',
        "127.0.0.1:$port", '--delay-ms', $ms, @more);
    my $dport;
    wait_for(sub { (log_text($out) =~ /^ready port=(\d+)/m) and $dport = $1 }, 10,
        'delay ready');
    return { pid => $pid, port => $dport, err => "$out.err" };
}

my $ms = 10;
my $lond = start_lond(args => [ '--tls-cert', "$certs/lond.pem", '--tls-key',
    "$certs/lond.key", '--tls-ca', "$certs/ca.pem" ]);
my $relay = start_delay($lond->{port}, $ms);
my $down = start_delay(free_port(), $ms);

# The relay by hand: a ctl: line, then a half-close; the answer still
# comes back, then lond's end of file.  No answer before the delay
# allows: the client's bytes leave one round trip after the accept plus
# one way, the answer takes one way back (4 x 10 ms).
{
    my $t0 = time;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $relay->{port},
        Timeout => 5) or die "connect: $!";
    print $s "ctl:ping\n";
    $s->flush;
    shutdown($s, SHUT_WR);
    my ($r, $how) = read_reply_bytes($s, 10);
    my $dt = time - $t0;
    is($r, "pong\n", 'a line through the relay is answered after a half-close');
    cmp_ok($dt, '>=', 4 * $ms / 1000 * 0.99, 'not before connect, one way, and one way back');
    my ($rest, $end) = read_reply_bytes($s, 10);
    is($end, 'eof', "lond's close comes through as end of file");
    close $s;
}

# Without the connect delay only the two one-way delays remain.
{
    my $fast = start_delay($lond->{port}, $ms, '--no-connect-delay');
    my $t0 = time;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $fast->{port},
        Timeout => 5) or die "connect: $!";
    print $s "ctl:ping\n";
    $s->flush;
    my $r = read_reply_bytes($s, 10);
    my $dt = time - $t0;
    is($r, "pong\n", '--no-connect-delay: answered');
    cmp_ok($dt, '>=', 2 * $ms / 1000 * 0.99, '--no-connect-delay: not before one way and back');
    close $s;
    is(kill_wait($fast->{pid}, 'TERM', 10), 0, 'SIGTERM: the relay exits 0');
    like(log_text($fast->{err}), qr/^delay: accepted=1 upstream_failed=0 reset=0 /m,
        'it reports its counters');
}

my %tls = (tls => "{ca_file: $certs/ca.pem, cert_file: $certs/lonc.pem, "
    . "key_file: $certs/lonc.key, verify_hostname: true}");
my $cfg = write_config(
    name => 'dp', retry_attempts => 2, backoff_initial => 5, backoff_max => 5, %tls,
    hosts => [
        { hostname => 'plain', port => $relay->{port}, key_mode => 'insecure' },
        { hostname => 'tls', port => $relay->{port}, key_mode => 'ssl', tls_name => 'lond.test' },
        { hostname => 'gone', port => $down->{port}, key_mode => 'insecure' },
    ],
);
my $lonc = start_lonc($cfg);
my $d = $lonc->{socket_dir};

is(request("$d/plain", 'ping'), 'pong', 'insecure: ping through the relay');
is(request("$d/plain", 'encrypt:echo:secret-1'), 'secret-1', 'insecure: encrypt: round trip');
is(request("$d/plain", 'encecho:secret-2'), 'secret-2', 'insecure: an enc: reply decrypted');
is(request("$d/tls", 'ping'), 'pong', 'ssl: ping through the relay');
is(request("$d/tls", 'encrypt:echo:secret-3'), 'secret-3', 'ssl: encrypt: round trip');
my $st = lond_stats($lond);
is($st->{tls}, 1, 'ssl: the TLS key exchange went through the relay');
is($st->{tls_failed}, 0, 'ssl: none failed');
is($st->{encrypted}, 2, 'both encrypted requests reached lond as enc:');

my $big = 3_000_000;
my $reply = request_bytes("$d/plain", "bytes:$big", 30);
is(length($reply // ''), $big + 1, 'a 3 MB reply through the relay arrives whole');
is($reply, pattern($big) . "\n", '... byte for byte');
$reply = request_bytes("$d/tls", "encbytes:$big", 30);
is($reply, pattern($big) . "\n", 'a 3 MB enc: reply through the relay, decrypted whole');

# Several at once on the pool (the relay serves many connections).
my @kids;
for my $i (1 .. 8) {
    my $pid = fork // die;
    if (!$pid) {
        my $bad = 0;
        for my $j (1 .. 5) {
            my $r = request("$d/" . ($i % 2 ? 'plain' : 'tls'), "echo:c$i-$j") // '';
            $bad++ unless $r eq "c$i-$j";
        }
        POSIX::_exit($bad);
    }
    push @kids, $pid;
}
my $bad = 0;
for (@kids) { waitpid $_, 0; $bad += $? >> 8 }
is($bad, 0, 'eight clients at once, each got its own replies');

# An upstream that is down: the relay resets the client, lonc answers.
is(request("$d/gone", 'ping', 20), 'con_lost', 'upstream down: con_lost');

is(stop_lonc($lonc), 0, 'lonc stops cleanly');
for my $r ($relay, $down) {
    is(kill_wait($r->{pid}, 'TERM', 10), 0, 'the relay stops cleanly');
}
like(log_text($down->{err}), qr/upstream_failed=[1-9]/, 'the relay counted the failed upstream connects');
done_testing();

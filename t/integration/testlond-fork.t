#!/usr/bin/perl
# The test lond's --fork mode (a child process per connection, as lond
# does), end to end on loopback: handshakes and echoes over several
# connections at once, each served by its own child; the ctl:stats totals
# and record: counts add up across the children; a fault set through one
# child reaches the others; no child (live or zombie) is left once the
# connections close; children die with the lond; --no-handshake and the
# ssl key mode (through lonc) work in fork mode too.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use IO::Socket::INET;
use IO::Select;
use POSIX qw(WNOHANG);
use Test::More;
use Time::HiRes qw(time sleep);
use LoncTest;

watchdog(60);
my $lond_bin = build_dir() . '/testlond';
like(`$lond_bin --help`, qr/^\s+--fork\s/m, '--help lists --fork');

# Children of $pid: { pid => state } (state Z: a zombie, not reaped).
sub children_of {
    my ($pid) = @_;
    my %kids;
    for my $stat (glob '/proc/[0-9]*/stat') {
        my $s = log_text($stat);
        next unless $s =~ /\)\s+(\S)\s+(\d+)/;
        next unless $2 == $pid;
        my ($kid) = $stat =~ m{/proc/(\d+)/};
        $kids{$kid} = $1;
    }
    return \%kids;
}

sub tcp {
    my ($lond) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $lond->{port},
        Timeout => 5) or die "connect: $!";
    return $s;
}

sub line {
    my ($s) = @_;
    my $l = <$s>;
    chomp $l if defined $l;
    return $l;
}

# Whether $s says nothing for $secs (undef: it closed).
sub quiet_for {
    my ($s, $secs) = @_;
    return IO::Select->new($s)->can_read($secs) ? 0 : 1;
}

my $lond = start_lond(args => ['--fork']);
my $n = 8;

# Handshakes on all connections at once: every init line first.
my @c = map { tcp($lond) } 1 .. $n;
print $_ "init\n" for @c;
my @challenge = map { line($_) } @c;
print { $c[$_] } "$challenge[$_]\n" for 0 .. $#c;
is(join(',', map { line($_) // 'EOF' } @c), join(',', ('ok') x $n),
    "$n insecure handshakes at once");

# One child per connection: the challenge starts with the serving pid.
my $kids = children_of($lond->{pid});
is(scalar(grep { $_ ne 'Z' } values %$kids), $n, "$n live children while $n connections are open");
my %served;
for my $ch (@challenge) {
    my ($kid) = grep { $ch =~ /^$_\d{10}$/ } keys %$kids;
    $served{$kid // 'none'}++;
}
ok(!$served{none} && keys %served == $n, 'each connection is served by its own child');

# ekey in each child: distinct buildkeys (randomness not shared by the forks).
print $_ "ekey\n" for @c;
my @keys = map { line($_) } @c;
my %distinct = map { $_ => 1 } grep { defined && /^\d{10}$/ } @keys;
is(scalar keys %distinct, $n, 'ekey: every child makes its own buildkey');

# Requests in every child; the totals add up across them.
print { $c[$_] } "echo:hello $_\nrecord:tok\n" for 0 .. $#c;
my @echo = map { [ line($c[$_]), line($c[$_]) ] } 0 .. $#c;
is(join(',', map { "$_->[0]/$_->[1]" } @echo),
    join(',', map { "hello $_/ok" } 0 .. $n - 1), 'echo: and record: in every child');
my $st = lond_stats($lond);
is("$st->{connections} $st->{active} $st->{max_active} $st->{handshakes} $st->{requests}",
    "$n $n $n $n " . 2 * $n, 'ctl:stats: connections, active, max_active, handshakes, '
    . 'requests summed over the children');
is(lond_ctl($lond, 'recorded=tok'), $n, 'ctl:recorded= counts the record: of every child');

# A fault set through one (ctl) child reaches the children already running.
is(lond_ctl($lond, 'fault=close_after_reply'), 'ok', 'ctl:fault= in fork mode');
print { $c[0] } "echo:last\n";
is(line($c[0]), 'last', 'close_after_reply: the reply comes');
is(line($c[0]), undef, 'close_after_reply: then an already running child closes');
is(lond_ctl($lond, 'fault=stop_reading'), 'ok', 'ctl:fault=stop_reading');
print { $c[1] } "echo:held\n";
ok(quiet_for($c[1], 0.3), 'stop_reading: a running child stops answering');
is(lond_ctl($lond, 'fault=none'), 'ok', 'ctl:fault=none');
ok(!quiet_for($c[1], 3) && !defined line($c[1]), 'stop_reading cleared: that child closes');

# Every connection closed: every child exits and is reaped.
close $_ for @c;
wait_for(sub { !%{ children_of($lond->{pid}) } }, 5, 'the children to be reaped');
pass('no child (live or zombie) is left once the connections closed');
$st = lond_stats($lond);
is("$st->{connections} $st->{active}", "$n 0", 'ctl:stats: every connection counted, none active');
is(lond_ctl($lond, 'reset'), 'ok', 'ctl:reset');
is(lond_stats($lond)->{connections}, 0, 'ctl:reset zeroes the shared counters');
wait_for(sub { !%{ children_of($lond->{pid}) } }, 5, 'the ctl children to be reaped');
pass('the ctl: children are reaped too');

# --no-handshake --fork: every line is a command at once.
my $nh = start_lond(args => ['--fork', '--no-handshake']);
my @d = map { tcp($nh) } 1 .. 4;
print { $d[$_] } "echo:nh $_\n" for 0 .. $#d;
is(join(',', map { line($_) // 'EOF' } @d), 'nh 0,nh 1,nh 2,nh 3',
    '--no-handshake --fork: four connections at once');
is(lond_stats($nh)->{requests}, 4, '--no-handshake --fork: requests counted');

# The children die with the lond, as connection threads do.
wait_for(sub { keys %{ children_of($nh->{pid}) } == 4 }, 5, 'the ctl: child to go');
my @kids = keys %{ children_of($nh->{pid}) };
is(scalar @kids, 4, 'a child per open connection');
kill 'TERM', $nh->{pid};
my $end = time + 5;
my $got;
while (time < $end) {
    last if ($got = waitpid($nh->{pid}, WNOHANG)) == $nh->{pid};
    sleep 0.02;
}
is($got == $nh->{pid} ? $? : 'still running', 0, 'SIGTERM: the lond exits with status 0');
wait_for(sub { !grep { kill 0, $_ } @kids }, 5, 'the children to die with the lond');
pass('its children die with it');
is(line($d[0]), undef, 'their connections are closed');

# ssl key mode through lonc: TLS in a forked child, then encrypted requests.
my $certs = tmp_dir() . '/certs';
system("$FindBin::Bin/../tls/mkcerts", $certs) == 0 or BAIL_OUT('mkcerts failed');
my $tls = start_lond(args => [ '--fork', '--tls-cert', "$certs/lond.pem",
    '--tls-key', "$certs/lond.key", '--tls-ca', "$certs/ca.pem" ]);
my $cfg = write_config(name => 'fork',
    tls => "{ca_file: $certs/ca.pem, cert_file: $certs/lonc.pem, key_file: $certs/lonc.key, "
        . "verify_hostname: true}",
    hosts => [ { hostname => 'lond.test', port => $tls->{port}, key_mode => 'ssl' } ]);
my $lonc = start_lonc($cfg);
my $sock = "$lonc->{socket_dir}/lond.test";
is(request($sock, 'encrypt:echo:secret'), 'secret', 'ssl: an encrypted round trip via a forked child');
is(request($sock, 'encecho:again'), 'again', 'ssl: an enc: reply from a forked child');
$st = lond_stats($tls);
ok($st->{tls} >= 1 && $st->{tls_failed} == 0, 'ssl: TLS key exchange done in a child');
is($st->{encrypted}, 1, 'ssl: the encrypted request counted across processes');
is(stop_lonc($lonc), 0, 'lonc stops cleanly');

done_testing();

#!/usr/bin/perl
# The test lond's protocol settings, spoken to directly (no lonc): each
# behaves like a lond that needs the matching lonc switch and refuses the
# other - --sethost inline|bare|none, --init any|plain|versioned,
# --require-version, the per-line --delay - and each can be changed at
# run time with its ctl: command; ctl:stats counts accepted connections,
# bare sethosts, and the handshakes under way at once (handshaking,
# max_handshaking), ended where the README says; conninfo reports how a
# connection was set up.  The key-ID order and --tls-close-notify need a
# cipher and a TLS client: switches.t covers them through lonc.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use IO::Socket::INET;
use Time::HiRes qw(time sleep);
use LoncTest;

watchdog(60);
my $lond = start_lond(host_id => 'lid');

sub tcp {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $lond->{port},
        Timeout => 5) or die "connect: $!";
    return $s;
}
# One line out, one line back (undef at end of file).
sub ask {
    my ($s, $line) = @_;
    print $s "$line\n";
    my $r = <$s>;
    chomp $r if defined $r;
    return $r;
}
# An insecure handshake up to the challenge's ok.
sub insecure {
    my ($init) = @_;
    my $s = tcp();
    my $ch = ask($s, $init // 'init');
    die "no challenge: " . ($ch // 'eof') unless defined $ch && $ch =~ /^\d+$/;
    my $ok = ask($s, $ch);
    die "challenge not ok: " . ($ok // 'eof') unless defined $ok && $ok eq 'ok';
    return $s;
}
sub closed { my ($s) = @_; my $r = <$s>; return !defined $r }
sub ctl { lond_ctl($lond, $_[0]) }
sub stat_of { lond_stats($lond)->{ $_[0] } }

# ---- settings: ctl:settings, bad values --------------------------------
is(ctl('settings'), 'sethost=inline init=any key_id_order=remote_first tls_close_notify=send delay=0 require_version=',
   'ctl:settings: the defaults');
is(ctl('sethost=sideways'), 'error:bad_value', 'a bad setting value is refused');
is(ctl('delay=x'), 'error:bad_value', 'a bad delay is refused');
my $bad = system(build_dir() . '/testlond --quiet --init sometimes >/dev/null 2>&1');
is($bad >> 8, 2, 'a bad --init value: exit status 2');

# ---- --sethost ---------------------------------------------------------
{
    my $s = insecure();
    is(ask($s, 'sethost:a2:whoami'), 'a2', 'inline: sethost:<id>:<cmd> answers as <id>');
    is(ask($s, 'sethost:a3'), 'ok', 'inline: bare sethost:<id> is ok');
    is(ask($s, 'whoami'), 'a3', '... and selects the ID');
    is(ctl('sethost=bare'), 'ok', 'ctl:sethost=bare');
    is(ask($s, 'sethost:a2:whoami'), 'unknown_cmd', 'bare: the in-line form is unknown_cmd (on an open connection too)');
    is(ask($s, 'sethost:a4'), 'ok', 'bare: sethost:<id> is ok');
    is(ask($s, 'record:bare1'), 'ok', 'record: after a bare sethost');
    is(ctl('recorded=a4/bare1'), 1, '... counted for the ID selected');
    is(ctl('sethost=none'), 'ok', 'ctl:sethost=none');
    is(ask($s, 'sethost:a5'), 'unknown_cmd', 'none: a bare sethost:<id> is unknown_cmd');
    is(ask($s, 'sethost:a5:whoami'), 'unknown_cmd', 'none: so is the in-line form');
    is(ask($s, 'whoami'), 'a4', '... and the ID in effect did not change');
    close $s;
    my $t = insecure();
    is(ask($t, 'whoami'), 'lid', 'none: a fresh connection answers as the lond\'s own ID');
    is(ask($t, 'record:none1'), 'ok', 'record: without any sethost');
    is(ctl('recorded=lid/none1'), 1, '... counted for the lond\'s own ID');
    is(ctl('sethost=inline'), 'ok', 'back to inline');
    is(ask($t, 'sethost:a6:record:inl1'), 'ok', 'inline: record: with a prefix');
    is(ctl('recorded=a6/inl1'), 1, '... counted for the prefix\'s ID');
    close $t;
    is(stat_of('sethosts'), 2, 'sethosts counts the bare sethost:<id> answered ok');
}

# ---- --init ------------------------------------------------------------
{
    is(ctl('init=versioned'), 'ok', 'ctl:init=versioned');
    for my $line ('init', 'init::', 'init:ssl') {
        my $s = tcp();
        is(ask($s, $line), 'refused', "versioned: '$line' is refused");
        ok(closed($s), '... and the connection closed');
    }
    my $s = insecure('init::2.11');
    is(ask($s, 'version:0.1.0'), 'testlond-1.0', 'versioned: init::<v> is served');
    is(ask($s, 'conninfo'), 'mode=insecure init_version=2.11 peer_version=0.1.0 host=lid',
       'conninfo: the init version and the peer\'s version');
    close $s;
    # No certificates here: init:ssl:<v> gets a challenge, as from a lond
    # without them.
    my $t = tcp();
    like(ask($t, 'init:ssl:2.11'), qr/^\d+$/, 'versioned: init:ssl:<v> goes on');
    close $t;
    is(ctl('init=plain'), 'ok', 'ctl:init=plain');
    for my $line ('init::2.11', 'init:ssl:2.11') {
        my $u = tcp();
        is(ask($u, $line), 'refused', "plain: '$line' is refused");
        ok(closed($u), '... and the connection closed');
    }
    my $v = insecure('init');
    is(ask($v, 'conninfo'), 'mode=insecure init_version=- peer_version=- host=lid', 'plain: init is served');
    close $v;
    is(ctl('init=any'), 'ok', 'back to any');
    close insecure('init::x');
    close insecure('init');
    pass('any: both forms are served');
}

# ---- --require-version -------------------------------------------------
{
    is(ctl('require_version=2.12.0'), 'ok', 'ctl:require_version=2.12.0');
    my $s = insecure();
    is(ask($s, 'version:0.1.0'), 'refused', 'another version is refused');
    ok(closed($s), '... and the connection closed');
    my $t = insecure();
    is(ask($t, 'version:2.12.0'), 'testlond-1.0', 'the required version is answered');
    close $t;
    is(ctl('require_version='), 'ok', 'an empty required version: any');
    my $u = insecure();
    is(ask($u, 'version:whatever'), 'testlond-1.0', '... and any version is answered again');
    close $u;
}

# ---- handshakes under way, accepted connections ------------------------
{
    is(ctl('reset'), 'ok', 'ctl:reset');
    my $st = lond_stats($lond);
    is("$st->{accepted} $st->{handshaking} $st->{max_handshaking}", '0 0 0',
       'accepted, handshaking, max_handshaking after a reset');
    my $a = tcp();
    my $cha = ask($a, 'init');
    is(stat_of('handshaking'), 1, 'a connection after its init line is handshaking');
    my $b = tcp();
    like(ask($b, 'init'), qr/^\d+$/, 'a second one');
    is(stat_of('handshaking'), 2, 'two handshaking');
    is(ask($a, $cha), 'ok', 'the first answers its challenge');
    is(ask($a, 'sethost:x1'), 'ok', '... sets its host (no key yet)');
    is(stat_of('handshaking'), 2, 'insecure: still handshaking before ekey');
    like(ask($a, 'ekey'), qr/^\d{10}$/, 'ekey');
    is(stat_of('handshaking'), 1, 'the answer to ekey ends the handshake (counted before it was sent)');
    close $b;
    wait_for(sub { stat_of('handshaking') == 0 }, 5, 'the closed one to end');
    pass('a close ends a handshake');
    is(stat_of('max_handshaking'), 2, 'max_handshaking: 2');
    my $r = tcp();
    is(ask($r, 'init:bogus'), 'refused', 'a bad init line');
    is(stat_of('handshaking'), 0, 'a refusal ends the handshake before it is answered');
    close $r;
    # The first request ends a handshake that had no ekey or sethost.
    my $c = insecure();
    is(stat_of('handshaking'), 1, 'handshaking again');
    is(ask($c, 'version:1'), 'testlond-1.0', 'version: is a setup step');
    is(stat_of('handshaking'), 1, '... it does not end the handshake');
    is(ask($c, 'ping'), 'pong', 'a request');
    is(stat_of('handshaking'), 0, '... ends it');
    close $c;
    my $n = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $lond->{port}) or die;
    close $n;
    wait_for(sub { stat_of('accepted') == 5 }, 5, 'accepted to count the silent connection');
    pass('accepted counts every TCP connection but the ctl: ones, also one closed without a line');
    is(stat_of('connections'), 4, 'connections counts those that sent a line');
    close $a;
    is(ctl('reset'), 'ok', 'reset');
    is(stat_of('max_handshaking'), 0, 'ctl:reset: max_handshaking back to those handshaking now');
}

# ---- local mode: a bare sethost after the key ends the handshake --------
{
    my $dir = tmp_dir();
    my $kf = "$dir/lid.key";
    open my $fh, '>', $kf or die;
    print $fh '0123456789abcdef0123456789abcdef', "\n";
    close $fh;
    chmod 0600, $kf;
    my $s = tcp();
    is(ask($s, "init:local:$kf"), 'ok:local', 'local handshake');
    is(stat_of('handshaking'), 1, 'handshaking after ok:local');
    is(ask($s, 'sethost:loc'), 'ok', 'sethost:<id> with the key set');
    is(stat_of('handshaking'), 0, '... ends the handshake');
    is(ask($s, 'conninfo'), 'mode=local init_version=- peer_version=- host=loc', 'conninfo: local');
    close $s;
}

# ---- --delay ------------------------------------------------------------
{
    my $s = insecure();
    is(ctl('delay=300'), 'ok', 'ctl:delay=300');
    my $t0 = time;
    is(ask($s, 'ping'), 'pong', 'a request with the per-line delay');
    cmp_ok(time - $t0, '>=', 0.29, '... was held at least 300 ms');
    $t0 = time;
    my $u = tcp();
    my $ch = ask($u, 'init');
    is(ask($u, $ch), 'ok', 'a handshake with the per-line delay');
    cmp_ok(time - $t0, '>=', 0.59, '... both of its lines were held');
    $t0 = time;
    like(ctl('stats'), qr/^connections=/, 'ctl: lines are not delayed');
    is(ctl('delay=0'), 'ok', 'ctl:delay=0');
    close $s;
    close $u;
}

# ---- the command line sets the same ------------------------------------
{
    my $l = start_lond(args => [ '--sethost', 'bare', '--init', 'versioned', '--key-id-order',
        'local_first', '--require-version', '2.12.0', '--tls-close-notify', 'omit', '--delay', '5' ]);
    is(lond_ctl($l, 'settings'),
       'sethost=bare init=versioned key_id_order=local_first tls_close_notify=omit delay=5 require_version=2.12.0',
       'every setting from the command line');
}
# ---- --fork: the settings and the new counters are shared -------------
{
    $lond = start_lond(host_id => 'fid', args => [ '--fork', '--sethost', 'bare' ]);
    my $a = tcp();
    like(ask($a, 'init'), qr/^\d+$/, 'fork: a handshake under way');
    my $b = insecure();
    is(ask($b, 'sethost:f2:whoami'), 'unknown_cmd', 'fork: --sethost bare in a child');
    is(ctl('sethost=inline'), 'ok', 'fork: ctl:sethost=inline, served by another child');
    is(ask($b, 'sethost:f2:whoami'), 'f2', '... reaches the running child');
    my $st = lond_stats($lond);
    is("$st->{accepted} $st->{handshaking} $st->{max_handshaking}", '2 1 2',
       'fork: accepted, handshaking and max_handshaking over the children');
    close $a;
    close $b;
}
done_testing();

#!/usr/bin/perl
# Issue 13, the second attack: the directories root makes.  lonc makes a
# missing directory as root where the way to its nearest existing
# ancestor is root's (fsafe.c, create), the missing parents 0755, and
# hands the directory to the daemon's user.  A root-owned sticky
# directory (a /tmp, a /var/tmp) counts as root's way, yet others may
# create entries in it: an attacker who puts a directory of its own at
# the first missing name between root's look and root's mkdir (t/tools/
# flip-racer -m moves one in and out) decides where root goes on (a
# symlink inside it).  The same for spool_dir and log_dir at start-up
# and local_key_dir in lonc --probe.  Under a directory of the user's
# the user makes everything, and a run directory (pid file, admin
# socket) in a sticky place is made by root or refused.  Every case is
# bounded in starts and time; a root-owned victim directory must stay as
# it was.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use LoncTest;

my ($gid, @pw) = attacker_setup(400);

my $tmp = tmp_dir();
chmod 0755, $tmp;
my $victim = make_victim("$tmp/victim");
my $third = throwaway_user('k');
my $TRIES = 40;
my $case = 0;

# A root directory with a victim in it, which root must never be made to
# add anything to; and its fingerprint.
sub victim_dir {
    my $v = sprintf '%s/vdir%02d', $tmp, ++$case;
    mkdir $v, 0755 or die;
    make_victim("$v/victim");
    return ($v, fingerprint($v));
}

# A root-owned sticky, world-writable directory (a /tmp).  It lies deep
# below root's directories: root's look at the way there (an lstat of
# every step, fsafe.c trusted_path) then takes some milliseconds, and so
# does make_parents' mkdir of every step, so the attacker's timing need
# not be fine.  The hole is there at any depth (a shallow one is hit in
# some tens of starts by flipping blindly), the depth makes the test
# reliable.
sub sticky {
    my ($depth) = @_;
    my $s = sprintf '%s/deep%02d', $tmp, ++$case;
    mkdir $s, 0755 or die;
    for (1 .. $depth // 1000) {
        $s .= '/d';
        mkdir $s, 0755 or die "$s: $!";
    }
    $s .= '/sticky';
    mkdir $s or die;
    chmod 01777, $s;
    return $s;
}

# The user's directory and a configuration with lonc's other places in
# it; %more overrides keys.  socket_dir, delayed/ and log_dir exist
# (the user's): the attacker watches them being opened.
sub layout {
    my (%more) = @_;
    my $n = sprintf '%s/n%02d', $tmp, ++$case;
    mkdir $n or die;
    chown $pw[2], $gid, $n;
    for my $d ('sockets', 'sockets/delayed', 'logs') {
        mkdir "$n/$d" or die;
        chown $pw[2], $gid, "$n/$d";
    }
    my $c = write_config(name => "create$case", user => 'nobody', group => 'nogroup',
        socket_dir => "$n/sockets", pid_file => "$n/lonc.pid", admin_socket => "$n/admin.sock",
        log_dir => "$n/logs", spool_dir => "$n/spool",
        hosts => [ { hostname => 'h', port => free_port() } ], %more);
    chmod 0644, $c;
    return ($n, $c);
}

# Run $o{start} up to $TRIES times while $user moves its directory
# $aside in at $dir/x (for 300 ms) each time lonc opens $o{watch}, $o{delay}
# microseconds after: lonc opens it just before it looks at the
# directory it makes (the order of main.c directories).  After each run
# a directory lonc made at $dir/x is removed (the next run must find x
# missing).  Returns (whether $v changed, runs, moves).
sub race {
    my ($user, $dir, $aside, $v, $was, %o) = @_;
    my $f = start_flipper($user, '-t', 120, '-w', $o{watch}, '-d', $o{delay}, '-h', 300000,
        '-m', $dir, 'x', $aside);
    my ($runs, $hit) = (0, 0);
    while ($runs < $TRIES && !$hit) {
        $runs++;
        $o{start}->();
        $hit = fingerprint($v) ne $was;
        system('rm', '-rf', "$dir/x") if -e "$dir/x" && !-l "$dir/x/a";    # not the attacker's
    }
    my $flips = stop_flipper($f);
    return ($hit, $runs, $flips);
}

# ---- a missing ancestor in a sticky root directory ---------------------
# spool_dir S/x/a/spool, S sticky and root's, x missing: root judges the
# way at S (root's) and makes x, a and spool.  nobody has a directory
# S/P with a symlink a -> a root directory in it, and moves P to S/x
# once root has seen x missing (lonc opens log_dir, or delayed/, just
# before; nobody watches those, its own).
my %before = (spool_dir => 'logs', log_dir => 'sockets/delayed');
for my $key ('spool_dir', 'log_dir') {
    my ($v, $was) = victim_dir();
    my $s = sticky();
    nobody('mkdir', "$s/P");
    nobody('ln', '-s', $v, "$s/P/a");
    my ($n, $c) = layout($key => "$s/x/a/$key");
    my ($hit, $runs, $flips) = race('nobody', $s, 'P', $v, $was, watch => "$n/$before{$key}",
        delay => 2000, start => sub { try_lonc($c) });
    note "$key: $runs starts, $flips moves" . ($hit ? ', root made a directory in the victim directory' : '');
    cmp_ok($flips, '>', 0, "$key: the attacker's directory was moved in (the race was run)");
    note 'the victim directory now: ' . fingerprint($v) if $hit;
    ok(!$hit, "$key with a missing parent in a sticky root directory: root makes nothing where the user's symlink points");
    ok(victim_intact("$v/victim"), "$key: the victim file in it untouched");
}

# The probe makes local_key_dir as the daemon would, as root, before it
# drops to the user.  nobody sees the configuration file opened, and
# moves P in some milliseconds after (crypto is set up in between).
{
    my ($v, $was) = victim_dir();
    my $s = sticky();
    nobody('mkdir', "$s/P");
    nobody('ln', '-s', $v, "$s/P/a");
    my ($n, $c) = layout(local_key_dir => "$s/x/a/keys",
        hosts => [ { hostname => 'self', ids => ['lonc-test'], port => free_port(), key_mode => 'local' } ]);
    my $lonc = build_dir() . '/lonc';
    my ($hit, $runs, $flips) = race('nobody', $s, 'P', $v, $was, watch => $c, delay => 15000,
        start => sub { system("timeout 20 $lonc -c $c --probe self >/dev/null 2>&1") });
    note "lonc --probe: $runs runs, $flips moves" . ($hit ? ', root made a directory in the victim directory' : '');
    cmp_ok($flips, '>', 0, "lonc --probe: the attacker's directory was moved in (the race was run)");
    ok(!$hit, 'lonc --probe, local_key_dir with a missing parent in a sticky root directory: root makes nothing where the user\'s symlink points');
}

# The probe refuses what the start refuses for local_key_dir: an
# existing root directory (lonc hands over only what it makes), the
# user's symlink to one; and makes nothing there.
{
    my ($v, $was) = victim_dir();
    my ($n) = layout();
    my $lonc = build_dir() . '/lonc';
    nobody('ln', '-s', $v, "$n/keylink");
    for my $kd ($v, "$n/keylink", "$n/keylink/keys") {
        my $c = write_config(name => "probekeys$case", user => 'nobody', group => 'nogroup',
            local_key_dir => $kd, socket_dir => "$n/sockets", log_dir => "$n/logs",
            hosts => [ { hostname => 'self', ids => ['lonc-test'], port => free_port(), key_mode => 'local' } ]);
        chmod 0644, $c;
        my $out = `timeout 20 $lonc -c $c --probe self 2>&1`;
        is($? >> 8, 2, "lonc --probe, local_key_dir $kd: refused") or diag $out;
    }
    is(fingerprint($v), $was, '... and the root directory is as it was');
}

# A third user can do the same in a sticky directory: it is not the
# daemon's user that matters, only who may create names there.
{
    my ($v, $was) = victim_dir();
    my $s = sticky();
    as_user($third->{name}, 'mkdir', "$s/P") == 0 or die;
    as_user($third->{name}, 'ln', '-s', $v, "$s/P/a") == 0 or die;
    my ($n, $c) = layout(spool_dir => "$s/x/a/spool");
    my ($hit, $runs, $flips) = race($third->{name}, $s, 'P', $v, $was, watch => "$n/logs",
        delay => 2000, start => sub { try_lonc($c) });
    note "third user: $runs starts, $flips moves" . ($hit ? ', root made a directory in the victim directory' : '');
    cmp_ok($flips, '>', 0, "third user: its directory was moved in (the race was run)");
    ok(!$hit, 'a third user racing in a sticky directory: root makes nothing where its symlink points');
}

# ---- a missing ancestor under a directory of the user's ----------------
# Judged at the user's directory: the user makes the rest itself, so
# the same dance gets nothing (the kernel refuses nobody in the victim
# directory).
{
    my ($v, $was) = victim_dir();
    my ($n, $c) = layout();
    nobody('mkdir', "$n/P");
    nobody('ln', '-s', $v, "$n/P/a");
    my $cfg = write_config(name => "create-user$case", user => 'nobody', group => 'nogroup',
        socket_dir => "$n/sockets", pid_file => "$n/lonc.pid", admin_socket => "$n/admin.sock",
        log_dir => "$n/x/a/logs", spool_dir => "$n/x/a/spool",
        hosts => [ { hostname => 'h', port => free_port() } ]);
    chmod 0644, $cfg;
    my ($hit, $runs, $flips) = race('nobody', $n, 'P', $v, $was, watch => "$n/sockets/delayed",
        delay => 0, start => sub { try_lonc($cfg) });
    note "under the user's directory: $runs starts, $flips moves";
    ok(!$hit, 'spool_dir and log_dir with a missing parent under the user\'s directory: nothing made in the victim directory');
    my @made = grep { $_ ne $n } split /\n/, `find $n -uid 0`;
    is("@made", '', 'and nothing root\'s under the user\'s directory');
}

# ---- a run directory in a sticky place ---------------------------------
# pid_file S/run/lonc.pid with S/run missing: root makes S/run (its own,
# 0755); a directory someone puts there first is the user's own (nobody)
# or refused (a third user's), never used by root.  nobody flips it
# blindly, as fast as it can.  (Shallow: a socket's path is short.)
{
    my ($v, $was) = victim_dir();
    my $s = sticky(0);
    nobody('mkdir', "$s/P");
    nobody('ln', '-s', $v, "$s/P/a");
    my ($n, $c) = layout(pid_file => "$s/x/lonc.pid", admin_socket => "$s/x/admin.sock");
    my (%how, @bad);
    my $f = start_flipper('nobody', '-t', 120, '-m', $s, 'x', 'P');
    for (1 .. 20) {
        my $r = try_lonc($c);
        $how{ $r->{ready} ? 'ran' : 'refused' }++;
        my @st = lstat "$s/x";
        push @bad, 'the pid file\'s directory became nobody\'s and writable' if @st && $st[4] == 0 && ($st[2] & 022);
        system('rm', '-rf', "$s/x") if @st && $st[4] == 0;
    }
    my $flips = stop_flipper($f);
    note "run directory in a sticky place: $flips flips, " . join ', ', map { "$_: $how{$_}" } sort keys %how;
    is(fingerprint($v), $was, 'a run directory in a sticky place, raced: nothing made in the victim directory');
    is("@bad", '', 'and root\'s run directory stays root\'s');
}

ok(victim_intact($victim), 'victim untouched at the end');
done_testing();

#!/usr/bin/perl
# Issue 13, races: while root starts lonc, the daemon's user (nobody)
# runs a racer (t/tools/symlink-racer.c, inotify) that swaps each
# socket, the admin socket and the pid file for a symlink to the victim
# the moment it appears, or the socket directory itself for a symlink
# the moment lonc opens it (a start refused while the directory is
# moved aside, its lock file missing, is a refusal with a reason).
# Bounded: 20 starts, each within 10 s.  The victim (a root-owned 0600 file) and a root-owned directory must never
# change, whoever wins; each start ends running or refused with a
# message.  doc/security.md.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use LoncTest;

my ($gid, @pw) = attacker_setup(400);
plan skip_all => 'no racer (make)' unless -x build_dir() . '/symlink-racer';

my $tmp = tmp_dir();
chmod 0755, $tmp;
my $victim = make_victim("$tmp/victim");
my $rootdir = "$tmp/rootdir";    # a root-only directory, with a victim in it
mkdir $rootdir, 0755 or die;
make_victim("$rootdir/victim");
my $rootdir_was = fingerprint($rootdir);

my $n = "$tmp/n";
mkdir $n or die;
chown $pw[2], $gid, $n;
mkdir "$n/sockets" or die;
chown $pw[2], $gid, "$n/sockets";
my $run = "$tmp/run";
mkdir $run, 0755 or die;
my @hosts = map { { hostname => "h$_", port => free_port() } } 1 .. 4;
my %o = (name => 'race', user => 'nobody', group => 'nogroup', socket_mode => '0660',
    socket_dir => "$n/sockets", log_dir => "$n/logs", spool_dir => "$n/spool", hosts => \@hosts);
# Round A: everything in the user's directory (the pid file and admin
# socket too, made as the user); round B: those two in root's directory.
my %cfg = (
    A => write_config(%o, name => 'raceA', pid_file => "$n/lonc.pid", admin_socket => "$n/admin.sock"),
    B => write_config(%o, name => 'raceB', pid_file => "$run/lonc.pid", admin_socket => "$run/admin.sock"),
);
chmod 0644, values %cfg;
$cfg{C} = $cfg{A};

my $clear = qr/cannot create the sockets|\.lonc\.lock: |symbolic link|pid file|not a plain file|socket_dir|delayed directory|Permission denied/;
my %outcome;
my $swaps = 0;

sub one_start {
    my ($round, $i) = @_;
    my $r = try_lonc($cfg{$round}, timeout => 10);
    ok(defined $r->{exit}, "round $round, start $i: ended (no hang)") or diag $r->{out};
    if ($r->{ready}) {
        $outcome{"$round ran"}++;
    } else {
        $outcome{"$round refused"}++;
        ok($r->{exit} && $r->{out} =~ $clear, "round $round, start $i: refused with a reason")
            or diag $r->{out};
        my ($why) = $r->{out} =~ /(event=start_failed.*)/;
        note "round $round, start $i: " . ($why // 'no start_failed line');
    }
    ok(victim_intact($victim), "round $round, start $i: victim untouched") or do {
        my @st = lstat $victim;
        diag sprintf 'victim now: mode %04o owner %d:%d', $st[2] & 07777, @st[4, 5];
        make_victim($victim);    # a fresh one for the next start
    };
    is(fingerprint($rootdir), $rootdir_was, "round $round, start $i: root's directory untouched");
}

# Socket, admin socket and pid file names, swapped as they appear.
for my $round ('A', 'B') {
    my $sock_racer = start_racer('nobody', '-t', 200, '-n', 10000, "$n/sockets", $victim,
        map { $_->{hostname} } @hosts);
    my $top_racer = start_racer('nobody', '-t', 200, '-n', 10000, $n, $victim,
        'admin.sock', 'lonc.pid');
    one_start($round, $_) for 1 .. 8;
    $swaps += stop_racer($sock_racer) + stop_racer($top_racer);
}
ok($swaps > 0, "the racers swapped $swaps names for symlinks to the victim");

# The socket directory itself, swapped for a symlink to root's directory
# the moment lonc opens it (then put back).
for my $i (1 .. 4) {
    my $racer = start_racer('nobody', '-d', '-t', 10, "$n", $rootdir, 'sockets');
    one_start('C', $i);
    my $did = stop_racer($racer);
    $swaps += $did;
    if (-l "$n/sockets") {
        unlink "$n/sockets";
        rename "$n/sockets.moved", "$n/sockets" or die "put back: $!";
    }
    diag "socket_dir swap $i: " . ($did ? 'made' : 'not made');
}
diag join ', ', map { "$_: $outcome{$_}" } sort keys %outcome;
ok(victim_intact($victim) && victim_intact("$rootdir/victim"), 'victims untouched at the end');
done_testing();

#!/usr/bin/perl
# Issue 13, the pid file: root never follows what the daemon's user put
# at the pid file's path.  In the user's own directory the user makes
# the file after the drop, so a symlink, a hard link, a FIFO or someone
# else's file planted there is refused (and the victim, a root-owned
# 0600 file, is untouched); at shutdown only the name is removed.  In
# root's own directory root makes it, nobody can plant anything, and at
# shutdown lonc (no longer root) empties it: event=pid_file_emptied.
# A pid file's directory that is neither root's alone nor the user's is
# refused, at start and by lonc -t.  doc/security.md.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use LoncTest;

my ($gid, @pw) = attacker_setup(240);

my $tmp = tmp_dir();
chmod 0755, $tmp;
my $victim = make_victim("$tmp/victim");
my $third = throwaway_user('p');

# The user's directory: everything of lonc's in it.
my $n = "$tmp/n";
mkdir $n or die;
chown $pw[2], $gid, $n;
my %o = (name => 'pid', user => 'nobody', group => 'nogroup',
    socket_dir => "$n/sockets", pid_file => "$n/lonc.pid",
    admin_socket => "$n/admin.sock", log_dir => "$n/logs", spool_dir => "$n/spool",
    hosts => [ { hostname => 'h', port => free_port() } ]);
my $cfg = write_config(%o);
chmod 0644, $cfg;
my $pid = "$n/lonc.pid";

sub as_nobody { as_user('nobody', @_) == 0 }
sub clear_pid { unlink $pid; ok(!-e $pid && !-l $pid, 'pid file path cleared') }

# ---- a good start first: the user's pid file, removed at shutdown ----
my $r = try_lonc($cfg, while_up => sub {
    my ($p) = @_;
    my @st = stat $pid;
    is($st[4], $pw[2], "pid file in the user's directory is the user's (made after the drop)");
    is(log_text($pid), "$p\n", 'and names lonc');
});
ok($r->{ready}, 'lonc starts with everything in the user\'s directory') or diag $r->{out};
is($r->{exit}, 0, 'and stops cleanly');
ok(!-e $pid, 'its pid file removed at shutdown');

# ---- a symlink to the victim at the pid file's path ------------------
ok(as_nobody('ln', '-s', $victim, $pid), 'nobody plants a symlink to the victim at the pid file');
for my $mode ('foreground', 'daemon') {
    $r = try_lonc($cfg, daemon => $mode eq 'daemon');
    ok(!$r->{ready} && $r->{exit}, "$mode: start refused (exit $r->{exit})");
    like($r->{out}, qr/pid file \Q$pid\E: it is a symbolic link/, "$mode: says why")
        or diag $r->{out};
    ok(victim_intact($victim), "$mode: victim untouched");
}
ok(-l $pid, 'the symlink is left where it was (lonc removes nothing it did not make)');
clear_pid();

# ---- the same, swapped in while lonc runs; then a restart ------------
$r = try_lonc($cfg, while_up => sub {
    ok(as_nobody('sh', '-c', "ln -s $victim $n/.x && mv -T $n/.x $pid"),
        'while lonc runs, nobody swaps its pid file for a symlink to the victim');
});
ok($r->{ready}, 'lonc had started');
ok(victim_intact($victim), 'victim untouched after the shutdown (only the name was removed)');
ok(!-e $pid && !-l $pid, 'the planted symlink went with the name');
ok(as_nobody('ln', '-s', $victim, $pid), 'planted again');
$r = try_lonc($cfg);
ok(!$r->{ready} && $r->{exit}, 'restart refused');
ok(victim_intact($victim), 'victim untouched');
clear_pid();

# ---- a hard link to the victim ---------------------------------------
# (A link moves the victim's change time and link count: compared here
# are its content, mode, owner and modification time.)
sub victim_state { my @st = stat $victim; join ' ', @st[2, 4, 5, 7, 9], log_text($victim) }
my $state = victim_state();
SKIP: {
    my $made = as_nobody('ln', $victim, $pid);
    if ((log_text('/proc/sys/fs/protected_hardlinks') // '') =~ /1/) {
        ok(!$made, 'protected_hardlinks: nobody cannot hard-link the victim');
    } else {
        note('protected_hardlinks off: nobody ' . ($made ? 'made' : 'could not make') . ' the link');
    }
    # Whether or not the kernel let nobody do it: root makes the link,
    # as the attacker could where protected_hardlinks is off.
    if (!$made) {
        link $victim, $pid or skip "cannot link: $!", 3;
    }
    $r = try_lonc($cfg);
    ok(!$r->{ready} && $r->{exit}, 'a hard link to the victim: start refused');
    like($r->{out}, qr/cannot open pid file \Q$pid\E: Permission denied|pid file \Q$pid\E is not a plain file/,
        'with a clear message') or diag $r->{out};
    is(victim_state(), $state, 'victim content, mode, owner and times untouched');
    unlink $pid;
}
is(victim_state(), $state, 'victim untouched once the link is gone');
make_victim($victim);   # a fresh one (its change time moved with the link)

# A file of the user's own with a second name: refused too.
ok(as_nobody('sh', '-c', "echo 1 > $n/other && ln $n/other $pid"), 'nobody: a pid file with two names');
$r = try_lonc($cfg);
ok(!$r->{ready} && $r->{exit}, 'refused');
like($r->{out}, qr/it has other names/, 'because it has other names') or diag $r->{out};
unlink $pid, "$n/other";

# ---- a FIFO ----------------------------------------------------------
ok(as_nobody('mkfifo', $pid), 'nobody makes a FIFO at the pid file');
$r = try_lonc($cfg, timeout => 10);
ok(defined $r->{exit}, 'lonc does not hang on it');
ok(!$r->{ready} && $r->{exit}, 'start refused');
like($r->{out}, qr/not a regular file/, 'not a regular file') or diag $r->{out};
clear_pid();

# ---- a file of a third user -------------------------------------------
for my $mode (0644, 0666) {
    open my $fh, '>', $pid or die;
    print $fh "1\n";
    close $fh;
    chown $third->{uid}, $third->{gid}, $pid;
    chmod $mode, $pid;
    my $before = fingerprint($pid);
    $r = try_lonc($cfg);
    ok(!$r->{ready} && $r->{exit}, sprintf('a pid file of a third user (mode %04o): refused', $mode));
    like($r->{out}, qr/Permission denied|someone else owns it/, 'clearly') or diag $r->{out};
    is(fingerprint($pid), $before, 'that file untouched');
    clear_pid();
}

# ---- root's own run directory -----------------------------------------
my $run = "$tmp/run";
mkdir $run, 0755 or die;
my %root_run = (%o, name => 'pidrun', pid_file => "$run/lonc.pid", admin_socket => "$run/admin.sock");
my $cfg_run = write_config(%root_run);
chmod 0644, $cfg_run;
ok(!as_nobody('ln', '-s', $victim, "$run/lonc.pid"), 'nobody cannot plant anything in root\'s run directory');
for my $round (1, 2) {
    $r = try_lonc($cfg_run, while_up => sub {
        my ($p) = @_;
        my @st = lstat "$run/lonc.pid";
        ok(-f _ && $st[4] == 0 && ($st[2] & 07777) == 0644, "round $round: pid file root's, 0644, in root's directory");
        is(log_text("$run/lonc.pid"), "$p\n", 'names lonc');
        @st = lstat "$run/admin.sock";
        ok(-S _ && $st[4] == $pw[2] && ($st[2] & 07777) == 0600, 'admin socket given to nobody, 0600');
        my $ctl = `@{[build_dir()]}/lonc-ctl -s $run/admin.sock status 2>&1`;
        like($ctl, qr/\bh\b/, 'lonc-ctl answers through it');
        # lonc, now nobody, still holds the root pid file open: nobody
        # must not reach that descriptor (lonc is not dumpable).
        ok(!as_nobody('sh', '-c', "ls /proc/$p/fd/ >/dev/null 2>&1"), 'nobody cannot look into lonc\'s descriptors');
        as_user('nobody', 'sh', '-c', "for f in /proc/$p/fd/*; do echo 1 > \$f; done 2>/dev/null");
        is(log_text("$run/lonc.pid"), "$p\n", 'nor write the pid file through them');
    });
    ok($r->{ready}, "round $round: lonc starts with pid file and admin socket in root's directory")
        or diag $r->{out};
    is($r->{exit}, 0, 'stops cleanly');
    like($r->{out}, qr/event=pid_file_emptied file=\Q$run\E\/lonc\.pid/, 'cannot remove it as nobody: event=pid_file_emptied');
    ok(-f "$run/lonc.pid" && -z _ && (stat _)[4] == 0, 'left empty, still root\'s (the init script or systemd removes it)');
}

# The init script after lonc stopped by itself (a kill, not the script):
# the emptied pid file is no "unknown" status, and stop succeeds (LSB).
{
    local $ENV{DAEMON} = build_dir() . '/lonc';
    local $ENV{CONFIG} = $cfg_run;
    local $ENV{PIDFILE} = "$run/lonc.pid";
    local $ENV{LONC_DEFAULTS} = '/nonexistent/lonc-defaults';
    my $init = "$FindBin::Bin/../../scripts/lonc.init";
    ok(-f "$run/lonc.pid" && -z _, 'an emptied pid file is there');
    my $out = `sh $init status 2>&1`;
    is($? >> 8, 3, 'lonc.init status: 3, not running') or diag $out;
    $out = `sh $init stop 2>&1`;
    is($? >> 8, 0, 'lonc.init stop: 0') or diag $out;
}
unlink "$run/lonc.pid";

# A run directory made by lonc: root's, 0755.
my %made = (%o, name => 'pidmade', pid_file => "$tmp/newrun/lonc.pid", admin_socket => "$tmp/newrun/admin.sock");
my $cfg_made = write_config(%made);
chmod 0644, $cfg_made;
$r = try_lonc($cfg_made);
ok($r->{ready}, 'a missing run directory in a trusted place is made') or diag $r->{out};
my @st = lstat "$tmp/newrun";
ok(-d _ && $st[4] == 0 && ($st[2] & 07777) == 0755, 'root\'s, 0755');

# ---- a pid file directory that is neither root's alone nor nobody's ----
my %bad = (
    'root-owned but inside nobody\'s directory' => sub { mkdir "$n/run", 0755 or die; "$n/run" },
    'root-owned, group-writable' => sub { mkdir "$tmp/gw", 0775 or die; chmod 0775, "$tmp/gw"; chown 0, $gid, "$tmp/gw"; "$tmp/gw" },
    'a third user\'s' => sub { mkdir "$tmp/third", 0755 or die; chown $third->{uid}, $third->{gid}, "$tmp/third"; "$tmp/third" },
);
for my $what (sort keys %bad) {
    my $d = $bad{$what}->();
    my $c = write_config(%o, name => 'pidbad', pid_file => "$d/lonc.pid");
    chmod 0644, $c;
    $r = try_lonc($c);
    ok(!$r->{ready} && $r->{exit}, "pid file directory $what: start refused");
    like($r->{out}, qr/pid_file \Q$d\E\b.*root's alone/, 'says so') or diag $r->{out};
    $r = try_lonc($c, test => 1);
    is($r->{exit}, 2, 'lonc -t exits 2');
    like($r->{out}, qr/^error: pid_file \Q$d\E\b.*root's alone/m, 'with an error: line') or diag $r->{out};
    ok(!-e "$d/lonc.pid", 'nothing made there');
}
ok(victim_intact($victim), 'victim untouched at the end');
done_testing();

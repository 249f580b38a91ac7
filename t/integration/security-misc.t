#!/usr/bin/perl
# Issue 13, the rest: the loncnew-style log file and the admin socket
# planted by the daemon's user, socket names squatted in a sticky
# socket_dir, root's supplementary groups while it works as the user,
# directories lonc hands over (a sticky one such as /tmp), missing
# parents, and the good layouts still working (doc/security.md).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use LoncTest;
use IO::Socket::UNIX;
use POSIX ();

my ($gid, @pw) = attacker_setup(240);

my $tmp = tmp_dir();
chmod 0755, $tmp;
my $victim = make_victim("$tmp/victim");
my $third = throwaway_user('m');
my $lond = start_lond();
my $case = 0;
my @squatters;
END { kill 'KILL', @squatters if @squatters; waitpid $_, 0 for @squatters }

# The user's directory, with lonc's files in it; %more overrides keys
# ("%N" in a value stands for the user's directory).
sub layout {
    my (%more) = @_;
    my $n = sprintf '%s/m%02d', $tmp, ++$case;
    mkdir $n or die;
    chown $pw[2], $gid, $n;
    s/%N/$n/g for grep { !ref } values %more;
    my $c = write_config(name => "misc$case", user => 'nobody', group => 'nogroup',
        socket_dir => "$n/sockets", pid_file => "$n/lonc.pid", admin_socket => "$n/admin.sock",
        log_dir => "$n/logs", spool_dir => "$n/spool",
        hosts => [ { hostname => 'h', port => $lond->{port} } ], %more);
    chmod 0644, $c;
    return ($n, $c);
}

# A UNIX socket listening at $path, held by a process running as $user
# ($mode: the socket's mode, else as the umask makes it).
sub squat {
    my ($user, $path, $mode) = @_;
    my @u = getpwnam($user) or die;
    pipe my $r, my $w or die;
    my $pid = fork // die;
    if ($pid == 0) {
        close $r;
        POSIX::setgid($u[3]);
        POSIX::setuid($u[2]) or POSIX::_exit(1);
        my $s = IO::Socket::UNIX->new(Type => SOCK_STREAM(), Local => $path, Listen => 5)
            or POSIX::_exit(2);
        chmod $mode, $path if defined $mode;
        print $w "up\n";
        close $w;
        sleep 60;
        POSIX::_exit(0);
    }
    close $w;
    my $up = <$r>;
    push @squatters, $pid;
    die "squatter failed\n" unless $up;
    return $pid;
}

# ---- log_file: opened by the user after the drop ---------------------
{
    my ($n, $c) = layout(log_file => '%N/logs/lonc.log');
    mkdir "$n/logs" or die;
    chown $pw[2], $gid, "$n/logs";
    nobody('ln', '-s', $victim, "$n/logs/lonc.log");
    my $r = try_lonc($c, while_up => sub {
        my ($p) = @_;
        kill 'USR1', $p;    # status lines to the log
        is(request("$n/sockets/h", 'ping'), 'pong', 'log_file a symlink to the victim: lonc runs and serves');
        sleep 1.2;          # the log file is looked at again once a second
        kill 'USR1', $p;
        request("$n/sockets/h", 'ping');
    });
    ok($r->{ready}, 'lonc started');
    ok(victim_intact($victim), 'victim untouched: root never opened the log file, the user could not follow the link');
    ok(-l "$n/logs/lonc.log", 'the planted link is still a link');
    # And a failed start (refused before the drop) with the link there.
    chmod 0777, "$n/spool";
    $r = try_lonc($c);
    ok(!$r->{ready} && $r->{exit}, 'a refused start');
    ok(victim_intact($victim), 'victim untouched');
}

# ---- the admin socket, planted --------------------------------------
{
    my ($n, $c) = layout();
    nobody('ln', '-s', $victim, "$n/admin.sock");
    my $r = try_lonc($c, while_up => sub {
        my @st = lstat "$n/admin.sock";
        ok(-S _ && $st[4] == $pw[2], 'a symlink at the admin socket: replaced by lonc\'s socket, nobody\'s');
    });
    ok($r->{ready}, 'lonc runs') or diag $r->{out};
    ok(victim_intact($victim), 'victim untouched');

    my $pid = squat('nobody', "$n/admin.sock");
    $r = try_lonc($c);
    ok(!$r->{ready} && $r->{exit}, 'a socket someone listens on at the admin socket\'s path: start refused');
    like($r->{out}, qr/admin_listen_failed.*Address already in use/, 'says so') or diag $r->{out};
    ok(-S "$n/admin.sock", 'the other socket left alone');
    kill_wait($pid, 'KILL', 5);
    @squatters = grep { $_ != $pid } @squatters;

    # In root's run directory nobody can plant anything.
    mkdir "$tmp/run$case", 0755 or die;
    ok(as_user('nobody', 'ln', '-s', $victim, "$tmp/run$case/admin.sock") != 0,
        'nobody cannot plant at an admin socket in root\'s directory');
}

# ---- a sticky socket_dir: others may put sockets in it ---------------
# A third user's socket at a host's name: one nobody may not connect to
# is removed (nobody owns the directory) and lonc serves; one anyone may
# connect to holds the name, and lonc refuses to start (it never serves
# through it).  doc/security.md: socket_dir should not be world-writable,
# sticky or not.
{
    my ($n, $c) = layout();
    mkdir "$n/sockets" or die;
    chown $pw[2], $gid, "$n/sockets";
    chmod 01777, "$n/sockets";
    my $pid = squat($third->{name}, "$n/sockets/h", 0755);
    my $r = try_lonc($c, while_up => sub {
        my @st = lstat "$n/sockets/h";
        ok(-S _ && $st[4] == $pw[2], 'a third user\'s socket (0755) at a host\'s name in a sticky socket_dir: replaced by lonc\'s');
        is(request("$n/sockets/h", 'ping'), 'pong', 'clients reach lonc');
    });
    ok($r->{ready}, 'lonc starts') or diag $r->{out};
    kill_wait($pid, 'KILL', 5);
    @squatters = grep { $_ != $pid } @squatters;

    $pid = squat($third->{name}, "$n/sockets/h", 0777);
    $r = try_lonc($c);
    ok(!$r->{ready} && $r->{exit}, 'one anyone may connect to: start refused, not served through it');
    like($r->{out}, qr/Address already in use/, 'the log says why') or diag $r->{out};
    my @st = lstat "$n/sockets/h";
    ok(-S _ && $st[4] == $third->{uid}, 'the squatter\'s socket left alone');
    kill_wait($pid, 'KILL', 5);
    @squatters = grep { $_ != $pid } @squatters;
}

# ---- root's supplementary groups while it works as the user ----------
# Root, started from a login shell, is in group root.  nobody turns a
# directory on the way to socket_dir into a symlink to a directory that
# group root may write: lonc, working "as nobody" to make socket_dir,
# must not bring root's groups along.
for my $groups ('none', 'root') {
    my $gdir = "$tmp/rootgroup$case";
    mkdir $gdir or die;
    chmod 0775, $gdir;    # root:root, group-writable; others read only
    my $was = fingerprint($gdir);
    my ($n, $c) = layout(socket_dir => '%N/up/sockets');
    nobody('ln', '-s', $gdir, "$n/up");
    my @wrap = $groups eq 'none' ? ('setpriv', '--clear-groups') : ('setpriv', '--groups', '0');
    my $r = try_lonc($c, wrapper => \@wrap);
    is(fingerprint($gdir), $was, "root's groups: $groups: nothing of nobody's made in a directory group root may write");
    ok(!$r->{ready}, 'start refused');
}

# ---- directories lonc hands over ------------------------------------
# A root-owned sticky, world-writable directory (a /tmp) as spool_dir,
# in root's own configuration: not to be given to nobody nor made 0700.
{
    my $sticky = "$tmp/sticky";
    mkdir $sticky or die;
    chmod 01777, $sticky;
    open my $fh, '>', "$sticky/others" or die;
    close $fh;
    chown $third->{uid}, $third->{gid}, "$sticky/others";
    my $was = fingerprint($sticky);
    my ($n, $c) = layout(spool_dir => $sticky);
    my $r = try_lonc($c);
    {
        is(fingerprint($sticky), $was, 'spool_dir a shared sticky directory: not handed to nobody');
    }
    my @st = lstat $sticky;
    note sprintf 'now %d:%d mode %04o', @st[4, 5], $st[2] & 07777;
}

# ---- missing parents in root's places --------------------------------
{
    mkdir "$tmp/varlib", 0755 or die;
    my ($n, $c) = layout(spool_dir => "$tmp/varlib/lonc/spool", local_key_dir => "$tmp/varlib/lonc/keys",
        hosts => [ { hostname => 'h', port => $lond->{port} },
                   { hostname => 'self', port => $lond->{port}, key_mode => 'local' } ]);
    my $r = try_lonc($c);
    ok($r->{ready}, 'spool_dir and local_key_dir with a missing parent in a root place (as /var/lib/lonc/spool on a fresh install): made')
        or diag $r->{out};
}

# ---- good layouts ------------------------------------------------------
# LON-CAPA's: socket_dir, delayed/ and the logs the user's; pid file and
# admin socket in root's run directory; the spool made by lonc.
{
    my ($n) = layout();
    for my $d ('sockets', 'sockets/delayed', 'logs') {
        mkdir "$n/$d" or die;
        chown $pw[2], $gid, "$n/$d";
    }
    my $run = "$tmp/lcrun";
    mkdir $run, 0755 or die;
    my $c = write_config(name => 'lc', user => 'nobody', group => 'nogroup',
        socket_dir => "$n/sockets", pid_file => "$run/lonc.pid", admin_socket => "$run/admin.sock",
        log_dir => "$n/logs", spool_dir => "$tmp/lcspool", log_file => "$n/logs/lonc.log",
        hosts => [ { hostname => 'h', port => $lond->{port} } ]);
    chmod 0644, $c;
    my $t = try_lonc($c, test => 1);
    is($t->{exit}, 0, 'LON-CAPA-like layout: lonc -t accepts it') or diag $t->{out};
    my $r = try_lonc($c, while_up => sub {
        is(request("$n/sockets/h", 'ping'), 'pong', 'serves');
        my @st = lstat "$tmp/lcspool";
        ok(-d _ && $st[4] == $pw[2] && ($st[2] & 07777) == 0700, 'spool made nobody\'s, 0700');
        my @lst = lstat "$n/logs/lonc.log";
        ok(-s _ && $lst[4] == $pw[2], 'lonc.log written, nobody\'s');
    });
    ok($r->{ready}, 'LON-CAPA-like layout: lonc starts') or diag $r->{out};
    is($r->{exit}, 0, 'and stops cleanly');
    like($r->{out}, qr/event=pid_file_emptied/, 'its pid file emptied (root\'s directory)');

    # delayed/ root's and not writable by nobody: a warning, not a refusal.
    chown 0, 0, "$n/sockets/delayed";
    $t = try_lonc($c, test => 1);
    like($t->{out}, qr/^warning: delayed directory .* is not writable by nobody/m, 'delayed/ not writable: lonc -t warns');
    $r = try_lonc($c);
    ok($r->{ready}, 'and lonc starts');
    like($r->{out}, qr/event=start_warning reason="delayed directory/, 'with a warning in the log');
}
ok(victim_intact($victim), 'victim untouched at the end');
done_testing();

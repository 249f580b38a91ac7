#!/usr/bin/perl
# Issue 13, the second attack: scripts/lonc.init, run by root, against
# what the daemon's user (nobody) and a third user can plant.  LON-CAPA's
# layout puts the pid file in a directory of the user's
# (<lonDaemons>/logs), and the admin socket may be there too; the user
# can write whatever it likes there, and a third user can run the lonc
# binary itself.  Tried:
# - the pid file naming a third user's process called "lonc", or a root
#   process so called, or a third user's own run of the lonc binary
#   (stop must signal none, status must not say that lonc runs);
# - the pid file emptied, or a huge sparse file (status must end, and
#   say what is true);
# - the pid file's directory swapped for a symlink to a root directory
#   (stop must not remove or act on root's files there);
# - the configuration unreadable, the pid file derived from
#   loncapa_conf (found by process): a third user's own lonc (stop must
#   not signal it, nor fail to stop lonc because of it);
# - the admin socket replaced by the user's own listener (reload must
#   end, and not report a reload that did not happen; lonc-ctl by hand
#   must not talk to it, and end when it gets no answer).
# Every run of the script is bounded (its process group killed after
# 20 s); every process started here is stopped by its pid.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Cwd qw(abs_path);
use IO::Socket::UNIX;
use POSIX ();
use Test::More;
use LoncTest;

my ($gid, @pw) = attacker_setup(400);

# The daemons the script starts detach: reaped here (a subreaper), their
# exit statuses kept for whoever asks.
my $subreaper = eval {
    require 'sys/syscall.ph';
    syscall(&SYS_prctl, 36, 1, 0, 0, 0) == 0;    # PR_SET_CHILD_SUBREAPER
};
my %reaped;
sub reap {
    while ((my $p = waitpid(-1, POSIX::WNOHANG())) > 0) {
        $reaped{$p} = $?;
    }
}

my $tmp = tmp_dir();
chmod 0755, $tmp;
my $victim = make_victim("$tmp/victim");
my $third = throwaway_user('s');
my $init = abs_path("$FindBin::Bin/../../scripts/lonc.init");
my $daemon = abs_path(build_dir() . '/lonc');
my $lond = start_lond();
my $case = 0;
my %mine;    # pid => what: every process started here, stopped at the end

END {
    my $status = $?;
    for my $p (keys %mine) {
        kill 'KILL', $p;
    }
    reap();
    $? = $status;
}

# Is process $p there and not a zombie?
sub alive {
    my ($p) = @_;
    reap();
    return 0 if exists $reaped{$p};
    open my $fh, '<', "/proc/$p/stat" or return 0;
    my ($state) = (<$fh> // '') =~ /\) (\S)/;
    return defined $state && $state ne 'Z';
}

# Run the init script with $action; (exit status, output), or (undef,
# output) when it did not end in 20 s (its process group is killed).
sub init {
    my ($action, %env) = @_;
    my $out = sprintf '%s/init%03d.out', $tmp, ++$case;
    # Memory bounded (a script that read a sparse terabyte would fail,
    # not fill the machine); not under a sanitizer, whose shadow memory
    # needs terabytes of address space.
    my $limit = build_dir() =~ /asan|tsan/ ? '' : 'ulimit -v 1000000; ';
    my $rc = run_bounded(20, $out, { setsid => 1, env => { DAEMON => $daemon,
            CONFIG => $env{CONFIG}, STOP_TIMEOUT => $env{STOP_TIMEOUT} // 5,
            LONC_DEFAULTS => '/nonexistent/lonc-defaults', PIDFILE => undef, LONC_CTL => undef } },
        'sh', '-c', $limit . 'exec "$@"', 'sh', $init, $action);
    reap();
    return ($rc, log_text($out));
}

# Run a command as root; (exit status, output), or (undef, output) when
# it did not end in 20 s.
sub bounded {
    my (@cmd) = @_;
    my $out = sprintf '%s/cmd%03d.out', $tmp, ++$case;
    my $rc = run_bounded(20, $out, {}, @cmd);
    return ($rc, log_text($out));
}

# A process of $user's whose name (comm) is "lonc": a copy of sleep.
mkdir "$tmp/bin", 0755 or die;
system('cp', '/bin/sleep', "$tmp/bin/lonc") == 0 or die;
chmod 0755, "$tmp/bin/lonc";
sub named_lonc {
    my ($user) = @_;
    my @u = getpwnam($user) or die;
    my $p = fork // die;
    if ($p == 0) {
        POSIX::setgid($u[3]);
        POSIX::setuid($u[2]) if $u[2];
        exec("$tmp/bin/lonc", 120) or POSIX::_exit(127);
    }
    $mine{$p} = "$user\'s lonc-named process";
    wait_for(sub { (readlink("/proc/$p/exe") // '') eq "$tmp/bin/lonc" }, 5, 'the process');
    return $p;
}

# The third user runs the lonc binary itself, with a configuration of
# its own (in the foreground); its pid once it serves.
sub third_lonc {
    my $td = sprintf '%s/third%02d', $tmp, ++$case;
    mkdir $td or die;
    chown $third->{uid}, $third->{gid}, $td;
    my $tc = write_config(name => "third$case", user => $third->{name}, socket_dir => "$td/s",
        pid_file => "$td/p", admin_socket => "$td/a", log_dir => "$td/l", spool_dir => "$td/sp",
        hosts => [ { hostname => 'x', port => $lond->{port} } ]);
    chmod 0644, $tc;
    my $tp = fork // die;
    if ($tp == 0) {
        open STDOUT, '>', '/dev/null';
        open STDERR, '>', '/dev/null';
        POSIX::setgid($third->{gid});
        POSIX::setuid($third->{uid});
        exec($daemon, '-c', $tc, '--foreground') or POSIX::_exit(127);
    }
    $mine{$tp} = 'the third user\'s lonc';
    wait_for(sub { -S "$td/s/x" }, 10, 'the third user\'s lonc');
    return $tp;
}

# LON-CAPA's layout: <lonDaemons> (here the user's, as the directory
# above logs may be) with logs (pid file) and the admin socket in it.
sub layout {
    my (%more) = @_;
    my $n = sprintf '%s/n%02d', $tmp, ++$case;
    mkdir $n or die;
    chown $pw[2], $gid, $n;
    for my $d ('logs', 'sockets') {
        mkdir "$n/$d" or die;
        chown $pw[2], $gid, "$n/$d";
    }
    my $c = write_config(name => "init$case", user => 'nobody', group => 'nogroup',
        socket_dir => "$n/sockets", pid_file => "$n/logs/lonc.pid", admin_socket => "$n/admin.sock",
        log_dir => "$n/logs", spool_dir => "$n/spool",
        hosts => [ { hostname => 'h', port => $lond->{port} } ], %more);
    chmod 0644, $c;
    return ($n, $c);
}

# Start lonc with the script; its pid (remembered, to stop it by pid).
sub started {
    my ($c, $pidfile) = @_;
    my ($rc, $out) = init('start', CONFIG => $c);
    is($rc, 0, 'the script starts lonc') or diag $out;
    my $p = pid_in($pidfile);
    $mine{$p} = 'lonc' if $p;
    return $p;
}

sub stop_mine {
    my ($p) = @_;
    return if !$p || !alive($p);
    kill 'TERM', $p;
    my $end = time + 20;
    select undef, undef, undef, 0.05 while alive($p) && time < $end;
    kill 'KILL', $p if alive($p);
    reap();
    delete $mine{$p};
}

# ---- the pid file names another process called lonc ------------------------
for my $who ('third', 'root') {
    my ($n, $c) = layout();
    my $real = started($c, "$n/logs/lonc.pid");
    my $other = named_lonc($who eq 'third' ? $third->{name} : 'root');
    nobody('sh', '-c', "echo $other > $n/logs/new && mv $n/logs/new $n/logs/lonc.pid");
    my ($rc, $out) = init('status', CONFIG => $c);
    unlike($out, qr/running \(pid $other\)/, "the pid file names a $who process called lonc: status does not call it lonc");
    ($rc, $out) = init('stop', CONFIG => $c);
    my $signalled = !alive($other);
    ok(!$signalled, "stop does not signal the $who process") or diag $out;
    ok(!alive($real), 'stop stops lonc');
    stop_mine($other);
    stop_mine($real);
}

# ---- the pid file names a third user's own lonc ------------------------------
# Its binary is DAEMON, its user neither root nor lonc's.
{
    my ($n, $c) = layout();
    my $real = started($c, "$n/logs/lonc.pid");
    my $tp = third_lonc();
    nobody('sh', '-c', "echo $tp > $n/logs/new && mv $n/logs/new $n/logs/lonc.pid");
    my ($rc, $out) = init('status', CONFIG => $c);
    like($out, qr/running \(pid $real\)/, 'the pid file names a third user\'s lonc: status names lonc instead') or diag $out;
    ($rc, $out) = init('stop', CONFIG => $c);
    ok(alive($tp), 'stop does not signal the third user\'s lonc') or diag $out;
    ok(!alive($real), 'stop stops lonc');
    stop_mine($tp);
    stop_mine($real);
}

# ---- the pid file emptied, or huge ---------------------------------------
{
    my ($n, $c) = layout();
    my $real = started($c, "$n/logs/lonc.pid");
    nobody('truncate', '-s', '0', "$n/logs/lonc.pid");
    my ($rc, $out) = init('status', CONFIG => $c);
    is($rc, 0, 'the user empties the pid file of a running lonc: status still says it runs') or diag $out;
    # A sparse file of a terabyte, no newline: the script must not read
    # it all (as root, at every status, stop, reload).
    nobody('sh', '-c', "truncate -s 1T $n/logs/new && mv $n/logs/new $n/logs/lonc.pid");
    my $t0 = time;
    ($rc, $out) = init('status', CONFIG => $c);
    note sprintf 'status took %.1f s', time - $t0;
    ok(defined $rc, 'a huge sparse pid file: status ends') or diag $out;
    ($rc, $out) = init('stop', CONFIG => $c);
    ok(defined $rc, 'and so does stop');
    nobody('rm', '-f', "$n/logs/lonc.pid");
    stop_mine($real);
}

# ---- the pid file's directory swapped for a symlink ---------------------------
# <lonDaemons> is the user's: it moves logs aside and puts a symlink to
# a root directory there, with a root file lonc.pid in it (another
# instance's, say): naming a root process called lonc, then a pid that
# is gone.
{
    my ($n, $c) = layout();
    my $real = started($c, "$n/logs/lonc.pid");
    my $rootdir = "$tmp/rootrun$case";
    mkdir $rootdir, 0755 or die;
    my $other = named_lonc('root');
    open my $fh, '>', "$rootdir/lonc.pid" or die;
    print $fh "$other\n";
    close $fh;
    chmod 0600, "$rootdir/lonc.pid";
    nobody('sh', '-c', "mv $n/logs $n/logs.real && ln -s $rootdir $n/logs");
    my ($rc, $out) = init('stop', CONFIG => $c);
    ok(alive($other), 'the pid file\'s directory swapped for a symlink to root\'s: stop does not signal the root process named there') or diag $out;
    stop_mine($other);
    open $fh, '>', "$rootdir/lonc.pid" or die;
    print $fh "999999999\n";
    close $fh;
    chmod 0600, "$rootdir/lonc.pid";
    ($rc, $out) = init('stop', CONFIG => $c);
    ok(-e "$rootdir/lonc.pid", 'nor removes root\'s file there') or diag $out;
    ok(!alive($real), 'and stop stops lonc');
    unlink "$n/logs";
    rename "$n/logs.real", "$n/logs";
    stop_mine($real);
}

# ---- found by process: a third user's own lonc ---------------------------------
# pid_file derived from loncapa_conf, and the configuration broken
# since the start: the script looks for the process whose binary is
# DAEMON.  A third user runs that binary with a configuration of its
# own.
SKIP: {
    skip 'the script\'s default pid file exists here', 6 if -e '/var/run/lonc/lonc.pid';
    my ($n, $c) = layout();
    my $conf = "$tmp/loncapa$case.conf";
    open my $fh, '>', $conf or die;
    print $fh "PerlSetVar lonDaemons $n\n";
    close $fh;
    system('sed', '-i', "/^pid_file:/d; /^log_dir:/d; \$a loncapa_conf: $conf", $c) == 0 or die;
    my $real = started($c, "$n/logs/lonc.pid");
    open $fh, '>>', $c or die;
    print $fh "no_such_key: 1\n";          # broken now
    close $fh;
    my ($rc, $out) = init('status', CONFIG => $c);
    is($rc, 0, 'the configuration broken: status finds lonc by its binary') or diag $out;

    my $tp = third_lonc();
    ($rc, $out) = init('stop', CONFIG => $c);
    ok(!alive($real), 'a third user runs the lonc binary too: stop still stops lonc') or diag $out;
    stop_mine($real);
    ($rc, $out) = init('status', CONFIG => $c);
    isnt($rc, 0, 'lonc stopped, the third user\'s runs: status does not say lonc runs') or diag $out;
    ($rc, $out) = init('stop', CONFIG => $c);
    ok(alive($tp), 'and stop does not signal the third user\'s process') or diag $out;
    stop_mine($tp);
}

# ---- the admin socket replaced ----------------------------------------------------
# The admin socket in the user's directory: nobody binds its own at that
# name (a listener that never answers, then one that says "ok").  The
# script's reload runs lonc-ctl as root against it.
{
    my ($n, $c) = layout();
    my $real = started($c, "$n/logs/lonc.pid");
    my $fake = sub {
        my ($answer) = @_;
        pipe my $r, my $w or die;
        my $p = fork // die;
        if ($p == 0) {
            # Ends by a signal, never through the harness's clean-up.
            $SIG{$_} = 'DEFAULT' for qw(TERM INT HUP);
            # A client that hung up unanswered does not end it.
            $SIG{PIPE} = 'IGNORE';
            close $r;
            POSIX::setgid($gid);
            POSIX::setuid($pw[2]) or POSIX::_exit(1);
            unlink "$n/admin.new";
            my $s = IO::Socket::UNIX->new(Type => SOCK_STREAM(), Local => "$n/admin.new", Listen => 5)
                or POSIX::_exit(2);
            rename "$n/admin.new", "$n/admin.sock" or POSIX::_exit(3);
            print $w "up\n";
            close $w;
            my @held;
            my $end = time + 60;
            while (time < $end and my $cl = $s->accept) {
                my $line = <$cl>;
                if ($answer) {
                    print $cl "ok: reloaded\n";
                    close $cl;
                } else {
                    push @held, $cl;
                }
            }
            POSIX::_exit(0);
        }
        close $w;
        <$r> or die "fake admin socket failed\n";
        $mine{$p} = 'fake admin socket';
        return $p;
    };
    # First lonc's own admin socket (in the user's directory, lonc the
    # user's): the script's reload and lonc-ctl by hand work.
    my $ctl = abs_path(build_dir() . '/lonc-ctl');
    my ($rc, $out) = init('reload', CONFIG => $c);
    is($rc, 0, 'lonc\'s own admin socket in the user\'s directory: reload works') or diag $out;
    ($rc, $out) = bounded($ctl, '-s', "$n/admin.sock", 'status');
    is($rc, 0, '... and lonc-ctl without -p') or diag $out;
    # lonc's user may not see which binary lonc (changed from root)
    # runs: a process of its own will do.
    is(as_user('nobody', 'sh', '-c', '"$0" -s "$1" status >/dev/null', $ctl, "$n/admin.sock") >> 8, 0,
        '... and lonc-ctl run by lonc\'s user');
    my $p = $fake->(0);
    write_config(name => "init$case", user => 'nobody', group => 'nogroup',
        socket_dir => "$n/sockets", pid_file => "$n/logs/lonc.pid", admin_socket => "$n/admin.sock",
        log_dir => "$n/logs", spool_dir => "$n/spool",
        hosts => [ { hostname => 'h', port => $lond->{port} }, { hostname => 'h2', port => $lond->{port} } ]);
    ($rc, $out) = init('reload', CONFIG => $c);
    ok(defined $rc, 'the admin socket replaced by the user\'s silent listener: reload ends') or diag $out;
    # lonc-ctl as root by hand: with the listener's own pid (say a pid
    # file of the user's named it) the peer passes, and the timeout
    # ends the wait.
    my $t0 = time;
    ($rc, $out) = bounded($ctl, '-p', $p, '-t', 1, '-s', "$n/admin.sock", 'status');
    is($rc, 2, 'lonc-ctl -t 1 against a listener that never answers: status 2') or diag $out;
    like($out, qr/no complete answer .* within 1 s/, '... saying so');
    # About a second; bounded kills at 20 s (a margin for a busy machine).
    cmp_ok(time - $t0, '<', 15, '... after about a second, not at the kill');
    stop_mine($p);
    $p = $fake->(1);
    ($rc, $out) = bounded($ctl, '-s', "$n/admin.sock", 'reload');
    is($rc, 3, 'lonc-ctl without -p: a listener that is not the lonc binary gets nothing (status 3)') or diag $out;
    like($out, qr/is not lonc's admin socket: pid $p listens there running /,
        '... and lonc-ctl says why');
    ($rc, $out) = bounded($ctl, '-p', $real, '-s', "$n/admin.sock", 'reload');
    is($rc, 3, 'lonc-ctl -p LONC: another pid there gets nothing (status 3)') or diag $out;
    ($rc, $out) = init('reload', CONFIG => $c);
    note "reload with the user's listener saying ok: status " . ($rc // 'none') . ", h2's socket " .
        (-S "$n/sockets/h2" ? 'there' : 'not there') . ": $out";
    ok(!($rc == 0 && !-S "$n/sockets/h2"), 'a listener of the user\'s that says "ok": reload does not report a reload that did not happen') or diag $out;
    stop_mine($p);
    stop_mine($real);
}

ok(victim_intact($victim), 'victim untouched at the end');
done_testing();

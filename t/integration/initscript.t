#!/usr/bin/perl
# scripts/lonc.init against a temporary prefix: every action and its LSB
# exit status, the pid file, a broken config, stale pid files (a dead pid
# and a live process that is not lonc; one in a directory others may
# write, left there), the pid file emptied or naming another program
# while lonc runs (lonc found by its process), a second lonc with
# another configuration (never taken for this one), and a lonc that
# ignores SIGTERM.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Cwd qw(abs_path);
use POSIX qw(:sys_wait_h);
use Test::More;
use LoncTest;

watchdog(120);

# Become a child subreaper where Linux allows it, so that the daemons the
# script starts (they detach) are reaped here and do not linger as
# zombies.  The script itself treats a zombie as not running.
my $subreaper = eval {
    require 'sys/syscall.ph';
    syscall(&SYS_prctl, 36, 1, 0, 0, 0) == 0;    # PR_SET_CHILD_SUBREAPER
};
sub reap { 1 while waitpid(-1, WNOHANG) > 0 }

my $init = abs_path("$FindBin::Bin/../../scripts/lonc.init");
my $daemon = abs_path(build_dir() . '/lonc');
my $dir = tmp_dir();
my $pidfile = "$dir/initscript.pid";

my $lond = start_lond();
my $cfg = write_config(name => 'initscript', pid_file => $pidfile,
    hosts => [ { hostname => 'lond1', port => $lond->{port} } ]);
my $sock = "$dir/sockets/lond1";

# Every lonc process (not a zombie) of this build.  (Its command line is
# its process title by now, "lonc: 1 host, ...": the binary tells.)
my %configs = ($cfg => 1);
my $daemon_real = Cwd::abs_path($daemon);
sub lonc_pids {
    my @pids;
    for my $p (glob '/proc/[0-9]*') {
        my $exe = readlink("$p/exe") // next;
        next unless $exe eq $daemon_real;
        open my $st, '<', "$p/stat" or next;
        my ($state) = (<$st> // '') =~ /\) (\S)/;
        next if !defined $state || $state eq 'Z';
        push @pids, $p =~ m{(\d+)$};
    }
    return @pids;
}

END {
    my $status = $?;
    kill 'KILL', lonc_pids();
    reap();
    $? = $status;
}

# Run the script with the test's settings; returns (exit status, output).
sub init {
    my ($action, %env) = @_;
    local $ENV{DAEMON} = $env{DAEMON} // $daemon;
    local $ENV{CONFIG} = $env{CONFIG} // $cfg;
    local $ENV{PIDFILE} = $env{PIDFILE} // $pidfile;
    local $ENV{STOP_TIMEOUT} = $env{STOP_TIMEOUT} // 20;
    local $ENV{LONC_DEFAULTS} = '/nonexistent/lonc-defaults';
    my $out = `$init $action 2>&1`;
    my $rc = $? >> 8;
    reap();
    return ($rc, $out);
}

sub pidfile_pid {
    open my $fh, '<', $pidfile or return undef;
    my $pid = <$fh>;
    chomp $pid if defined $pid;
    return $pid;
}

my ($rc, $out);

($rc) = init('status');
is($rc, 3, 'status when stopped: 3');

($rc, $out) = init('start');
is($rc, 0, 'start: 0') or diag $out;
my $pid = pidfile_pid();
ok($pid && kill(0, $pid), 'pid file names a running process');
is_deeply([ lonc_pids() ], [$pid], 'one lonc, the one in the pid file');
is(request($sock, 'ping'), 'pong', 'lonc answers through its socket');

($rc, $out) = init('start');
is($rc, 0, 'start when running: 0') or diag $out;
like($out, qr/already running/, 'and says so');
is_deeply([ lonc_pids() ], [$pid], 'still one lonc, the same');

($rc, $out) = init('status');
is($rc, 0, 'status when running: 0');
like($out, qr/running \(pid $pid\)/, 'status names the pid');

# Reload a config with one more host: its socket appears.
write_config(name => 'initscript', pid_file => $pidfile,
    hosts => [ { hostname => 'lond1', port => $lond->{port} },
               { hostname => 'lond2', port => $lond->{port} } ]);
($rc, $out) = init('reload');
is($rc, 0, 'reload: 0') or diag $out;
ok(eval { wait_for(sub { -S "$dir/sockets/lond2" }, 10, 'socket of the added host') },
    'lonc applied the reloaded config (a socket for the added host)');
is(request("$dir/sockets/lond2", 'echo:new host'), 'new host', 'the added host serves');
is(request($sock, 'echo:after reload'), 'after reload', 'lonc serves after reload');
($rc, $out) = init('force-reload');
is($rc, 0, 'force-reload: 0') or diag $out;
is_deeply([ lonc_pids() ], [$pid], 'reload kept the same process');
is(request($sock, 'ping'), 'pong', 'lonc serves after force-reload');

($rc, $out) = init('restart');
is($rc, 0, 'restart: 0') or diag $out;
my $pid2 = pidfile_pid();
ok($pid2 && $pid2 != $pid, 'restart runs a new process');
is_deeply([ lonc_pids() ], [$pid2], 'and only that one');
is(request($sock, 'ping'), 'pong', 'lonc serves after restart');

# A broken file: restart and reload refuse and keep the running lonc.
my $broken = "$dir/broken.yaml";
{
    open my $fh, '>', $broken or die "$broken: $!";
    print $fh "host_id: x\nsocket_dir: $dir/broken-sockets\n",
        "pid_file: $pidfile\nmax_connections: lots\nhosts: []\n";
    close $fh;
}
$configs{$broken} = 1;
($rc, $out) = init('restart', CONFIG => $broken);
is($rc, 6, 'restart with a broken config: 6 (not configured)');
like($out, qr/broken\.yaml:4: key 'max_connections'/, "shows lonc's message");
($rc) = init('reload', CONFIG => $broken);
is($rc, 6, 'reload with a broken config: 6');
is_deeply([ lonc_pids() ], [$pid2], 'the running lonc is kept');
is(request($sock, 'ping'), 'pong', 'and still serves');

($rc, $out) = init('stop');
is($rc, 0, 'stop: 0') or diag $out;
ok(!lonc_pids(), 'lonc is gone');
ok(!-e $pidfile, 'pid file removed');
ok(!-e $sock, 'socket removed');
my ($admin) = log_text($cfg) =~ /^admin_socket: (.*)$/m;
ok(!$admin || !-e $admin, 'admin socket removed');

($rc) = init('stop');
is($rc, 0, 'stop when stopped: 0');
($rc) = init('status');
is($rc, 3, 'status after stop: 3');
($rc) = init('reload');
is($rc, 7, 'reload when stopped: 7 (not running)');

($rc, $out) = init('start', CONFIG => $broken);
isnt($rc, 0, 'start with a broken config fails');
is($rc, 6, 'with 6 (not configured)');
like($out, qr/broken\.yaml:4: key 'max_connections'/, "shows lonc's message");
ok(!lonc_pids(), 'nothing started');
ok(!-e $pidfile, 'no pid file');
ok(!-e "$dir/broken-sockets", 'no socket directory');

($rc) = init('start', CONFIG => "$dir/missing.yaml");
is($rc, 6, 'start with a missing config: 6');
($rc) = init('start', DAEMON => "$dir/no-such-lonc");
is($rc, 5, 'start with a missing binary: 5');

# Stale pid files: a pid that has exited, and a live process that is not
# lonc (this test); neither counts as running, neither gets a signal.
sub write_pidfile {
    open my $fh, '>', $pidfile or die "$pidfile: $!";
    print $fh "$_[0]\n";
    close $fh;
}
my $dead = fork // die "fork: $!";
if ($dead == 0) { POSIX::_exit(0) }
waitpid $dead, 0;
write_pidfile($dead);
($rc, $out) = init('status');
is($rc, 1, 'status with a stale pid file: 1');
like($out, qr/not running/, 'and says not running');
($rc) = init('stop');
is($rc, 0, 'stop with a stale pid file: 0');
ok(!-e $pidfile, 'and removes it');

write_pidfile($$);
($rc) = init('status');
is($rc, 1, 'a pid file naming another program: 1');
($rc) = init('stop');
is($rc, 0, 'stop leaves that program alone');
ok(kill(0, $$), 'this test is still alive');

write_pidfile('garbage');
($rc) = init('status');
is($rc, 4, 'a pid file without a pid: 4 (unknown)');

write_pidfile($dead);
($rc, $out) = init('start');
is($rc, 0, 'start over a stale pid file: 0') or diag $out;
$pid = pidfile_pid();
is_deeply([ lonc_pids() ], [$pid], 'lonc runs and rewrote the pid file');
is(request($sock, 'ping'), 'pong', 'and serves');

# The pid file emptied, or naming another program, while lonc runs
# (whoever may write its directory can do that): lonc is found by its
# process, which holds that pid file open.
{
    open my $fh, '>', $pidfile or die "$pidfile: $!";
    close $fh;
}
($rc, $out) = init('status');
is($rc, 0, 'an emptied pid file, lonc running: status 0') or diag $out;
like($out, qr/running \(pid $pid\)/, '... naming lonc');
write_pidfile($$);
($rc, $out) = init('status');
is($rc, 0, 'a pid file naming another program, lonc running: status 0') or diag $out;
like($out, qr/running \(pid $pid\)/, '... naming lonc');
write_pidfile($pid);

# A second lonc (this binary, this user) with a configuration of its
# own: it is not this configuration's lonc.
my $other_pidfile = "$dir/other.pid";
my $other = write_config(name => 'other', pid_file => $other_pidfile,
    socket_dir => "$dir/other-sockets", spool_dir => "$dir/other-spool",
    hosts => [ { hostname => 'lond1', port => $lond->{port} } ]);
($rc, $out) = init('start', CONFIG => $other, PIDFILE => $other_pidfile);
is($rc, 0, 'a second lonc with another configuration starts') or diag $out;
my ($opid) = log_text($other_pidfile) =~ /^(\d+)/;
($rc) = init('stop');
is($rc, 0, 'stop: 0');
is_deeply([ lonc_pids() ], [$opid], 'lonc is gone, the other runs on');
($rc, $out) = init('status');
is($rc, 3, 'status: 3, though the other runs') or diag $out;
{
    open my $fh, '>', $pidfile or die "$pidfile: $!";
    close $fh;
}
($rc, $out) = init('status');
is($rc, 3, 'an empty pid file, lonc not running: status 3 (the other is not taken for it)') or diag $out;
($rc, $out) = init('stop');
is($rc, 0, '... stop: 0') or diag $out;
like($out, qr/not running/, '... not running');
is_deeply([ lonc_pids() ], [$opid], '... and the other still runs');
($rc) = init('stop', CONFIG => $other, PIDFILE => $other_pidfile);
is($rc, 0, 'the other stops');
ok(!lonc_pids(), 'lonc is gone');
unlink $pidfile;

# A stale pid file in a directory that is not root's alone: left there
# (a name in such a directory may lead anywhere).
{
    my $open = "$dir/open";
    mkdir $open;
    chmod 0777, $open;
    open my $fh, '>', "$open/lonc.pid" or die;
    print $fh "$dead\n";
    close $fh;
    ($rc, $out) = init('stop', PIDFILE => "$open/lonc.pid");
    is($rc, 0, 'a stale pid file in a directory others may write: stop 0') or diag $out;
    ok(-e "$open/lonc.pid", '... leaves it there');
    like($out, qr/left/, '... and says so');
}

# A relative CONFIG: lonc works in / once detached, and a reload must
# still find the file.
{
    require Cwd;
    my $cwd = Cwd::getcwd();
    chdir $dir or die "chdir $dir: $!";
    ($rc, $out) = init('start', CONFIG => 'initscript.yaml');
    is($rc, 0, 'start with a relative CONFIG: 0') or diag $out;
    write_config(name => 'initscript', pid_file => $pidfile,
        hosts => [ { hostname => 'lond1', port => $lond->{port} },
                   { hostname => 'lond3', port => $lond->{port} } ]);
    ($rc, $out) = init('reload', CONFIG => 'initscript.yaml');
    is($rc, 0, 'reload with a relative CONFIG: 0') or diag $out;
    ok(eval { wait_for(sub { -S "$dir/sockets/lond3" }, 10, 'socket of lond3') },
        'lonc read the reloaded file');
    ($rc) = init('stop', CONFIG => 'initscript.yaml');
    is($rc, 0, 'stop: 0');
    chdir $cwd;
}
ok(!lonc_pids(), 'no lonc left');

# A reload lonc refuses (a key that needs a restart changed): 1, and
# lonc runs on with what it had.  lonc-ctl (beside DAEMON) reports it.
{
    ($rc, $out) = init('start');
    is($rc, 0, 'start: 0') or diag $out;
    my $before = pidfile_pid();
    write_config(name => 'initscript', pid_file => $pidfile, socket_dir => "$dir/other-sockets",
        hosts => [ { hostname => 'lond1', port => $lond->{port} } ]);
    ($rc, $out) = init('reload');
    is($rc, 1, 'a reload lonc refuses: 1') or diag $out;
    like($out, qr/socket_dir/, '... the output names the key');
    like($out, qr/refused the reload/, '... and says lonc runs on');
    is_deeply([ lonc_pids() ], [$before], '... the same lonc runs');
    is(request($sock, 'ping'), 'pong', '... and serves on its old socket');
    write_config(name => 'initscript', pid_file => $pidfile,
        hosts => [ { hostname => 'lond1', port => $lond->{port} } ]);
    ($rc) = init('stop');
    is($rc, 0, 'stop: 0');
}

# pid_file derived from loncapa_conf (lonDaemons), no PIDFILE, and the
# configuration broken while lonc runs: status, reload and stop still
# find the running lonc (by its process).
{
    my $daemons = "$dir/lonDaemons";
    mkdir $daemons;
    mkdir "$daemons/logs";
    open my $fh, '>', "$dir/loncapa.conf" or die;
    print $fh "PerlSetVar lonHostID lonc-test\nPerlSetVar lonDaemons $daemons\n"
        . "PerlSetVar lonSockDir $dir/derived-sockets\n";
    close $fh;
    my $user = getpwuid($>);
    my $yaml = "$dir/derived.yaml";
    my $good = "loncapa_conf: $dir/loncapa.conf\nadmin_socket: $dir/derived-admin.sock\n"
        . "spool_dir: $dir/derived-spool\nlocal_key_dir: $dir/derived-keys\n"
        . "user: $user\nallow_insecure: true\nhosts:\n"
        . "  - {hostname: lond1, ids: [lond1], address: 127.0.0.1, port: $lond->{port}}\n";
    open $fh, '>', $yaml or die;
    print $fh $good;
    close $fh;
    ($rc, $out) = init('start', CONFIG => $yaml, PIDFILE => '');
    is($rc, 0, 'derived pid_file: start: 0') or diag $out;
    ok(-s "$daemons/logs/lonc.pid", '... the pid file is in <lonDaemons>/logs');
    my ($p) = lonc_pids();
    open $fh, '>>', $yaml or die;
    print $fh "max_connections: lots\n";
    close $fh;
    ($rc, $out) = init('status', CONFIG => $yaml, PIDFILE => '');
    is($rc, 0, 'derived pid_file, broken config: status 0') or diag $out;
    like($out, qr/running \(pid $p\)/, '... names the running lonc');
    ($rc) = init('reload', CONFIG => $yaml, PIDFILE => '');
    is($rc, 6, '... reload: 6 (broken), not 7');
    ($rc, $out) = init('stop', CONFIG => $yaml, PIDFILE => '');
    is($rc, 0, '... stop: 0') or diag $out;
    ok(!lonc_pids(), '... and lonc is gone');
    ok(!-e "$daemons/logs/lonc.pid", '... with its pid file');
    ($rc) = init('status', CONFIG => $yaml, PIDFILE => '');
    is($rc, 3, '... status afterwards: 3');
}

($rc, $out) = init('bogus');
is($rc, 2, 'unknown action: 2');
like($out, qr/Usage: .*start\|stop/, 'with the usage');
($rc) = init('');
is($rc, 2, 'no action: 2');

# A lonc that ignores SIGTERM: stop waits STOP_TIMEOUT, kills it, fails.
# The script counts a process as lonc only when it runs DAEMON: the fake
# is a binary (t/tools/fake-lonc.c; -t succeeds, otherwise it detaches a
# process that ignores SIGTERM and writes its pid to the pid file).
SKIP: {
    my $fake = abs_path(build_dir()) . '/fake-lonc';
    skip "no $fake (make builds it)", 6 unless -x $fake;
    local $ENV{FAKE_LONC_PID_FILE} = $pidfile;
    ($rc, $out) = init('start', DAEMON => $fake);
    is($rc, 0, 'a stubborn fake lonc starts') or diag $out;
    my $fpid = pidfile_pid();
    my $t0 = time;
    ($rc, $out) = init('stop', DAEMON => $fake, STOP_TIMEOUT => 1);
    is($rc, 1, 'stop of a lonc that ignores SIGTERM: 1');
    like($out, qr/did not stop within 1s; killed/, 'and says it killed it');
    ok(time - $t0 <= 10, 'within the bound');
    reap();
    ok(!kill(0, $fpid) || do {
        open my $st, '<', "/proc/$fpid/stat"; (<$st> // '') =~ /\) Z/ },
        'the process is gone');
    ok(!-e $pidfile, 'its pid file is removed');
}

done_testing();

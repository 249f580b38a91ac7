package LoncTest;
# Test harness for lonc's integration tests: starts the project's test
# lond and the real daemon on private sockets and free ports, writes
# configs, talks to both, and cleans up every process it started, also
# when a test dies.  Readiness is read from the programs' own output
# ("ready port=N" from the test lond, "event=ready" from lonc), never
# guessed with sleeps.
use strict;
use warnings;
use Exporter 'import';
use File::Temp qw(tempdir);
use IO::Socket::INET;
use IO::Socket::UNIX;
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(time sleep);

our @EXPORT = qw(build_dir tmp_dir start_lond lond_ctl lond_stats
    write_config start_lonc stop_lonc wait_lonc request request_raw unix_connect
    wait_for log_text watchdog free_port
    pattern request_bytes read_reply_bytes lonnet_request describe_bytes
    rss_anon_kb rss_sampler kill_wait proc_figures burst
    throwaway_user throwaway_group as_user make_victim fingerprint victim_intact
    try_lonc start_racer stop_racer start_flipper stop_flipper attacker_setup
    nobody spew pid_in run_bounded read_buffered_line);

my @children;
my $serial = 0;    # unique names for logs and outputs

sub build_dir { $ENV{LONC_BUILD} || 'build' }

my $tmp;
sub tmp_dir {
    $tmp //= tempdir('lonc-test-XXXXXX', TMPDIR => 1, CLEANUP => 1);
    return $tmp;
}

# The security tests' start: root is needed and the attacker is nobody
# (group nogroup); skips the whole file otherwise.  Bounded by a
# watchdog of $secs.  Returns (nogroup's gid, nobody's getpwnam list).
sub attacker_setup {
    my ($secs) = @_;
    Test::More::plan(skip_all => 'needs root') if $> != 0;
    my @pw = getpwnam('nobody') or Test::More::plan(skip_all => 'no user nobody');
    my $gid = getgrnam('nogroup') // Test::More::plan(skip_all => 'no group nogroup');
    watchdog($secs);
    return ($gid, @pw);
}

# Run a command as nobody; dies if it fails.
sub nobody { as_user('nobody', @_) == 0 or die "as nobody: @_ failed\n" }

# Write $text to $path (mode $mode if given); returns $path.
sub spew {
    my ($path, $text, $mode) = @_;
    open my $fh, '>', $path or die "$path: $!";
    print $fh $text;
    close $fh;
    chmod $mode, $path if defined $mode;
    return $path;
}

# The pid on the first line of file $f, or undef.
sub pid_in {
    my ($f) = @_;
    my ($p) = log_text($f) =~ /^(\d+)/;
    return $p;
}

# Run @cmd, stdin /dev/null, stdout and stderr to file $out, for at
# most $secs.  Its exit status, or undef when it had to be killed (its
# whole process group with setsid).  $o: setsid => 1; env => { NAME =>
# value, or undef to remove it }.
sub run_bounded {
    my ($secs, $out, $o, @cmd) = @_;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        POSIX::setsid() if $o->{setsid};
        my $env = $o->{env} // {};
        for my $k (keys %$env) {
            if (defined $env->{$k}) { $ENV{$k} = $env->{$k} } else { delete $ENV{$k} }
        }
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', $out or POSIX::_exit(1);
        open STDERR, '>&', \*STDOUT;
        exec(@cmd) or POSIX::_exit(127);
    }
    my $end = time + $secs;
    my $rc;
    while (time < $end) {
        if (waitpid($pid, WNOHANG) == $pid) {
            $rc = $? >> 8;
            last;
        }
        sleep 0.05;
    }
    if (!defined $rc) {
        kill 'KILL', $o->{setsid} ? -$pid : $pid;
        waitpid $pid, 0;
    }
    return $rc;
}

# One line from socket $s through the buffer $$buf (pipelined replies
# stay in it for the next call), waiting at most $secs (the watchdog's
# alarm is put back).  (line with its newline, 'line'), or (undef, how:
# 'eof', 'timeout' or 'error:...').
sub read_buffered_line {
    my ($s, $buf, $secs) = @_;
    my $how;
    local $SIG{ALRM} = sub { die "timeout\n" };
    my $t0 = time;
    my $left = alarm $secs;
    eval {
        while (index($$buf, "\n") < 0) {
            my $n = sysread($s, $$buf, 1 << 20, length $$buf);
            if (!defined $n) { next if $!{EINTR}; $how = "error:$!"; last }
            if ($n == 0) { $how = 'eof'; last }
        }
        1;
    } or $how = 'timeout';
    alarm 0;
    rearm($left, $t0);
    my $i = index($$buf, "\n");
    return (undef, $how // 'eof') if $i < 0;
    return (substr($$buf, 0, $i + 1, ''), 'line');
}

# Put back an alarm that was $left seconds off when a wait began at
# $t0 (the watchdog's), less the time the wait took.
sub rearm {
    my ($left, $t0) = @_;
    return unless $left;
    my $rest = $left - int(time - $t0);
    alarm($rest > 0 ? $rest : 1);
}

# Kill the test after $secs whatever happens (bounded tests).
sub watchdog {
    my ($secs) = @_;
    $SIG{ALRM} = sub { die "watchdog: test took longer than ${secs}s\n" };
    alarm $secs;
}

sub _spawn {
    my ($out, $err, @cmd) = @_;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', $out or die "stdout: $!" if defined $out;
        open STDERR, '>>', $err or die "stderr: $!";
        exec @cmd or die "exec $cmd[0]: $!";
    }
    push @children, $pid;
    return $pid;
}

# Start the test lond; returns { pid, port, log }.
sub start_lond {
    my (%o) = @_;
    my $dir = tmp_dir();
    my $n = $serial++;
    my $out = "$dir/lond$n.out";
    my $log = "$dir/lond$n.log";
    my @args = ('--port', $o{port} // 0, '--quiet');
    push @args, '--host-id', $o{host_id} if $o{host_id};
    push @args, '--client-id', $o{client_id} if $o{client_id};
    push @args, '--fault', $o{fault} if $o{fault};
    push @args, '--bind', $o{bind} if $o{bind};
    push @args, @{ $o{args} } if $o{args};
    my @pre = $o{wrapper} ? @{ $o{wrapper} } : ();
    my $pid = _spawn($out, $log, @pre, build_dir() . '/testlond', @args);
    my $port;
    wait_for(sub {
        open my $fh, '<', $out or return 0;
        my $l = <$fh> // return 0;
        ($port) = $l =~ /^ready port=(\d+)/;
        return defined $port;
    }, 10, 'test lond ready');
    return { pid => $pid, port => $port, log => $log };
}

sub lond_ctl {
    my ($lond, $cmd) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
        PeerPort => $lond->{port}, Timeout => 5) or die "ctl connect: $!";
    print $s "ctl:$cmd\n";
    my $r = <$s>;
    close $s;
    chomp $r if defined $r;
    return $r;
}

sub lond_stats {
    my ($lond) = @_;
    my $r = lond_ctl($lond, 'stats') // '';
    return { map { split /=/, $_, 2 } split ' ', $r };
}

# A free TCP port on loopback (bound and released: for "lond is down").
sub free_port {
    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
        Listen => 1) or die "free_port: $!";
    my $p = $s->sockport;
    close $s;
    return $p;
}

# Write a config; %o overrides top-level keys, $o{hosts} is a list of
# { hostname, ids (default: [hostname]), port, address, aliases, ... }
# (hosts => undef: no hosts key at all, e.g. with hosts_tab).
# Returns the path.
sub write_config {
    my (%o) = @_;
    my $dir = tmp_dir();
    my $name = delete $o{name} // 'lonc';
    my $no_hosts = exists $o{hosts} && !defined $o{hosts};
    my $hosts = delete $o{hosts} // [];
    my %top = (
        host_id => 'lonc-test',
        socket_dir => "$dir/sockets",
        pid_file => "$dir/$name.pid",
        admin_socket => "$dir/$name-admin.sock",
        spool_dir => "$dir/spool",
        local_key_dir => "$dir/keys",      # never the machine's own
        # Tests run as root or as a user; either way keep that identity
        # (t/integration/privileges.t covers the drop to another user).
        user => scalar(getpwuid($>)),
        log_dir => $dir,
        log_level => 'info',
        connect_timeout => 2,
        handshake_timeout => 2,
        transaction_timeout => 10,
        backoff_initial => 0.2,
        backoff_max => 1,
        allow_insecure => 'true',
        %o,
    );
    my $y = '';
    for my $k (sort keys %top) {
        $y .= "$k: $top{$k}\n";
    }
    $y .= "hosts:\n" unless $no_hosts;
    for my $h (@$hosts) {
        $y .= "  - hostname: $h->{hostname}\n";
        $y .= "    ids: [" . join(', ', @{ $h->{ids} // [$h->{hostname}] }) . "]\n";
        $y .= "    address: " . ($h->{address} // '127.0.0.1') . "\n";
        for my $k (sort keys %$h) {
            next if $k =~ /^(hostname|ids|address)$/;
            my $v = $h->{$k};
            $v = '[' . join(', ', @$v) . ']' if ref $v;
            $y .= "    $k: $v\n";
        }
    }
    my $path = "$dir/$name.yaml";
    open my $fh, '>', $path or die "$path: $!";
    print $fh $y;
    close $fh;
    return $path;
}

sub log_text {
    my ($path) = @_;
    open my $fh, '<', $path or return '';
    local $/;
    return <$fh> // '';
}

# Start lonc in the foreground; returns { pid, log, socket_dir } once it
# logged event=ready (dies if it exits or times out first).
sub start_lonc {
    my ($config, %o) = @_;
    my $dir = tmp_dir();
    my $n = $serial++;
    my $log = $o{log} // "$dir/lonc$n.log";
    my @pre = $o{wrapper} ? @{ $o{wrapper} } : ();
    my $pid = _spawn(undef, $log, @pre, build_dir() . '/lonc', '-c', $config,
        '--foreground');
    wait_for(sub {
        die "lonc exited early:\n" . log_text($log) . "\n"
            if waitpid($pid, WNOHANG) == $pid;
        return log_text($log) =~ /event=ready/;
    }, $o{timeout} // 20, 'lonc ready');
    my ($sockdir) = log_text($config) =~ /^socket_dir: (.*)$/m;
    return { pid => $pid, log => $log, socket_dir => $sockdir };
}

# SIGTERM and wait; returns the exit status ($? style) or undef on timeout.
sub stop_lonc {
    my ($l, $timeout) = @_;
    kill 'TERM', $l->{pid};
    return wait_lonc($l, $timeout);
}

# Wait for lonc to exit by itself (e.g. after a SIGTERM already sent);
# returns the exit status ($? style) or undef on timeout.
sub wait_lonc {
    my ($l, $timeout) = @_;
    my $end = time + ($timeout // 20);
    while (time < $end) {
        my $r = waitpid($l->{pid}, WNOHANG);
        if ($r == $l->{pid}) {
            @children = grep { $_ != $l->{pid} } @children;
            return $?;
        }
        sleep 0.02;
    }
    return undef;
}

sub unix_connect {
    my ($path) = @_;
    return IO::Socket::UNIX->new(Type => SOCK_STREAM(), Peer => $path);
}

# Send one raw request (bytes as given) and read one reply line.
sub request_raw {
    my ($path, $bytes, $timeout) = @_;
    my $s = unix_connect($path) or return undef;
    local $SIG{ALRM} = sub { die "request timeout\n" };
    my $reply;
    my $t0 = time;
    my $left = alarm($timeout // 15);
    eval {
        print $s $bytes;
        $reply = <$s>;
    };
    alarm 0;
    rearm($left, $t0);
    close $s;
    chomp $reply if defined $reply;
    return $reply;
}

sub request {
    my ($path, $line, $timeout) = @_;
    return request_raw($path, "$line\n", $timeout);
}

# The test lond's pattern: n bytes of "abc...z" repeated (bytes:, closemid:,
# steady:, and the plain text of encbytes:).
sub pattern {
    my ($n) = @_;
    my $alpha = join '', 'a' .. 'z';
    return substr($alpha x (int($n / 26) + 1), 0, $n);
}

# Read raw bytes from a connected socket up to and including the first
# "\n", or up to end of file, within $timeout seconds.  Nothing is
# chomped.  In list context also how it ended: 'line', 'eof', 'timeout'
# or 'error:<errno text>'.
sub read_reply_bytes {
    my ($s, $timeout) = @_;
    my ($buf, $how) = ('', undef);
    local $SIG{ALRM} = sub { die "request timeout\n" };
    my $t0 = time;
    my $left = alarm($timeout // 30);
    eval {
        for (;;) {
            my $from = length $buf;
            my $n = sysread($s, $buf, 1 << 20, $from);
            if (!defined $n) {
                next if $!{EINTR};
                $how = "error:$!";
                last;
            }
            if ($n == 0) {
                $how = 'eof';
                last;
            }
            my $nl = index($buf, "\n", $from);
            if ($nl >= 0) {
                # One reply line: anything after it belongs to no request.
                substr($buf, $nl + 1) = '';
                $how = 'line';
                last;
            }
        }
        1;
    } or do {
        die $@ unless $@ eq "request timeout\n";
        $how = 'timeout';
    };
    alarm 0;
    rearm($left, $t0);
    return wantarray ? ($buf, $how) : $buf;
}

# Send one request line and read the raw reply (see read_reply_bytes):
# exactly what a client reads, e.g. "con_lost\n", or 65536 bytes and
# then end of file.  undef when the socket cannot be reached.
sub request_bytes {
    my ($path, $line, $timeout) = @_;
    my $s = unix_connect($path) or return;
    print $s "$line\n";
    $s->flush;
    my @r = read_reply_bytes($s, $timeout);
    close $s;
    return wantarray ? @r : $r[0];
}

# One request as lonnet's subreply makes it: connect, print, read one
# line with <>, 'con_lost' if that read nothing, chomp.  Bounded by an
# alarm (which lonnet has not): a timeout returns undef.
sub lonnet_request {
    my ($path, $line, $timeout) = @_;
    my $client = unix_connect($path) or return 'con_lost';
    local $SIG{ALRM} = sub { die "request timeout\n" };
    my $answer;
    my $t0 = time;
    my $left = alarm($timeout // 30);
    my $ok = eval {
        print $client "$line\n";
        $answer = <$client>;
        $answer = 'con_lost' unless $answer;
        chomp($answer);
        1;
    };
    alarm 0;
    rearm($left, $t0);
    close $client;
    die $@ if !$ok && $@ ne "request timeout\n";
    return $ok ? $answer : undef;
}

# A burst: $n clients send $line to the socket $path at once (every
# connection is made and its request written before any reply is read),
# then each reply is read within $timeout seconds in all (default 30).
# Returns the replies in order, chomped; undef for a client that got
# nothing (or could not connect).
sub burst {
    my ($path, $n, $line, $timeout) = @_;
    my @s = map { unix_connect($path) } 1 .. $n;
    for my $s (grep { defined } @s) {
        print $s "$line\n";
        $s->flush;
    }
    my $end = time + ($timeout // 30);
    my @r;
    for my $s (@s) {
        # alarm() takes whole seconds (0 would switch it off): round up.
        my $left = $end > time ? int($end - time) + 1 : 0;
        my ($b, $how) = defined $s && $left > 0 ? read_reply_bytes($s, $left) : (undef, 'none');
        close $s if defined $s;
        chomp $b if defined $b && $how eq 'line';
        push @r, defined $how && $how eq 'line' ? $b : undef;
    }
    return @r;
}

# A short description of raw reply bytes for test names and diagnostics:
# "con_lost\n", or "65536 bytes, no newline", "1000001 bytes ending in a
# newline".
sub describe_bytes {
    my ($b) = @_;
    return 'nothing' unless defined $b;
    return 'con_lost\n' if $b eq "con_lost\n";
    my $n = length $b;
    return "$n bytes, " . ($b =~ /\n\z/ ? 'ending in a newline' : 'no newline');
}

# A process's anonymous resident memory in kB (RssAnon), or undef.
sub rss_anon_kb {
    my ($pid) = @_;
    open my $fh, '<', "/proc/$pid/status" or return;
    while (<$fh>) {
        return $1 if /^RssAnon:\s+(\d+)\s+kB/;
    }
    return;
}

# Sample a process's RssAnon every 5 ms in a child process, at most
# $secs seconds (default 60).  Returns a function that stops the sampler
# and returns the highest value seen, in kB (undef if none was read).
sub rss_sampler {
    my ($pid, $secs) = @_;
    pipe(my $r, my $w) or die "pipe: $!";
    my $child = fork // die "fork: $!";
    if ($child == 0) {
        close $r;
        my ($max, $end) = (0, time + ($secs // 60));
        my $stop = 0;
        local $SIG{TERM} = sub { $stop = 1 };
        while (!$stop && time < $end) {
            my $v = rss_anon_kb($pid);
            $max = $v if defined $v && $v > $max;
            sleep 0.005;
        }
        print $w "$max\n";
        close $w;
        POSIX::_exit(0);
    }
    close $w;
    push @children, $child;
    return sub {
        kill 'TERM', $child;
        my $max = <$r>;
        close $r;
        waitpid $child, 0;
        @children = grep { $_ != $child } @children;
        chomp $max if defined $max;
        return $max ? $max : undef;
    };
}

# Send $sig to a process the harness started and wait (up to $timeout s)
# for it to exit; it is then forgotten, so that the clean-up at the end
# does not signal a pid that may have been reused.  Returns the exit
# status ($? style) or undef on timeout.
sub kill_wait {
    my ($pid, $sig, $timeout) = @_;
    kill $sig, $pid;
    my $end = time + ($timeout // 10);
    while (time < $end) {
        if (waitpid($pid, WNOHANG) == $pid) {
            my $st = $?;
            @children = grep { $_ != $pid } @children;
            return $st;
        }
        sleep 0.01;
    }
    return undef;
}

# What a running process holds, from /proc: open fds, threads, resident
# memory in KiB.  undef if it is gone.
sub proc_figures {
    my ($pid) = @_;
    opendir(my $fd, "/proc/$pid/fd") or return undef;
    my $fds = grep { !/^\./ } readdir $fd;
    closedir $fd;
    opendir(my $td, "/proc/$pid/task") or return undef;
    my $threads = grep { !/^\./ } readdir $td;
    closedir $td;
    my ($rss) = log_text("/proc/$pid/status") =~ /^VmRSS:\s+(\d+)/m;
    return { fds => $fds, threads => $threads, rss_kb => $rss // 0 };
}

# ---- Security tests: root plays an unprivileged user -----------------
# (t/integration/security*.t; doc/security.md).  Users and groups made
# here are removed at exit, after the processes the harness started.

my (@made_users, @made_groups);
my $main_pid = $$;    # a forked child that dies must not remove them

# A test stopped by a signal still runs the END block that removes them.
sub _exit_on_signals {
    for my $sig (qw(INT TERM HUP)) {
        $SIG{$sig} = sub { die "killed by SIG$sig\n" } if !$SIG{$sig} || $SIG{$sig} eq 'DEFAULT';
    }
}

# A throwaway system user with its own group, no home, no shell;
# returns { name, uid, gid }.
sub throwaway_user {
    my ($tag) = @_;
    my $name = sprintf 'lonct-%s%d', $tag // 'u', $$;
    _exit_on_signals();
    system('useradd', '-r', '-M', '-U', '-s', '/usr/sbin/nologin', $name) == 0
        or die "useradd $name failed\n";
    push @made_users, $name;
    my @pw = getpwnam($name) or die "no user $name after useradd\n";
    return { name => $name, uid => $pw[2], gid => $pw[3] };
}

# A throwaway group; returns { name, gid }.
sub throwaway_group {
    my ($tag) = @_;
    my $name = sprintf 'lonctg-%s%d', $tag // 'g', $$;
    _exit_on_signals();
    system('groupadd', '-r', $name) == 0 or die "groupadd $name failed\n";
    push @made_groups, $name;
    my $gid = getgrnam($name) // die "no group $name after groupadd\n";
    return { name => $name, gid => $gid };
}

# Run @cmd as $user (a name), with its own group and no supplementary
# groups, as the attacker would.  Returns the exit status ($? style).
sub as_user {
    my ($user, @cmd) = @_;
    my @pw = getpwnam($user) or die "no user $user\n";
    system('setpriv', "--reuid=$pw[2]", "--regid=$pw[3]", '--clear-groups', @cmd);
    return $?;
}

# What a file or directory is, to tell whether anyone touched it: its
# inode, type, mode, links, owner, size, modification and change times
# (a chmod or chown to the same values still moves the change time),
# and its content (a directory: its entries, each with type, mode and
# owner).  'missing' when it is gone.
sub fingerprint {
    my ($path) = @_;
    my @st = lstat $path or return 'missing';
    my $fp = join ' ', @st[0, 1, 2, 3, 4, 5, 7, 9, 10];
    if (-l _) {
        $fp .= ' -> ' . readlink $path;
    } elsif (-d _) {
        opendir my $d, $path or return "$fp (unreadable)";
        for my $e (sort grep { !/^\.\.?$/ } readdir $d) {
            my @e = lstat "$path/$e";
            $fp .= " [$e " . join(' ', @e[2, 4, 5]) . ']';
        }
    } elsif (-f _) {
        $fp .= ' ' . log_text($path);
    }
    return $fp;
}

my %victims;

# A victim: a root-owned file of mode 0600 that root must never be made
# to touch.  Returns its path; victim_intact tells whether it still is
# exactly as made.
sub make_victim {
    my ($path) = @_;
    open my $fh, '>', $path or die "$path: $!";
    print $fh "victim: root's own, mode 0600 ($path)\n";
    close $fh;
    chown 0, 0, $path;
    chmod 0600, $path;
    $victims{$path} = fingerprint($path);
    return $path;
}

sub victim_intact {
    my ($path) = @_;
    return fingerprint($path) eq ($victims{$path} // '');
}

# Start the racer (t/tools/symlink-racer.c) as $user with @args; returns
# { pid, out } once it watches.
sub start_racer {
    my ($user, @args) = @_;
    return _start_attacker('symlink-racer', $user, @args);
}

# Start t/tools/flip-racer.c as $user with @args (-l: a name flipped
# between two symlinks; -m: a directory moved in and out at a name);
# returns { pid, out } once it flips.
sub start_flipper {
    my ($user, @args) = @_;
    return _start_attacker('flip-racer', $user, @args);
}

# Stop a flipper; how many flips it made.
sub stop_flipper {
    my ($r) = @_;
    kill_wait($r->{pid}, 'TERM', 5) // kill_wait($r->{pid}, 'KILL', 5);
    my ($n) = log_text($r->{out}) =~ /^flips=(\d+)$/m;
    return $n // 0;
}

sub _start_attacker {
    my ($tool, $user, @args) = @_;
    my @pw = getpwnam($user) or die "no user $user\n";
    my $out = tmp_dir() . '/racer' . $serial++ . '.out';
    my $pid = _spawn($out, "$out.err", 'setpriv', "--reuid=$pw[2]", "--regid=$pw[3]",
        '--clear-groups', build_dir() . "/$tool", @args);
    wait_for(sub {
        die 'racer exited: ' . log_text("$out.err") . "\n" if waitpid($pid, WNOHANG) == $pid;
        return log_text($out) =~ /^ready$/m;
    }, 10, 'racer ready');
    return { pid => $pid, out => $out };
}

# Stop a racer (if it has not ended by itself); how many swaps it made.
sub stop_racer {
    my ($r) = @_;
    kill_wait($r->{pid}, 'TERM', 5) // kill_wait($r->{pid}, 'KILL', 5);
    my ($n) = log_text($r->{out}) =~ /^swaps=(\d+)$/m;
    return $n // 0;
}

# Run lonc once and tell how it went: { exit (undef: it did not end in
# time and was killed), signal, out (its stdout and stderr together),
# ready (it logged event=ready or, as a daemon, started; it was then
# stopped with SIGTERM) }.  $o{test}: lonc -t; $o{daemon}: without
# --foreground; $o{wrapper}: a command to run it under; $o{timeout}
# (10 s) bounds the run; $o{while_up}: code called while lonc runs,
# before it is stopped, with lonc's pid.
sub try_lonc {
    my ($config, %o) = @_;
    my $out = tmp_dir() . '/try' . $serial++ . '.out';
    my @args = ('-c', $config);
    push @args, '-t' if $o{test};
    push @args, '--foreground' if !$o{test} && !$o{daemon};
    my @pre = $o{wrapper} ? @{ $o{wrapper} } : ();
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', $out or die "stdout: $!";
        open STDERR, '>&', \*STDOUT or die "stderr: $!";
        exec @pre, build_dir() . '/lonc', @args or die "exec: $!";
    }
    push @children, $pid;
    my %r = (ready => 0);
    my $end = time + ($o{timeout} // 10);
    my $status;
    while (time < $end) {
        if (waitpid($pid, WNOHANG) == $pid) {
            $status = $?;
            last;
        }
        if (!$o{test} && !$o{daemon} && log_text($out) =~ /event=ready/) {
            $r{ready} = 1;
            $o{while_up}->($pid) if $o{while_up};
            $status = kill_wait($pid, 'TERM', 20);
            last;
        }
        sleep 0.02;
    }
    if (!defined $status && !$r{ready}) {
        kill 'KILL', $pid;
        waitpid $pid, 0;
    }
    @children = grep { $_ != $pid } @children;
    if (defined $status) {
        $r{exit} = $status >> 8;
        $r{signal} = $status & 127;
    }
    if ($o{daemon} && defined $r{exit} && $r{exit} == 0) {
        # Started: stop the daemon through its pid file.
        my ($pf) = log_text($config) =~ /^pid_file: (.*)$/m;
        my ($dpid) = log_text($pf // '') =~ /^(\d+)/;
        if ($dpid) {
            $r{ready} = 1;
            $o{while_up}->($dpid) if $o{while_up};
            kill 'TERM', $dpid;
            my $stop = time + 20;
            sleep 0.02 while kill(0, $dpid) && time < $stop;
        }
    }
    $r{out} = log_text($out);
    return \%r;
}

# Poll $cond every 20 ms until true or $secs pass (then die naming $what).
sub wait_for {
    my ($cond, $secs, $what) = @_;
    my $end = time + $secs;
    while (time < $end) {
        return 1 if $cond->();
        sleep 0.02;
    }
    die "timed out waiting for $what\n";
}

END {
    my $status = $?;
    # Only the test itself: a child it forked that ends (by die, say)
    # must not kill the test's servers.
    if ($$ == $main_pid) {
        for my $pid (@children) {
            kill 'KILL', $pid;
            waitpid $pid, 0;
        }
        system('userdel', '-f', $_) for @made_users;
        system('groupdel', $_) for @made_groups;
    }
    $? = $status;
}

1;

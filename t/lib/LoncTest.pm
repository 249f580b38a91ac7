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
    wait_for log_text watchdog free_port kill_wait proc_figures);

my @children;
my $serial = 0;    # unique names for logs and outputs

sub build_dir { $ENV{LONC_BUILD} || 'build' }

my $tmp;
sub tmp_dir {
    $tmp //= tempdir('lonc-test-XXXXXX', TMPDIR => 1, CLEANUP => 1);
    return $tmp;
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
# { hostname, ids, port, address, aliases, ... }.  Returns the path.
sub write_config {
    my (%o) = @_;
    my $dir = tmp_dir();
    my $name = delete $o{name} // 'lonc';
    my $hosts = delete $o{hosts} // [];
    my %top = (
        host_id => 'lonc-test',
        socket_dir => "$dir/sockets",
        pid_file => "$dir/$name.pid",
        admin_socket => "$dir/$name-admin.sock",
        spool_dir => "$dir/spool",
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
    $y .= "hosts:\n";
    for my $h (@$hosts) {
        $y .= "  - hostname: $h->{hostname}\n";
        $y .= "    ids: [" . join(', ', @{ $h->{ids} // ['testlond'] }) . "]\n";
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
    my $left = alarm($timeout // 15);
    eval {
        print $s $bytes;
        $reply = <$s>;
    };
    alarm 0;
    alarm $left if $left;
    close $s;
    chomp $reply if defined $reply;
    return $reply;
}

sub request {
    my ($path, $line, $timeout) = @_;
    return request_raw($path, "$line\n", $timeout);
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
    for my $pid (@children) {
        kill 'KILL', $pid;
        waitpid $pid, 0;
    }
    $? = $status;
}

1;

#!/usr/bin/perl
# The admin socket and lonc-ctl: every command, its output formats, and
# the socket's permissions.  SIGUSR1 logs status and clears dead hosts.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use LoncTest;

watchdog(120);
my $lond = start_lond();
my $cfg = write_config(name => 'adm', retry_attempts => 1, backoff_initial => 60, backoff_max => 60,
    hosts => [ { hostname => 'up', port => $lond->{port}, aliases => ['upalias'] },
               { hostname => 'down', port => free_port() } ]);
my $lonc = start_lonc($cfg);
my $dir = $lonc->{socket_dir};
my $admin = $cfg =~ s/\.yaml$/-admin.sock/r;
my $ctl = build_dir() . '/lonc-ctl';
sub ctl { my $o = `$ctl -s $admin @_ 2>&1`; return ($? >> 8, $o) }

ok(-S $admin, 'admin socket exists');
{
    # -s after the command word is taken too (it was once ignored).
    my $o = `$ctl status json -s $admin 2>&1`;
    is($? >> 8, 0, 'lonc-ctl status json -s SOCKET: -s after the command');
    like($o, qr/^\{"version":/, '... reaches the daemon and runs the whole command');
}
is((stat $admin)[2] & 07777, 0600, 'admin socket is mode 0600 (its user and root only)');
is(request("$dir/up", 'ping'), 'pong', 'traffic') for 1 .. 3;
is(request("$dir/down", 'ping'), 'con_lost', 'a failing host');
wait_for(sub { log_text($lonc->{log}) =~ /host=down event=host_dead/ }, 10, 'dead');

my ($rc, $out) = ctl('status');
is($rc, 0, 'status exits 0');
like($out, qr/^HOST\s+STATE/m, 'status has a header');
like($out, qr/^up\s+connected\s+0\/[12]\s+[12]\s+0\s+3\s/m, 'up: connected, idle connections, 3 requests');
like($out, qr/^down\s+dead\s/m, 'down: dead');

($rc, $out) = ctl('status', 'json');
is($rc, 0, 'status json exits 0');
like($out, qr/^\{"version":"[\d.]+","pid":\d+,"hosts":\[\{"host":"up","state":"connected",.*"requests":3,.*\}\]\}$/s, 'status json shape');
like($out, qr/"sethost_mode":"inline","init_version":"","key_id_order":"remote_first","version_string":"0\.1\.0","tls_close_notify":"required"/, 'status json shows the protocol switches');
like($out, qr/"host":"down","state":"dead".*"last_error":"connect to 127\.0\.0\.1 port \d+: Connection refused"/, 'last error of the dead host');

($rc, $out) = ctl('metrics');
is($rc, 0, 'metrics exits 0');
like($out, qr/^# TYPE lonc_requests_total counter$/m, 'Prometheus TYPE lines');
like($out, qr/^lonc_requests_total\{host="up"\} 3$/m, 'request counter per host');
like($out, qr/^lonc_host_dead\{host="down"\} 1$/m, 'dead gauge');
like($out, qr/^lonc_request_duration_seconds_bucket\{host="up",le="\+Inf"\} 3$/m, 'latency histogram');
like($out, qr/^lonc_request_duration_seconds_count\{host="up"\} 3$/m, 'histogram count');
like($out, qr/^lonc_build_info\{version="[\d.]+"\} 1$/m, 'build_info');
like($out, qr/^lonc_start_time_seconds (\d+)$/m, 'start time');
my ($started) = $out =~ /^lonc_start_time_seconds (\d+)$/m;
cmp_ok(abs(time - ($started // 0)), '<', 3600, 'start time is wall-clock seconds');
like($out, qr/^lonc_reloads_total 0$/m, 'no reload yet');
like($out, qr/^lonc_too_long_total\{host="up"\} 0$/m, 'too_long, once JSON only, is a metric');
like($out, qr/^lonc_client_gone_total\{host="up"\} \d+$/m, 'client_gone too');
like($out, qr/^lonc_idle_connections\{host="up"\} \d+$/m, 'idle connections');
like($out, qr/^lonc_max_connections\{host="up"\} \d+$/m, 'max_connections');
{
    # Every metric lonc exports is described in lonc-ctl(8).
    my $man = log_text("$FindBin::Bin/../../doc/lonc-ctl.8");
    my @names = $out =~ /^# TYPE (\S+) /mg;
    my @missing = grep { $man !~ /\b\Q$_\E\b/ } @names;
    is_deeply(\@missing, [], 'every metric is in lonc-ctl(8)');
    cmp_ok(scalar @names, '>=', 20, 'and there are many of them');
}

($rc, $out) = ctl('hosts');
like($out, qr/^up address=127\.0\.0\.1 port=\d+ ids=up aliases=upalias key_mode=insecure/m, 'hosts lists the table');
like($out, qr/^up .* sethost_mode=inline init_version="" key_id_order=remote_first version_string="0\.1\.0" tls_close_notify=required version_step=true sethost_step=true peer_version="testlond-1\.0"$/m,
    'with the protocol switches in force and the lond version seen');

($rc, $out) = ctl('reset', 'nosuchhost');
is($rc, 1, 'reset of an unknown host exits 1');
like($out, qr/^error: no host named 'nosuchhost'/, 'with a message');
# Three ways out of the dead state (backoff is 60 s, so only a reset
# ends it within this test): lonc-ctl reset, loncnew's reset_retries
# line on the host's own socket, and SIGUSR1.
sub down_state { my (undef, $o) = ctl('status'); return $o =~ /^down\s+(\S+)/m ? $1 : '' }
sub count_in_log { my ($re) = @_; my $n = () = log_text($lonc->{log}) =~ /$re/g; return $n }
# The n-th failure of down: con_lost, and dead again.
sub fail_down {
    my ($n) = @_;
    is(request("$dir/down", 'ping'), 'con_lost', "down fails ($n)");
    wait_for(sub { count_in_log(qr/host=down event=host_dead/) == $n }, 10, "dead ($n)");
    is(down_state(), 'dead', "down is dead ($n)");
}
# The n-th reset, by $how: logged, and the dead state is over.
sub reset_seen {
    my ($n, $how) = @_;
    wait_for(sub { count_in_log(qr/host=down event=retries_reset/) == $n
        && count_in_log(qr/host=down event=host_alive/) == $n }, 10, "$how applied");
    isnt(down_state(), 'dead', "$how: down is no longer dead");
}
is(down_state(), 'dead', 'down is dead before any reset');
($rc, $out) = ctl('reset', 'down');
is($out, "ok\n", 'reset down: ok');
reset_seen(1, 'lonc-ctl reset');

fail_down(2);
is(request("$dir/down", 'reset_retries'), 'ok', 'reset_retries on the host socket: ok');
reset_seen(2, 'reset_retries');

# SIGUSR1: a status line per host and the dead state cleared.
fail_down(3);
kill 'USR1', $lonc->{pid};
wait_for(sub { log_text($lonc->{log}) =~ /status summary hosts=2 dead_reset=1 / }, 10,
    'status summary with one dead host reset');
like(log_text($lonc->{log}), qr/status host=up state=connected connections=\d+ busy=0 idle=\d+ .*requests=3 .*p50_us=\d+ p99_us=\d+ .*key_mode=insecure peer_version="testlond-1.0"/, 'SIGUSR1 status line');
reset_seen(3, 'SIGUSR1');
($rc, $out) = ctl('frobnicate');
is($rc, 1, 'unknown command exits 1');

# Permissions: another user cannot talk to the admin socket.
SKIP: {
    skip 'needs root to try as another user', 1 if $> != 0;
    my $o = `su -s /bin/sh nobody -c '$ctl -s $admin status' 2>&1`;
    like($o, qr/cannot reach lonc .*Permission denied/, 'nobody is refused');
}
is(stop_lonc($lonc), 0, 'clean shutdown');
ok(!-e $admin, 'admin socket removed');
done_testing();

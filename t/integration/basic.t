#!/usr/bin/perl
# One request end to end, lazy connection, lonc-local commands, and an
# over-long request, against the real daemon and the test lond.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use LoncTest;

watchdog(120);
my $lond = start_lond();
my $cfg = write_config(
    max_request_bytes => 4096,
    hosts => [ { hostname => 'lond1', port => $lond->{port},
                 ids => ['basic-id'], aliases => ['testlond'] } ],
);
my $lonc = start_lonc($cfg);
my $sock = "$lonc->{socket_dir}/lond1";

ok(-S $sock, 'socket for the host exists');
ok(-S "$lonc->{socket_dir}/testlond", 'socket for the alias exists');
is(lond_stats($lond)->{connections}, 0, 'no connection to lond before the first request');

is(request($sock, 'ping'), 'pong', 'ping answered pong through lonc');
is(lond_stats($lond)->{connections}, 1, 'first request opened one connection');
is(lond_stats($lond)->{handshakes}, 1, 'and completed one handshake');
is(request($sock, 'echo:hello world'), 'hello world', 'echo relayed byte for byte');
is(request("$lonc->{socket_dir}/testlond", 'echo:via alias'), 'via alias', 'alias socket serves the same host');
# testlond answers whoami with its own host ID (testlond) until a sethost.
is(request($sock, 'whoami'), 'basic-id', 'sethost selected the host ID from ids');
is(request($sock, 'nosuchcommand'), 'unknown_cmd', "lond's own answers are relayed");
is(lond_stats($lond)->{connections}, 1, 'sequential requests reuse the pooled connection');

# Several requests on one client connection, sent at once (pipelined).
{
    my $s = unix_connect($sock) or die "connect: $!";
    print $s "echo:one\necho:two\necho:three\n";
    my @r = map { my $l = <$s>; chomp $l if defined $l; $l } 1 .. 3;
    is_deeply(\@r, [qw(one two three)], 'pipelined requests answered in order');
    print $s "echo:after\n";
    my $l = <$s>;
    chomp $l;
    is($l, 'after', 'a client may send its next request after its reply');
    close $s;
}

# Long request within the limit, and one past it.
my $big = 'x' x 4000;
is(request($sock, "echo:$big"), $big, 'request just under max_request_bytes is served');
is(request($sock, 'echo:' . ('y' x 5000)), 'error:request_too_long', 'over-long request is refused');
is(request($sock, 'echo:still alive'), 'still alive', 'daemon goes on after an over-long request');

# Large reply, streamed.
my $r = request($sock, 'bytes:1000000', 30);
is(length($r // ''), 1000000, 'a 1 MB reply arrives whole');
ok(($r // '') eq substr('abcdefghijklmnopqrstuvwxyz' x 38462, 0, 1000000),
    'with the right content, every byte');

# lonc-local commands are answered by lonc and never forwarded.
my $before = lond_stats($lond)->{requests};
is(request($sock, 'reset_retries'), 'ok', 'reset_retries answered ok');
is(request($sock, 'close_connection_exit'), 'ok', 'close_connection_exit answered ok');
is(request($sock, 'sethost:basic-id:reset_retries'), 'ok', 'a local command addressed to a host ID is still answered by lonc');
is(request($sock, 'sethost::encrypt:passwd:user:secret'), 'error:bad_sethost',
    'a sethost prefix without an ID is refused, not sent');
is(request($sock, 'sethost:a:sethost:b:encrypt:passwd:user:secret'), 'error:bad_sethost',
    'so is a second sethost prefix');
# Handshake commands would change the pooled connection for everyone.
is(request($sock, $_), 'error:handshake_command', "'$_' from a client is refused")
    for 'ekey', 'init', 'sethost:evil', 'sethost:basic-id:ekey';
is(lond_stats($lond)->{requests}, $before, 'local commands and refused lines did not reach lond');
wait_for(sub { lond_stats($lond)->{active} == 0 }, 10, 'connections closed');
is(lond_stats($lond)->{active}, 0, 'close_connection_exit dropped the connections');
is(request($sock, 'ping'), 'pong', 'a new connection is made on demand afterwards');
is(request($sock, 'sethost:evil'), 'error:handshake_command', 'a bare sethost is refused on a live connection too');
is(request($sock, 'whoami'), 'basic-id', 'and the pooled connection still speaks for its host ID');

# Threads are named; workers run under SCHED_BATCH (policy 3 in field 41
# of /proc/PID/task/TID/stat) unless batch_workers is false.
sub worker_policies {
    my ($pid) = @_;
    my @p;
    for my $task (glob("/proc/$pid/task/*")) {
        open my $c, '<', "$task/comm" or next;
        my $comm = <$c> // '';
        chomp $comm;
        next unless $comm =~ /^wrk:/;
        open my $st, '<', "$task/stat" or next;
        my ($rest) = (<$st> // '') =~ /\)\s+(.*)/s;
        push @p, (split ' ', $rest // '')[38];
    }
    return @p;
}
my @pol = worker_policies($lonc->{pid});
ok(@pol >= 1, 'worker threads are named wrk:<host>');
{
    my @names = map { log_text("$_/comm") } glob("/proc/$lonc->{pid}/task/*");
    chomp @names;
    ok((grep { /^acc:lond1$/ } @names) && (grep { /^mgr:lond1$/ } @names),
       'acceptor and manager threads carry the host too (cut to 15 characters)') or diag("@names");
}
is_deeply([ grep { $_ != 3 } @pol ], [], 'and run under SCHED_BATCH');

is(stop_lonc($lonc), 0, 'SIGTERM: lonc exits 0');
ok(!-e $sock, 'socket removed at exit');

{
    my $cfg2 = write_config(name => 'nobatch', socket_dir => tmp_dir() . '/nb',
        batch_workers => 'false',
        hosts => [ { hostname => 'lond1', port => $lond->{port} } ]);
    my $l2 = start_lonc($cfg2);
    is(request("$l2->{socket_dir}/lond1", 'ping'), 'pong', 'batch_workers: false serves too');
    my @p2 = worker_policies($l2->{pid});
    ok(@p2 >= 1 && !grep({ $_ != 0 } @p2), 'with its workers under the normal policy');
    is(stop_lonc($l2), 0, 'and stops cleanly');
}
done_testing();

#!/usr/bin/perl
# lonc and lond on two test hosts of our own: network namespaces joined
# by a veth pair (link-local addresses that exist only inside them).
# A slow link still works; a blackholed link (packets dropped, not
# refused) ends in con_lost by timeout, the host goes dead, and it
# recovers by itself once the link heals.  The kernel here has no netem
# qdisc, so delay/loss emulation is skipped (TAP skip) where missing.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use Time::HiRes qw(time);
use Cwd qw(abs_path);
use LoncTest;

watchdog(300);
my $tag = $$ % 100000;
my ($nsa, $nsb) = ("lonct-a$tag", "lonct-b$tag");
my ($va, $vb) = ("lca$tag", "lcb$tag");
my ($ipa, $ipb) = ('169.254.77.1', '169.254.77.2');

sub sh { system(@_) == 0 }
sub cleanup {
    system("ip netns del $nsa 2>/dev/null");
    system("ip netns del $nsb 2>/dev/null");
}
plan skip_all => 'needs root for network namespaces' if $> != 0;
plan skip_all => 'ip(8) not available' unless sh('ip -V >/dev/null 2>&1');
cleanup();
unless (sh("ip netns add $nsa 2>/dev/null") && sh("ip netns add $nsb 2>/dev/null")) {
    cleanup();
    plan skip_all => 'cannot create network namespaces here';
}
END { cleanup() }
$SIG{INT} = $SIG{TERM} = sub { cleanup(); exit 1 };

ok(sh("ip link add $va type veth peer name $vb")
   && sh("ip link set $va netns $nsa") && sh("ip link set $vb netns $nsb")
   && sh("ip -n $nsa addr add $ipa/24 dev $va") && sh("ip -n $nsb addr add $ipb/24 dev $vb")
   && sh("ip -n $nsa link set $va up") && sh("ip -n $nsb link set $vb up")
   && sh("ip -n $nsa link set lo up") && sh("ip -n $nsb link set lo up"),
   'two test hosts joined by a veth pair') or BAIL_OUT('netns setup failed');

# lond on host B (run through ip netns exec), lonc on host A.
my $build = abs_path(build_dir());
local $ENV{LONC_BUILD} = $build;
my $lond = start_lond(bind => $ipb, wrapper => [ 'ip', 'netns', 'exec', $nsb ]);
my $cfg = write_config(
    connect_timeout => 1,
    handshake_timeout => 2,
    transaction_timeout => 3,
    retry_attempts => 2,
    backoff_initial => 0.5,
    backoff_max => 1,
    hosts => [ { hostname => 'remote', address => $ipb, port => $lond->{port} } ],
);
my $lonc = start_lonc($cfg, wrapper => [ 'ip', 'netns', 'exec', $nsa ]);
my $sock = "$lonc->{socket_dir}/remote";
my $log = sub { log_text($lonc->{log}) };

is(request($sock, 'ping'), 'pong', 'request crosses the veth link');
is(request($sock, 'echo:' . ('z' x 1000)), 'z' x 1000, 'payload crosses intact');

SKIP: {
    skip 'no netem qdisc in this kernel (delay/loss emulation)', 1
        unless sh("ip netns exec $nsb tc qdisc add dev $vb root netem delay 50ms loss 1% 2>/dev/null");
    is(request($sock, 'echo:netem', 20), 'netem', 'request through netem delay and loss');
    sh("ip netns exec $nsb tc qdisc del dev $vb root");
}

# A slow link: token bucket at 256 kbit/s (12 kB take about 0.4 s).
ok(sh("ip netns exec $nsb tc qdisc add dev $vb root tbf rate 256kbit burst 16kbit latency 2s"),
   'slow link set up (tbf 256 kbit/s)');
my $r = request($sock, 'bytes:12000', 20);
is(length($r // ''), 12000, 'a 12 kB reply arrives over the slow link');
sh("ip netns exec $nsb tc qdisc del dev $vb root");

# Blackhole: every packet from B is dropped.
ok(sh("ip netns exec $nsb tc qdisc add dev $vb root pfifo limit 0"), 'link blackholed');
my $t0 = time;
is(request($sock, 'ping', 30), 'con_lost', 'blackholed pooled connection: con_lost');
cmp_ok(time - $t0, '<', 15, 'by transaction_timeout, not a hang');
like($log->(), qr/reason=transaction_timeout/, 'logged as a transaction timeout');
is(request($sock, 'ping', 30), 'con_lost', 'new connection attempts time out') for 1 .. 2;
like($log->(), qr/event=connect_failed kind=timeout/, 'counted as timeouts, not refusals');
ok(eval { wait_for(sub { $log->() =~ /host=remote event=host_dead/ }, 40, 'dead'); 1 },
    'the host is declared dead') or diag $log->();
# Refused at once (lonc_rejected_total), not queued for a connection.
my $admin = $cfg =~ s/\.yaml$/-admin.sock/r;
my $rejected = sub {
    my $m = `@{[build_dir()]}/lonc-ctl -s $admin metrics`;
    return $m =~ /^lonc_rejected_total\{host="remote"\} (\d+)$/m ? $1 : -1;
};
my $rej0 = $rejected->();
is(request($sock, 'ping', 30), 'con_lost', 'dead host: con_lost');
is($rejected->(), $rej0 + 1, 'at once, without touching the network (counted as rejected)');

# Heal the link: the probe after the backoff finds the host again.
ok(sh("ip netns exec $nsb tc qdisc del dev $vb root"), 'link healed');
ok(eval { wait_for(sub { $log->() =~ /host=remote event=host_alive/ }, 40, 'recovery'); 1 },
    'and found again after its backoff') or diag $log->();
is(request($sock, 'ping'), 'pong', 'recovered by itself');
is(stop_lonc($lonc), 0, 'clean shutdown');
done_testing();

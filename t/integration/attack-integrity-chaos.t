#!/usr/bin/perl
# Attack: reply integrity under concurrency and churn.  Six client
# processes ask for 20 s, one-shot, keep-alive (three requests in turn)
# and pipelined (three written at once), a mix of small, large and
# enc: replies (reply_buffer at its minimum, 4 KiB, so nearly every
# reply goes through the spool), unique echo:/encrypt:echo: tokens, and
# replies lond cuts (resetmid, closemid, encmid).  Meanwhile at random:
# the thread lond killed and restarted on its port, the children of the
# forking lond killed mid-reply, close_after_reply switched on and off,
# reloads that change max_connections, drop and add an alias, remove and
# add a host; SIGUSR1; close_connection_exit; idle connections pruned
# (idle_timeout 0.3 s) under the requests' feet.
# Every client that connected must read, for every line it wrote, the
# whole reply it asked for or exactly con_lost\n: never a prefix, never
# another client's reply, never nothing.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use IO::Socket::UNIX;
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(time sleep);
use LoncTest;

watchdog(170);
$SIG{PIPE} = 'IGNORE';
my $SECS = 20;
my $L1 = start_lond();
my $L2 = start_lond(args => ['--fork']);
my ($P1, $P2) = ($L1->{port}, $L2->{port});
my $sdir = tmp_dir() . '/s-chaos';
my $spool = tmp_dir() . '/spool-chaos';
my %base = (
    name => 'chaos', socket_dir => $sdir, spool_dir => $spool,
    reply_buffer => 4096, max_reply_bytes => '4M',
    connect_timeout => 1, handshake_timeout => 1.5,
    transaction_timeout => 4, max_transaction_time => 8,
    queue_timeout => 6, client_timeout => 5, client_write_timeout => 5,
    idle_timeout => 0.3, max_connections => 3, max_queue => 32,
    backoff_initial => 0.2, backoff_max => 1, retry_attempts => 3,
);
sub hosts_for {
    my (%v) = @_;
    my @h = ({ hostname => 'hA', port => $P1, max_connections => $v{mc} // 3,
               ($v{alias} // 1) ? (aliases => ['hA-a']) : () },
             { hostname => 'hB', port => $P2 });
    push @h, { hostname => 'hC', port => $P1 } if $v{hc} // 1;
    return \@h;
}
my $cfg = write_config(%base, hosts => hosts_for());
my $lonc = start_lonc($cfg);
my $log = sub { log_text($lonc->{log}) };
is(request("$sdir/$_", 'ping'), 'pong', "$_ serves") for qw(hA hA-a hB hC);

my $PAT = pattern(1_100_000);
my @SIZES = (1, 100, 4095, 4096, 4097, 65536, 200_000, 1_000_000);
# [request, whole reply or undef for con_lost only]
sub gen {
    my ($tag) = @_;
    my $r = rand;
    my $n = $SIZES[ int rand @SIZES ];
    return [ "echo:$tag", $tag ] if $r < 0.25;
    return [ "encrypt:echo:$tag", $tag ] if $r < 0.35;
    return [ "bytes:$n", substr($PAT, 0, $n) ] if $r < 0.55;
    return [ "encbytes:$n", substr($PAT, 0, $n) ] if $r < 0.70;
    return [ "steady:$n:300", substr($PAT, 0, $n) ] if $r < 0.75;
    return [ "resetmid:$n", undef ] if $r < 0.82;
    return [ "closemid:$n", undef ] if $r < 0.89;
    my $wire = length("enc:$n:") + 16 * (int($n / 8) + 1);
    return [ "encmid:$n:" . (1 + int rand $wire), undef ];
}

sub describe {
    my ($got) = @_;
    return 'nothing' unless defined $got;
    return length($got) > 60 ? length($got) . ' bytes: ' . substr($got, 0, 40) . '...' : $got;
}

my $out = tmp_dir() . '/chaos-out';
mkdir $out;
my @names = qw(hA hA-a hB hC);
sub client {
    my ($id) = @_;
    srand($$ ^ time);
    my %n = map { $_ => 0 } qw(lines whole lost bad noconnect);
    my @bad;
    my $end = time + $SECS;
    for (my $i = 0; time < $end; $i++) {
        my $name = $names[ int rand @names ];
        my $s = IO::Socket::UNIX->new(Type => SOCK_STREAM(), Peer => "$sdir/$name");
        if (!$s) { $n{noconnect}++; sleep 0.01; next }
        my $mode = rand;
        my $k = $mode < 0.5 ? 1 : 3;
        my @reqs = map { gen("c$id-$i-$_-" . int(rand 1e9)) } 1 .. $k;
        my $buf = '';
        my $pipelined = $k > 1 && $mode > 0.75;
        if ($pipelined) {
            syswrite($s, join('', map { "$_->[0]\n" } @reqs));
        }
        for my $q (@reqs) {
            if (!$pipelined && !defined syswrite($s, "$q->[0]\n")) {
                push @bad, "$name: write of $q->[0] failed: $!";
                $n{bad}++;
                last;
            }
            $n{lines}++;
            my ($got, $how) = read_buffered_line($s, \$buf, 30);
            if (defined $got && $got eq "con_lost\n") {
                $n{lost}++;
            } elsif (defined $got && defined $q->[1] && $got eq "$q->[1]\n") {
                $n{whole}++;
            } else {
                $n{bad}++;
                push @bad, sprintf('%s %s: %s got %s (%s)', $name,
                    $k == 1 ? 'oneshot' : $pipelined ? 'pipelined' : 'keepalive',
                    length $q->[0] > 60 ? substr($q->[0], 0, 60) : $q->[0], describe($got), $how);
                last;
            }
        }
        close $s;
    }
    open my $fh, '>', "$out/$id" or die;
    print $fh join(' ', map { "$_=$n{$_}" } sort keys %n), "\n";
    print $fh "BAD $_\n" for @bad[0 .. ($#bad < 9 ? $#bad : 9)];
    close $fh;
}

my @pids;
for my $id (1 .. 6) {
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        $SIG{ALRM} = 'DEFAULT';
        client($id);
        POSIX::_exit(0);
    }
    push @pids, $pid;
}

# ---- the chaos ------------------------------------------------------------
my %chaos;
my $reloads = 0;
my %v = (mc => 3, alias => 1, hc => 1);
sub reload_now {
    write_config(%base, hosts => hosts_for(%v));
    $reloads++;
    kill 'HUP', $lonc->{pid};
    wait_for(sub { my @m = $log->() =~ /event=reload(?:_failed)? /g; @m >= $reloads }, 20, "reload $reloads");
}
sub fork_children {
    my ($pid) = @_;
    my $c = log_text("/proc/$pid/task/$pid/children");
    return grep { /^\d+$/ } split ' ', $c;
}
my $end = time + $SECS - 2;
while (time < $end) {
    my $r = rand;
    if ($r < 0.35) {
        my $what = (qw(mc alias hc))[ int rand 3 ];
        $v{mc} = 1 + int rand 4 if $what eq 'mc';
        $v{alias} = !$v{alias} if $what eq 'alias';
        $v{hc} = !$v{hc} if $what eq 'hc';
        $chaos{"reload_$what"}++;
        reload_now();
    } elsif ($r < 0.5) {
        # The thread lond dies (mid-reply for whoever it serves) and
        # comes back on its port.
        kill_wait($L1->{pid}, 'KILL', 10);
        sleep rand 0.5;
        my $back;
        for (1 .. 10) { $back = eval { start_lond(port => $P1) } and last; sleep 0.3 }
        die "L1 did not come back on port $P1\n" unless $back;
        $L1 = $back;
        $chaos{kill_L1}++;
    } elsif ($r < 0.65) {
        my @c = fork_children($L2->{pid});
        kill 'KILL', $c[ int rand @c ] if @c;
        $chaos{kill_L2_child}++;
    } elsif ($r < 0.75) {
        lond_ctl($L1, 'fault=close_after_reply');
        sleep 0.5;
        lond_ctl($L1, 'fault=none');
        $chaos{close_after_reply}++;
    } elsif ($r < 0.85) {
        kill 'USR1', $lonc->{pid};
        $chaos{usr1}++;
    } else {
        my $n = $names[ int rand @names ];
        request("$sdir/$n", 'close_connection_exit', 5);
        $chaos{close_connection_exit}++;
    }
    sleep 0.2 + rand 0.4;
}
waitpid $_, 0 for @pids;
diag('chaos: ' . join(' ', map { "$_=$chaos{$_}" } sort keys %chaos));

my (%sum, @bad);
for my $id (1 .. 6) {
    my $t = log_text("$out/$id");
    ok($t ne '', "client $id reported");
    my ($line) = split /\n/, $t;
    $sum{$1} += $2 while ($line // '') =~ /(\w+)=(\d+)/g;
    push @bad, $t =~ /^BAD (.*)$/mg;
}
diag('clients: ' . join(' ', map { "$_=" . ($sum{$_} // 0) } sort keys %sum));
cmp_ok($sum{lines} // 0, '>', 200, 'the clients asked many times');
cmp_ok($sum{whole} // 0, '>', 100, 'many whole replies');
is($sum{bad} // 0, 0, 'every line got its whole reply or exactly con_lost')
    or diag(join "\n", @bad);

# Everything heals: all names back, each host serves, nothing spooled.
%v = (mc => 3, alias => 1, hc => 1);
reload_now();
for my $n (@names) {
    my $ok = 0;
    for (1 .. 40) { $ok = 1, last if (request("$sdir/$n", 'ping', 10) // '') eq 'pong'; sleep 0.25 }
    ok($ok, "$n serves after the chaos");
}
ok(kill(0, $lonc->{pid}) && waitpid($lonc->{pid}, WNOHANG) == 0, 'lonc is alive');
opendir my $d, $spool or die;
is_deeply([ grep { !/^\.\.?$/ } readdir $d ], [], 'nothing left in spool_dir');
is(stop_lonc($lonc, 30), 0, 'clean shutdown');
done_testing();

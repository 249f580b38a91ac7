#!/usr/bin/perl
# Attack: reload storms and SIGTERM at awkward moments.
#  1. 150 reloads, 50 ms apart, each changing the host (max_connections,
#     its alias there or not), while four clients ask slow and spooled
#     requests through the host and the alias: every client that
#     connected gets its whole reply or con_lost; the threads and
#     descriptors of the replaced hosts are all given back.
#  2. SIGTERM to a stopped lonc with 30 clients in the listen backlog,
#     and with 10 clients half-way through their line (the rest written
#     after the SIGTERM): each gets an answer (its reply or con_lost),
#     and lonc exits 0.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(time sleep);
use LoncTest;

watchdog(150);
$SIG{PIPE} = 'IGNORE';
my $lond = start_lond();

# ---- 1. a reload storm -------------------------------------------------------
{
    my $sdir = tmp_dir() . '/s-storm';
    my %base = (name => 'storm', socket_dir => $sdir, reply_buffer => 4096, idle_timeout => 0.5);
    my $host = sub { { hostname => 'h', port => $lond->{port}, @_ } };
    my $lonc = start_lonc(write_config(%base, hosts => [ $host->(aliases => ['h-a']) ]));
    is(request("$sdir/h", 'ping'), 'pong', 'lonc serves');
    my $f0 = proc_figures($lonc->{pid});
    my $out = tmp_dir() . '/storm';
    mkdir $out;
    my $PAT = pattern(200_000);
    my @pids;
    for my $c (1 .. 4) {
        my $pid = fork // die "fork: $!";
        if ($pid == 0) {
            $SIG{ALRM} = 'DEFAULT';
            my %n = (ok => 0, lost => 0, noconnect => 0, bad => 0);
            my @bad;
            my $end = time + 9;
            for (my $i = 0; time < $end; $i++) {
                my $req = $i % 3 ? "delay:300:c$c-$i" : 'steady:200000:1000';
                my $want = $i % 3 ? "c$c-$i\n" : "$PAT\n";
                my ($got, $how) = request_bytes("$sdir/" . ($i % 2 ? 'h' : 'h-a'), $req, 30);
                if (!defined $got) { $n{noconnect}++; sleep 0.01; next }
                if ($got eq $want) { $n{ok}++ }
                elsif ($got eq "con_lost\n") { $n{lost}++ }
                else { $n{bad}++; push @bad, "$req: " . describe_bytes($got) . " ($how)" }
            }
            open my $fh, '>', "$out/$c" or die;
            print $fh join(' ', map { "$_=$n{$_}" } sort keys %n), "\n", map { "BAD $_\n" } @bad;
            close $fh;
            POSIX::_exit(0);
        }
        push @pids, $pid;
    }
    my $max_threads = 0;
    for my $i (1 .. 150) {
        write_config(%base, hosts => [ $host->(max_connections => 1 + $i % 5,
            $i % 2 ? () : (aliases => ['h-a'])) ]);
        kill 'HUP', $lonc->{pid};
        sleep 0.05;
        my $f = proc_figures($lonc->{pid});
        $max_threads = $f->{threads} if $f && $f->{threads} > $max_threads;
    }
    write_config(%base, hosts => [ $host->(aliases => ['h-a']) ]);
    kill 'HUP', $lonc->{pid};
    waitpid $_, 0 for @pids;
    my (%sum, @bad);
    for my $c (1 .. 4) {
        my $t = log_text("$out/$c");
        my ($l) = split /\n/, $t;
        $sum{$1} += $2 while ($l // '') =~ /(\w+)=(\d+)/g;
        push @bad, $t =~ /^BAD (.*)$/mg;
    }
    diag('reload storm: ' . join(' ', map { "$_=$sum{$_}" } sort keys %sum) . " threads up to $max_threads");
    cmp_ok($sum{ok}, '>', 10, 'many requests served during the storm');
    is($sum{bad}, 0, 'every client that connected: its whole reply or con_lost') or diag(join "\n", @bad);
    # The replaced hosts are gone: threads and descriptors back.
    request("$sdir/h", 'close_connection_exit');
    my $settled = eval {
        wait_for(sub { my $f = proc_figures($lonc->{pid});
            $f && $f->{threads} <= $f0->{threads} && $f->{fds} <= $f0->{fds} }, 30, 'settled');
    };
    my $f1 = proc_figures($lonc->{pid});
    ok($settled, "threads and descriptors back (threads $f0->{threads} -> $f1->{threads}, fds $f0->{fds} -> $f1->{fds})");
    is(request("$sdir/h-a", 'ping'), 'pong', 'the alias serves after the storm');
    is(stop_lonc($lonc, 30), 0, 'clean shutdown');
}

# ---- 2. SIGTERM with clients in the backlog and half-way through a line -----
for my $case (qw(backlog halfline)) {
    my $lonc = start_lonc(write_config(name => $case, socket_dir => tmp_dir() . "/s-$case",
        shutdown_timeout => 3, client_timeout => 10,
        hosts => [ { hostname => 'h', port => $lond->{port} } ]));
    my $sock = "$lonc->{socket_dir}/h";
    is(request($sock, 'ping'), 'pong', "$case: lonc serves");
    my @c;
    kill 'STOP', $lonc->{pid};
    if ($case eq 'backlog') {
        for my $i (1 .. 30) {
            my $c = unix_connect($sock) or last;
            syswrite($c, "delay:200:b$i\n");
            push @c, [ $c, "b$i" ];
        }
    } else {
        for my $i (1 .. 10) {
            my $c = unix_connect($sock) or last;
            syswrite($c, "echo:half$i");
            push @c, [ $c, "half$i" ];
        }
    }
    kill 'TERM', $lonc->{pid};
    kill 'CONT', $lonc->{pid};
    if ($case eq 'halfline') {
        sleep 0.3;
        syswrite($_->[0], "\n") for @c;
    }
    my %h;
    for my $c (@c) {
        my ($b, $how) = read_reply_bytes($c->[0], 20);
        my $k = !defined $b || $b eq '' ? "nothing($how)" : $b eq "con_lost\n" ? 'lost'
            : $b eq "$c->[1]\n" ? 'own' : 'bad:' . describe_bytes($b);
        $h{$k}++;
        close $c->[0];
    }
    my $what = join ' ', map { "$_=$h{$_}" } sort keys %h;
    is(($h{own} // 0) + ($h{lost} // 0), scalar @c, "SIGTERM, " . scalar(@c) . " clients $case: each answered ($what)");
    is(wait_lonc($lonc, 30), 0, "$case: lonc exits 0");
}

done_testing();

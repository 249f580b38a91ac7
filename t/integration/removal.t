#!/usr/bin/perl
# A host removed by a reload answers every client it has: one still in
# the listen backlog, one half-way through writing its line, and a
# keep-alive client's next request each get an answer (con_lost at
# worst), never a reset or an end of file without a reply.  Then one-shot
# clients hammer a host while it is removed and added back 20 times:
# each that connected gets its own reply or con_lost.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use IO::Socket::UNIX;
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(time sleep);
use LoncTest;

watchdog(240);
$SIG{PIPE} = 'IGNORE';   # a reset connection is a failed check, not a dead test
my $lond = start_lond();
my %base = (name => 'removal', client_timeout => 20);
my @both = ({ hostname => 'stay', port => $lond->{port} },
            { hostname => 'go', port => $lond->{port} });
my @one = ($both[0]);
my $cfg = write_config(%base, hosts => \@both);
my $lonc = start_lonc($cfg);
my $dir = $lonc->{socket_dir};
my $log = sub { log_text($lonc->{log}) };
my $reloads = 0;
sub reload_to {
    my ($hosts) = @_;
    write_config(%base, hosts => $hosts);
    $reloads++;
    kill 'HUP', $lonc->{pid};
    wait_for(sub { my @m = $log->() =~ /event=reload /g; @m >= $reloads }, 20, "reload $reloads");
}

# Read one line (with a bound); undef on EOF or error before a newline.
sub read_line {
    my ($s, $secs) = @_;
    my $line;
    local $SIG{ALRM} = sub { die "read timeout\n" };
    my $left = alarm($secs // 20);
    eval { $line = <$s> };
    alarm 0;
    alarm $left if $left;
    return defined $line && $line =~ /\n\z/ ? $line : undef;
}

is(request("$dir/go", 'ping'), 'pong', 'go serves before the removal');

# Keep-alive: one request served, the host removed, the next line.
my $ka = unix_connect("$dir/go") or die "connect: $!";
print $ka "echo:ka1\n";
is(read_line($ka), "ka1\n", 'keep-alive client: first reply');
# Half-written: part of a line before the removal, the rest after it.
my $half = unix_connect("$dir/go") or die "connect: $!";
$half->autoflush(1);
print $half 'echo:ha';
sleep 0.2;
reload_to(\@one);
ok(!-e "$dir/go", 'the removed host\'s socket is gone');
ok(!unix_connect("$dir/go"), 'and no new client can connect');
print $half "lf\n";
is(read_line($half), "con_lost\n", 'the half-written line is answered con_lost');
print $ka "echo:ka2\n";
is(read_line($ka), "con_lost\n", 'the keep-alive client\'s next line is answered con_lost');
close $half;
close $ka;
# The retire thread ends once the last of its clients is answered.
ok(eval { wait_for(sub { $log->() =~ /host=go event=retired/ }, 20, 'retired'); 1 },
    'the removed host retired') or diag $log->();
is(request("$dir/stay", 'ping'), 'pong', 'the other host serves on');

# Clients in the listen backlog: lonc is stopped while they connect and
# write; the removal is pending when it continues.
reload_to(\@both);
is(request("$dir/go", 'ping'), 'pong', 'go is back');
kill 'STOP', $lonc->{pid};
my @backlog;
for my $i (1 .. 20) {
    my $s = unix_connect("$dir/go") or last;
    print $s "echo:bl$i\n";
    push @backlog, [ $i, $s ];
}
is(scalar @backlog, 20, '20 clients queued in the backlog of a stopped lonc');
write_config(%base, hosts => \@one);
$reloads++;
kill 'HUP', $lonc->{pid};
kill 'CONT', $lonc->{pid};
my ($answered, $own, $lost) = (0, 0, 0);
for my $b (@backlog) {
    my ($i, $s) = @$b;
    my $r = read_line($s);
    next unless defined $r;
    $answered++;
    $own++ if $r eq "bl$i\n";
    $lost++ if $r eq "con_lost\n";
    close $s;
}
wait_for(sub { my @m = $log->() =~ /event=reload /g; @m >= $reloads }, 20, "reload $reloads");
is($answered, 20, "every client in the backlog got an answer ($own own, $lost con_lost)");
is($own + $lost, 20, 'each its own reply or con_lost');

# Hammering: clients connect and ask in a loop while the host is removed
# and added back; a client that connected gets a reply, its own or
# con_lost (not being able to connect at all is fine).
reload_to(\@both);
my $clients = 6;
my @pids;
my $out = tmp_dir() . '/hammer';
mkdir $out;
for my $c (1 .. $clients) {
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        my %n = (connected => 0, own => 0, lost => 0, bad => 0);
        my $end = time + 60;
        for (my $i = 0; time < $end && !-e "$out/stop"; $i++) {
            my $s = IO::Socket::UNIX->new(Type => SOCK_STREAM(), Peer => "$dir/go")
                or do { sleep 0.002; next };
            $n{connected}++;
            my $ok = print $s "echo:c$c-$i\n";
            my $r = $ok ? read_line($s, 20) : undef;
            if (defined $r && $r eq "c$c-$i\n") { $n{own}++ }
            elsif (defined $r && $r eq "con_lost\n") { $n{lost}++ }
            else { $n{bad}++ }
            close $s;
        }
        open my $fh, '>', "$out/$c" or die;
        print $fh join(' ', map { "$_=$n{$_}" } sort keys %n), "\n";
        close $fh;
        POSIX::_exit(0);   # not exit: the harness's END would kill lonc
    }
    push @pids, $pid;
}
for my $round (1 .. 20) {
    reload_to(\@one);
    sleep 0.05;
    reload_to(\@both);
    sleep 0.05;
}
open my $stop, '>', "$out/stop" or die;
close $stop;
waitpid $_, 0 for @pids;
my %sum;
for my $c (1 .. $clients) {
    open my $fh, '<', "$out/$c" or die "no result from client $c";
    my $l = <$fh>;
    $sum{$1} += $2 while $l =~ /(\w+)=(\d+)/g;
}
diag("hammer: " . join(' ', map { "$_=$sum{$_}" } sort keys %sum));
cmp_ok($sum{connected}, '>', 100, 'the clients connected many times');
is($sum{bad}, 0, 'no client that connected was left without its reply or con_lost');
cmp_ok($sum{own}, '>', 0, 'most got their own reply');
is(request("$dir/go", 'ping'), 'pong', 'go serves after the hammering');
is(request("$dir/stay", 'ping'), 'pong', 'stay too');
is(stop_lonc($lonc), 0, 'clean shutdown');
done_testing();

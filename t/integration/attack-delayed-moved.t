#!/usr/bin/perl
# Attack: delayed transactions whose host ID a reload takes away from the
# host that is replaying them.  Two test londs (each holds its own
# record: ledger), every line held 100 ms at lond so that a replay of 30
# files takes about 3 s and a reload lands inside it.
#  1. The ID moves: host A (lond L1) replays files for xid when a reload
#     gives xid to host B (lond L2) and yid to A.  Every file must reach
#     a lond exactly once in all; and once the reload is done, the files
#     for xid belong to B: at most the one in flight may still go to L1.
#  2. The host is removed: host A (L1) replays xid files when a reload
#     removes A (nobody serves xid any more).  Once the reload is done,
#     at most the one in flight may still go to L1; the rest stay.
# Each file is counted at the londs (ctl:recorded=) against the files.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use Time::HiRes qw(time sleep);
use LoncTest;

watchdog(150);
my $L1 = start_lond();
my $L2 = start_lond();
my $N = 30;

sub put {
    my ($ddir, $t, $id, $line) = @_;
    my $f = "$ddir/$t.1.4242.cmd.$id";
    open my $fh, '>', $f or die "$f: $!";
    print $fh "$line\n";
    close $fh;
    utime(time - 10, time - 10, $f) or die "utime $f: $!";
    return $f;
}
sub rec { lond_ctl($_[0], "recorded=$_[1]") // 0 }
sub sum_rec {
    my ($lond, $tag) = @_;
    my $n = 0;
    $n += rec($lond, "$tag$_") for 1 .. $N;
    return $n;
}
sub delayed_lines {
    my ($log) = @_;
    return join "\n", grep { /delayed|retired|event=reload/ } split /\n/, $log;
}

lond_ctl($_, 'delay=100') for $L1, $L2;

# ---- 1. xid moves from A to B in the middle of A's replay ---------------
{
    my $sdir = tmp_dir() . '/s-moved';
    my %base = (name => 'moved', socket_dir => $sdir, delayed_scan_interval => 0.3);
    my $ddir = "$sdir/delayed";
    system('mkdir', '-p', $ddir) == 0 or die;
    my @files = map { put($ddir, 1700000000 + $_, 'xid', "record:mv$_") } 1 .. $N;
    my $cfg = write_config(%base, hosts => [
        { hostname => 'A', port => $L1->{port}, ids => ['xid'] },
        { hostname => 'B', port => $L2->{port}, ids => ['yid'] } ]);
    my $lonc = start_lonc($cfg);
    wait_for(sub { rec($L1, 'mv2') >= 1 }, 30, 'the replay under way at L1');
    write_config(%base, hosts => [
        { hostname => 'A', port => $L1->{port}, ids => ['yid'] },
        { hostname => 'B', port => $L2->{port}, ids => ['xid'] } ]);
    kill 'HUP', $lonc->{pid};
    wait_for(sub { log_text($lonc->{log}) =~ /event=reload added=- removed=- changed=A,B/ },
        20, 'the reload');
    my $at_reload = sum_rec($L1, 'mv');
    wait_for(sub { !grep { -e $_ } @files }, 60, 'every file delivered and deleted');
    my @total = map { rec($L1, "mv$_") + rec($L2, "mv$_") } 1 .. $N;
    is_deeply(\@total, [ (1) x $N ], "each of the $N files reached a lond exactly once");
    my $late = sum_rec($L1, 'mv') - $at_reload;
    {
        cmp_ok($late, '<=', 1,
            'after the reload gave xid to B, at most the file in flight still went to L1')
            or diag("L1 got $at_reload files before the reload and $late after it; L2 got "
                . sum_rec($L2, 'mv') . "\n" . delayed_lines(log_text($lonc->{log})));
    }
    is(request("$sdir/B", 'ping'), 'pong', 'B serves');
    is(stop_lonc($lonc), 0, 'clean shutdown');
}

# ---- 2. A is removed in the middle of its replay -------------------------
{
    lond_ctl($_, 'reset') for $L1, $L2;
    my $sdir = tmp_dir() . '/s-removed';
    my %base = (name => 'removed', socket_dir => $sdir, delayed_scan_interval => 0.3);
    my $ddir = "$sdir/delayed";
    system('mkdir', '-p', $ddir) == 0 or die;
    my @files = map { put($ddir, 1700000000 + $_, 'xid', "record:rm$_") } 1 .. $N;
    my $cfg = write_config(%base, hosts => [
        { hostname => 'A', port => $L1->{port}, ids => ['xid'] },
        { hostname => 'B', port => $L2->{port}, ids => ['yid'] } ]);
    my $lonc = start_lonc($cfg);
    wait_for(sub { rec($L1, 'rm2') >= 1 }, 30, 'the replay under way at L1');
    write_config(%base, hosts => [ { hostname => 'B', port => $L2->{port}, ids => ['yid'] } ]);
    kill 'HUP', $lonc->{pid};
    wait_for(sub { log_text($lonc->{log}) =~ /event=reload added=- removed=A / }, 20, 'the reload');
    my $at_reload = sum_rec($L1, 'rm');
    # Give a retiring host all the time it would need to go through the
    # rest (30 files at 100 ms each, with a margin), then count.
    wait_for(sub { log_text($lonc->{log}) =~ /host=A event=retired/ }, 30, 'A retired');
    sleep 1;
    my $late = sum_rec($L1, 'rm') - $at_reload;
    my $left = grep { -e $_ } @files;
    my @counts = map { rec($L1, "rm$_") } 1 .. $N;
    ok(!grep({ $_ > 1 } @counts), 'no file reached L1 twice');
    is($left + sum_rec($L1, 'rm'), $N, 'every file is either still there or was delivered once');
    {
        cmp_ok($late, '<=', 1, 'after the reload removed A, at most the file in flight still went to its lond')
            or diag("L1 got $at_reload files before the reload and $late after it; $left files left\n"
                . delayed_lines(log_text($lonc->{log})));
    }
    is(stop_lonc($lonc), 0, 'clean shutdown');
}

done_testing();

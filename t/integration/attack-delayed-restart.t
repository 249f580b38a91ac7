#!/usr/bin/perl
# Attack: delayed transactions exactly once across restarts and a second
# lonc.
#  1. A slow replay (every line held 100 ms at lond) while a writer adds
#     files the whole time (as lonnet would), lonc is stopped with
#     SIGTERM in the middle of the replay and started again four times,
#     with reloads (a changed host, an unchanged one) in between: every
#     file reaches lond exactly once, with one S: record each.
#  2. A file lonc cannot delete (root's, in a sticky delayed/ as in
#     delayed-once.t; root plays the daemon's user): sent once, set
#     aside, and still not sent again after a restart of lonc.
#  3. A second lonc on the same socket_dir (another pid file, another
#     host name, the same host ID): it must be refused, or the two must
#     never send one file twice.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(time sleep);
use LoncTest;

watchdog(170);
my $lond = start_lond();
my $dir = tmp_dir();

sub put {
    my ($ddir, $t, $count, $id, $line) = @_;
    my $f = "$ddir/$t.$count.4242.cmd.$id";
    open my $fh, '>', "$f" or die "$f: $!";
    print $fh "$line\n";
    close $fh;
    utime(time - 10, time - 10, $f) or die "utime $f: $!";
    return $f;
}
sub rec { lond_ctl($lond, "recorded=$_[0]") // 0 }

# ---- 1. SIGTERM and restart in the middle of a replay, files arriving ----
{
    my $sdir = "$dir/s-restart";
    my $ddir = "$sdir/delayed";
    system('mkdir', '-p', $ddir) == 0 or die;
    my %base = (name => 'restart', socket_dir => $sdir, delayed_scan_interval => 0.2,
        shutdown_timeout => 10, max_connections => 2);
    my $host = sub { { hostname => 'r', port => $lond->{port}, ids => ['rid'], @_ } };
    my $cfg = write_config(%base, hosts => [ $host->() ]);
    lond_ctl($lond, 'delay=100');
    my @tokens = map { "first$_" } 1 .. 30;
    put($ddir, 1700000000 + $_, 1, 'rid', "record:first$_") for 1 .. 30;

    # The writer: a file every 150 ms for 10 s, each with its own token
    # (a test lond counts up to 128 tokens).
    my $writer = fork // die "fork: $!";
    if ($writer == 0) {
        my $end = time + 10;
        my $i = 0;
        while (time < $end) {
            $i++;
            put($ddir, 1700001000 + $i, 1, 'rid', "record:late$i");
            sleep 0.15;
        }
        open my $fh, '>', "$dir/writer.count" or die;
        print $fh "$i\n";
        close $fh;
        POSIX::_exit(0);
    }
    my $lonc;
    for my $round (1 .. 4) {
        $lonc = start_lonc($cfg);
        my $before = lond_stats($lond)->{requests};
        wait_for(sub { lond_stats($lond)->{requests} >= $before + 3 }, 30, "replay under way ($round)");
        if ($round == 2) {
            # A changed host (retires, its successor claims after it).
            $cfg = write_config(%base, max_connections => 3, hosts => [ $host->() ]);
            kill 'HUP', $lonc->{pid};
            wait_for(sub { log_text($lonc->{log}) =~ /event=reload / }, 20, 'reload');
        } elsif ($round == 3) {
            kill 'HUP', $lonc->{pid};    # unchanged
            wait_for(sub { log_text($lonc->{log}) =~ /event=reload / }, 20, 'reload');
        }
        sleep 0.3 + rand(0.5);
        is(stop_lonc($lonc, 30), 0, "round $round: SIGTERM in the middle of the replay, exit 0");
    }
    waitpid $writer, 0;
    $lonc = start_lonc($cfg);
    my $files = sub { opendir my $d, $ddir or return (); grep { !/^\./ } readdir $d };
    wait_for(sub { !$files->() }, 60, 'every file delivered and deleted');
    is(stop_lonc($lonc, 30), 0, 'last round: clean shutdown');
    my $perm = log_text("$dir/lonnet.perm.log");
    my %s;
    $s{$1}++ while $perm =~ /:S:rid:record:(\w+):/g;
    my ($n_late) = log_text("$dir/writer.count") =~ /^(\d+)/;
    $n_late //= 0;
    cmp_ok($n_late, '>', 20, "the writer's files were delivered ($n_late)");
    push @tokens, map { "late$_" } 1 .. $n_late;
    my @bad = grep { rec($_) != 1 } @tokens;
    is(scalar @bad, 0, scalar(@tokens) . ' files, each recorded exactly once at lond')
        or diag('not once: ' . join(' ', map { "$_=" . rec($_) } @bad[0 .. ($#bad < 20 ? $#bad : 19)]));
    my @bad_s = grep { ($s{$_} // 0) != 1 } @tokens;
    is(scalar @bad_s, 0, 'and one S: record each')
        or diag('S: records not once: ' . join(' ', map { "$_=" . ($s{$_} // 0) } @bad_s[0 .. ($#bad_s < 20 ? $#bad_s : 19)]));
    lond_ctl($lond, 'delay=0');
    lond_ctl($lond, 'reset');
}

# ---- 2. An undeletable file, across restarts --------------------------
SKIP: {
    skip 'needs root to play the daemon user', 3 if $> != 0;
    my @pw = getpwnam('nobody') or skip 'no user nobody', 3;
    my $gid = getgrnam('nogroup') // skip 'no group nogroup', 3;
    my $base = "$dir/asuser";
    mkdir $base or die;
    chmod 0755, $dir, $base;
    my $logdir = "$base/logs";
    mkdir $logdir or die;
    chown $pw[2], $gid, $logdir;
    my $cfg = write_config(name => 'asuser', user => 'nobody', group => 'nogroup',
        socket_dir => "$base/sockets", log_dir => $logdir, spool_dir => "$base/spool",
        delayed_scan_interval => 0.2,
        hosts => [ { hostname => 'u', port => $lond->{port}, ids => ['uid1'] } ]);
    chmod 0644, $cfg;
    mkdir "$base/sockets" or die;
    chown $pw[2], $gid, "$base/sockets";
    my $ddir = "$base/sockets/delayed";
    mkdir $ddir or die;
    chmod 01777, $ddir;
    my $f = put($ddir, 1700000001, 1, 'uid1', 'record:stuck1');
    chmod 0644, $f;
    my @seen;
    my $lonc;
    for my $round (1 .. 3) {
        $lonc = start_lonc($cfg);
        is(request("$base/sockets/u", 'ping'), 'pong', "round $round: lonc serves as nobody")
            if $round == 1;
        wait_for(sub { rec('stuck1') >= 1 }, 20, 'the file delivered once');
        sleep 1.2;    # several checks, 0.2 s apart
        push @seen, rec('stuck1');
        stop_lonc($lonc) if $round < 3;
    }
    ok(-e $f, 'the undeletable file is still there for an operator');
    {
        is_deeply(\@seen, [ 1, 1, 1 ], 'sent once in all, not again after each restart')
            or diag("recorded after each of three starts: @seen\n"
                . join("\n", grep { /delayed/ } split /\n/, log_text($lonc->{log})));
    }
    stop_lonc($lonc);
    lond_ctl($lond, 'reset');
}

# ---- 3. A second lonc on the same socket_dir ------------------------------
{
    my $sdir = "$dir/s-two";
    my $ddir = "$sdir/delayed";
    system('mkdir', '-p', $ddir) == 0 or die;
    lond_ctl($lond, 'delay=100');
    my @files = map { put($ddir, 1700000000 + $_, 1, 'tid', "record:two$_") } 1 .. 20;
    my %o = (socket_dir => $sdir, delayed_scan_interval => 0.2);
    my $c1 = write_config(%o, name => 'two-a', hosts => [ { hostname => 'A', port => $lond->{port}, ids => ['tid'] } ]);
    my $c2 = write_config(%o, name => 'two-b', hosts => [ { hostname => 'A2', port => $lond->{port}, ids => ['tid'] } ]);
    my $l1 = start_lonc($c1);
    my $l2 = eval { start_lonc($c2) };
    ok(!$l2, 'a second lonc on the same socket_dir is refused');
    like($@, qr/another lonc \(pid $l1->{pid}\) already serves \Q$sdir\E/, '... naming the first');
    wait_for(sub { !grep { -e $_ } @files }, 60, 'every file delivered');
    my @counts = map { rec("two$_") } 1 .. 20;
    {
        is_deeply(\@counts, [ (1) x 20 ], 'two lonc on one socket_dir: each file sent once')
            or diag("recorded: @counts");
    }
    stop_lonc($l2) if $l2;
    is(stop_lonc($l1), 0, 'the first lonc shuts down cleanly');
    lond_ctl($lond, 'delay=0');
}

done_testing();

#!/usr/bin/perl
# Delayed transactions go out exactly once, also across reloads and
# failures: a reload that replaces a host in the middle of its replay
# sends no file twice (the retiring host and its successor never replay
# the same IDs at once); a file lonc cannot delete after lond answered
# it is set aside and not sent again; a delayed/ directory lonc may not
# delete in holds its files back (they are not sent at all) and says so.
# The last two run as root, playing the daemon's user (nobody).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use LoncTest;
use Time::HiRes qw(time sleep);

watchdog(240);
my $lond = start_lond();
my $dir = tmp_dir();

# A delayed file holding one line, as lonnet left it a while ago (lonc
# leaves files younger than 3 s alone).
sub put {
    my ($ddir, $time, $count, $id, $line) = @_;
    my $f = "$ddir/$time.$count.4242.cmd.$id";
    open my $fh, '>', $f or die "$f: $!";
    print $fh "$line\n";
    close $fh;
    utime(time - 10, time - 10, $f) or die "utime $f: $!";
    return $f;
}
sub recorded { lond_ctl($lond, "recorded=$_[0]") }

# ---- a reload in the middle of a slow replay -------------------------
{
    my %base = (name => 'once', delayed_scan_interval => 0.2, max_connections => 2);
    my $cfg = write_config(%base, hosts => [ { hostname => 'r', port => $lond->{port}, ids => ['rid'] } ]);
    my $ddir = "$dir/sockets/delayed";
    system('mkdir', '-p', $ddir) == 0 or die;
    # 30 counted files, each behind a slow one (60 ms at lond), and every
    # line held 50 ms at lond (the per-line delay): each record: is in
    # flight for a while, unanswered and so not yet deleted, which is
    # when a second replayer of the same ID would send it again.  The
    # replay takes about 5 s, long enough for reloads to land inside it.
    is(lond_ctl($lond, 'delay=50'), 'ok', 'every line held 50 ms at lond');
    my @files;
    for my $i (1 .. 30) {
        push @files, put($ddir, 1700000000 + 2 * $i, 1, 'rid', "delay:60:pad$i");
        push @files, put($ddir, 1700000001 + 2 * $i, 1, 'rid', "record:once$i");
    }
    my $lonc = start_lonc($cfg);
    my $log = sub { log_text($lonc->{log}) };
    wait_for(sub { recorded('once2') >= 1 }, 30, 'the replay under way');
    # Replace the host (another max_connections) twice while it replays.
    for my $mc (3, 4) {
        write_config(%base, max_connections => $mc,
            hosts => [ { hostname => 'r', port => $lond->{port}, ids => ['rid'] } ]);
        kill 'HUP', $lonc->{pid};
        my $want = $mc - 2;
        wait_for(sub { my @m = $log->() =~ /event=reload added=- removed=- changed=r /g; @m >= $want },
            20, "reload $want");
        sleep 0.3;
    }
    wait_for(sub { !grep { -e $_ } @files }, 60, 'every file delivered and deleted');
    my @counts = map { recorded("once$_") } 1 .. 30;
    is_deeply(\@counts, [ (1) x 30 ], 'each of the 30 files reached lond exactly once across two reloads');
    my $perm = log_text("$dir/lonnet.perm.log");
    my @s = $perm =~ /:S:rid:record:once\d+:/g;
    is(scalar @s, 30, 'one S: record each');
    is(stop_lonc($lonc), 0, 'clean shutdown');
    lond_ctl($lond, 'delay=0');
}

# ---- files lonc may not delete (root, playing the daemon's user) -----
SKIP: {
    skip 'needs root to play the daemon user', 7 if $> != 0;
    my @pw = getpwnam('nobody') or skip 'no user nobody', 7;
    my $gid = getgrnam('nogroup') // skip 'no group nogroup', 7;
    my $base = "$dir/asuser";
    mkdir $base or die;
    chmod 0755, $dir, $base;
    my $logdir = "$base/logs";
    mkdir $logdir or die;
    chown $pw[2], $gid, $logdir;
    my %o = (name => 'asuser', user => 'nobody', group => 'nogroup',
        socket_dir => "$base/sockets", log_dir => $logdir, spool_dir => "$base/spool",
        delayed_scan_interval => 0.2);
    my $cfg = write_config(%o, hosts => [ { hostname => 'u', port => $lond->{port}, ids => ['uid1'] } ]);
    chmod 0644, $cfg;
    mkdir "$base/sockets" or die;
    chown $pw[2], $gid, "$base/sockets";
    my $ddir = "$base/sockets/delayed";
    mkdir $ddir or die;

    # delayed/ root's and sticky (1777): lonc may write there, but not
    # delete root's file; it reads it, lond answers, the unlink fails.
    chmod 01777, $ddir;
    my $f = put($ddir, 1700000001, 1, 'uid1', 'record:aside1');
    chmod 0644, $f;
    my $lonc = start_lonc($cfg);
    my $log = sub { log_text($lonc->{log}) };
    is(request("$base/sockets/u", 'ping'), 'pong', 'lonc serves as nobody');
    wait_for(sub { recorded('aside1') >= 1 }, 20, 'the file delivered');
    wait_for(sub { $log->() =~ /event=delayed_unlink_failed file=\Q$f\E .*set aside/ }, 20, 'unlink failure logged');
    # Several periodic checks (0.2 s apart) and a new connection later:
    request("$base/sockets/u", 'close_connection_exit');
    sleep 1.5;
    is(request("$base/sockets/u", 'ping'), 'pong', 'a fresh connection');
    sleep 1;
    is(recorded('aside1'), 1, 'the undeletable file was sent once, not again at every check');
    ok(-e $f, 'and it is still there for an operator');

    # delayed/ not writable by lonc at all: nothing is sent (it could
    # not be deleted), and the log says why.
    unlink $f;
    chmod 0755, $ddir;
    my $g = put($ddir, 1700000002, 1, 'uid1', 'record:held1');
    chmod 0644, $g;
    request("$base/sockets/u", 'close_connection_exit');
    sleep 0.5;
    is(request("$base/sockets/u", 'ping'), 'pong', 'a fresh connection again');
    sleep 1.5;
    is(recorded('held1') // 0, 0, 'a file in a delayed/ lonc cannot delete in is not sent');
    like($log->(), qr/event=delayed_dir_not_writable dir=\Q$ddir\E/, 'and the log says why');
    stop_lonc($lonc);
}
done_testing();

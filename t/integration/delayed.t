#!/usr/bin/perl
# lonnet's delayed transactions: files in <socket_dir>/delayed/ are
# replayed to their host once lonc has a working connection, oldest
# first, as sethost:<hostid>:<line>; each file is deleted only after lond
# answered and gets its S: record in lonnet.perm.log; files that arrive
# while lonc runs are picked up; a host that flaps during the replay
# still gets every transaction exactly once (counted at the test lond).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use LoncTest;
use Time::HiRes qw(sleep);

watchdog(180);
my $port = free_port();
my $cfg = write_config(
    name => 'dl',
    delayed_scan_interval => 0.2,
    retry_attempts => 1,
    backoff_initial => 0.2,
    backoff_max => 0.5,
    hosts => [ { hostname => 'remote', port => $port, ids => [ 'remoteid', 'otherid' ] } ],
);
my $dir = tmp_dir();
my $ddir = "$dir/sockets/delayed";
system('mkdir', '-p', $ddir) == 0 or die;

# A delayed file holding $text, as lonnet left it a while ago: lonc
# leaves files younger than 3 s alone (lonnet reads a new file back
# after 2 s).
sub put_text {
    my ($time, $count, $id, $text) = @_;
    my $f = "$ddir/$time.$count.4242.record.$id";
    open my $fh, '>', $f or die "$f: $!";
    print $fh $text;
    close $fh;
    utime(time - 10, time - 10, $f) or die "utime $f: $!";
    return $f;
}
sub put {
    my ($time, $count, $token, $id) = @_;
    return put_text($time, $count, $id, "record:$token\n");
}
# A good file after a bad one: it is delivered (the bad one holds up
# nothing).
sub next_goes_out {
    my ($count, $what) = @_;
    my $f = put(1700000010, $count, "next$count", 'remoteid');
    wait_for(sub { !-e $f }, 20, "the file after $what delivered");
}
# Written while the host is down and lonc not yet running; the order of
# the names is not the order of creation.
put(1700000003, 1, 'third', 'remoteid');
put(1700000001, 2, 'second', 'otherid');
put(1700000001, 1, 'first', 'remoteid');
put(1700000002, 1, 'unrelated', 'someoneelse');

my $lonc = start_lonc($cfg);
my $log = sub { log_text($lonc->{log}) };

# The host is down: the check's connection attempts fail, nothing is
# delivered and nothing is lost.
wait_for(sub { $log->() =~ /host=remote event=connect_failed/ }, 20, 'an attempt was made');
my @left = glob("$ddir/*");
is(scalar @left, 4, 'with lond down every file stays');

# lond comes up and closes the connection after every reply (a host
# that flaps): each connection delivers one file, the rest wait.
my $lond = start_lond(port => $port, fault => 'close_after_reply');
wait_for(sub { my @f = glob("$ddir/*.remoteid $ddir/*.otherid"); @f == 0 }, 60, 'all delivered');
pass('every file for the host was delivered and deleted');
ok(-e "$ddir/1700000002.1.4242.record.someoneelse", 'a file for another host stays');
my %id = (first => 'remoteid', second => 'otherid', third => 'remoteid');
for my $t (qw(first second third)) {
    is(lond_ctl($lond, "recorded=$t"), 1, "'$t' reached lond exactly once");
    is(lond_ctl($lond, "recorded=$id{$t}/$t"), 1, "'$t' came with sethost:$id{$t}, the ID of its file");
}
my $perm = log_text("$dir/lonnet.perm.log");
my @rec = $perm =~ /^(\d+):S:(\w+):(record:\w+):\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}$/mg;
is(scalar(@rec) / 3, 3, 'three S: records in lonnet.perm.log');
is_deeply([ map { $rec[$_ * 3 + 2] } 0 .. 2 ], [qw(record:first record:second record:third)], 'oldest first');
is($rec[1], 'remoteid', 'the record names the host ID the file was for');
like($log->(), qr/event=delayed_replayed delivered=1/, 'replay logged');

# A file that arrives while lonc runs is picked up without any request.
lond_ctl($lond, 'fault=none');
put(1700000009, 1, 'late', 'remoteid');
wait_for(sub { !-e "$ddir/1700000009.1.4242.record.remoteid" }, 20, 'late file delivered');
is(lond_ctl($lond, 'recorded=late'), 1, 'a file written while lonc runs is delivered once');

# A file lonnet has just written is left alone until it is 3 s old.  Its
# time is set in the future here, so that no slowness of the machine can
# make it old during the check; then back, and it goes out.
{
    my $f = put(1700000010, 2, 'young', 'remoteid');
    utime(time + 3600, time + 3600, $f) or die "utime $f: $!";
    sleep 1.2;   # six scans
    ok(-e $f, 'a file modified less than 3 s ago stays');
    is(lond_ctl($lond, 'recorded=young'), 0, '... and was not sent');
    utime(time - 10, time - 10, $f) or die "utime $f: $!";
    wait_for(sub { !-e $f }, 20, 'the young file delivered once old');
    is(lond_ctl($lond, 'recorded=young'), 1, 'once old enough it is delivered, once');
}

# A file whose line has a sethost: prefix of its own would go out with
# two: it is not sent (an encrypt: in it would travel in clear), stays,
# and does not hold up the files after it.
{
    my $f = put_text(1700000010, 3, 'remoteid', "sethost:x:encrypt:record:secret\n");
    next_goes_out(4, 'a line with its own prefix');
    ok(-e $f, 'a file with its own sethost: prefix stays');
    like($log->(), qr/event=delayed_unsendable file=\Q$f\E reason=bad_sethost_prefix/, '... and is logged');
    unlike(log_text("$dir/lonnet.perm.log"), qr/secret/, '... and its text is in no S: record');
    unlink $f;
}

# Something in the directory that is not a regular file (a FIFO would
# block a reader until a writer comes) is skipped with a warning, and the
# files after it go on.
{
    my $fifo = "$ddir/1700000010.5.4242.record.remoteid";
    system('mkfifo', $fifo) == 0 or die "mkfifo: $?";
    utime(time - 10, time - 10, $fifo) or die "utime $fifo: $!";
    next_goes_out(6, 'the FIFO');
    like($log->(), qr/event=delayed_unreadable file=\Q$fifo\E/, 'a FIFO is skipped as unreadable');
    unlink $fifo;
}

# A file of two lines is not lonnet's: sending the first and deleting it
# would lose the second, so it stays, logged as unreadable.
{
    my $f = put_text(1700000010, 7, 'remoteid', "record:two1\nrecord:two2\n");
    next_goes_out(8, 'a file of two lines');
    ok(-e $f, 'a file of two lines stays');
    is(lond_ctl($lond, 'recorded=two1'), 0, '... and none of it was sent');
    like($log->(), qr/event=delayed_unreadable file=\Q$f\E/, '... logged as unreadable');
    unlink $f;
}

# A lond that sends more than its answer: the file was answered, so it
# is delivered (deleted, recorded) once, not sent again on the next
# connection; the connection itself is dropped.
lond_ctl($lond, 'fault=extra_after_reply');
put(1700000011, 1, 'chatty', 'remoteid');
my $gone = 0;
for (1 .. 100) {
    if (!-e "$ddir/1700000011.1.4242.record.remoteid") { $gone = 1; last }
    sleep 0.1;
}
ok($gone, "a file answered with extra data after the reply is deleted");
sleep 1;   # several scans (0.2 s apart): a resend would show in the count
is(lond_ctl($lond, 'recorded=chatty'), 1, '... and was sent exactly once');
like($log->(), qr/host=remote worker=\d+ event=protocol_error reason=extra_reply_data/,
    'the extra data is logged');
lond_ctl($lond, 'fault=none');

# log_dir is live: after a reload that keeps the host (and its pool), the
# next S: record goes to the new directory.
my $newlogs = "$dir/newlogs";
mkdir $newlogs or die "$newlogs: $!";
write_config(
    name => 'dl',
    delayed_scan_interval => 0.2,
    retry_attempts => 1,
    backoff_initial => 0.2,
    backoff_max => 0.5,
    log_dir => $newlogs,
    hosts => [ { hostname => 'remote', port => $port, ids => [ 'remoteid', 'otherid' ] } ],
);
kill 'HUP', $lonc->{pid};
wait_for(sub { $log->() =~ /event=reload added=- removed=- changed=- unchanged=1/ }, 20,
    'reload keeping the host');
put(1700000010, 1, 'moved', 'remoteid');
wait_for(sub { !-e "$ddir/1700000010.1.4242.record.remoteid" }, 20, 'file delivered after the reload');
like(log_text("$newlogs/lonnet.perm.log") // '', qr/^\d+:S:remoteid:record:moved:/m,
    'after a reload with another log_dir, the S: record is in the new one');
unlike(log_text("$dir/lonnet.perm.log"), qr/record:moved/, '... and not in the old one');

# A shutdown starts no new file: with four slow files under way, most
# stay for the next start (each takes 1.5 s at lond).
my @slow = map { put_text(1700000030, $_, 'remoteid', "delay:1500:slow$_\n") } 1 .. 4;
sleep 0.7;   # a few scans: the replay is under way
is(stop_lonc($lonc), 0, 'clean shutdown');
cmp_ok(scalar(grep { -e } @slow), '>=', 2, 'a shutdown during a replay leaves the files it did not start');
done_testing();

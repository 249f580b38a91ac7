#!/usr/bin/perl
# Attack: what a delayed file may hold.  lonc refuses handshake commands
# from clients (ekey, init: on a pooled connection they would change the
# key or the host ID for every later request, doc/protocol.md); a
# delayed file goes out on the same pooled connections.
#  1. A file holding "ekey": after its replay, an encrypt: request on
#     that connection must still get its answer.
#  2. Files with NUL bytes and \r\n: sent byte for byte (the \r
#     dropped), each deleted once; a file with a sethost: prefix of its
#     own, one longer than max_request_bytes, an empty one, a directory
#     and a FIFO named like delayed files: left alone, and the files
#     after them still go out.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use POSIX qw(mkfifo);
use Time::HiRes qw(time sleep);
use LoncTest;

watchdog(120);
my $lond = start_lond();
my $dir = tmp_dir();
my $ddir = "$dir/sockets/delayed";
system('mkdir', '-p', $ddir) == 0 or die;
my $n = 0;
sub put {
    my ($id, $bytes) = @_;
    $n++;
    my $f = "$ddir/1700000000.$n.4242.cmd.$id";
    open my $fh, '>', $f or die "$f: $!";
    print $fh $bytes;
    close $fh;
    utime(time - 10, time - 10, $f) or die;
    return $f;
}
sub rec { lond_ctl($lond, "recorded=$_[0]") // 0 }

# One connection only, so that the replay and the requests share it.
my $lonc = start_lonc(write_config(max_connections => 1, max_request_bytes => 1000,
    delayed_scan_interval => 0.2,
    hosts => [ { hostname => 'h', port => $lond->{port} } ]));
my $sock = "$lonc->{socket_dir}/h";
my $log = sub { log_text($lonc->{log}) };
is(request($sock, 'encrypt:echo:before'), 'before', 'an encrypt: request works');

# ---- 1. handshake commands in a delayed file ------------------------------
for my $cmd ('ekey') {
    my $f = put('h', "$cmd\n");
    # Replayed, or left alone as unsendable (either is fine here).
    wait_for(sub { !-e $f || $log->() =~ /event=delayed_unsendable file=\Q$f\E/ }, 20,
        "the '$cmd' file replayed or refused");
    unlink $f;
    my $after = request($sock, "encrypt:echo:after-$cmd");
    {
        is($after, "after-$cmd", "after a delayed '$cmd' on the pooled connection, encrypt: requests still work")
            or diag("got $after; lonnet.perm.log:\n" . log_text("$dir/lonnet.perm.log"));
    }
    # A fresh connection for the next case.
    request($sock, 'close_connection_exit');
    wait_for(sub { lond_stats($lond)->{active} == 0 }, 10, 'pool empty');
    is(request($sock, 'encrypt:echo:fresh'), 'fresh', 'a fresh connection has a good key again');
}

# ---- 2. odd contents ----------------------------------------------------------
{
    my @go = (
        put('h', "record:nul\0one\n") => "nul\0one",
        put('h', "record:crlf1\r\n") => 'crlf1',
    );
    my @stay = (
        put('h', "sethost:h:record:prefixed\n"),
        put('h', 'record:' . ('x' x 1200) . "\n"),
        put('h', ''),
        put('h', "record:two1\nrecord:two2\n"),
    );
    $n++;
    my $d = "$ddir/1700000000.$n.4242.cmd.h";
    mkdir $d or die;
    $n++;
    my $fifo = "$ddir/1700000000.$n.4242.cmd.h";
    mkfifo($fifo, 0600) or die "mkfifo: $!";
    utime(time - 10, time - 10, $d, $fifo);
    push @stay, $d, $fifo;
    my $last = put('h', "record:last\n");
    wait_for(sub { !-e $last }, 20, 'the file after the odd ones delivered');
    my %go = @go;
    for my $f (sort keys %go) {
        ok(!-e $f, 'delivered and deleted: ' . ($go{$f} =~ s/\0/\\0/gr));
    }
    # (The test lond takes a record: token as a C string: it counts the
    # NUL line under "nul".)
    is(rec('nul'), 1, 'the NUL-byte line was delivered once');
    is(rec('crlf1'), 1, 'the \r\n line was delivered once');
    is(rec('last'), 1, 'the file after the odd ones was delivered once');
    ok(-e $_, 'left for an operator: ' . ($_ =~ s/.*\///r)) for @stay;
    is(rec('prefixed') + rec('two1') + rec('two2'), 0, 'nothing of the files left alone reached lond');
    like($log->(), qr/event=delayed_unsendable/, 'the prefixed file is logged as unsendable');
    is(request($sock, 'encrypt:echo:still'), 'still', 'the daemon serves on');
}

is(stop_lonc($lonc), 0, 'clean shutdown');
done_testing();

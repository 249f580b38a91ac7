#!/usr/bin/perl
# The spool running out of space (issue 12): spool_dir is a 1 MiB tmpfs
# the test mounts (as root; skipped otherwise).  A reply too big for it
# gives exactly "con_lost\n" and a log line saying why; the daemon goes
# on, the space of the failed spool file is given back (a reply that
# needs most of the tmpfs then arrives whole), and nothing is left in
# spool_dir.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use POSIX qw(:sys_wait_h);
use Test::More;
use LoncTest;

plan skip_all => 'needs root to mount a small tmpfs' if $> != 0;

my $spool = tmp_dir() . '/spool-full';
mkdir $spool, 0700 or die "mkdir $spool: $!";
my $out = qx(mount -t tmpfs -o size=1m,mode=0700 lonc-test-spool '$spool' 2>&1);
my $mounted = $? == 0;
chomp $out;
plan skip_all => "cannot mount a tmpfs here: $out" unless $mounted;

my $lonc;
END {
    my $status = $?;
    if ($mounted) {
        # lonc first: an open spool file or directory keeps it busy.
        if ($lonc && waitpid($lonc->{pid}, WNOHANG) == 0) {
            kill 'KILL', $lonc->{pid};
            waitpid $lonc->{pid}, 0;
        }
        system('umount', $spool) == 0 or system('umount', '-l', $spool);
    }
    $? = $status;
}

watchdog(120);
my $lond = start_lond();
$lonc = start_lonc(write_config(name => 'spoolfull',
    spool_dir => $spool, reply_buffer => '64K', transaction_timeout => 10,
    hosts => [ { hostname => 'lond1', port => $lond->{port} } ]));
my $sock = "$lonc->{socket_dir}/lond1";

sub spool_entries {
    opendir my $d, $spool or return ("cannot open: $!");
    return grep { $_ ne '.' && $_ ne '..' } readdir $d;
}

is(request($sock, 'ping'), 'pong', 'lonc is up with spool_dir on a 1 MiB tmpfs');
for my $round (1 .. 2) {
    # 900000 bytes need most of the tmpfs: they fit only if the failed
    # spool file's space was given back.  The enc: one is smaller: it
    # fits even if its wire form (twice the plain text) were spooled too.
    for my $c ([ 'bytes:3000000', 'bytes:900000', 900000 ],
               [ 'encbytes:3000000', 'encbytes:200000', 200000 ]) {
        my ($big, $fits, $n) = @$c;
        my ($got, $how) = request_bytes($sock, $big, 60);
        is(describe_bytes($got), 'con_lost\n', "round $round: $big does not fit the spool: con_lost")
            or diag("($how)");
        ok(kill(0, $lonc->{pid}) && waitpid($lonc->{pid}, WNOHANG) == 0,
            "round $round: the daemon is still running");
        ($got, $how) = request_bytes($sock, $fits, 60);
        ok(defined $got && $got eq pattern($n) . "\n",
            "round $round: then $fits arrives whole")
            or diag('got ' . describe_bytes($got) . " ($how)");
    }
}
my $log = log_text($lonc->{log});
like($log, qr/event=transaction_failed[^\n]*spool/,
    'the failure is logged as a spool failure');
like($log, qr/No space left/i, 'with the reason (no space left)');
is(request($sock, 'echo:fine'), 'fine', 'the next request is served');
is_deeply([ spool_entries() ], [], 'nothing is left in spool_dir');
is(stop_lonc($lonc), 0, 'clean shutdown');
done_testing();

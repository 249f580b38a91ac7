#!/usr/bin/perl
# Attack: odd clients while the lond side churns.
#  1. A pipelined batch (all lines written at once, then read in order):
#     forwarded, encrypt:, NUL bytes, \r\n endings, big spooled replies,
#     lonc-local commands, handshake commands and bad sethost: prefixes
#     mixed, the last line over max_request_bytes: every answer in order
#     and exact, then the connection closed (end of file, or a reset
#     after the answer: lonc leaves the rest of that line unread).
#  2. The same batches from four clients in a loop while the lond is
#     killed mid-reply and restarted, and reloads change the host: in
#     order, each answer exact or con_lost, one per line.
#  3. Half-closed clients (the request, then shutdown of their writing
#     side): the whole reply or con_lost, then end of file; also when
#     lond resets mid-reply.
#  4. Clients that vanish: half a line and gone, a request and gone
#     before the reply (a big one being spooled, a slow one, one still
#     queued): lonc goes on, no worker is left stuck, the next clients
#     are served.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use IO::Socket::UNIX;
use POSIX qw(:sys_wait_h);
use Socket qw(SHUT_WR);
use Time::HiRes qw(time sleep);
use LoncTest;

watchdog(170);
$SIG{PIPE} = 'IGNORE';
my $lond = start_lond();
my $PORT = $lond->{port};
my $sdir = tmp_dir() . '/s-clients';
my %base = (name => 'clients', socket_dir => $sdir, reply_buffer => 4096,
    max_request_bytes => 8192, max_connections => 3, transaction_timeout => 5,
    client_timeout => 5, connect_timeout => 1, handshake_timeout => 1.5,
    backoff_initial => 0.2, backoff_max => 0.5, retry_attempts => 5);
my $cfg = write_config(%base, hosts => [ { hostname => 'h', port => $PORT, aliases => ['h-a'] } ]);
my $lonc = start_lonc($cfg);
my $log = sub { log_text($lonc->{log}) };
my $PAT = pattern(300_000);

sub vis {
    my ($x) = @_;
    return 'nothing' unless defined $x;
    return length($x) . ' bytes' if length $x > 80;
    (my $v = $x) =~ s/([^ -~])/sprintf('\\x%02x', ord $1)/ge;
    return $v;
}

# [line as written (without its \n), the answer expected (without \n),
#  may it be con_lost]
sub batch {
    my ($tag) = @_;
    return (
        [ "echo:$tag-1", "$tag-1", 1 ],
        [ "encrypt:echo:$tag-2", "$tag-2", 1 ],
        [ "echo:$tag-nul\0in\0the\0middle", "$tag-nul\0in\0the\0middle", 1 ],
        [ "echo:$tag-crlf\r", "$tag-crlf", 1 ],    # the test lond drops a final \r
        [ 'reset_retries', 'ok', 0 ],
        [ "bytes:300000", $PAT, 1 ],
        [ "encbytes:100000", substr($PAT, 0, 100_000), 1 ],
        [ 'ekey', 'error:handshake_command', 0 ],
        [ "sethost::echo:$tag", 'error:bad_sethost', 0 ],
        [ "sethost:h:echo:$tag-3", "$tag-3", 1 ],
        [ 'close_connection_exit', 'ok', 0 ],
        [ "echo:$tag-4", "$tag-4", 1 ],
        [ "\0", 'unknown_cmd', 1 ],
        [ 'x' x 9000, 'error:request_too_long', 0 ],
    );
}

# Write a batch at once and read every answer in order.  Returns a list
# of problems (empty: all fine) and how many were con_lost.
sub run_batch {
    my ($path, $tag, $lost_ok) = @_;
    my @b = batch($tag);
    my $s = IO::Socket::UNIX->new(Type => SOCK_STREAM(), Peer => $path) or return ("connect: $!");
    my $data = join '', map { "$_->[0]\n" } @b;
    # Write in a child: the batch is bigger than a socket buffer, and the
    # replies must be read meanwhile.
    my $w = fork // die "fork: $!";
    if ($w == 0) {
        syswrite($s, $data);
        POSIX::_exit(0);
    }
    my ($buf, @bad, $lost) = ('');
    for my $q (@b) {
        my ($got, $how) = read_buffered_line($s, \$buf, 30);
        if (defined $got && $got eq "$q->[1]\n") { next }
        if (defined $got && $got eq "con_lost\n" && $lost_ok && $q->[2]) { $lost++; next }
        push @bad, 'line ' . vis(substr($q->[0], 0, 40)) . ': got ' . vis($got) . " ($how)";
        last;
    }
    my ($rest, $how) = read_buffered_line($s, \$buf, 10);
    # lonc closes with the rest of the over-long line unread: end of
    # file, or (AF_UNIX) a reset once the answer has been read.
    push @bad, 'after the over-long line: ' . vis($rest) . " ($how), not end of file"
        if defined $rest || $how !~ /^(eof|error:Connection reset by peer)$/;
    waitpid $w, 0;
    close $s;
    return (\@bad, $lost // 0);
}

# ---- 1. a pipelined batch ---------------------------------------------------
{
    my ($bad) = run_batch("$sdir/h", 'p0', 0);
    is_deeply($bad, [], 'a pipelined batch: every answer exact and in order, then closed');
    ($bad) = run_batch("$sdir/h-a", 'p0a', 0);
    is_deeply($bad, [], 'the same through the alias');
}

# ---- 2. batches while the lond side churns ------------------------------------
{
    my $out = tmp_dir() . '/batches';
    mkdir $out;
    my @pids;
    for my $c (1 .. 4) {
        my $pid = fork // die "fork: $!";
        if ($pid == 0) {
            $SIG{ALRM} = 'DEFAULT';
            my ($n, $lost, @bad) = (0, 0);
            my $end = time + 12;
            for (my $i = 0; time < $end && @bad < 5; $i++) {
                my ($b, $l) = run_batch("$sdir/" . ($i % 2 ? 'h' : 'h-a'), "c$c-$i", 1);
                $n++;
                $lost += $l;
                push @bad, @$b;
            }
            open my $fh, '>', "$out/$c" or die;
            print $fh "batches=$n lost=$lost\n", map { "BAD $_\n" } @bad;
            close $fh;
            POSIX::_exit(0);
        }
        push @pids, $pid;
    }
    my $reloads = 0;
    my $end = time + 10;
    for (my $i = 0; time < $end; $i++) {
        if ($i % 2) {
            kill_wait($lond->{pid}, 'KILL', 10);
            sleep 0.2;
            for (1 .. 10) { $lond = eval { start_lond(port => $PORT) } and last; sleep 0.3 }
            die "lond did not come back on port $PORT\n" unless $lond;
        } else {
            write_config(%base, hosts => [ { hostname => 'h', port => $PORT, aliases => ['h-a'],
                max_connections => 1 + $i % 4 } ]);
            $reloads++;
            kill 'HUP', $lonc->{pid};
            wait_for(sub { my @m = $log->() =~ /event=reload /g; @m >= $reloads }, 20, 'reload');
        }
        sleep 0.4 + rand 0.4;
    }
    waitpid $_, 0 for @pids;
    my ($batches, $lost, @bad) = (0, 0);
    for my $c (1 .. 4) {
        my $t = log_text("$out/$c");
        $batches += $1 if $t =~ /batches=(\d+)/;
        $lost += $1 if $t =~ /lost=(\d+)/;
        push @bad, $t =~ /^BAD (.*)$/mg;
    }
    diag("pipelined batches under churn: $batches batches, $lost answers con_lost");
    cmp_ok($batches, '>', 8, 'many batches ran');
    is_deeply(\@bad, [], 'each answer exact or con_lost, in order, one per line') or diag(join "\n", @bad);
}

# ---- 3. half-closed clients ---------------------------------------------------
sub half_closed {
    my ($line) = @_;
    my $s = unix_connect("$sdir/h") or return ('connect failed', '');
    print $s "$line\n";
    $s->flush;
    shutdown($s, SHUT_WR);
    my $buf = '';
    my ($got, $how) = read_buffered_line($s, \$buf, 30);
    my ($more, $how2) = read_buffered_line($s, \$buf, 10);
    close $s;
    return ($got, $how2 eq 'eof' && $buf eq '' ? 'eof' : "then $how2 " . vis($more // $buf));
}
{
    is(request("$sdir/h", 'ping', 20), 'pong', 'the host serves after the churn');
    my @cases = (
        [ 'echo:half', "half\n" ],
        [ 'encrypt:echo:halfenc', "halfenc\n" ],
        [ 'bytes:300000', "$PAT\n" ],
        [ 'encbytes:200000', substr($PAT, 0, 200_000) . "\n" ],
        [ 'resetmid:200000', "con_lost\n" ],
        [ 'encmid:100000:150000', "con_lost\n" ],
        [ 'steady:100000:500', substr($PAT, 0, 100_000) . "\n" ],
    );
    for my $c (@cases) {
        my ($got, $end) = half_closed($c->[0]);
        ok(defined $got && $got eq $c->[1] && $end eq 'eof',
            "half-closed: $c->[0] -> " . ($c->[1] eq "con_lost\n" ? 'con_lost' : 'the whole reply') . ', then end of file')
            or diag('got ' . vis($got) . ", $end");
    }
}

# ---- 4. clients that vanish -----------------------------------------------------
{
    for my $i (1 .. 10) {
        # Half a line, gone.
        my $s = unix_connect("$sdir/h") or next;
        syswrite($s, "echo:half-a-line-$i");
        close $s;
        # A request, gone before the reply: big (being spooled), slow,
        # dripping, and with max_connections 3 some still queued.
        for my $req ('bytes:300000', 'encbytes:200000', 'delay:300:gone', 'drip:20:' . ('d' x 20),
                     'steady:200000:400') {
            my $g = unix_connect("$sdir/h") or next;
            syswrite($g, "$req\n");
            sleep 0.01 * ($i % 3);
            close $g;
        }
    }
    # Then clients that stay: each served.
    my @r = burst("$sdir/h", 20, 'echo:stayed', 60);
    is(scalar(grep { defined $_ && $_ eq 'stayed' } @r), 20, 'after 60 vanishing clients, 20 at once are all served');
    is(request("$sdir/h", 'bytes:300000', 30), $PAT, 'and a big reply arrives whole');
    my $f = proc_figures($lonc->{pid});
    diag("lonc now: fds=$f->{fds} threads=$f->{threads}");
    # Workers that lost their client are back in the pool: once idle,
    # close_connection_exit empties it.
    request("$sdir/h", 'close_connection_exit');
    my $empty = eval { wait_for(sub { lond_stats($lond)->{active} == 0 }, 30, 'pool empty') };
    ok($empty, 'no worker is left stuck: the pool empties on close_connection_exit');
}

ok(waitpid($lonc->{pid}, WNOHANG) == 0, 'lonc is alive');
is(stop_lonc($lonc, 30), 0, 'clean shutdown');
done_testing();

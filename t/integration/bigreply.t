#!/usr/bin/perl
# Big and slow replies (issue 12): 64 MiB replies, plain and enc:, byte
# for byte with lonc's memory bounded (a reply past reply_buffer is
# spooled, an enc: reply decrypted in pieces) and given back afterwards;
# the spool file is unnamed (nothing visible in spool_dir, mode 0600, no
# link); transaction_timeout is the longest silence (a 3 MB reply sent
# steadily over 4 s with transaction_timeout 2 arrives whole; a reply that
# stops part way ends in con_lost), max_transaction_time caps the whole
# (a reply that drips a byte at a time ends in con_lost).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Cwd qw(realpath);
use Test::More;
use Time::HiRes qw(time sleep);
use LoncTest;

watchdog(240);
my $lond = start_lond();
my $MiB = 1024 * 1024;

sub whole_pattern_ok {
    my ($got, $n, $name) = @_;
    my $ok = defined $got && length($got) == $n + 1 && $got eq pattern($n) . "\n";
    ok($ok, $name) or diag('got ' . describe_bytes($got));
}

# --- 64 MiB, with the default reply_buffer (1M) ---------------------------
{
    my $spool = tmp_dir() . '/spool-big';
    my $lonc = start_lonc(write_config(name => 'big',
        socket_dir => tmp_dir() . '/s-big', spool_dir => $spool,
        transaction_timeout => 10,
        hosts => [ { hostname => 'lond1', port => $lond->{port} } ]));
    my $sock = "$lonc->{socket_dir}/lond1";

    ok(-d $spool, 'spool_dir is created at start-up');
    my @st = stat $spool;
    is(sprintf('%04o', ($st[2] // 0) & 07777), '0700', 'with mode 0700');
    is($st[4], $>, "owned by the daemon's user");

    is(request($sock, 'ping'), 'pong', 'a small reply first (the worker exists)');
    my $base = rss_anon_kb($lonc->{pid});
    ok(defined $base, "lonc's RssAnon can be read") or diag 'no /proc/PID/status RssAnon';
    $base //= 0;
    my $n = 64 * $MiB;
    for my $req ("bytes:$n", "encbytes:$n") {
        my $stop = rss_sampler($lonc->{pid}, 120);
        my ($got, $how) = request_bytes($sock, $req, 120);
        my $peak = $stop->() // 0;
        whole_pattern_ok($got, $n, "$req: 64 MiB arrive whole, byte for byte");
        my $grew = $peak - $base;
        ok($grew < 32 * 1024,
            "$req: lonc's anonymous memory grew by less than 32 MiB meanwhile")
            or diag("RssAnon before $base kB, peak $peak kB (+$grew kB)");
        undef $got;
    }
    my $after = rss_anon_kb($lonc->{pid}) // 0;
    ok($after - $base < 16 * 1024, "afterwards the worker's buffers shrank back")
        or diag("RssAnon before $base kB, after $after kB");
    is(request($sock, 'echo:after'), 'after', 'the daemon serves on');
    is(stop_lonc($lonc), 0, 'clean shutdown');
}

# --- Slow replies, with a small reply_buffer ------------------------------
{
    my $spool = tmp_dir() . '/spool-slow';
    my $lonc = start_lonc(write_config(name => 'slow',
        socket_dir => tmp_dir() . '/s-slow', spool_dir => $spool,
        reply_buffer => '64K', transaction_timeout => 2,
        max_transaction_time => 6,
        hosts => [ { hostname => 'lond1', port => $lond->{port} } ]));
    my $sock = "$lonc->{socket_dir}/lond1";
    my $pid = $lonc->{pid};

    # A reply over a slow link: bytes keep coming, so it is not cut.
    my ($got) = request_bytes($sock, 'steady:3000000:4000', 60);
    whole_pattern_ok($got, 3000000,
        '3 MB sent steadily over 4 s with transaction_timeout 2 arrive whole');

    # While a big reply is in flight, nothing is visible in spool_dir,
    # and lonc holds the spool file open unnamed.
    my $real = realpath($spool) // $spool;
    my $s = unix_connect($sock) or die "connect: $!";
    print $s "steady:6000000:2000\n";
    $s->flush;
    my (%visible, %spool_fds);
    my ($t0, $tries, $looks, $err) = (time, 0, 0, '');
    while (time - $t0 < 1.6 && $tries < 200) {
        $tries++;
        if (opendir my $d, $spool) {
            $looks++;
            $visible{$_}++ for grep { $_ ne '.' && $_ ne '..' } readdir $d;
            closedir $d;
        } else {
            $err = "$!";
        }
        for my $fd (glob "/proc/$pid/fd/*") {
            my $l = readlink($fd) // next;
            next unless index($l, "$real/") == 0 || index($l, "$spool/") == 0;
            my @fst = stat $fd;
            $spool_fds{$l} = sprintf('mode %04o links %d', ($fst[2] // 0) & 07777,
                $fst[3] // -1) if @fst;
        }
        sleep 0.01;
    }
    ($got) = read_reply_bytes($s, 30);
    close $s;
    ok($looks > 0 && !%visible,
        "while a 6 MB reply is in flight spool_dir holds no visible file ($looks looks)")
        or diag($looks ? 'seen: ' . join(' ', sort keys %visible) : "cannot open $spool: $err");
    ok(%spool_fds, 'lonc held a spool file in spool_dir open meanwhile')
        or diag("no open file of lonc's under $spool");
    is_deeply([ grep { $_ ne 'mode 0600 links 0' } values %spool_fds ], [],
        'every spool file was mode 0600 with no name (no link)')
        or diag(explain \%spool_fds);
    whole_pattern_ok($got, 6000000, 'and the reply arrives whole');

    # Replies that stop part way (silence: con_lost after
    # transaction_timeout), in memory and spooled; and one that drips a
    # byte every 0.4 s (16 s in all; never silent for 2 s) is cut by
    # max_transaction_time (6 s).  In parallel; the drip is read first.
    my @stall = (1000, 70000, 3000000);
    my %c;
    my $t = time;
    for my $req ('drip:400:' . ('x' x 40), map { "stallmid:$_" } @stall) {
        $c{$req} = unix_connect($sock) or die "connect: $!";
        print { $c{$req} } "$req\n";
        $c{$req}->flush;
    }
    my $drip = 'drip:400:' . ('x' x 40);
    my ($d, $dhow) = read_reply_bytes($c{$drip}, 30);
    my $elapsed = time - $t;
    is(describe_bytes($d), 'con_lost\n',
        'a reply dripping for longer than max_transaction_time: con_lost')
        or diag("($dhow)");
    cmp_ok($elapsed, '>=', 4.5,
        'not cut before max_transaction_time (bytes kept coming)');
    for my $n (@stall) {
        my ($g, $how) = read_reply_bytes($c{"stallmid:$n"}, 30);
        is(describe_bytes($g), 'con_lost\n',
            "$n bytes, then silence: con_lost") or diag("($how)");
    }
    close $_ for values %c;
    my $log = log_text($lonc->{log});
    like($log, qr/host=lond1 worker=\d+ event=transaction_failed reason=transaction_timeout/,
        'the silences are logged as transaction_timeout');
    note("cut by max_transaction_time logged as: $_")
        for grep { !/reason=transaction_timeout/ } $log =~ /^.*event=transaction_failed.*$/mg;
    is(request($sock, 'echo:after'), 'after', 'the daemon serves on');
    is(stop_lonc($lonc), 0, 'clean shutdown');
}

done_testing();

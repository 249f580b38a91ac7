#!/usr/bin/perl
# Replies lonc must not relay (issue 12), each answered exactly
# "con_lost\n": longer than max_reply_bytes (plain, enc:, endless plain,
# endless enc: with lonc's memory bounded meanwhile), bad enc: replies
# (small, and big ones decoded in pieces), and replies cut by the
# shutdown deadline.  A client that stops reading its reply is closed,
# not answered con_lost (the one exception).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use Time::HiRes qw(time sleep);
use LoncTest;

watchdog(240);
my $lond = start_lond();
my $MiB = 1024 * 1024;

sub is_con_lost {
    my ($sock, $req, $name) = @_;
    my ($got, $how) = request_bytes($sock, $req, 60);
    is(describe_bytes($got), 'con_lost\n', $name) or diag("($how)");
}

sub is_whole {
    my ($sock, $req, $n, $name) = @_;
    my ($got, $how) = request_bytes($sock, $req, 60);
    ok(defined $got && $got eq pattern($n) . "\n", $name)
        or diag('got ' . describe_bytes($got) . " ($how)");
}

sub lonc_for {
    my ($name, %cfg) = @_;
    my $lonc = start_lonc(write_config(name => $name,
        socket_dir => tmp_dir() . "/s-$name", spool_dir => tmp_dir() . "/spool-$name",
        %cfg, hosts => [ { hostname => 'lond1', port => $lond->{port} } ]));
    return ($lonc, "$lonc->{socket_dir}/lond1");
}

# --- max_reply_bytes 2M, a small reply_buffer ------------------------------
{
    my ($lonc, $sock) = lonc_for('limit', reply_buffer => 100000,
        max_reply_bytes => '2M', transaction_timeout => 5,
        client_write_timeout => 1);

    is_whole($sock, 'bytes:2000000', 2000000, 'a reply under max_reply_bytes arrives whole');
    is_con_lost($sock, 'bytes:2200000', 'a plain reply over max_reply_bytes: con_lost');
    is_con_lost($sock, 'endless', 'an endless plain reply: con_lost');
    is_whole($sock, 'encbytes:900000', 900000, 'an enc: reply under max_reply_bytes arrives whole');
    is_con_lost($sock, 'encbytes:2200000', 'an enc: reply over max_reply_bytes: con_lost');
    is_con_lost($sock, 'encendless', 'an endless enc: reply: con_lost');
    like(log_text($lonc->{log}), qr/host=lond1 worker=\d+ event=transaction_failed reason=reply_too_long/,
        'logged as reply_too_long');

    # Bad enc: replies, small and big (the big ones past reply_buffer:
    # decoded in pieces, the flaw at the very end).
    for my $n (10, 300000) {
        for my $flaw (qw(hex odd len)) {
            is_con_lost($sock, "encbad:$flaw:$n", "enc: reply of $n bytes, flaw $flaw: con_lost");
        }
        # Padding that is not spaces: whether lonc checks it is its own
        # choice; either way the client gets all or nothing.
        my $a = lonnet_request($sock, "encbad:pad:$n", 60);
        ok(defined $a && ($a eq 'con_lost' || $a eq pattern($n)),
            "enc: reply of $n bytes with bad padding: con_lost or the whole plain text")
            or diag(defined $a ? length($a) . ' bytes' : 'timeout');
    }
    is_con_lost($sock, 'echo:enc:', 'enc: with nothing after it: con_lost');
    is_con_lost($sock, 'echo:enc:xyz', 'enc: without a length: con_lost');
    is_con_lost($sock, 'echo:enc:8:', 'enc: without hex: con_lost');
    is_con_lost($sock, 'echo:enc:8:' . ('zz' x 16), 'enc: with non-hex digits: con_lost');
    is_con_lost($sock, 'echo:enc:20:' . ('00' x 16), 'enc: whose length exceeds its blocks: con_lost');
    like(log_text($lonc->{log}), qr/host=lond1 worker=\d+ event=transaction_failed reason=bad_enc_reply/,
        'logged as bad_enc_reply');

    # A client that stops reading its own reply (client_write_timeout 1):
    # its connection is closed; what it then reads is part of the reply,
    # without a newline (no con_lost after data).
    {
        my $s = unix_connect($sock) or die "connect: $!";
        print $s "bytes:1900000\n";
        $s->flush;
        sleep 3;
        my ($got, $how) = read_reply_bytes($s, 30);
        close $s;
        ok($how eq 'eof' && length($got) < 1900000
            && $got eq pattern(length $got),
            'a client that stops reading is closed, no newline, no con_lost')
            or diag('got ' . describe_bytes($got) . " ($how)");
        like(log_text($lonc->{log}), qr/host=lond1 worker=\d+ event=client_write_failed/,
            'and lonc logs why');
    }
    is(request($sock, 'echo:after'), 'after', 'the daemon serves on');
    is(stop_lonc($lonc), 0, 'clean shutdown');
}

# --- An endless enc: reply under max_reply_bytes 64M: memory bounded ------
{
    my ($lonc, $sock) = lonc_for('endless', max_reply_bytes => '64M',
        transaction_timeout => 10);
    is(request($sock, 'ping'), 'pong', 'a small reply first (the worker exists)');
    my $base = rss_anon_kb($lonc->{pid}) // 0;
    my $stop = rss_sampler($lonc->{pid}, 120);
    my ($got, $how) = request_bytes($sock, 'encendless', 120);
    my $peak = $stop->() // 0;
    is(describe_bytes($got), 'con_lost\n', 'an endless enc: reply: con_lost at max_reply_bytes')
        or diag("($how)");
    ok($peak - $base < 32 * 1024,
        "lonc's anonymous memory grew by less than 32 MiB meanwhile (max_reply_bytes 64M)")
        or diag("RssAnon before $base kB, peak $peak kB (+" . ($peak - $base) . ' kB)');
    is(request($sock, 'echo:after'), 'after', 'the daemon serves on');
    is(stop_lonc($lonc), 0, 'clean shutdown');
}

# --- The shutdown deadline cuts slow replies: con_lost ---------------------
{
    my ($lonc, $sock) = lonc_for('drain', reply_buffer => 100000,
        shutdown_timeout => 1, transaction_timeout => 10);
    is(request($sock, 'ping'), 'pong', 'lonc is up');
    my $before = lond_stats($lond)->{requests};
    my @reqs = ('steady:3000000:8000', 'drip:300:' . ('y' x 40),
        'steady:50000:8000');
    my %c;
    for my $req (@reqs) {
        $c{$req} = unix_connect($sock) or die "connect: $!";
        print { $c{$req} } "$req\n";
        $c{$req}->flush;
    }
    wait_for(sub { lond_stats($lond)->{requests} >= $before + @reqs }, 10,
        'the slow requests reached lond');
    sleep 0.5;    # well into the replies: each has sent part of itself
    kill 'TERM', $lonc->{pid};
    for my $req (@reqs) {
        my ($got, $how) = read_reply_bytes($c{$req}, 30);
        is(describe_bytes($got), 'con_lost\n',
            "SIGTERM with shutdown_timeout 1 during $req: con_lost") or diag("($how)");
    }
    close $_ for values %c;
    is(wait_lonc($lonc, 20), 0, 'lonc then exits 0');
    like(log_text($lonc->{log}), qr/event=transaction_failed reason=shutdown_timeout/,
        'the cut transactions are logged as shutdown_timeout');
}

done_testing();

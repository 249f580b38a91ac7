#!/usr/bin/perl
# Every answer whole or con_lost (issue 12): a lond that dies part way
# through a reply (close or reset), at every size that matters to lonc's
# reply path (1 KiB, the 64 KiB of the old worker buffer +-1,
# reply_buffer +-1, 20 MB), gives the client exactly "con_lost\n"; the
# same replies sent whole arrive whole (also with the newline coming
# alone, after a pause); enc: replies cut anywhere, also
# after their last hex digit, give con_lost.  Once with a small
# reply_buffer and once with the default.  And a client written as
# lonnet reads its answer (my $answer = <$client>; 'con_lost' unless
# $answer; chomp) never gets an answer that is neither con_lost nor the
# whole reply.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use LoncTest;

watchdog(240);
my $lond = start_lond();
my $P = pattern(20_000_001);
sub pat { substr($P, 0, $_[0]) }

# Wire length of the test lond's enc: reply for n plain bytes (no "\n").
sub enc_wire_len {
    my ($n) = @_;
    return length("enc:$n:") + 16 * (int($n / 8) + 1);
}

sub uniq_sorted {
    my %seen;
    return sort { $a <=> $b } grep { $_ > 0 && !$seen{$_}++ } @_;
}

sub check_all_or_nothing {
    my ($label, %cfg) = @_;
    my $rb = $cfg{reply_buffer} // 1 << 20;   # the default, 1M
    my $conf = write_config(name => "integrity-$label",
        socket_dir => tmp_dir() . "/s-$label",
        spool_dir => tmp_dir() . "/spool-$label",
        transaction_timeout => 10,
        %cfg,
        hosts => [ { hostname => 'lond1', port => $lond->{port} } ]);
    my $lonc = start_lonc($conf);
    my $sock = "$lonc->{socket_dir}/lond1";
    note "$label: reply_buffer $rb";

    is(request($sock, 'ping'), 'pong', "$label: a small reply is relayed");

    my @sizes = uniq_sorted(1, 1000, 1024, 65535, 65536, 65537,
        $rb - 1, $rb, $rb + 1, 2 * $rb, 20_000_000);
    # [request, the whole reply it may give or undef when it must fail]
    my @cases;
    for my $n (@sizes) {
        push @cases, [ "bytes:$n", pat($n) ];
        push @cases, [ "closemid:$n", undef ];
        push @cases, [ "resetmid:$n", undef ];
    }
    # The newline alone, 60 ms after the rest (a buffer exactly full, then
    # one more read for the end of the line).
    for my $n (uniq_sorted(65535, 65536, 65537, $rb - 1, $rb, $rb + 1)) {
        push @cases, [ "steady:$n:60", pat($n) ];
    }
    # enc: replies whole, around the boundaries in plain and in wire bytes.
    for my $n (uniq_sorted(1, 7, 8, 9, 1000, 32767, 32768, 32769,
        int($rb / 2) - 1, int($rb / 2), int($rb / 2) + 1, $rb - 1, $rb, $rb + 1,
        3 * $rb)) {
        push @cases, [ "encbytes:$n", pat($n) ];
    }
    # enc: replies cut: in the head, after it, in the hex around the
    # boundaries, one hex digit short, and with every hex digit but no
    # newline (all that a decoder could use, and still not a reply).
    for my $n (1000, 3 * $rb) {
        my $head = length("enc:$n:");
        my $wire = enc_wire_len($n);
        for my $cut (uniq_sorted(2, $head - 1, $head, $head + 1, 65535, 65536,
            65537, $rb - 1, $rb, $rb + 1, 2 * $rb, $wire - 1, $wire)) {
            next if $cut > $wire;
            push @cases, [ "encmid:$n:$cut", undef ];
        }
    }

    # Raw bytes: a whole reply with its newline, or exactly con_lost\n.
    for my $c (@cases) {
        my ($req, $whole) = @$c;
        my ($got, $how) = request_bytes($sock, $req, 60);
        my $want = defined $whole ? "$whole\n" : "con_lost\n";
        my $ok = defined $got && $got eq $want;
        ok($ok, "$label: $req -> " . (defined $whole ? 'the whole reply' : 'con_lost\n'))
            or diag("got " . describe_bytes($got) . " ($how), expected "
                . describe_bytes($want));
    }

    # lonnet's idiom over the same cut points.
    for my $c (@cases) {
        my ($req, $whole) = @$c;
        my $answer = lonnet_request($sock, $req, 60);
        my $ok = defined $answer
            && ($answer eq 'con_lost' || (defined $whole && $answer eq $whole));
        # A whole reply must not be lost either.
        $ok &&= $answer ne 'con_lost' if defined $whole;
        ok($ok, "$label: lonnet reads $req as "
            . (defined $whole ? 'the whole reply' : 'con_lost'))
            or diag('lonnet got ' . (defined $answer
                ? (length($answer) . ' bytes' . ($answer eq 'con_lost' ? ' (con_lost)' : ''))
                : 'a timeout'));
    }

    like(log_text($lonc->{log}),
        qr/host=lond1 worker=\d+ event=transaction_failed reason=(closed_by_lond|read_failed)/,
        "$label: the cut replies are logged as failed transactions");
    is(request($sock, 'echo:still here'), 'still here', "$label: the daemon serves on");
    is(stop_lonc($lonc), 0, "$label: clean shutdown");
}

check_all_or_nothing('small', reply_buffer => 100000);
check_all_or_nothing('default');

done_testing();

#!/usr/bin/perl
# Replays every fuzz target over its corpus (seeds and past crashes):
# each file must be handled without a crash (and, under `make check`,
# without a sanitizer report).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use LoncTest;

watchdog(120);
my $root = "$FindBin::Bin/../..";
for my $t (qw(request reply enc config)) {
    my @files = glob("$root/t/fuzz/corpus/$t/*");
    ok(@files >= 3, "$t: corpus has seeds");
    my $out = `@{[build_dir()]}/t/fuzz/replay-$t @files 2>&1`;
    is($?, 0, "$t: every corpus file handled without a crash") or diag $out;
    my $n = () = $out =~ /^ok \d+/mg;
    is($n, scalar @files, "$t: all " . scalar(@files) . " files replayed");
}
done_testing();

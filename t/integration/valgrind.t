#!/usr/bin/perl
# A daemon start, some load (plain, encrypted, failing) and a stop under
# valgrind's leak checker: no definite or indirect leak, no invalid
# access.  Skipped where valgrind is missing or the binary is
# sanitizer-instrumented (the two do not mix).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use LoncTest;

plan skip_all => 'valgrind not installed' unless `valgrind --version 2>/dev/null` =~ /valgrind/;
plan skip_all => 'sanitizer build' if build_dir() =~ /asan|tsan/;
watchdog(300);
my $dir = tmp_dir();
my $lond = start_lond();
my $cfg = write_config(
    name => 'vg',
    transaction_timeout => 2,
    retry_attempts => 1,
    hosts => [ { hostname => 'h', port => $lond->{port} },
               { hostname => 'down', port => free_port() } ],
);
my $lonc = start_lonc($cfg, timeout => 60, wrapper => [
    'valgrind', '--quiet', '--leak-check=full', '--show-leak-kinds=definite,indirect',
    '--errors-for-leak-kinds=definite,indirect', '--error-exitcode=3',
    "--log-file=$dir/valgrind.log" ]);
my $sock = "$lonc->{socket_dir}/h";
is(request($sock, 'ping', 30), 'pong', 'serves under valgrind');
my $out = `@{[build_dir()]}/lonc-load --socket $sock --clients 4 --requests 25`;
like($out, qr/ok=100 mismatch=0/, '100 requests through 4 connections');
is(request($sock, 'encrypt:echo:secret', 30), 'secret', 'encrypted request');
is(request($sock, 'bytes:200000', 30), 'abcdefghijklmnopqrstuvwxyz' x 7692 . 'abcdefgh', 'streamed reply');
is(request($sock, 'hang', 30), 'con_lost', 'timed-out transaction');
is(request("$lonc->{socket_dir}/down", 'ping', 30), 'con_lost', 'failed connect');
is(stop_lonc($lonc, 60), 0, 'exits 0: no leak or memory error reported');
my $vg = log_text("$dir/valgrind.log");
is($vg, '', 'valgrind reported nothing') or diag $vg;
done_testing();

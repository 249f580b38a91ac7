#!/usr/bin/perl
# log_file: every log line also goes to a lonc.log shaped like loncnew's
# (local time, pid, [host], a severity word, the line), and the file is
# reopened, without a signal, once it was renamed (loncron's rotation)
# or removed.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use Time::HiRes qw(sleep);
use LoncTest;

watchdog(90);
my $lond = start_lond();
my $dir = tmp_dir();
my $file = "$dir/lonc.log";
my $port = free_port();
my $lonc = start_lonc(write_config(name => 'lf', log_file => $file, retry_attempts => 1,
    hosts => [ { hostname => 'up', port => $lond->{port} }, { hostname => 'down', port => $port } ]));
my $d = $lonc->{socket_dir};

is(request("$d/up", 'ping'), 'pong', 'a request');
is(request("$d/down", 'ping'), 'con_lost', 'a host that is down');
wait_for(sub { log_text($file) =~ /event=host_dead/ }, 10, 'host_dead in the file');
my $text = log_text($file);
my $stamp = qr/\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4} \($lonc->{pid}\)/;
like($text, qr/^$stamp \[-\] SUCCESS: event=ready /m, 'ready: no host, SUCCESS');
like($text, qr/^$stamp \[up\] SUCCESS: host=up worker=\d+ event=connected$/m,
    'a connection: its host, SUCCESS');
like($text, qr/^$stamp \[down\] WARNING: host=down event=connect_failed /m, 'a failed attempt: WARNING');
like($text, qr/^$stamp \[down\] CRITICAL: host=down event=host_dead /m, 'a dead host: CRITICAL');
unlike($text, qr/^(?!$stamp \[[^\]]+\] (?:INFO|WARNING|CRITICAL|SUCCESS): ).+$/m,
    'every line has the shape');

# loncron rotates by renaming: lonc notices within a second or so.
rename $file, "$file.1" or die;
sleep 1.2;
my $old_size = -s "$file.1";
request("$d/up", 'close_connection_exit');
is(request("$d/up", 'ping'), 'pong', 'after the rename');
wait_for(sub { -s $file && log_text($file) =~ /event=connected/ }, 10, 'a new file');
pass('a new lonc.log is started after the rename');
is(-s "$file.1", $old_size, 'and the renamed one got nothing more');
unlink $file;
sleep 1.2;
request("$d/up", 'close_connection_exit');
is(request("$d/up", 'ping'), 'pong', 'after the removal');
wait_for(sub { -s $file }, 10, 'the file again');
pass('a removed lonc.log is made again');
is(stop_lonc($lonc), 0, 'clean shutdown');
done_testing();

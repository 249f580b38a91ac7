#!/usr/bin/perl
# The command line: --version, -t on good and broken configs, exit
# status 2 for a broken config with nothing started, a second instance
# refused by the pid file lock.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use POSIX ();
use LoncTest;

watchdog(60);
my $lonc = build_dir() . '/lonc';

like(`$lonc --version`, qr/^lonc \d+\.\d+\.\d+$/m, '--version prints the version');

my $good = write_config(name => 'good', hosts => [ { hostname => 'h1', port => 5663 } ]);
my $out = `$lonc -t -c $good 2>&1`;
is($? >> 8, 0, '-t on a good config exits 0');
like($out, qr/config .*good\.yaml: OK/, '-t prints OK');
like($out, qr/host h1 -> 127\.0\.0\.1:5663 ids=h1/, '-t summarises the hosts');

my $dir = tmp_dir();
open my $fh, '>', "$dir/broken.yaml" or die;
print $fh "host_id: x\nsocket_dir: $dir/broken-sockets\nmax_connections: lots\nhosts: []\n";
close $fh;
$out = `$lonc -t -c $dir/broken.yaml 2>&1`;
is($? >> 8, 2, '-t on a broken config exits 2');
like($out, qr/broken\.yaml:3: key 'max_connections': expected an integer/, 'names file, line and key');
$out = `$lonc -c $dir/broken.yaml --foreground 2>&1`;
is($? >> 8, 2, 'the daemon refuses a broken config with status 2');
ok(!-e "$dir/broken-sockets", 'and starts nothing (no socket directory)');

$out = `$lonc -c $dir/nonexistent.yaml --foreground 2>&1`;
is($? >> 8, 2, 'a missing config file is status 2');
like($out, qr/nonexistent\.yaml: cannot open/, 'with a clear message');

$out = `$lonc --no-such-option 2>&1`;
is($? >> 8, 2, 'an unknown option is status 2');

# Second instance: the pid file is locked by the first.
my $l = start_lonc($good);
ok(-S "$l->{socket_dir}/h1", 'first instance listening');
$out = `$lonc -c $good --foreground 2>&1`;
isnt($? >> 8, 0, 'a second instance refuses to start');
like($out, qr/another lonc is running/, 'and says why');
ok(-S "$l->{socket_dir}/h1", 'the first instance keeps its socket');
is(stop_lonc($l), 0, 'first instance stops cleanly');
ok(!-e "$dir/good.pid", 'pid file removed');

# A pid file naming a live lonc or loncnew that holds no lock (loncnew
# does not lock its pid file): refused, and the file is left alone.  One
# naming any other live process is stale (its pid was reused, e.g. after
# a reboot) and is taken over.
{
    my $fake = fork // die;
    if (!$fake) { $0 = 'loncnew'; sleep 30; POSIX::_exit(0) }
    wait_for(sub { log_text("/proc/$fake/cmdline") =~ /^loncnew/ }, 10, 'the fake loncnew');
    open my $pf, '>', "$dir/good.pid" or die;
    print $pf "$fake\n";
    close $pf;
    $out = `$lonc -c $good --foreground 2>&1`;
    isnt($? >> 8, 0, 'a pid file naming a running loncnew stops the start');
    like($out, qr/names a running lonc or loncnew \(pid $fake\)/, 'with a clear message');
    is(log_text("$dir/good.pid"), "$fake\n", 'the pid file is untouched');
    kill 'KILL', $fake;
    waitpid $fake, 0;
    open $pf, '>', "$dir/good.pid" or die;
    print $pf "$$\n";   # this test: alive, but no lonc
    close $pf;
    my $l2 = start_lonc($good);
    is(log_text("$dir/good.pid"), "$l2->{pid}\n",
       'a pid file naming a live process that is not lonc is taken over');
    is(stop_lonc($l2), 0, 'and lonc stops cleanly');
    open $pf, '>', "$dir/good.pid" or die;
    print $pf "999999999\n";
    close $pf;
    $l2 = start_lonc($good);
    is(log_text("$dir/good.pid"), "$l2->{pid}\n", 'a stale pid file (no such process) is replaced by one naming the new lonc');
    is(stop_lonc($l2), 0, 'and lonc stops cleanly');
}

# Daemon mode: detaches, writes its pid file, stops on SIGTERM.
system($lonc, '-c', $good);
is($? >> 8, 0, 'daemon mode: the parent reports a successful start');
ok(-s "$dir/good.pid", 'pid file written');
open my $pf, '<', "$dir/good.pid" or die;
chomp(my $pid = <$pf>);
close $pf;
ok(kill(0, $pid), 'daemon is running');
ok(-S "$dir/sockets/h1", 'daemon is listening');
kill 'TERM', $pid;
wait_for(sub { !kill(0, $pid) }, 10, 'daemon exit');
ok(!-e "$dir/good.pid", 'daemon removed its pid file');

# Started with a low soft limit on open files, lonc raises it to the hard
# one (idle clients of one host would otherwise starve every other host).
SKIP: {
    skip 'prlimit is not available', 3 if system('prlimit --nofile=256:4096 true >/dev/null 2>&1') != 0;
    my $l = start_lonc($good, wrapper => [ 'prlimit', '--nofile=256:4096' ]);
    my ($soft) = log_text("/proc/$l->{pid}/limits") =~ /^Max open files\s+(\d+)/m;
    is($soft, 4096, 'the soft limit on open files is raised to the hard one');
    like(log_text($l->{log}), qr/event=nofile_limit open_files=4096/, 'and logged');
    is(stop_lonc($l), 0, 'and lonc stops cleanly');
}
done_testing();

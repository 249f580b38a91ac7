#!/usr/bin/perl
# Started as root, lonc creates its sockets, gives them to user/group
# with socket_mode, and runs as that user for good: it still serves,
# reloads (new sockets are created as the user) and stops cleanly.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use LoncTest;

plan skip_all => 'needs root' if $> != 0;
my @pw = getpwnam('nobody') or plan skip_all => 'no user nobody';
my $gid = getgrnam('nogroup') // plan skip_all => 'no group nogroup';
watchdog(120);
my $lond = start_lond();
my $dir = tmp_dir() . '/priv';
mkdir $dir or die;
chown $pw[2], $gid, $dir;
chmod 0755, tmp_dir(), $dir;
my %o = (name => 'priv', user => 'nobody', group => 'nogroup', socket_mode => '0660',
    socket_dir => "$dir/sockets", pid_file => "$dir/lonc.pid",
    admin_socket => "$dir/admin.sock", log_dir => "$dir/logs",
    spool_dir => "$dir/spool");
my $cfg = write_config(%o, hosts => [ { hostname => 'h', port => $lond->{port} } ]);
chmod 0644, $cfg;
my $lonc = start_lonc($cfg);
my $sock = "$dir/sockets/h";

my ($uid) = log_text("/proc/$lonc->{pid}/status") =~ /^Uid:\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)/m;
is($uid, $pw[2], 'lonc runs as nobody');
my ($ruid, $euid, $suid) = log_text("/proc/$lonc->{pid}/status") =~ /^Uid:\s+(\d+)\s+(\d+)\s+(\d+)/m;
is("$ruid $euid $suid", "$pw[2] $pw[2] $pw[2]", 'real, effective and saved uid all dropped');
my @st = stat $sock;
is($st[4], $pw[2], 'socket owned by nobody');
is($st[5], $gid, 'socket group nogroup');
is($st[2] & 07777, 0660, 'socket mode 0660 (socket_mode)');
@st = stat "$dir/admin.sock";
is($st[4], $pw[2], 'admin socket owned by nobody');
is($st[2] & 07777, 0600, 'admin socket mode 0600');
like(log_text($lonc->{log}), qr/event=privileges_dropped user=nobody/, 'drop logged');
is(request($sock, 'ping'), 'pong', 'serves after the drop');

# Reload as nobody: a new host gets a socket created by nobody.
write_config(%o, hosts => [ { hostname => 'h', port => $lond->{port} },
                            { hostname => 'h2', port => $lond->{port} } ]);
kill 'HUP', $lonc->{pid};
wait_for(sub { -S "$dir/sockets/h2" }, 10, 'new socket');
is((stat "$dir/sockets/h2")[4], $pw[2], 'socket made by a reload is nobody\'s');
is(request("$dir/sockets/h2", 'ping'), 'pong', 'and serves');

is(stop_lonc($lonc), 0, 'stops cleanly');
ok(!-e "$dir/lonc.pid", 'pid file removed');

# A user that does not exist is a clear start-up error.
my $bad = write_config(%o, name => 'priv2', pid_file => "$dir/b.pid", user => 'no-such-user-x',
    hosts => [ { hostname => 'h', port => $lond->{port} } ]);
my $out = `@{[build_dir()]}/lonc -c $bad --foreground 2>&1`;
isnt($? >> 8, 0, 'an unknown user stops the start');
like($out, qr/user 'no-such-user-x' does not exist/, 'with a clear message');
# lonc -t says so too (it used to say OK, then the start failed).
$out = `@{[build_dir()]}/lonc -t -c $bad 2>&1`;
is($? >> 8, 2, 'lonc -t: an unknown user: exit 2');
like($out, qr/user 'no-such-user-x' does not exist/, 'lonc -t: with the message');

# A log_dir that is missing where lonc cannot make it (a parent of
# nobody's, which root does not make things in), and one nobody cannot
# write: lonc -t refuses both, before a start could lose S: records.
my $nob = "$dir/nobodys";
mkdir $nob or die;
chown $pw[2], $gid, $nob;
mkdir "$nob/roots", 0755 or die;   # root's, in nobody's: root makes nothing there
my $t = write_config(%o, name => 'priv3', pid_file => "$dir/c.pid", log_dir => "$nob/roots/a/logs",
    hosts => [ { hostname => 'h', port => $lond->{port} } ]);
chmod 0644, $t;
$out = `@{[build_dir()]}/lonc -t -c $t 2>&1`;
is($? >> 8, 2, 'lonc -t: a missing log_dir that cannot be made: exit 2');
like($out, qr{^error: log_dir \Q$nob\E/roots/a/logs cannot be made: \Q$nob\E/roots is not writable by nobody}m,
    'lonc -t: says why') or diag $out;
ok(!-e "$nob/roots/a", 'lonc -t made nothing');
$out = `@{[build_dir()]}/lonc -c $t --foreground 2>&1`;
isnt($? >> 8, 0, 'and the start fails too');
$t = write_config(%o, name => 'priv5', pid_file => "$dir/e.pid", log_dir => "$nob/a/b/logs",
    hosts => [ { hostname => 'h', port => $lond->{port} } ]);
chmod 0644, $t;
$out = `@{[build_dir()]}/lonc -t -c $t 2>&1`;
is($? >> 8, 0, 'lonc -t: a missing log_dir nobody can make: fine') or diag $out;
my $ro = "$dir/rootlogs";
mkdir $ro, 0755 or die;
$t = write_config(%o, name => 'priv4', pid_file => "$dir/d.pid", log_dir => $ro,
    hosts => [ { hostname => 'h', port => $lond->{port} } ]);
chmod 0644, $t;
$out = `@{[build_dir()]}/lonc -t -c $t 2>&1`;
is($? >> 8, 2, 'lonc -t: a log_dir nobody cannot write: exit 2');
like($out, qr/^error: log_dir \Q$ro\E is not writable by nobody/m, 'lonc -t: names log_dir');
$out = `@{[build_dir()]}/lonc -c $t --foreground 2>&1`;
isnt($? >> 8, 0, 'and the start refuses it');
like($out, qr/log_dir \Q$ro\E is not writable by nobody/, 'with the same message');
done_testing();

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
done_testing();

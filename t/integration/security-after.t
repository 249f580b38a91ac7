#!/usr/bin/perl
# Issue 13, the second attack: what lonc does as the daemon's user, after
# the drop, with what that user (the web application) plants in the
# directories it shares with lonc.  lonc is nobody by then, so the
# kernel keeps it from anything nobody could not do; these tests check
# that it also stays up and reads, sends and deletes only what it
# should:
# - <socket_dir>/delayed: a symlink to a root-only file, a hard link to
#   one (a system without protected_hardlinks), a FIFO, a terabyte
#   sparse file, a directory, a hard link to a file of the user's
#   elsewhere; the good file after them still goes out;
# - lonnet.perm.log a symlink to a root file;
# - log_file a FIFO nobody holds open and never reads;
# - spool_dir swapped for a symlink to a root directory while lonc runs;
# - local_key_dir: the key files are the user's and gone after use.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use LoncTest;
use POSIX ();

my ($gid, @pw) = attacker_setup(240);

my $tmp = tmp_dir();
chmod 0755, $tmp;
my $victim = make_victim("$tmp/victim");
my $lond = start_lond(host_id => 'lonc-test', client_id => 'lonc-test');

my $n = "$tmp/n";
mkdir $n or die;
chown $pw[2], $gid, $n;
for my $d ('sockets', 'sockets/delayed', 'logs', 'keys') {
    mkdir "$n/$d" or die;
    chown $pw[2], $gid, "$n/$d";
}
my $dd = "$n/sockets/delayed";
my $rootdir = "$tmp/rootdir";
mkdir $rootdir, 0755 or die;
make_victim("$rootdir/victim");
my $rootdir_was = fingerprint($rootdir);

# A root-only file in lonnet's form: "record:<token>" reaches the test
# lond's table if anyone sends it.
open my $fh, '>', "$tmp/rootsecret" or die;
print $fh "record:rootsecret\n";
close $fh;
chmod 0600, "$tmp/rootsecret";

# A file of nobody's outside delayed/, in lonnet's form.
open $fh, '>', "$n/outside" or die;
print $fh "record:outside\n";
close $fh;
chown $pw[2], $gid, "$n/outside";

# Planted in delayed/ before lonc starts, all old enough to be replayed
# (lonc leaves files younger than 3 s alone).
my $t = 1700000000;
my %planted = (
    symlink  => "$dd/$t.1.4242.record.h",
    hardroot => "$dd/$t.2.4242.record.h",
    fifo     => "$dd/$t.3.4242.record.h",
    sparse   => "$dd/$t.4.4242.record.h",
    dir      => "$dd/$t.5.4242.record.h",
    hardmine => "$dd/$t.6.4242.record.h",
);
nobody('ln', '-s', "$tmp/rootsecret", $planted{symlink});
link "$tmp/rootsecret", $planted{hardroot} or die "link: $!";    # root makes it (protected_hardlinks)
nobody('mkfifo', $planted{fifo});
nobody('truncate', '-s', '1T', $planted{sparse});
nobody('mkdir', $planted{dir});
nobody('ln', "$n/outside", $planted{hardmine});
# Two names of one file (lonnet never makes them): each name is a
# transaction of its own.
nobody('sh', '-c', "echo record:twice > $dd/$t.8.4242.record.h && ln $dd/$t.8.4242.record.h $dd/$t.9.4242.record.h");
$planted{$_} = "$dd/$t.$_.4242.record.h" for 8, 9;
my $good = "$dd/$t.7.4242.record.h";
nobody('sh', '-c', "echo record:good > $good");
for my $f (values %planted, $good) {
    system('touch', '-h', '-d', '@' . (time - 60), $f) == 0 or die;
}
nobody('ln', '-s', $victim, "$n/logs/lonnet.perm.log");
nobody('mkfifo', "$n/logs/lonc.log");

# nobody holds the log FIFO open for reading and never reads: lonc's
# writes must not block it once the pipe is full.
my $reader = fork // die;
if ($reader == 0) {
    $SIG{$_} = 'DEFAULT' for qw(TERM INT HUP);
    POSIX::setgid($gid);
    POSIX::setuid($pw[2]) or POSIX::_exit(1);
    open my $r, '<', "$n/logs/lonc.log" or POSIX::_exit(2);
    sleep 120;
    POSIX::_exit(0);
}
END { local $?; if ($reader) { kill 'KILL', $reader; waitpid $reader, 0 } }

my $c = write_config(name => 'after', user => 'nobody', group => 'nogroup',
    socket_dir => "$n/sockets", pid_file => "$n/lonc.pid", admin_socket => "$n/admin.sock",
    log_dir => "$n/logs", log_file => "$n/logs/lonc.log", spool_dir => "$n/spool",
    local_key_dir => "$n/keys", delayed_scan_interval => 0.2, reply_buffer => '64K',
    hosts => [ { hostname => 'h', port => $lond->{port} },
               { hostname => 'self', ids => ['lonc-test'], port => $lond->{port}, key_mode => 'local' } ]);
chmod 0644, $c;

my %seen;
my $r = try_lonc($c, timeout => 60, while_up => sub {
    my ($pid) = @_;
    $seen{good} = eval { wait_for(sub { !-e $good }, 30, 'the good file delivered') };
    $seen{recorded_good} = lond_ctl($lond, 'recorded=good');
    $seen{recorded_secret} = lond_ctl($lond, 'recorded=rootsecret');
    $seen{recorded_outside} = lond_ctl($lond, 'recorded=outside');
    $seen{twice} = eval { wait_for(sub { !-e $planted{8} && !-e $planted{9} }, 20, 'both names') };
    $seen{recorded_twice} = lond_ctl($lond, 'recorded=twice');
    # Plenty of log lines for the FIFO nobody never reads.
    kill 'USR1', $pid for 1 .. 200;
    my $t0 = time;
    $seen{ping} = request("$n/sockets/h", 'ping');
    $seen{self} = request("$n/sockets/self", 'echo:local');
    $seen{ping_s} = time - $t0;
    $seen{keys} = join ' ', glob("$n/keys/*");
    # spool_dir swapped by nobody for a symlink to a root directory.
    nobody('sh', '-c', "mv $n/spool $n/spool.real && ln -s $rootdir $n/spool");
    my ($got) = request_bytes("$n/sockets/h", 'bytes:300000', 30);
    $seen{big} = describe_bytes($got);
    $seen{after_big} = request("$n/sockets/h", 'echo:still here');
});
ok($r->{ready}, 'lonc starts with all that planted') or diag $r->{out};
ok($seen{good}, 'the good delayed file after the planted ones is delivered');
is($seen{recorded_good}, 1, '... and reached lond once');
is($seen{recorded_secret}, 0, 'nothing of the root-only file (symlink, hard link) was sent');
ok(-l $planted{symlink} && -e $planted{hardroot} && -p $planted{fifo} && -d $planted{dir} && -e $planted{sparse},
    'the unreadable entries stay (for an operator)');
is($seen{recorded_outside}, 1, 'a hard link to a file of nobody\'s: sent (nobody could send it itself)');
is(log_text("$n/outside"), "record:outside\n", '... and the file it named is intact');
ok(!-e $planted{hardmine}, '... only the name in delayed/ is gone');
ok($seen{twice}, 'two names of one file in delayed/: both replayed and gone');
note "... and lond got it $seen{recorded_twice} time(s) (one per name: lonnet never links)";
is($seen{ping}, 'pong', 'lonc serves with a log FIFO nobody never reads');
cmp_ok($seen{ping_s}, '<', 10, '... promptly');
is($seen{self}, 'local', 'a local-mode host works');
is($seen{keys} // '', '', 'no key file left in local_key_dir');
note "a 300000-byte reply with spool_dir swapped for a symlink to a root directory: $seen{big}";
is($seen{after_big}, 'still here', 'lonc serves on after spool_dir was swapped');
is(fingerprint($rootdir), $rootdir_was, 'nothing made in the root directory spool_dir was pointed at');
ok(victim_intact($victim), 'the victim (lonnet.perm.log pointed at it) untouched');
ok(victim_intact("$rootdir/victim"), 'the victim in the root directory untouched');
my @rootish = grep { $_ ne $n } split /\n/, `find $n -uid 0 ! -path '$planted{hardroot}'`;
is("@rootish", '', 'nothing of root\'s in the user\'s directories');
done_testing();

#!/usr/bin/perl
# Migration from loncnew: a lonc.yaml that names LON-CAPA's own files
# (loncapa_conf for lonHostID, lonSockDir, lonDaemons and
# loncAllowInsecure; hosts_tab for the hosts) and adds only what those
# files cannot say.  lonc -t shows the imported hosts; every imported
# machine gets a socket under lonSockDir that reaches the test lond with
# the first of its IDs; an edited hosts.tab is read again on reload (a
# broken one is refused and the running hosts kept); without pid_file
# the pid file is where loncnew had it, <lonDaemons>/logs/lonc.pid.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use LoncTest;

watchdog(90);
my $lonc_bin = build_dir() . '/lonc';
my $dir = tmp_dir();
my $lond = start_lond();
my $sockets = "$dir/mig-sockets";
my $daemons = "$dir/lonDaemons";
mkdir $daemons;
mkdir "$daemons/logs";

sub write_file {
    my ($path, $text) = @_;
    open my $fh, '>', $path or die "$path: $!";
    print $fh $text;
    close $fh;
}

# hosts.tab: the old form (with the address), one machine with two IDs,
# the later form (no address: "localhost" is resolved), comments.
my $tab = "$dir/hosts.tab";
write_file($tab, <<'EOF');
# LON-CAPA host table
lond1:testdom:library:lond1.test.invalid:127.0.0.1
lond2:testdom:access:lond2.test.invalid:127.0.0.1
lond2b:otherdom:access:lond2.test.invalid:127.0.0.1

lond3:testdom:access:localhost:https:test.invalid
EOF

# loncapa.conf as Apache reads it; lonHostID is the ID the test lond
# expects of its client.
write_file("$dir/loncapa.conf", <<"EOF");
<IfModule mod_perl.c>
PerlSetVar     lonHostID          lonc-test
PerlSetVar     lonSockDir         "$sockets"
PerlSetVar     lonDaemons         $daemons
perlsetvar     loncAllowInsecure  1
PerlSetVar     lonRole            library
</IfModule>
EOF

# The YAML file: the two files, then only what they cannot give (the
# test lond's port, test-private pid file and admin socket, our user).
my $user = getpwuid($>);
my $common = "loncapa_conf: $dir/loncapa.conf\n"
    . "hosts_tab: hosts.tab\n"                   # relative to the YAML file
    . "lond_port: $lond->{port}\n"
    . "admin_socket: $dir/mig-admin.sock\n"
    . "spool_dir: $dir/mig-spool\nlocal_key_dir: $dir/mig-keys\n"
    . "user: $user\n";
my $yaml = "$dir/migration.yaml";
write_file($yaml, $common . "pid_file: $dir/mig.pid\n");

my $out = `$lonc_bin -t -c $yaml 2>&1`;
is($? >> 8, 0, 'lonc -t accepts the migrated configuration') or diag $out;
like($out, qr/host_id lonc-test, socket_dir \Q$sockets\E, 3 host\(s\)/,
    'host_id and socket_dir come from loncapa.conf');
like($out, qr/hosts_tab \Q$tab\E: 3 host\(s\) imported/, 'lonc -t names the host table');
like($out, qr{^pid_file \Q$dir\E/mig\.pid$}m, 'pid_file of the YAML file wins over lonDaemons');
like($out, qr{^log_dir \Q$daemons\E/logs$}m, 'log_dir from lonDaemons');
like($out, qr/host lond1\.test\.invalid -> 127\.0\.0\.1:$lond->{port} ids=lond1 key_mode=insecure .*\(hosts_tab line 2\)/,
    'old form: address, lond_port, insecure allowed by loncAllowInsecure');
like($out, qr/host lond2\.test\.invalid -> 127\.0\.0\.1:$lond->{port} ids=lond2,lond2b .*\(hosts_tab line 3\)/,
    'two IDs of one machine make one host');
like($out, qr/host localhost -> localhost:$lond->{port} ids=lond3 .*\(hosts_tab line 6\)/,
    'later form: the name is resolved');

my $lonc = start_lonc($yaml);
ok(-S "$sockets/$_", "socket $_ under lonSockDir")
    for qw(lond1.test.invalid lond2.test.invalid localhost);
is(request("$sockets/lond1.test.invalid", 'ping'), 'pong', 'a request through lond1');
is(request("$sockets/lond1.test.invalid", 'whoami'), 'lond1', 'lond1 names itself lond1');
is(request("$sockets/lond2.test.invalid", 'whoami'), 'lond2', 'lond2 uses its first ID');
is(request("$sockets/localhost", 'whoami'), 'lond3', 'the later-form host serves too');
ok(-s "$dir/mig.pid", 'lonc wrote its pid file there');

# An edited hosts.tab is read again on reload.
my $reloads = 0;
sub reload {
    $reloads++;
    kill 'HUP', $lonc->{pid};
    wait_for(sub { my @m = log_text($lonc->{log}) =~ /event=reload(?:_failed)? /g;
                   @m >= $reloads }, 20, "reload $reloads");
}
open my $fh, '>>', $tab or die;
print $fh "lond4:testdom:access:lond4.test.invalid:127.0.0.1\n";
close $fh;
reload();
like(log_text($lonc->{log}), qr/event=reload added=lond4\.test\.invalid /, 'reload adds the new machine');
ok(-S "$sockets/lond4.test.invalid", 'with its socket');
is(request("$sockets/lond4.test.invalid", 'whoami'), 'lond4', 'which serves');

# A broken hosts.tab: the reload is refused, naming the file and line.
open $fh, '>>', $tab or die;
print $fh "lond5:testdom\n";
close $fh;
reload();
like(log_text($lonc->{log}), qr/event=reload_failed reason=".*\Q$tab\E:8: expected id:domain:role:name/,
    'a broken hosts.tab is refused with its file and line');
is(request("$sockets/lond1.test.invalid", 'ping'), 'pong', 'and the running hosts go on');
is(request("$sockets/lond4.test.invalid", 'ping'), 'pong', 'including the one added before');

is(stop_lonc($lonc), 0, 'lonc stops cleanly');
ok(!-e "$sockets/lond1.test.invalid", 'sockets removed');
ok(!-e "$dir/mig.pid", 'pid file removed');

# Without pid_file, lonDaemons puts it where loncnew had its own.
write_file($tab, "lond1:testdom:library:lond1.test.invalid:127.0.0.1\n");
my $yaml2 = "$dir/migration2.yaml";
write_file($yaml2, $common);
like(`$lonc_bin -t -c $yaml2 2>&1`, qr{^pid_file \Q$daemons\E/logs/lonc\.pid$}m,
    'lonc -t shows the pid file from lonDaemons');
$lonc = start_lonc($yaml2);
ok(-s "$daemons/logs/lonc.pid", 'pid file in <lonDaemons>/logs/lonc.pid');
is(request("$sockets/lond1.test.invalid", 'ping'), 'pong', 'and lonc serves');
is(stop_lonc($lonc), 0, 'second lonc stops cleanly');
ok(!-e "$daemons/logs/lonc.pid", 'its pid file removed');

done_testing();

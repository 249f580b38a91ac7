#!/usr/bin/perl
# Issue 13, the configuration: as root, lonc refuses a configuration
# file (the YAML file, loncapa_conf, hosts_tab) that others can write;
# the YAML file and loncapa_conf must be root's, hosts_tab root's or
# the daemon user's; one that is not a regular file fails at once (a
# FIFO must not hang it), at start and with lonc -t.  Then what the
# daemon's user could make root do through a file it may write or a
# symlink it may plant, all refused: read a file only root can read
# (hosts_tab, TLS files), hand over or make directories in root's
# places, run with a group of the user's choice.  The same symlinks to
# files the user may read are fine.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use LoncTest;

my ($gid, @pw) = attacker_setup(240);

my $tmp = tmp_dir();
chmod 0755, $tmp;
my $victim = make_victim("$tmp/victim");
my $third = throwaway_user('c');
my $foreign = throwaway_group('c');
my $ctl = build_dir() . '/lonc-ctl';

my $n = "$tmp/n";
mkdir $n or die;
chown $pw[2], $gid, $n;
my %o = (user => 'nobody', group => 'nogroup', socket_dir => "$n/sockets",
    pid_file => "$n/lonc.pid", admin_socket => "$n/admin.sock", log_dir => "$n/logs",
    spool_dir => "$n/spool", hosts => [ { hostname => 'h', port => free_port() } ]);
my $serial = 0;

# A configuration owned by $uid:$gid with $mode.
sub config_as {
    my ($uid, $g, $mode, %more) = @_;
    my $c = write_config(%o, name => 'cfg' . $serial++, %more);
    chown $uid, $g, $c;
    chmod $mode, $c;
    return $c;
}

sub refused {
    my ($c, $what, $why) = @_;
    my $r = try_lonc($c);
    ok(!$r->{ready} && $r->{exit}, "$what: start refused");
    like($r->{out}, $why, "$what: says why") or diag $r->{out};
    my $t = try_lonc($c, test => 1);
    is($t->{exit}, 2, "$what: lonc -t exits 2");
    like($t->{out}, qr/^error: .*$why/m, "$what: with an error: line") or diag $t->{out};
}

sub accepted {
    my ($c, $what) = @_;
    my $t = try_lonc($c, test => 1);
    is($t->{exit}, 0, "$what: lonc -t accepts it") or diag $t->{out};
    my $r = try_lonc($c);
    ok($r->{ready}, "$what: lonc starts") or diag $r->{out};
}

# ---- who may write the configuration ---------------------------------
refused(config_as(0, 0, 0666), 'a world-writable config', qr/writable by others \(mode 0666\)/);
refused(config_as(0, $foreign->{gid}, 0664), 'a config group-writable by a foreign group',
    qr/writable by others \(mode 0664\)/);
refused(config_as($third->{uid}, $third->{gid}, 0644), 'a config owned by a third user',
    qr/belongs to uid $third->{uid}, not root: lonc runs as root and takes its configuration from root alone/);
accepted(config_as(0, 0, 0644), 'root\'s config, 0644');
accepted(config_as(0, 0, 0664), 'root\'s config, group root may write');
# The daemon's group is the attacker's (a web application taken over
# runs with it): it may write hosts_tab, never root's configuration.
refused(config_as(0, $gid, 0664), 'root\'s config, the daemon\'s group may write',
    qr/writable by others \(mode 0664\)/);
# The YAML file says where root works (below): the daemon's user may not
# write it.
refused(config_as($pw[2], $gid, 0644), 'the daemon user\'s config',
    qr/belongs to uid $pw[2], not root/);

# ---- imported files ---------------------------------------------------
my $tab = "$tmp/hosts.tab";
open my $fh, '>', $tab or die;
print $fh "h:dom:library:h.example:127.0.0.1\n";
close $fh;
my $conf = "$tmp/loncapa.conf";
open $fh, '>', $conf or die;
print $fh "PerlSetVar lonSockDir $n/sockets\n";
close $fh;
my %imp = (hosts => undef, hosts_tab => $tab, loncapa_conf => $conf);
chmod 0666, $tab;
refused(config_as(0, 0, 0644, %imp), 'a world-writable hosts_tab', qr/\Q$tab\E is writable by others/);
chmod 0644, $tab;
chown $third->{uid}, $third->{gid}, $tab;
refused(config_as(0, 0, 0644, %imp), 'a hosts_tab of a third user', qr/\Q$tab\E belongs to uid $third->{uid}/);
chown 0, 0, $tab;
chown $third->{uid}, $third->{gid}, $conf;
refused(config_as(0, 0, 0644, %imp), 'a loncapa_conf of a third user', qr/\Q$conf\E belongs to uid $third->{uid}/);
chown 0, 0, $conf;
accepted(config_as(0, 0, 0644, %imp), 'root\'s hosts_tab and loncapa_conf');

# ---- not a regular file: refused at once -----------------------------
my $fifo = "$tmp/fifo";
system('mkfifo', $fifo) == 0 or die;
for my $how ([ '-t', test => 1 ], [ '--foreground' ], [ 'as a daemon', daemon => 1 ]) {
    my ($name, %t) = @$how;
    my $r = try_lonc($fifo, %t, timeout => 5);
    ok(defined $r->{exit}, "lonc $name -c FIFO: ends at once (no hang)");
    is($r->{exit}, 2, "lonc $name -c FIFO: exit 2");
    like($r->{out}, qr/\Q$fifo\E: not a regular file/, "lonc $name -c FIFO: says so") or diag $r->{out};
}
for my $key ('hosts_tab', 'loncapa_conf') {
    my $c = config_as(0, 0, 0644, %imp, $key => $fifo);
    for my $t (0, 1) {
        my $r = try_lonc($c, test => $t, timeout => 5);
        ok(defined $r->{exit} && $r->{exit} == 2, "$key a FIFO: exit 2 at once" . ($t ? ' (-t)' : ''));
        like($r->{out}, qr/'\Q$fifo\E' is not a regular file/, "$key a FIFO: says so") or diag $r->{out};
    }
}
for my $odd ($tmp, '/dev/null') {
    my $r = try_lonc($odd, timeout => 5);
    is($r->{exit}, 2, "-c $odd: exit 2");
    like($r->{out}, qr/not a regular file/, "-c $odd: not a regular file") or diag $r->{out};
}
ok(victim_intact($victim), 'victim untouched');

# ---- what the daemon's user can make root do through a file it may write
# The user's hosts_tab (LON-CAPA's hosts.tab is www's): the user swaps it
# for a symlink to a file only root may read.  Root must not read it for
# the user: its first field becomes a host ID, its fourth a socket name.
my $secret = "$tmp/secret";
open $fh, '>', $secret or die;
print $fh "topsecret42:dom:library:leaked-by-root.example\n";
close $fh;
chmod 0600, $secret;
mkdir "$n/tabs" or die;
chown $pw[2], $gid, "$n/tabs";
as_user('nobody', 'ln', '-s', $secret, "$n/tabs/hosts.tab") == 0 or die;
my $c = config_as(0, 0, 0644, hosts => undef, hosts_tab => "$n/tabs/hosts.tab");
my $seen = '';
my $r = try_lonc($c, while_up => sub {
    $seen = join ' ', map { s{.*/}{}r } glob("$n/sockets/*");
    my $out = "$n/ctl.out";
    as_user('nobody', 'sh', '-c', "$ctl -s $n/admin.sock hosts > $out 2>&1");
    $seen .= ' ' . log_text($out);
});
{
    unlike($seen, qr/topsecret42|leaked-by-root/, 'a root-only file named through the user\'s symlink: nothing of it reaches the user');
    ok(!$r->{ready}, 'and lonc refuses (the user cannot read it: reloads, as the user, could not either)');
}
note "the user saw: $seen";

# The daemon user's own YAML file names where root works.
my $rootdir = "$tmp/rootdir";        # root's, 0755, with a victim
mkdir $rootdir, 0755 or die;
make_victim("$rootdir/victim");
my $was = fingerprint($rootdir);
$c = config_as($pw[2], $gid, 0644, spool_dir => $rootdir);
$r = try_lonc($c);
{
    is(fingerprint($rootdir), $was, 'spool_dir: a root directory named by the user\'s config is not handed to the user');
    ok(!$r->{ready}, 'lonc refuses');
}
my @st = lstat $rootdir;
note sprintf 'that directory is now %d:%d mode %04o', @st[4, 5], $st[2] & 07777;
chown 0, 0, $rootdir;
chmod 0755, $rootdir;

my $rootdir2 = "$tmp/rootdir2";
mkdir $rootdir2, 0755 or die;
$was = fingerprint($rootdir2);
$c = config_as($pw[2], $gid, 0644, spool_dir => "$rootdir2/new.d", local_key_dir => "$rootdir2/keys.d");
$r = try_lonc($c);
{
    is(fingerprint($rootdir2), $was, 'spool_dir: no directory of the user\'s appears in a root-only directory');
}
note 'root-only directory now: ' . fingerprint($rootdir2);

# The daemon user's YAML file names the group lonc runs as.
my $g2 = throwaway_group('d');
my $gdir = "$tmp/groupdir";         # others may only read it
mkdir $gdir or die;
chown 0, $g2->{gid}, $gdir;
chmod 0775, $gdir;
$was = fingerprint($gdir);
$c = config_as($pw[2], $gid, 0644, group => $g2->{name}, log_file => "$gdir/lonc.log",
    socket_dir => "$gdir/sockets");
$r = try_lonc($c);
{
    is(fingerprint($gdir), $was, "group $g2->{name} from the user's config: nothing of nobody's in that group's directory");
}
note "the group's directory now: " . fingerprint($gdir);

# TLS files the configuration names through the user's directory: the
# user points the key at one only root may read (another service's).
SKIP: {
    my $certs = "$tmp/certs";
    system("$FindBin::Bin/../tls/mkcerts $certs >/dev/null 2>&1") == 0 or skip 'mkcerts failed', 1;
    chmod 0600, "$certs/lonc.key";
    mkdir "$n/tls" or die;
    chown $pw[2], $gid, "$n/tls";
    as_user('nobody', 'ln', '-s', "$certs/$_", "$n/tls/$_") == 0 or die for qw(ca.pem lonc.pem lonc.key);
    ok(as_user('nobody', 'sh', '-c', "cat $n/tls/lonc.key >/dev/null 2>&1") != 0, 'nobody cannot read that key');
    $c = config_as(0, 0, 0644, tls => "{ca_file: $n/tls/ca.pem, cert_file: $n/tls/lonc.pem, key_file: $n/tls/lonc.key}",
        hosts => [ { hostname => 'h', port => free_port(), key_mode => 'ssl' } ]);
    $r = try_lonc($c);
    ok(!$r->{ready}, 'a root-only key named through the user\'s symlink: lonc refuses to use it');
}
# The same ways to files the user may read itself: accepted.
{
    my $open = "$tmp/open.tab";
    open my $fh, '>', $open or die;
    print $fh "h:dom:library:h.example:127.0.0.1\n";
    close $fh;
    chmod 0644, $open;
    unlink "$n/tabs/hosts.tab";
    as_user('nobody', 'ln', '-s', $open, "$n/tabs/hosts.tab") == 0 or die;
    my $r = try_lonc(config_as(0, 0, 0644, hosts => undef, hosts_tab => "$n/tabs/hosts.tab"));
    ok($r->{ready}, 'hosts_tab through the user\'s symlink to a file the user may read: lonc starts')
        or diag $r->{out};
}
SKIP: {
    my $certs = "$tmp/certs";
    -e "$certs/lonc.key" or skip 'no certificates', 1;
    chown $pw[2], $gid, "$certs/lonc.key";
    my $r = try_lonc(config_as(0, 0, 0644,
        tls => "{ca_file: $n/tls/ca.pem, cert_file: $n/tls/lonc.pem, key_file: $n/tls/lonc.key}",
        hosts => [ { hostname => 'h', port => free_port(), key_mode => 'ssl' } ]));
    ok($r->{ready}, 'TLS files through the user\'s symlinks, the key the user\'s own: lonc starts')
        or diag $r->{out};
}
ok(victim_intact($victim) && victim_intact("$rootdir/victim"), 'victims untouched');
done_testing();

#!/usr/bin/perl
# Issue 13, directories: each directory lonc uses (socket_dir, its
# delayed/, log_dir, spool_dir, local_key_dir, the pid file's and the
# admin socket's) pre-created writable by every user (no sticky bit),
# owned by a third user, as a symlink (to a directory of the attacker's,
# to a root-owned one), or reached through a symlink the attacker put on
# the way: refused at start (exit non-zero, the key and the reason on
# stderr) and by lonc -t (exit 2, an "error:" line), which creates
# nothing; root-owned directories and the victim in them untouched.
# doc/security.md.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use LoncTest;

my ($gid, @pw) = attacker_setup(300);

my $tmp = tmp_dir();
chmod 0755, $tmp;
my $third = throwaway_user('d');
my $case = 0;

# Every directory's key, where it lies in the layout (relative to the
# user's directory), the word lonc's messages name it by.
my @dirs = (
    [ socket_dir    => 'sockets',         'socket_dir' ],
    [ delayed       => 'sockets/delayed', 'delayed directory' ],
    [ log_dir       => 'logs',            'log_dir' ],
    [ spool_dir     => 'spool',           'spool_dir' ],
    [ local_key_dir => 'keys',            'local_key_dir' ],
    [ pid_dir       => 'pd',              'pid_file' ],
    [ admin_dir     => 'ad',              'admin_socket' ],
);

# A fresh layout: the user's directory (nobody's, 0755) with lonc's
# directories in it, and a root-owned directory with a victim.
sub layout {
    my ($key, $rel, $path) = @_;
    my $n = sprintf '%s/c%02d', $tmp, ++$case;
    mkdir $n or die;
    chown $pw[2], $gid, $n;
    my $root = "$n-root";
    mkdir $root, 0755 or die;
    make_victim("$root/victim");
    mkdir "$n/sockets" and chown $pw[2], $gid, "$n/sockets" if $key eq 'delayed';
    # The pid file's and admin socket's directories: nobody's (lonc
    # makes only root's own run directory).
    for my $place (grep { $_ ne $key } qw(pid_dir admin_dir)) {
        my $pd = "$n/" . ($place eq 'pid_dir' ? 'pd' : 'ad');
        mkdir $pd or die;
        chown $pw[2], $gid, $pd;
    }
    my %paths = (socket_dir => "$n/sockets", log_dir => "$n/logs", spool_dir => "$n/spool",
        local_key_dir => "$n/keys", pid_dir => "$n/pd", admin_dir => "$n/ad");
    $paths{$key} = $path if defined $path && $key ne 'delayed';
    my $cfg = write_config(name => "dirs$case", user => 'nobody', group => 'nogroup',
        socket_dir => $paths{socket_dir}, log_dir => $paths{log_dir},
        spool_dir => $paths{spool_dir}, local_key_dir => $paths{local_key_dir},
        pid_file => "$paths{pid_dir}/lonc.pid", admin_socket => "$paths{admin_dir}/admin.sock",
        hosts => [ { hostname => 'h', port => free_port() },
                   { hostname => 'self', port => free_port(), key_mode => 'local' } ]);
    chmod 0644, $cfg;
    return ($n, $root, $cfg);
}

# The attacks: each makes the directory at $d (whose parent is the
# user's directory $n) and returns a description; $root is the victim
# directory.  A place (pid file, admin socket) that is world-writable
# is made root's: a root-owned 0777 directory is no run directory.
my @attacks = (
    [ 'writable by every user (0777, no sticky bit)' => sub {
        my ($d, $n, $root, $place) = @_;
        mkdir $d or die;
        chown $place ? 0 : $pw[2], $place ? 0 : $gid, $d;
        chmod 0777, $d;
    } ],
    [ 'owned by a third user' => sub {
        my ($d) = @_;
        mkdir $d or die;
        chown $third->{uid}, $third->{gid}, $d;
        chmod 0755, $d;
    } ],
    [ 'a symlink to a directory of the attacker\'s' => sub {
        my ($d, $n) = @_;
        nobody('mkdir', "$n/mine");
        nobody('ln', '-s', "$n/mine", $d);
    } ],
    [ 'a symlink to a root-owned directory' => sub {
        my ($d, $n, $root) = @_;
        nobody('ln', '-s', $root, $d);
    } ],
);

for my $dir (@dirs) {
    my ($key, $rel, $word) = @$dir;
    my $place = $key =~ /^(pid|admin)_dir$/;
    for my $attack (@attacks) {
        my ($what, $make) = @$attack;
        my ($n, $root, $cfg) = layout($key, $rel);
        my $d = "$n/$rel";
        $make->($d, $n, $root, $place);
        my $root_was = fingerprint($root);
        my $tree_was = join "\n", map { fingerprint($_) } glob("$n/* $n/*/*");
        my $t = try_lonc($cfg, test => 1);
        is($t->{exit}, 2, "$key $what: lonc -t exits 2");
        like($t->{out}, qr/^error: .*\Q$word\E/m, "$key: lonc -t prints an error: line naming it")
            or diag $t->{out};
        is(join("\n", map { fingerprint($_) } glob("$n/* $n/*/*")), $tree_was, "$key: lonc -t created nothing");
        my $r = try_lonc($cfg);
        ok(!$r->{ready} && $r->{exit}, "$key $what: start refused (exit " . ($r->{exit} // 'none') . ')');
        like($r->{out}, qr/event=start_failed reason=".*\Q$word\E/, "$key: the log says why")
            or diag $r->{out};
        is(fingerprint($root), $root_was, "$key: the root-owned directory untouched");
        ok(victim_intact("$root/victim"), "$key: victim untouched");
    }
}

# A symlink on the way: the user's directory holds "up", which the user
# turns into a symlink to a root-owned directory that has the directory
# lonc wants (root-owned, 0755): lonc must not hand it to nobody, nor
# use it as nobody's.  (delayed/ lies in socket_dir, the user's own.)
for my $dir (grep { $_->[0] ne 'delayed' } @dirs) {
    my ($key, $rel, $word) = @$dir;
    my $n = sprintf '%s/c%02d', $tmp, $case + 1;    # the layout's next directory
    my (undef, $rootdir, $cfg) = layout($key, $rel, "$n/up/$rel");
    mkdir "$rootdir/$rel", 0755 or die;
    nobody('ln', '-s', $rootdir, "$n/up");
    my $root_was = fingerprint($rootdir) . fingerprint("$rootdir/$rel");
    my $r = try_lonc($cfg);
    ok(!$r->{ready} && $r->{exit}, "$key through a symlink on the way: start refused");
    {
        like($r->{out}, qr/event=start_failed reason=".*\Q$word\E/, "$key: says why") or diag $r->{out};
    }
    is(fingerprint($rootdir) . fingerprint("$rootdir/$rel"), $root_was,
        "$key: the root-owned directories untouched (not handed to nobody)");
    ok(victim_intact("$rootdir/victim"), "$key: victim untouched");
    my $t = try_lonc($cfg, test => 1);
    {
        is($t->{exit}, 2, "$key through a symlink on the way: lonc -t exits 2");
    }
    {
        like($t->{out}, qr/^error: .*\Q$word\E/m, "$key: lonc -t names it") or diag $t->{out};
    }
}
done_testing();

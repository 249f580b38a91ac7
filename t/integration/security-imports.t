#!/usr/bin/perl
# Issue 13, the second attack: the files root reads before the drop.
# The first attack's fix has root check, after reading, that an
# imported file (hosts_tab, loncapa_conf) reached through a way the user
# can change is one the user may open itself (the same inode), and load
# TLS files there with the user's ids.  Tried here, as nobody and as a
# third user:
# - the YAML file itself on a way the user can change (a symlink to a
#   file only root may read, to another of root's configurations);
#   loncapa_conf likewise;
# - what root opens before any check: a FIFO only root may open at the
#   end of the user's symlink (a device would be opened the same way);
# - hosts_tab flipped between a file the user may read and one only
#   root may read, as fast as can be, over many starts and lonc -t;
# - a hard link in the user's directory to a root-only file (a system
#   without protected_hardlinks);
# - root's supplementary groups (a file group G may read, root in G);
#   root's own files and directories after it acted as the user;
# - a TLS file that is a FIFO in the user's directory (start, lonc -t,
#   --probe must end);
# - a reload (as the user) after the user swapped its hosts_tab.
# Holes 7, 8 and 9 of doc/security.md were found here; now closed.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use LoncTest;
use POSIX ();

my ($gid, @pw) = attacker_setup(300);

my $tmp = tmp_dir();
chmod 0755, $tmp;
my $victim = make_victim("$tmp/victim");
my $third = throwaway_user('j');
my $lond = start_lond();
my $lonc = build_dir() . '/lonc';
my $ctl = build_dir() . '/lonc-ctl';
my $case = 0;

# The user's directory; the keys of a configuration with lonc's places
# in it.
sub place {
    my $n = sprintf '%s/n%02d', $tmp, ++$case;
    mkdir $n or die;
    chown $pw[2], $gid, $n;
    for my $d ('etc', 'tabs', 'tls') {
        mkdir "$n/$d" or die;
        chown $pw[2], $gid, "$n/$d";
    }
    return ($n, user => 'nobody', group => 'nogroup', socket_dir => "$n/sockets",
        pid_file => "$n/lonc.pid", admin_socket => "$n/admin.sock", log_dir => "$n/logs",
        spool_dir => "$n/spool");
}

# What of lonc the user can see while it runs: the names in socket_dir.
sub sockets_seen {
    my ($n) = @_;
    return join ' ', map { s{.*/}{}r } glob("$n/sockets/*");
}

# A secret only root may read, in hosts.tab's form: its fields would
# become a host ID and a socket name.
my $secret = spew("$tmp/secret.tab", "topsecret42:dom:library:leaked-by-root.example:127.0.0.1\n", 0600);
my $open_tab = spew("$tmp/open.tab", "h:dom:library:h.example:127.0.0.1\n", 0644);

# ---- the YAML file on a way the user can change ------------------------
# Root keeps a configuration only root may read (another service's, a
# draft); lonc is started with -c on a path in the user's directory.
{
    my ($n, %o) = place();
    my $hidden = write_config(name => "hidden$case", %o,
        hosts => [ { hostname => 'topsecret42', port => $lond->{port} } ]);
    chmod 0600, $hidden;
    my $pub = write_config(name => "pub$case", %o, hosts => [ { hostname => 'h', port => $lond->{port} } ]);
    system('cp', $pub, "$n/etc/lonc.yaml") == 0 or die;
    chmod 0644, "$n/etc/lonc.yaml";
    my $r = try_lonc("$n/etc/lonc.yaml");
    note 'the YAML file (root\'s) in the user\'s directory: lonc ' . ($r->{ready} ? 'starts' : 'refuses');
    nobody('sh', '-c', "ln -s $hidden $n/etc/new && mv $n/etc/new $n/etc/lonc.yaml");
    ok(as_user('nobody', 'sh', '-c', "cat $n/etc/lonc.yaml >/dev/null 2>&1") != 0, 'nobody cannot read what it points at');
    my $seen = '';
    $r = try_lonc("$n/etc/lonc.yaml", while_up => sub { $seen = sockets_seen($n) });
    note "lonc " . ($r->{ready} ? 'ran' : 'refused') . "; nobody saw: $seen";
    unlike($seen, qr/topsecret42/, 'the YAML file swapped for a symlink to a root-only configuration: nothing of it reaches the user');
    ok(!$r->{ready}, 'and lonc refuses to run with it');
    my $t = try_lonc("$n/etc/lonc.yaml", test => 1);
    is($t->{exit}, 2, 'lonc -t refuses it too');

    # Another of root's configurations, readable by all: the user picks
    # which of root's files is lonc's configuration.
    my $other = write_config(name => "other$case", %o, spool_dir => "$tmp/other-spool$case",
        hosts => [ { hostname => 'other', port => $lond->{port} } ]);
    chmod 0644, $other;
    nobody('sh', '-c', "ln -s $other $n/etc/new && mv $n/etc/new $n/etc/lonc.yaml");
    $r = try_lonc("$n/etc/lonc.yaml");
    ok(!$r->{ready}, 'the YAML file on a way the user can change, pointed at another of root\'s configurations: refused');
    ok(!-e "$tmp/other-spool$case", 'and nothing of that configuration is made');
}

# loncapa_conf (PerlSetVar lonSockDir, lonDaemons: where root works) on
# a way the user can change, pointed at another root file.
{
    my ($n, %o) = place();
    my $real = spew("$tmp/loncapa$case.conf", "PerlSetVar lonSockDir $n/sockets\n", 0644);
    my $other = spew("$tmp/loncapa-other$case.conf", "PerlSetVar lonSockDir $tmp/other-sockets$case\n", 0644);
    nobody('ln', '-s', $real, "$n/etc/loncapa.conf");
    delete $o{socket_dir};
    my $c = write_config(name => "lcconf$case", %o, loncapa_conf => "$n/etc/loncapa.conf",
        hosts => [ { hostname => 'h', port => $lond->{port} } ]);
    system('sed', '-i', '/^socket_dir:/d', $c) == 0 or die;
    chmod 0644, $c;
    my $r = try_lonc($c);
    note 'loncapa_conf through the user\'s symlink to root\'s file: ' . ($r->{ready} ? 'ran' : 'refused');
    nobody('sh', '-c', "ln -s $other $n/etc/new && mv $n/etc/new $n/etc/loncapa.conf");
    $r = try_lonc($c);
    ok(!-e "$tmp/other-sockets$case", 'loncapa_conf re-pointed by the user at another root file: root does not work where that file says');
    system('rm', '-rf', "$tmp/other-sockets$case");
}

# ---- what root opens before any check -----------------------------------
# A FIFO only root may open: a writer waiting on it (blocking open)
# gets through only when someone opens it for reading.  Root must open
# nothing at the end of the user's symlink that the user could not open
# (a device: /dev/watchdog, a tape, a terminal would be opened the same
# way).
sub root_opens {
    my ($what, $config, %t) = @_;
    my $fifo = sprintf '%s/rootfifo%02d', $tmp, ++$case;
    POSIX::mkfifo($fifo, 0600) or die "mkfifo: $!";
    my $link = $config->($fifo);
    my $w = fork // die;
    if ($w == 0) {
        # Not the watchdog's handler: a die here would end the test's
        # servers with this child.
        $SIG{ALRM} = sub { POSIX::_exit(1) };
        alarm 8;
        open my $fh, '>', $fifo or POSIX::_exit(1);
        POSIX::_exit(0);
    }
    my $r = try_lonc($link, %t, timeout => 5);
    my $end = time + 8;
    my $got;
    while (time < $end) {
        last if ($got = waitpid($w, POSIX::WNOHANG())) == $w;
        sleep 0.05;
    }
    my $opened = $got == $w && $? == 0;
    if ($got != $w) {
        kill 'KILL', $w;
        waitpid $w, 0;
    }
    ok(defined $r->{exit}, "$what: lonc ends at once");
    return $opened;
}
{
    my ($n, %o) = place();
    my $opened = root_opens('hosts_tab a symlink to a root-only FIFO (lonc -t)', sub {
        my ($fifo) = @_;
        nobody('ln', '-sf', $fifo, "$n/tabs/hosts.tab");
        my $c = write_config(name => "fifo$case", %o, hosts => undef, hosts_tab => "$n/tabs/hosts.tab");
        chmod 0644, $c;
        return $c;
    }, test => 1);
    ok(!$opened, 'hosts_tab on the user\'s way: root opens nothing the user could not open');
    $opened = root_opens('the YAML file a symlink to a root-only FIFO (start)', sub {
        my ($fifo) = @_;
        nobody('ln', '-sf', $fifo, "$n/etc/fifo.yaml");
        return "$n/etc/fifo.yaml";
    });
    ok(!$opened, 'the YAML file on the user\'s way: root opens nothing the user could not open');
}

# ---- hosts_tab flipped while root reads it ---------------------------------
# nobody flips hosts.tab between a symlink to a file it may read and one
# to the secret, as fast as it can, over 20 starts and 20 lonc -t: the
# inode check must catch every mix.
{
    my ($n, %o) = place();
    my $c = write_config(name => "flip$case", %o, hosts => undef, hosts_tab => "$n/tabs/hosts.tab");
    chmod 0644, $c;
    nobody('ln', '-s', $open_tab, "$n/tabs/hosts.tab");
    my $f = start_flipper('nobody', '-t', 120, '-l', "$n/tabs", 'hosts.tab', $open_tab, $secret);
    my (%how, $seen);
    for (1 .. 20) {
        my $r = try_lonc($c, while_up => sub { $seen .= ' ' . sockets_seen($n) });
        $how{ $r->{ready} ? 'ran' : $r->{out} =~ /changed while lonc read it/ ? 'changed' :
              $r->{out} =~ /cannot read it/ ? 'unreadable' : 'other' }++;
        my $t = try_lonc($c, test => 1);
        $how{'-t ' . ($t->{exit} // 'hung')}++;
    }
    my $flips = stop_flipper($f);
    note "hosts_tab flipped $flips times: " . join ', ', map { "$_: $how{$_}" } sort keys %how;
    cmp_ok($flips, '>', 0, 'the flipper flipped hosts_tab (the race was run)');
    unlike($seen // '', qr/topsecret42|leaked-by-root/, 'hosts_tab flipped between the user\'s and a root-only file: the secret never reaches the user');
    ok(!$how{other}, 'every refusal says why');
    ok(!$how{'-t hung'}, 'lonc -t always ends');
}

# ---- a hard link to a root-only file ------------------------------------
# (protected_hardlinks keeps nobody from making one; on a system without
# it, nobody could.  Root makes it here in nobody's place.)
{
    my ($n, %o) = place();
    link $secret, "$n/tabs/hosts.tab" or die "link: $!";
    my $c = write_config(name => "hard$case", %o, hosts => undef, hosts_tab => "$n/tabs/hosts.tab");
    chmod 0644, $c;
    my $seen = '';
    my $r = try_lonc($c, while_up => sub { $seen = sockets_seen($n) });
    unlike($seen, qr/topsecret42/, 'hosts_tab a hard link to a root-only file: nothing of it reaches the user');
    ok(!$r->{ready}, 'lonc refuses') or diag $r->{out};
    unlink "$n/tabs/hosts.tab";
}

# ---- root's supplementary groups -----------------------------------------
# Root runs lonc while in group G (a login shell, sudo with groups); the
# file at the end of the user's symlink is group G's, 0640.  nobody is
# not in G: lonc acting as nobody must not read it.
{
    my $g = throwaway_group('j');
    my ($n, %o) = place();
    my $gsecret = spew("$tmp/gsecret.tab", "topsecret42:dom:library:leaked-by-root.example:127.0.0.1\n", 0640);
    chown 0, $g->{gid}, $gsecret;
    nobody('ln', '-s', $gsecret, "$n/tabs/hosts.tab");
    my $run = "$tmp/grun$case";
    my $c = write_config(name => "groups$case", %o, hosts => undef, hosts_tab => "$n/tabs/hosts.tab");
    chmod 0644, $c;
    my @wrap = ('setpriv', '--groups', $g->{gid});
    my $seen = '';
    my $r = try_lonc($c, wrapper => \@wrap, while_up => sub { $seen = sockets_seen($n) });
    unlike($seen, qr/topsecret42/, "root in group $g->{name}: a file of that group's through the user's symlink does not reach the user");
    ok(!$r->{ready}, 'lonc refuses') or diag $r->{out};
    my $t = try_lonc($c, test => 1, wrapper => \@wrap);
    is($t->{exit}, 2, 'lonc -t refuses it too');

    SKIP: {
        my $certs = "$tmp/certs";
        system("$FindBin::Bin/../tls/mkcerts $certs >/dev/null 2>&1") == 0 or skip 'mkcerts failed', 5;
        chown 0, $g->{gid}, "$certs/lonc.key";
        chmod 0640, "$certs/lonc.key";
        nobody('ln', '-s', "$certs/$_", "$n/tls/$_") for qw(ca.pem lonc.pem lonc.key);
        my %tls = (tls => "{ca_file: $n/tls/ca.pem, cert_file: $n/tls/lonc.pem, key_file: $n/tls/lonc.key}",
            hosts => [ { hostname => 'h', port => $lond->{port}, key_mode => 'ssl' } ]);
        $c = write_config(name => "gtls$case", %o, %tls);
        chmod 0644, $c;
        $r = try_lonc($c, wrapper => \@wrap);
        ok(!$r->{ready}, "root in group $g->{name}: a TLS key of that group's through the user's symlink is not used");
        my $p = `setpriv --groups $g->{gid} $lonc -c $c --probe h 2>&1`;
        like($p, qr/tls: /, '--probe refuses it too') or diag $p;

        # Root's own things, made after it acted as the user (TLS files
        # the user may read): root's group again, not the user's.
        chown $pw[2], $gid, "$certs/lonc.key";
        chmod 0600, "$certs/lonc.key";
        $c = write_config(name => "gtls2$case", %o, %tls, pid_file => "$run/lonc.pid",
            admin_socket => "$run/admin.sock");
        chmod 0644, $c;
        my (@pst, @dst);
        $r = try_lonc($c, wrapper => \@wrap, while_up => sub {
            @pst = lstat "$run/lonc.pid";
            @dst = lstat $run;
        });
        ok($r->{ready}, 'TLS files the user may read, through its symlinks: lonc starts') or diag $r->{out};
        is(join(':', @dst[4, 5]), '0:0', 'root\'s run directory, made after lonc acted as the user: root\'s group');
        is(join(':', @pst[4, 5]), '0:0', 'and its pid file');
    }
}

# ---- the TLS key flipped while root loads it --------------------------------
# nobody flips its key_file between a symlink to a key of its own (one
# that does not fit the certificate) and one to the root-only key that
# fits: lonc starting means root read the root-only key for nobody.
SKIP: {
    my $certs = "$tmp/certs";
    -e "$certs/ca.pem" or skip 'no certificates', 1;
    my ($n, %o) = place();
    system('cp', "$certs/lond.key", "$n/tls/mine.key") == 0 or die;
    chown $pw[2], $gid, "$n/tls/mine.key";
    system('cp', "$certs/lonc.key", "$tmp/rootonly.key") == 0 or die;
    chown 0, 0, "$tmp/rootonly.key";
    chmod 0600, "$tmp/rootonly.key";
    nobody('ln', '-s', "$certs/$_", "$n/tls/$_") for qw(ca.pem lonc.pem);
    nobody('ln', '-s', "$n/tls/mine.key", "$n/tls/lonc.key");
    my $c = write_config(name => "tlsflip$case", %o,
        tls => "{ca_file: $n/tls/ca.pem, cert_file: $n/tls/lonc.pem, key_file: $n/tls/lonc.key}",
        hosts => [ { hostname => 'h', port => $lond->{port}, key_mode => 'ssl' } ]);
    chmod 0644, $c;
    my $f = start_flipper('nobody', '-t', 120, '-l', "$n/tls", 'lonc.key', "$n/tls/mine.key", $tmp . '/rootonly.key');
    my %how;
    for (1 .. 20) {
        my $r = try_lonc($c);
        $how{ $r->{ready} ? 'ran' : 'refused' }++;
    }
    my $flips = stop_flipper($f);
    note "key_file flipped $flips times: " . join ', ', map { "$_: $how{$_}" } sort keys %how;
    cmp_ok($flips, '>', 0, 'the flipper flipped key_file (the race was run)');
    ok(!$how{ran}, 'the TLS key flipped between the user\'s and a root-only one: lonc never runs with the root-only key');
    # The control: the fitting key, readable by nobody, does start lonc.
    system('cp', "$certs/lonc.key", "$n/tls/fits.key") == 0 or die;
    chown $pw[2], $gid, "$n/tls/fits.key";
    nobody('sh', '-c', "ln -s $n/tls/fits.key $n/tls/new && mv $n/tls/new $n/tls/lonc.key");
    my $r = try_lonc($c);
    ok($r->{ready}, '(the fitting key, nobody\'s own: lonc runs)') or diag $r->{out};
}

# ---- a TLS file that is a FIFO ---------------------------------------------
# In the user's directory, the key file is a FIFO nobody made: root
# (loading TLS files there with nobody's ids) must not wait for a writer.
SKIP: {
    my $certs = "$tmp/certs";
    -e "$certs/ca.pem" or skip 'no certificates', 4;
    my ($n, %o) = place();
    nobody('ln', '-s', "$certs/$_", "$n/tls/$_") for qw(ca.pem lonc.pem);
    nobody('mkfifo', "$n/tls/lonc.key");
    my $c = write_config(name => "tlsfifo$case", %o,
        tls => "{ca_file: $n/tls/ca.pem, cert_file: $n/tls/lonc.pem, key_file: $n/tls/lonc.key}",
        hosts => [ { hostname => 'h', port => $lond->{port}, key_mode => 'ssl' } ]);
    chmod 0644, $c;
    my $r = try_lonc($c, timeout => 8);
    my $d = try_lonc($c, daemon => 1, timeout => 8);
    my $t = try_lonc($c, test => 1, timeout => 8);
    my $p = system("timeout 8 $lonc -c $c --probe h >/dev/null 2>&1") >> 8;
    ok(defined $r->{exit}, 'tls key_file a FIFO in the user\'s directory: lonc --foreground ends (refused)');
    ok(defined $d->{exit}, 'lonc as a daemon ends (refused)');
    isnt($p, 124, 'lonc --probe ends');
    is($t->{exit}, 2, 'lonc -t says the key file is not usable');
    # A lonc still waiting (the detached daemon, whose pid nobody
    # knows) gets an empty key and ends: a writer opens and closes the
    # FIFO while anyone reads it.
    for (1 .. 50) {
        sysopen(my $w, "$n/tls/lonc.key", POSIX::O_WRONLY() | POSIX::O_NONBLOCK()) or last;
        close $w;
        sleep 0.1;
    }
}

# ---- a reload after the user swapped its hosts_tab ------------------------
# Reloads run as the user: the swap to a root-only file is refused (the
# user cannot read it), lonc runs on as before.
{
    my ($n, %o) = place();
    nobody('ln', '-s', $open_tab, "$n/tabs/hosts.tab");
    my $c = write_config(name => "reload$case", %o, hosts => undef, hosts_tab => "$n/tabs/hosts.tab");
    chmod 0644, $c;
    my ($seen, $said) = ('', '');
    my $r = try_lonc($c, while_up => sub {
        nobody('sh', '-c', "ln -s $secret $n/tabs/new && mv $n/tabs/new $n/tabs/hosts.tab");
        my $out = "$n/reload.out";
        as_user('nobody', 'sh', '-c', "$ctl -s $n/admin.sock reload > $out 2>&1");
        $said = log_text($out);
        $seen = sockets_seen($n);
    });
    ok($r->{ready}, 'lonc with hosts_tab in the user\'s directory runs') or diag $r->{out};
    like($said, qr/^error/, 'a reload after the user pointed hosts_tab at a root-only file: refused') or diag $said;
    unlike($seen, qr/topsecret42/, 'nothing of the file reaches the user');
}

ok(victim_intact($victim), 'victim untouched at the end');
done_testing();

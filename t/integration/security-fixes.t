#!/usr/bin/perl
# Issue 13, the third attack: the fixes of holes 6 to 9 (doc/security.md)
# tried as a black box, with nobody's rights and as any local user:
# - what root reads before the drop, bounded?  A sparse terabyte
#   hosts_tab in the user's directory (lonc -t, start);
# - who may write the YAML file: a POSIX ACL entry for the user, which
#   the mode bits do not show;
# - what root says about a root-only file it read through the user's
#   symlink before refusing it;
# - a directory key with a trailing slash naming the user's symlink;
# - make_dirs (hole 6) on paths with ".", "..", "//" and trailing
#   slashes in a sticky root directory the attacker plants in, and
#   through a root symlink into a directory of the user's that the user
#   flips to a root directory;
# - TLS files (hole 9): a symlink flipped between a regular file and a
#   FIFO, a sparse terabyte, under lonc -t and --probe;
# - a reload (SIGHUP, as the dropped user) after the user made hosts_tab
#   a FIFO and a symlink to a root-only file.
# Holes 11 to 14 of doc/security.md were found here; now closed.  Every run is bounded
# (try_lonc's timeout, counted loops, the watchdog); a root-owned victim
# file and directory must stay exactly as they were.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use LoncTest;
use Cwd ();
use POSIX ();
use Time::HiRes qw(time sleep);

my ($gid, @pw) = attacker_setup(150);

my $tmp = tmp_dir();
chmod 0755, $tmp;
my $victim = make_victim("$tmp/victim");
my $vdir = "$tmp/vdir";
mkdir $vdir, 0755 or die;
make_victim("$vdir/victim");
my $vdir_was = fingerprint($vdir);
my $lond = start_lond();
my $lonc = build_dir() . '/lonc';
my $case = 0;
my $t0 = time;

# A directory of nobody's with lonc's places in it (as LON-CAPA lays
# them out): the configuration keys.
sub place {
    my $n = sprintf '%s/n%02d', $tmp, ++$case;
    mkdir $n or die;
    chown $pw[2], $gid, $n;
    for my $d ('tabs', 'tls') {
        mkdir "$n/$d" or die;
        chown $pw[2], $gid, "$n/$d";
    }
    return ($n, user => 'nobody', group => 'nogroup', socket_dir => "$n/sockets",
        pid_file => "$n/lonc.pid", admin_socket => "$n/admin.sock", log_dir => "$n/logs",
        spool_dir => "$n/spool", local_key_dir => "$n/keys");
}

my @host = (hosts => [ { hostname => 'h', port => $lond->{port} } ]);

# A refusal says why: an "error:" line of lonc -t, or lonc's own line.
sub says_why {
    my ($r) = @_;
    return $r->{out} =~ /^(error: |lonc: ).*\S/m || $r->{out} =~ /event=start_failed reason="[^"]*\w/;
}

# A sparse file of $size bytes, a newline every $step bytes (lines that
# are long but fit in memory), nobody's; starting with $head.
sub sparse {
    my ($path, $head, $size, $step) = @_;
    open my $fh, '>', $path or die "$path: $!";
    print $fh $head;
    for (my $o = $step; $o < $size; $o += $step) {
        seek $fh, $o, 0;
        print $fh "\n";
    }
    close $fh;
    chown $pw[2], $gid, $path;
    return $path;
}

# ---- 1. a sparse terabyte hosts_tab: root reads it without bound ---------
{
    my ($n, %o) = place();
    sparse("$n/tabs/hosts.tab", "h:dom:library:h.example:127.0.0.1\n", 1 << 40, 64 << 20);
    my $c = write_config(name => "big$case", %o, hosts => undef, hosts_tab => "$n/tabs/hosts.tab");
    my $t = try_lonc($c, test => 1, timeout => 6);
    my $r = try_lonc($c, timeout => 6);
    ok(defined $t->{exit}, 'lonc -t as root, hosts_tab a sparse terabyte of the user\'s: ends within 6 s');
    ok(defined $r->{exit} || $r->{ready}, 'the start as root: ends (or starts) within 6 s');
    like($t->{out}, qr/hosts_tab.*over 4 MiB/m, 'and says hosts_tab is refused: too big');
    ok(victim_intact($victim), 'the victim is untouched');
}

# ---- 2. the YAML file writable by the user through a POSIX ACL -----------
SKIP: {
    my $have = eval { require 'syscall.ph'; defined &SYS_setxattr };
    skip 'no setxattr', 4 unless $have;
    my ($n, %o) = place();
    my $etc = "$tmp/etc$case";
    mkdir $etc, 0755 or die;
    my $c = write_config(name => "acl$case", %o, @host);
    system('cp', $c, "$etc/lonc.yaml") == 0 or die;
    chmod 0644, "$etc/lonc.yaml";
    # user::rw- user:nobody:rw- group::r-- mask::rw- other::r--
    my $acl = pack('V', 2) . pack('vvV', 1, 6, 0xFFFFFFFF) . pack('vvV', 2, 6, $pw[2]) .
        pack('vvV', 4, 4, 0xFFFFFFFF) . pack('vvV', 0x10, 6, 0xFFFFFFFF) .
        pack('vvV', 0x20, 4, 0xFFFFFFFF);
    my ($p, $name) = ("$etc/lonc.yaml", 'system.posix_acl_access');
    skip "no POSIX ACLs here ($!)", 4
        if syscall(&SYS_setxattr, $p, $name, $acl, length $acl, 0) != 0;
    ok(as_user('nobody', 'sh', '-c', "echo '# nobody was here' >> $p") == 0,
        'nobody may write the YAML file (root:root, mode ' . sprintf('%04o', (stat $p)[2] & 07777) . ', an ACL entry)');
    my $t = try_lonc($p, test => 1);
    my $r = try_lonc($p);
    isnt($t->{exit}, 0, 'lonc -t refuses a YAML file the user may write through an ACL');
    ok(!$r->{ready}, 'and so does the start');
    ok(victim_intact($victim), 'the victim is untouched');
}

# ---- 3. a root-only file read through the user's symlink, quoted ---------
{
    my ($n, %o) = place();
    my $secret = spew("$tmp/secret$case.tab",
        "top secret42:dom:library:leaked-by-root.example:127.0.0.1\n", 0600);
    nobody('ln', '-s', $secret, "$n/tabs/hosts.tab");
    my $c = write_config(name => "quote$case", %o, hosts => undef, hosts_tab => "$n/tabs/hosts.tab");
    my $t = try_lonc($c, test => 1);
    my $r = try_lonc($c);
    ok(!$r->{ready} && $t->{exit}, 'hosts_tab a symlink of the user\'s to a root-only file: refused');
    unlike($r->{out} . $t->{out}, qr/secret42/, 'nothing of the root-only file is in lonc\'s words');
    spew($secret, "top42:dom:library:leaked-by-root.example:127.0.0.1\n");
    $t = try_lonc($c, test => 1);
    like($t->{out}, qr/hosts_tab.*nobody cannot read it/m, 'a root-only file that parses: lonc -t refuses it, saying why (read with nobody\'s rights)');
    unlike($t->{out}, qr/leaked-by-root/, 'and prints nothing of it');
}

# ---- 4. a trailing slash on the user's symlink ---------------------------
{
    my ($n, %o) = place();
    my $st = "$tmp/sticky$case";
    mkdir $st or die;
    chmod 01777, $st;
    nobody('ln', '-s', $st, "$n/logs");
    my $c = write_config(name => "slash$case", %o, @host, log_dir => "$n/logs/");
    my $t = try_lonc($c, test => 1);
    like($t->{out}, qr/^error: log_dir .*(symbolic link|plain absolute path)/m, 'log_dir "…/logs/", logs the user\'s symlink to a sticky root directory: refused (a trailing "/" is not taken)');
    $c = write_config(name => "slash$case", %o, @host, log_dir => "$n/logs");
    $t = try_lonc($c, test => 1);
    like($t->{out}, qr/^error: log_dir .*symbolic link/m, 'without the slash: refused');
    # spool_dir (own) through the slash: a root directory is still not handed over
    nobody('ln', '-s', $vdir, "$n/spool");
    $c = write_config(name => "slash2$case", %o, @host, spool_dir => "$n/spool/");
    my $r = try_lonc($c);
    ok(!$r->{ready} && says_why($r), 'spool_dir "…/spool/", the user\'s symlink to a root directory: refused, saying why') or diag $r->{out};
    is(fingerprint($vdir), $vdir_was, 'and the root directory is untouched');
}

# ---- 5. make_dirs: ".", "..", "//", trailing slashes in a sticky place ----
{
    my ($n, %o) = place();
    my $s = "$tmp/sticky$case";
    mkdir $s or die;
    chmod 01777, $s;
    # The attacker's directory at the names root will make, a symlink to
    # the victim directory inside.
    for my $d (qw(p q m)) {
        nobody('mkdir', "$s/$d");
        nobody('ln', '-s', $vdir, "$s/$d/a");
    }
    my %how;
    my @paths = ("$s/p/a/spool", "$s/./q//a/spool/", "$s/new/../p/a/x", "$s//m/a/",
        "$s/m/../m/a/deep/er", "$s/x$case/./../q/a/y/");
    for my $path (@paths) {
        for my $key (qw(spool_dir log_dir)) {
            my $c = write_config(name => "dots$case", %o, @host, $key => $path);
            my $r = try_lonc($c);
            my $t = try_lonc($c, test => 1);
            my $k = $r->{ready} ? 'ran' : says_why($r) ? 'refused' : 'silent';
            $how{$k}++;
            $how{'-t silent'}++ if $t->{exit} && !says_why($t);
            diag "$key $path: $r->{out}" if $k eq 'silent';
            note "$key $path: " . ($r->{out} =~ /reason="([^"]*)"/ ? $1 : $k);
        }
    }
    note 'paths with . .. // /: ' . join ', ', map { "$_: $how{$_}" } sort keys %how;
    is(fingerprint($vdir), $vdir_was, 'paths with ".", "..", "//", a trailing "/" through the attacker\'s directories: nothing made in the victim directory');
    ok(!$how{silent} && !$how{'-t silent'}, 'every refusal says why');
    my @made = grep { (lstat $_)[4] == 0 } glob("$s/*");
    note "root's in the sticky directory: @made" if @made;
    # Odd forms in root's place: refused, nothing made; the plain form:
    # made, the user's, 0700.
    my $r0 = "$tmp/root$case";
    mkdir $r0, 0755 or die;
    my $c = write_config(name => "dots$case", %o, @host, spool_dir => "$r0//a/./b/spool/");
    my $r = try_lonc($c);
    ok(!$r->{ready} && $r->{out} =~ /plain absolute path/ && !-e "$r0/a",
        'spool_dir "root//a/./b/spool/" in root\'s place: refused, saying why, nothing made') or diag $r->{out};
    $c = write_config(name => "dots$case", %o, @host, spool_dir => "$r0/a/b/spool");
    $r = try_lonc($c);
    my @st = stat "$r0/a/b/spool";
    ok($r->{ready} && @st && $st[4] == $pw[2] && ($st[2] & 07777) == 0700,
        'spool_dir "root/a/b/spool" in root\'s place: made, nobody\'s, 0700') or diag $r->{out};
}

# ---- 6. a root symlink on the way into the user's directory, flipped -----
{
    my ($n, %o) = place();
    my $r0 = "$tmp/root$case";
    mkdir $r0, 0755 or die;
    nobody('mkdir', "$n/real");
    nobody('ln', '-s', "$n/real", "$n/d");
    symlink "$n/d", "$r0/L" or die;    # root's symlink, pointing at the user's
    my $f = start_flipper('nobody', '-t', 60, '-l', $n, 'd', "$n/real", $vdir);
    my (%how, @bad);
    my $end = time + 12;
    for my $i (1 .. 16) {
        last if time > $end;
        my $key = $i % 2 ? 'spool_dir' : 'log_dir';
        my $c = write_config(name => "rl$case", %o, @host, $key => "$r0/L/s$i");
        my $r = try_lonc($c, timeout => 5);
        $how{ $r->{ready} ? 'ran' : says_why($r) ? 'refused' : 'silent' }++;
        my @st = lstat "$n/real/s$i";
        push @bad, "s$i root's" if @st && $st[4] == 0;
    }
    my $flips = stop_flipper($f);
    note "root symlink into the user's flipped directory: $flips flips, " . join ', ', map { "$_: $how{$_}" } sort keys %how;
    is(fingerprint($vdir), $vdir_was, 'a root symlink on the way into the user\'s directory, flipped to a root directory: the victim directory untouched');
    is("@bad", '', 'and root makes nothing of its own in the user\'s directory');
    ok(!$how{silent}, 'every refusal says why');
}

# ---- 7. TLS files: FIFO flips and a sparse terabyte ----------------------
SKIP: {
    my $certs = "$tmp/certs";
    mkdir $certs or die;
    system("$FindBin::Bin/../tls/mkcerts $certs >/dev/null 2>&1") == 0 or skip 'mkcerts failed', 5;
    chmod 0755, $certs;
    chmod 0644, glob("$certs/*");
    my ($n, %o) = place();
    for my $f (qw(ca.pem lonc.pem lonc.key)) {
        system('cp', "$certs/$f", "$n/tls/$f") == 0 or die;
        chown $pw[2], $gid, "$n/tls/$f";
    }
    nobody('mkfifo', "$n/tls/fifo");
    nobody('ln', '-s', "$n/tls/lonc.key", "$n/tls/key");
    my %tls = (tls => "{ca_file: $n/tls/ca.pem, cert_file: $n/tls/lonc.pem, key_file: $n/tls/key}");
    my $c = write_config(name => "tlsf$case", %o, %tls,
        hosts => [ { hostname => 'h', port => $lond->{port}, key_mode => 'ssl' } ]);
    my $f = start_flipper('nobody', '-t', 60, '-l', "$n/tls", 'key', "$n/tls/lonc.key", "$n/tls/fifo");
    my %how;
    my $end = time + 10;
    for my $i (1 .. 30) {
        last if time > $end;
        my $t = try_lonc($c, test => 1, timeout => 4);
        $how{ !defined $t->{exit} ? 'hung' : $t->{out} =~ /^tls files: OK/m ? 'ok'
            : $t->{out} =~ /^error: tls: .*not a regular file/m ? 'fifo refused' : 'other' }++;
    }
    my $flips = stop_flipper($f);
    note "TLS key flipped regular/FIFO: $flips flips, " . join ', ', map { "$_: $how{$_}" } sort keys %how;
    ok(!$how{hung}, 'the TLS key flipped between a regular file and a FIFO: lonc -t always ends');
    ok(!$how{other}, 'and either loads it or says it is not a regular file');
    # A sparse terabyte CA file of the user's: OpenSSL stops at the zeros.
    unlink "$n/tls/key";
    nobody('ln', '-s', "$n/tls/lonc.key", "$n/tls/key");
    sparse("$n/tls/big.pem", '', 1 << 40, 64 << 20);
    $c = write_config(name => "tlsb$case", %o,
        tls => "{ca_file: $n/tls/big.pem, cert_file: $n/tls/lonc.pem, key_file: $n/tls/key}",
        hosts => [ { hostname => 'h', port => $lond->{port}, key_mode => 'ssl' } ]);
    my $t = try_lonc($c, test => 1, timeout => 6);
    ok(defined $t->{exit} && $t->{out} =~ /^error: tls: /m, 'a sparse terabyte CA file: lonc -t ends, refusing it') or diag $t->{out};
    my $out = `timeout 6 $lonc -c $c --probe h 2>&1`;
    my $ended = ($? >> 8) != 124;    # not stopped by timeout
    ok($ended && $out =~ /tls: /, '--probe too') or diag $out;
    unlink "$n/tls/big.pem";
}

# ---- 8. reload as the dropped user with hostile hosts_tab ---------------
{
    my ($n, %o) = place();
    spew("$n/tabs/hosts.tab", "h:dom:library:h.example:127.0.0.1\n", 0644);
    chown $pw[2], $gid, "$n/tabs/hosts.tab";
    my $secret = spew("$tmp/secret$case.tab", "s42:dom:library:leak42.example:127.0.0.1\n", 0600);
    my $c = write_config(name => "hup$case", %o, hosts => undef, hosts_tab => "$n/tabs/hosts.tab");
    my ($log, @seen);
    my $r = try_lonc($c, while_up => sub {
        my ($pid) = @_;
        for my $how ('fifo', 'secret') {
            unlink "$n/tabs/hosts.tab";
            nobody('mkfifo', "$n/tabs/hosts.tab") if $how eq 'fifo';
            nobody('ln', '-s', $secret, "$n/tabs/hosts.tab") if $how eq 'secret';
            kill 'HUP', $pid;
            sleep 1;
            push @seen, join ' ', map { s{.*/}{}r } glob("$n/sockets/*");
            push @seen, kill(0, $pid) ? 'alive' : 'gone';
        }
    });
    ok($r->{ready}, 'lonc with the user\'s hosts_tab starts') or diag $r->{out};
    unlike("@seen", qr/leak42|s42/, 'a reload after the user made hosts_tab a FIFO, then a symlink to a root-only file: nothing of it reaches the user');
    unlike("@seen", qr/gone/, 'and lonc stays up');
    like($r->{out}, qr/reload_failed/, 'each reload refused with a reason') or diag $r->{out};
}

# ---- 7. who may write a file is judged before root reads it ---------
# A YAML file the daemon's group may write (root's, 0664) names a
# root-only file as hosts_tab (one whose error would quote it): it is
# refused before anything is read,
# so nothing of the root-only file appears in what lonc says.
{
    my ($n, %o) = place();
    my $etc = "$tmp/etc-g$case";
    mkdir $etc, 0755 or die;
    my $secret = spew("$etc/secret.tab", "top sec42ret:dom:library:leaked-g.example:127.0.0.1\n", 0600);
    my $c = write_config(name => "gw$case", %o, hosts => undef, hosts_tab => $secret);
    system('cp', $c, "$etc/lonc.yaml") == 0 or die;
    chown 0, $gid, "$etc/lonc.yaml";
    chmod 0664, "$etc/lonc.yaml";
    my $t = try_lonc("$etc/lonc.yaml", test => 1);
    my $r = try_lonc("$etc/lonc.yaml");
    ok($t->{exit} && !$r->{ready}, 'a YAML file the daemon\'s group may write: refused') or diag $t->{out};
    like($t->{out}, qr/^error: .*writable by others/m, '... saying why');
    unlike($t->{out} . $r->{out}, qr/sec42ret|leaked-g/, '... before root read what it names');
    # The same file, root's alone, by a relative name: its relative
    # hosts_tab is taken from its directory, on root's way.
    chmod 0644, "$etc/lonc.yaml";
    chown 0, 0, "$etc/lonc.yaml";
    spew("$etc/hosts.tab", "h:dom:library:h.example:127.0.0.1\n", 0644);
    my $rel = write_config(name => "rel$case", %o, hosts => undef, hosts_tab => 'hosts.tab');
    system('cp', $rel, "$etc/rel.yaml") == 0 or die;
    chmod 0644, "$etc/rel.yaml";
    my $abs_lonc = Cwd::abs_path($lonc);
    my $out = `cd $etc && timeout 10 $abs_lonc -t -c rel.yaml 2>&1`;
    like($out, qr/hosts_tab \Q$etc\E\/hosts\.tab: 1 host/, 'lonc -t -c RELATIVE as root: a relative hosts_tab from its directory, as root') or diag $out;
}

is(fingerprint($vdir), $vdir_was, 'the victim directory is untouched');
ok(victim_intact($victim), 'the victim file is untouched');
note sprintf 'took %.1f s', time - $t0;
done_testing();

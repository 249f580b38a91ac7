#!/usr/bin/perl
# lonc --probe HOST against test londs that need other protocol settings
# than lonc's defaults (t/lond/README, "Protocol settings").
#
# - A lond that takes the defaults: the first attempt (the configured
#   settings) works, exit 0, and the entry printed is the defaults.
# - One point different (sethost bare: separate), and several at once
#   (versioned init, local_first, a required version string, bare
#   sethost): found, following the hints each failure gives, in a few
#   attempts; the printed lines pasted into the host's entry make a
#   running lonc serve plain, encrypt: and sethost:<id>: requests, and a
#   second probe then works at its first attempt.
# - ssl: a lond that sends no close_notify: lenient is found.
# - local: the key directory made as the daemon would, the key file
#   read by lond and gone afterwards.
# - A lond with one host ID and no sethost: sethost_step false and
#   sethost_mode off.
# - A lond that refuses everything: exit 1, "no settings worked"; a port
#   nobody listens on: exit 1, stopped after one attempt; an
#   unknown host or a broken configuration: exit 2 and a message on stderr.
# - The transcript never shows the challenge, the buildkey, the key
#   line or the plain text of an encrypted request, while lond's
#   refusals are shown.
# - A probe beside a running lonc (same configuration) leaves it serving.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use LoncTest;

watchdog(200);
my $certs = tmp_dir() . '/certs';
system("$FindBin::Bin/../tls/mkcerts", $certs) == 0 or BAIL_OUT('mkcerts failed');
my @tls = ('--tls-cert', "$certs/lond.pem", '--tls-key', "$certs/lond.key", '--tls-ca', "$certs/ca.pem");
my $lonc_bin = build_dir() . '/lonc';
my ($V) = `$lonc_bin --version` =~ /^lonc (\S+)/ or BAIL_OUT('lonc --version');

my $ldef = start_lond(host_id => 'defa', args => [ '--sethost', 'inline', '--init', 'plain',
    '--key-id-order', 'remote_first', '--require-version', $V ]);
my $lone = start_lond(host_id => 'onea', args => [ '--sethost', 'bare' ]);
my $lalt = start_lond(host_id => 'alta', args => [ '--sethost', 'bare', '--init', 'versioned',
    '--key-id-order', 'local_first', '--require-version', '2.11' ]);
my $loff = start_lond(host_id => 'offa', args => [ '--sethost', 'none' ]);
my $ltls = start_lond(host_id => 'tlsa', args => [ @tls, '--tls-close-notify', 'omit' ]);
my $lref = start_lond(host_id => 'refa', fault => 'refuse');
my $lloc = start_lond(host_id => 'lonc-test', client_id => 'lonc-test');
my $down = free_port();

sub entry {
    my ($name, $port, %o) = @_;
    return { hostname => $name, ids => $o{ids} // [ "${name}a", "${name}b" ], port => $port,
        key_mode => 'insecure', map { $_ => $o{$_} } grep { $_ ne 'ids' } keys %o };
}
my %tls = (tls => "{ca_file: $certs/ca.pem, cert_file: $certs/lonc.pem, key_file: $certs/lonc.key}");
my @hosts = (entry('def', $ldef->{port}), entry('one', $lone->{port}),
    entry('alt', $lalt->{port}), entry('off', $loff->{port}, ids => ['offa']),
    entry('tls', $ltls->{port}, key_mode => 'ssl', tls_name => 'lond.test'),
    entry('ref', $lref->{port}), entry('down', $down, aliases => ['gone']),
    entry('self', $lloc->{port}, ids => ['lonc-test'], key_mode => 'local'));
my $keys = tmp_dir() . '/keys';
my $cfg = write_config(name => 'probe', %tls, local_key_dir => $keys, hosts => \@hosts);

# Run a probe: (exit status, stdout, stderr).
sub probe {
    my ($config, $host) = @_;
    my $err = tmp_dir() . '/probe.err';
    my $out = `$lonc_bin -c $config --probe $host 2>$err`;
    return ($? >> 8, $out, log_text($err));
}
sub attempts { scalar(() = $_[0] =~ /^attempt \d+:$/mg) }
# The settings block at the end, as key => value.
sub found {
    my ($out) = @_;
    my ($block) = $out =~ /^# Settings that work for \S+ .*\n((?:    \S.*\n)+)/m or return {};
    return { map { /^\s+(\w+): (.*)$/ } split /\n/, $block };
}
my %defaults = (sethost_mode => 'inline', init_version => '""', key_id_order => 'remote_first',
    version_string => "\"$V\"", tls_close_notify => 'required', version_step => 'true',
    sethost_step => 'true');
my %transcripts;

# ---- a lond that takes the defaults -------------------------------------
{
    my ($rc, $out) = probe($cfg, 'def');
    $transcripts{def} = $out;
    is($rc, 0, 'def: exit 0');
    is(attempts($out), 1, 'def: the configured settings work at once');
    like($out, qr/^  works \(lond's version: "testlond/m, "def: lond's version shown");
    is_deeply(found($out), \%defaults, 'def: the entry printed is the defaults');
}

# ---- one point, then several --------------------------------------------
{
    my ($rc, $out) = probe($cfg, 'one');
    $transcripts{one} = $out;
    is($rc, 0, 'one (sethost bare): exit 0');
    is(found($out)->{sethost_mode}, 'separate', 'one: sethost_mode separate found');
    cmp_ok(attempts($out), '<=', 3, 'one: within three attempts (' . attempts($out) . ')');
    like($out, qr/answered 'unknown_cmd'; hint: sethost_mode/, 'one: the failure named its switch');
}
my %alt;
{
    my ($rc, $out) = probe($cfg, 'alt');
    $transcripts{alt} = $out;
    is($rc, 0, 'alt (four points): exit 0');
    %alt = %{ found($out) };
    is_deeply(\%alt, { %defaults, sethost_mode => 'separate', init_version => '"2.11"',
        key_id_order => 'local_first', version_string => '"2.11"' }, 'alt: all four points found');
    cmp_ok(attempts($out), '<=', 8, 'alt: following the hints, few attempts (' . attempts($out) . ')');
    like($out, qr/^  < refused$/m, "alt: lond's refusal is shown");
}
{
    my ($rc, $out) = probe($cfg, 'off');
    $transcripts{off} = $out;
    is($rc, 0, 'off (one ID, no sethost): exit 0');
    my $f = found($out);
    is($f->{sethost_step}, 'false', 'off: sethost_step false');
    # With one ID every request goes to it: inline is never exercised by
    # a prefix, so any mode that does not send the prefix will do.
    isnt($f->{sethost_mode}, 'inline', "off: sethost_mode not inline ($f->{sethost_mode})");
}
{
    my ($rc, $out) = probe($cfg, 'tls');
    $transcripts{tls} = $out;
    is($rc, 0, 'tls (no close_notify): exit 0');
    is(found($out)->{tls_close_notify}, 'lenient', 'tls: lenient found');
    like($out, qr/hint: tls_close_notify/, 'tls: the timeout named its switch');
}

{
    my ($rc, $out) = probe($cfg, 'self');
    is($rc, 0, 'self (local key mode): exit 0');
    is(attempts($out), 1, 'self: at the first attempt');
    is(lond_stats($lloc)->{local}, 1, 'self: lond read the key file');
    opendir my $dh, $keys or die "$keys: $!";
    is(scalar(grep { !/^\./ } readdir $dh), 0, 'self: no key file left behind');
    like($out, qr/^  > init:local:\Q$keys\E\/\S+$/m, 'self: the key file named (it is gone)');
    unlike($out, qr/^  [<>] [0-9a-fA-F]{32}$/m, 'self: its key not shown');
}

SKIP: {
    skip 'not root', 3 if $>;
    my $nobody = getpwnam('nobody') // skip 'no user nobody', 3;
    # As root: the key directory handed to the daemon's user, and the
    # probe acting as that user (the key file is its).
    my $k2 = tmp_dir() . '/keys-nobody';
    my $c2 = write_config(name => 'probe-nobody', %tls, local_key_dir => $k2, user => 'nobody',
        hosts => \@hosts);
    chmod 0755, tmp_dir();
    my ($rc, $out, $err) = probe($c2, 'self');
    is($rc, 0, 'as root with user nobody: exit 0') or diag $out, $err;
    is((stat $k2)[4], $nobody, '... local_key_dir belongs to nobody');
    is(lond_stats($lloc)->{local}, 2, '... lond read the key file nobody wrote');
}

# ---- nothing works, nobody there, no such host ---------------------------
{
    my ($rc, $out) = probe($cfg, 'ref');
    is($rc, 1, 'ref (refuses all): exit 1');
    like($out, qr/^no settings worked for ref$/m, 'ref: says so');
    cmp_ok(attempts($out), '<=', 64, 'ref: a bounded number of attempts (' . attempts($out) . ')');
    unlike($out, qr/^# Settings that work/m, 'ref: no settings printed');
}
{
    my ($rc, $out) = probe($cfg, 'gone');
    is($rc, 1, 'down (by its alias): exit 1');
    like($out, qr/^  fails: connect to 127\.0\.0\.1 port $down: .*\n  stopped: /m,
        'down: cannot connect, and no other settings are tried');
    is(attempts($out), 1, 'down: one attempt');
}
{
    my ($rc, $out, $err) = probe($cfg, 'nosuchhost');
    is($rc, 2, 'unknown host: exit 2');
    like($err, qr/--probe: no host 'nosuchhost'/, 'unknown host: stderr says so');
    is($out, '', 'unknown host: nothing on stdout');
}

{
    my $bad = tmp_dir() . '/broken.yaml';
    open my $fh, '>', $bad or die;
    print $fh "host_id: [\n";
    close $fh;
    my ($rc, $out, $err) = probe($bad, 'def');
    is($rc, 2, 'a broken configuration: exit 2');
    like($err, qr/broken\.yaml:\d+: YAML syntax error/, '... with the place of the error');
}

# ---- secrets -------------------------------------------------------------
{
    my $all = join '', values %transcripts;
    unlike($all, qr/^  [<>] \d+$/m, 'no challenge (a line of digits) in any transcript');
    my @after_ekey = $all =~ /^  > ekey\n(.*)\n/mg;
    ok(@after_ekey >= 4, 'ekey steps seen (' . scalar(@after_ekey) . ')');
    is(scalar(grep { !/^  < \(\d+ bytes, not shown\)$/ } @after_ekey), 0, 'every buildkey masked');
    unlike($all, qr/^  > (sethost:\w+:)?encrypt:/m, 'no encrypt: request in clear');
    unlike($all, qr/^  [<>] .*enc:/m, 'no enc: line shown');
    unlike($all, qr/^  < [0-9a-fA-F]{32}$/m, 'no TLS key line');
    like($transcripts{tls}, qr/^  > init:ssl$/m, 'tls: the handshake is in the transcript');
}

# ---- the settings pasted; a probe beside a running lonc -------------------
{
    my @h = map { $_->{hostname} eq 'alt' ? { %$_, %alt } : $_ } @hosts;
    my $cfg2 = write_config(name => 'probe2', %tls, hosts => \@h);
    my $lonc = start_lonc($cfg2);
    my $p = "$lonc->{socket_dir}/alt";
    is(request($p, 'ping'), 'pong', 'pasted: ping');
    is(request($p, 'encrypt:echo:probe-secret'), 'probe-secret', 'pasted: encrypt:echo');
    is(request($p, 'sethost:altb:whoami'), 'altb', 'pasted: sethost:altb:whoami');
    is(request($p, 'sethost:altb:encrypt:whoami'), 'altb', 'pasted: sethost:altb:encrypt:whoami');
    my ($rc, $out) = probe($cfg2, 'alt');
    is($rc, 0, 'pasted: a second probe, beside the running lonc: exit 0');
    is(attempts($out), 1, 'pasted: ... at its first attempt');
    is(request($p, 'encrypt:echo:still'), 'still', 'the running lonc still serves');
    is(stop_lonc($lonc), 0, 'lonc stops cleanly');
}

done_testing();

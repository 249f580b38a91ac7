#!/usr/bin/perl
# lonc's protocol switches (sethost_mode, init_version, key_id_order,
# version_string, tls_close_notify) against test londs that need one
# value of each (t/lond/README, "Protocol settings").
#
# Matched: for every value of every switch, lonc and lond set the same
# way serve a plain request, an encrypt: request, sethost:<id>:whoami
# and sethost:<id>:encrypt:whoami (answered as the addressed ID), and a
# delayed replay (a plain and an encrypt: record: file for the entry's
# second ID) that reaches lond exactly once, as that ID.  lond's own
# view (conninfo) shows the init version and version string it got.
#
# Mismatched: one switch at a time set the other way fails as such a
# lond makes it fail - con_lost, or lond's own answer relayed - and the
# log names the switch (hint=...).  So each switch left at its default
# against a lond that needs the other value fails here.
#
# Two cases where a hint could mislead: an encrypt: request with an
# in-line prefix answered unknown_cmd names both switches, the prefix's
# first (either could be wrong); an error: answer to an encrypt: request
# on a connection whose key has just worked names none (lond's own).
#
# Then `lonc-ctl hosts` and `status json` show the switches in force, and
# a reload that sets them globally (hosts without their own keys take
# them; a host's own keys still win) changes what goes on the wire.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use LoncTest;
use Time::HiRes qw(time sleep);

watchdog(150);
my $certs = tmp_dir() . '/certs';
system("$FindBin::Bin/../tls/mkcerts", $certs) == 0 or BAIL_OUT('mkcerts failed');
my @tls = ('--tls-cert', "$certs/lond.pem", '--tls-key', "$certs/lond.key", '--tls-ca', "$certs/ca.pem");
my ($V) = `@{[build_dir()]}/lonc --version` =~ /^lonc (\S+)/ or BAIL_OUT('lonc --version');

# A lond that needs every default, one that needs every other value, one
# with a single host ID (sethost_mode off), and two for ssl.
my $ldef = start_lond(args => [ '--sethost', 'inline', '--init', 'plain',
    '--key-id-order', 'remote_first', '--require-version', $V ]);
my $lalt = start_lond(args => [ '--sethost', 'bare', '--init', 'versioned',
    '--key-id-order', 'local_first', '--require-version', '2.12.0' ]);
my $loff = start_lond(host_id => 'offa', args => [ '--sethost', 'none' ]);
my $ltdef = start_lond(args => [ @tls, '--init', 'plain', '--tls-close-notify', 'send' ]);
my $ltalt = start_lond(args => [ @tls, '--init', 'versioned', '--tls-close-notify', 'omit' ]);

my $secret = 'sw-' . join('', map { ('a' .. 'z')[rand 26] } 1 .. 16);
my %alt = (sethost_mode => 'separate', init_version => '"2.11"',
    key_id_order => 'local_first', version_string => '"2.12.0"');
my %ssl = (key_mode => 'ssl', tls_name => 'lond.test');
sub entry {
    my ($name, $lond, %o) = @_;
    (my $id = $name) =~ s/-//g;
    return { hostname => $name, ids => [ "${id}a", "${id}b" ], port => $lond->{port},
        key_mode => 'insecure', %o };
}
# Matched pairs; b_as: the ID lond takes a request for the second ID as.
my @matched = (
    [ entry('def', $ldef), info => qr/^mode=insecure init_version=- peer_version=\Q$V\E host=defb$/ ],
    [ entry('alt', $lalt, %alt, max_connections => 1), info => qr/^mode=insecure init_version=2\.11 peer_version=2\.12\.0 host=altb$/ ],
    # separate also works with a lond that has both forms
    [ entry('sep', $ldef, sethost_mode => 'separate'), info => qr/ host=sepb$/ ],
    # off: a lond with one ID answers every request as that ID
    [ entry('off', $loff, sethost_mode => 'off', sethost_step => 'false'), b_as => 'offa',
      info => qr/^mode=insecure init_version=- peer_version=\Q$V\E host=offa$/ ],
    [ entry('tdef', $ltdef, %ssl), info => qr/^mode=ssl init_version=- peer_version=\Q$V\E host=tdefb$/ ],
    [ entry('talt', $ltalt, %ssl, tls_close_notify => 'lenient', init_version => '"2.11"'),
      info => qr/^mode=ssl init_version=2\.11 peer_version=\Q$V\E host=taltb$/ ],
    # lenient also takes a close_notify that does come
    [ entry('tlen', $ltdef, %ssl, tls_close_notify => 'lenient'), info => qr/^mode=ssl .* host=tlenb$/ ],
);
# Mismatched: [ entry, what the request gets, the log line ].
my @mismatched = (
    [ entry('def-init', $ldef, init_version => '"2.11"'), ping => 'con_lost',
      log => qr/host=def-init event=connect_failed kind=refused reason="handshake step init: lond refused the connection" attempt=\S+ hint=init_version/ ],
    [ entry('alt-init', $lalt, %alt, init_version => '""'), ping => 'con_lost',
      log => qr/host=alt-init event=connect_failed kind=refused reason="handshake step init: [^"]*" attempt=\S+ hint=init_version/ ],
    [ entry('tdef-init', $ltdef, %ssl, init_version => '"2.11"'), ping => 'con_lost',
      log => qr/host=tdef-init event=connect_failed kind=refused reason="handshake step init_ssl: [^"]*" attempt=\S+ hint=init_version/ ],
    [ entry('talt-init', $ltalt, %ssl, tls_close_notify => 'lenient'), ping => 'con_lost',
      log => qr/host=talt-init event=connect_failed kind=refused reason="handshake step init_ssl: [^"]*" attempt=\S+ hint=init_version/ ],
    [ entry('def-key', $ldef, key_id_order => 'local_first'), ping => 'pong', enc => 'error:bad_enc',
      log => qr/host=def-key worker=\d+ event=suspect_answer answer="error:bad_enc" hint=key_id_order/ ],
    [ entry('alt-key', $lalt, %alt, key_id_order => 'remote_first'), ping => 'pong', enc => 'error:bad_enc',
      log => qr/host=alt-key worker=\d+ event=suspect_answer answer="error:bad_enc" hint=key_id_order/ ],
    [ entry('def-ver', $ldef, version_string => '"2.12.0"'), ping => 'con_lost',
      log => qr/host=def-ver event=connect_failed kind=refused reason="handshake step version: lond refused the connection"/,
      ver_hint => 'version_string' ],
    [ entry('alt-ver', $lalt, %alt, version_string => "\"$V\""), ping => 'con_lost',
      log => qr/host=alt-ver event=connect_failed kind=refused reason="handshake step version: lond refused the connection"/,
      ver_hint => 'version_string' ],
    [ entry('alt-inline', $lalt, %alt, sethost_mode => 'inline'), ping => 'pong', prefixed => 'unknown_cmd',
      log => qr/host=alt-inline worker=\d+ event=suspect_answer answer="unknown_cmd" hint=sethost_mode/ ],
    [ entry('off-inline', $loff, sethost_step => 'false'), ping => 'pong', prefixed => 'unknown_cmd',
      log => qr/host=off-inline worker=\d+ event=suspect_answer answer="unknown_cmd" hint=sethost_mode/ ],
    [ entry('off-sep', $loff, sethost_mode => 'separate', sethost_step => 'false'), ping => 'con_lost',
      log => qr/host=off-sep worker=\d+ event=sethost_failed id=offsepa hint=sethost_mode/ ],
    [ entry('off-step', $loff, sethost_mode => 'off'), ping => 'con_lost',
      log => qr/host=off-step event=connect_failed kind=error reason="handshake step sethost: sethost was not answered ok" attempt=\S+ hint=sethost_step/ ],
    # off against a lond with several IDs: no error, the request goes to
    # the wrong ID (nothing could tell lonc)
    [ entry('def-off', $ldef, sethost_mode => 'off'), ping => 'pong', prefixed => 'defoffa' ],
    # the first request with an in-line prefix is an encrypt: one: the
    # unknown_cmd is for the prefix (the key is right), yet both rules
    # of the hints match it
    [ entry('alt-inl-enc', $lalt, %alt, sethost_mode => 'inline', max_connections => 1),
      first => 'sethost:altinlencb:encrypt:whoami', first_gets => 'unknown_cmd',
      hint_log => qr/host=alt-inl-enc worker=\d+ event=suspect_answer answer="unknown_cmd" hint=sethost_mode,key_id_order/ ],
    # an encrypt: request that lond answers with an error of its own, on
    # a connection whose key has just worked, is no sign of a wrong key
    [ entry('def-err', $ldef, max_connections => 1), ping => 'pong',
      then => [ [ "encrypt:echo:$secret" => $secret ], [ 'encrypt:delay:x' => 'error:bad_arg' ] ],
      no_hint => qr/host=def-err worker=\d+ event=suspect_answer answer="error:bad_arg" hint=key_id_order/ ],
    # the close_notify never comes: the handshake waits handshake_timeout
    [ entry('talt-req', $ltalt, %ssl, init_version => '"2.11"'), ping => 'con_lost',
      log => qr/host=talt-req event=connect_failed kind=\w+ reason="TLS close_notify exchange: timed out" attempt=\S+ hint=tls_close_notify/ ],
);

my $dir = tmp_dir();
my $ddir = "$dir/sockets/delayed";
system('mkdir', '-p', $ddir) == 0 or die;
# Delayed files for each matched host's second ID, as lonnet left them a
# while ago (lonc leaves files younger than 3 s alone).
my (%files, $count);
for my $m (@matched) {
    my $h = $m->[0];
    for my $line ("record:dl-$h->{hostname}", "encrypt:record:dle-$h->{hostname}") {
        my $f = sprintf '%s/1700000000.%d.4242.record.%s', $ddir, ++$count, $h->{ids}[1];
        open my $fh, '>', $f or die "$f: $!";
        print $fh "$line\n";
        close $fh;
        utime(time - 10, time - 10, $f) or die "utime $f: $!";
        push @{ $files{ $h->{hostname} } }, $f;
    }
}

my %tls = (tls => "{ca_file: $certs/ca.pem, cert_file: $certs/lonc.pem, key_file: $certs/lonc.key}");
my %top = (name => 'sw', retry_attempts => 50, delayed_scan_interval => 0.2, %tls);
my $cfg = write_config(%top, hosts => [ map { $_->[0] } @matched, @mismatched ]);
my $lonc = start_lonc($cfg);
my $d = $lonc->{socket_dir};
my $log = sub { log_text($lonc->{log}) };
sub lond_for { my ($h) = @_; (grep { $_->{port} == $h->{port} } $ldef, $lalt, $loff, $ltdef, $ltalt)[0] }

# ---- matched ------------------------------------------------------------
sub works {
    my ($h, %o) = @_;
    my $n = $h->{hostname};
    my ($a, $b) = @{ $h->{ids} };
    my $b_as = $o{b_as} // $b;
    my $a_as = $o{b_as} // $a;
    my $p = "$d/$n";
    is(request($p, 'ping'), 'pong', "$n: ping");
    is(request($p, "encrypt:echo:$secret"), $secret, "$n: encrypt:echo");
    is(request($p, "sethost:$b:whoami"), $b_as, "$n: sethost:$b:whoami");
    is(request($p, "sethost:$b:encrypt:whoami"), $b_as, "$n: sethost:$b:encrypt:whoami");
    is(request($p, 'whoami'), $a_as, "$n: whoami without a prefix: the entry's first ID");
    like(request($p, "sethost:$b:conninfo"), $o{info}, "$n: lond's view of the connection");
}
for my $m (@matched) {
    my ($h, %o) = @$m;
    works($h, %o);
}
# The delayed files: each reached lond once, as the ID it was for.
for my $m (@matched) {
    my ($h, %o) = @$m;
    my $n = $h->{hostname};
    my $as = $o{b_as} // $h->{ids}[1];
    my $lond = lond_for($h);
    wait_for(sub { !grep { -e } @{ $files{$n} } }, 30, "$n: delayed files replayed");
    is(lond_ctl($lond, "recorded=dl-$n") . ' ' . lond_ctl($lond, "recorded=$as/dl-$n"), '1 1',
       "$n: a delayed record: reached lond once, as $as");
    is(lond_ctl($lond, "recorded=dle-$n") . ' ' . lond_ctl($lond, "recorded=$as/dle-$n"), '1 1',
       "$n: a delayed encrypt:record: reached lond once, as $as");
}
# separate: lonc sends sethost:<id> only when the ID must change, not
# before every request (alt has one connection).
{
    is(request("$d/alt", 'whoami'), 'alta', 'separate: the connection on the first ID');
    lond_ctl($lalt, 'reset');
    is(request("$d/alt", 'sethost:altb:whoami'), 'altb', "separate: to altb") for 1 .. 5;
    is(lond_stats($lalt)->{sethosts}, 1, 'separate: five requests for altb: one sethost:altb');
    for (1 .. 3) {
        is(request("$d/alt", 'whoami'), 'alta', 'separate: back to alta');
        is(request("$d/alt", 'sethost:altb:whoami'), 'altb', 'separate: to altb');
    }
    is(lond_stats($lalt)->{sethosts}, 7, 'separate: and one at every change of ID');
}

# ---- mismatched ---------------------------------------------------------
for my $m (@mismatched) {
    my ($h, %o) = @$m;
    my $n = $h->{hostname};
    my $p = "$d/$n";
    if ($o{first}) {
        is(request($p, $o{first}), $o{first_gets}, "$n: $o{first} gets $o{first_gets}");
        is(request($p, "encrypt:echo:$secret"), $secret, "$n: encrypt: works (the key is right)");
        wait_for(sub { $log->() =~ /host=\Q$n\E worker=\d+ event=suspect_answer/ }, 10, "$n: a hint");
        ok($log->() =~ $o{hint_log}, "$n: the hint names sethost_mode")
            or diag(grep { /host=\Q$n\E / } split /^/m, $log->());
        next;
    }
    is(request($p, 'ping'), $o{ping}, "$n: ping gets $o{ping}");
    if ($o{enc}) {
        is(request($p, "encrypt:echo:$secret"), $o{enc}, "$n: encrypt: gets lond's $o{enc}");
    }
    if ($o{prefixed}) {
        is(request($p, "sethost:$h->{ids}[1]:whoami"), $o{prefixed}, "$n: sethost:<id>:whoami gets $o{prefixed}");
    }
    for my $t (@{ $o{then} // [] }) {
        my ($what) = $t->[0] =~ /^(\w+:\w+)/;
        is(request($p, $t->[0]), $t->[1], "$n: then $what answered as expected");
    }
    if ($o{log}) {
        wait_for(sub { $log->() =~ $o{log} }, 10, "$n: the log line");
        pass("$n: logged with its hint");
    }
    if ($o{no_hint}) {
        ok($log->() !~ $o{no_hint}, "$n: no hint=key_id_order")
            or diag(grep { /host=\Q$n\E / } split /^/m, $log->());
    }
    if ($o{ver_hint}) {
        ok($log->() =~ /host=\Q$n\E event=connect_failed .*hint=$o{ver_hint}/, "$n: hint=$o{ver_hint}");
    }
}
# The off mismatch misaddresses silently: its delayed record would count
# under the wrong ID too; nothing in the log can say so.
unlike($log->(), qr/host=def-off .*hint=/, 'def-off: no hint (lond cannot tell)');
unlike($log->(), qr/\Q$secret\E/, 'the plain text of encrypt: requests is not logged');

# ---- what lonc-ctl shows ------------------------------------------------
my $admin = "$dir/sw-admin.sock";
my $ctl = build_dir() . '/lonc-ctl';
my $hosts = `$ctl -s $admin hosts`;
like($hosts, qr/^alt address=127\.0\.0\.1 port=$lalt->{port} ids=alta,altb aliases=- key_mode=insecure max_connections=\d+ sethost_mode=separate init_version="2\.11" key_id_order=local_first version_string="2\.12\.0" tls_close_notify=required version_step=true sethost_step=true peer_version="testlond-1\.0"$/m,
     'lonc-ctl hosts: alt with its switches and the lond version seen');
like($hosts, qr/^def address=\S+ port=\d+ ids=defa,defb aliases=- key_mode=insecure max_connections=\d+ sethost_mode=inline init_version="" key_id_order=remote_first version_string="\Q$V\E" tls_close_notify=required version_step=true sethost_step=true peer_version="testlond-1\.0"$/m,
     'lonc-ctl hosts: def with the defaults');
like($hosts, qr/^off .* sethost_mode=off .* sethost_step=false /m, 'lonc-ctl hosts: off');
like($hosts, qr/^talt .* key_mode=ssl .* init_version="2\.11" .* tls_close_notify=lenient /m, 'lonc-ctl hosts: talt');
my $json = `$ctl -s $admin status json`;
like($json, qr/\{"host":"alt",[^}]*"peer_version":"testlond-1\.0"[^}]*"sethost_mode":"separate","init_version":"2\.11","key_id_order":"local_first","version_string":"2\.12\.0","tls_close_notify":"required"/,
     'status json: the switches of alt');

# ---- reload: the switches set globally ----------------------------------
{
    my %g = (%alt, tls_close_notify => 'lenient');
    my %defaults = (sethost_mode => 'inline', init_version => '""', key_id_order => 'remote_first',
        version_string => "\"$V\"", tls_close_notify => 'required');
    write_config(%top, %g, hosts => [
        entry('def', $ldef, %defaults),          # its own keys win over the global ones
        entry('alt', $lalt),                     # takes the global ones
        entry('alt-init', $lalt),                # failed before, takes the global ones now
        entry('def-key', $ldef),                 # worked for plain requests, now the wrong init
        entry('talt', $ltalt, %ssl),             # lenient and 2.11 from the global keys
    ]);
    kill 'HUP', $lonc->{pid};
    wait_for(sub { my ($c) = $log->() =~ /event=reload added=- removed=\S+ changed=(\S+)/;
                   defined $c && $c =~ /\balt-init\b/ && $c =~ /\bdef-key\b/ }, 20, 'the reload');
    pass('reload: alt-init and def-key changed');
    works(entry('def', $ldef), info => qr/^mode=insecure init_version=- peer_version=\Q$V\E host=defb$/);
    works(entry('alt-init', $lalt), info => qr/^mode=insecure init_version=2\.11 peer_version=2\.12\.0 host=altinitb$/);
    works(entry('talt', $ltalt), info => qr/^mode=ssl init_version=2\.11 peer_version=2\.12\.0 host=taltb$/);
    # def-key's pool was rebuilt: a fresh connection with the global
    # init_version is refused by the lond that needs the plain init.
    my $before = () = $log->() =~ /host=def-key event=connect_failed .*hint=init_version/g;
    is(request("$d/def-key", 'ping'), 'con_lost', 'def-key: after the reload the global init_version applies (refused)');
    wait_for(sub { my $n = () = $log->() =~ /host=def-key event=connect_failed .*hint=init_version/g; $n > $before },
        10, 'def-key: hint=init_version');
    pass('def-key: logged with hint=init_version');
    like(`$ctl -s $admin hosts`, qr/^alt-init .* sethost_mode=separate init_version="2\.11" key_id_order=local_first version_string="2\.12\.0" tls_close_notify=lenient /m,
         'lonc-ctl hosts: the global switches in force for a host without its own');
}

is(stop_lonc($lonc), 0, 'clean shutdown');
done_testing();

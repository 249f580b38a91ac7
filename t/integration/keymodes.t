#!/usr/bin/perl
# Every key mode end to end against the test lond: ssl (TLS with client
# certificate, key over TLS, close_notify both ways, then plain text),
# insecure and local; encrypted requests in each; certificate failures
# (wrong CA, expired, wrong host name) end in con_lost with a clear log
# line; "refused" counts as a refusal; the ssl->insecure fallback policy
# both ways; and neither the plain text of encrypt: requests nor the key
# ever reaches the log, even at debug level.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use LoncTest;

watchdog(240);
my $certs = tmp_dir() . '/certs';
system("$FindBin::Bin/../tls/mkcerts", $certs) == 0 or BAIL_OUT('mkcerts failed');
sub tls_args { my ($name) = @_;
    [ '--tls-cert', "$certs/$name.pem", '--tls-key', "$certs/$name.key", '--tls-ca', "$certs/ca.pem" ] }

my $good = start_lond(args => tls_args('lond'));
my $wrongca = start_lond(args => [ '--tls-cert', "$certs/lond-wrongca.pem",
    '--tls-key', "$certs/lond-wrongca.key", '--tls-ca', "$certs/ca.pem" ]);
my $expired = start_lond(args => tls_args('lond-expired'));
my $wronghost = start_lond(args => tls_args('lond-wronghost'));
my $nocerts = start_lond();
my $refusing = start_lond(args => tls_args('lond'), fault => 'not_in_host_table');
my $plain = start_lond();
my $local = start_lond(client_id => 'lonc-test', host_id => 'lonc-test');

my $secret = 'pw-' . join('', map { ('a'..'z')[rand 26] } 1 .. 20);
my %tls = (tls => "{ca_file: $certs/ca.pem, cert_file: $certs/lonc.pem, key_file: $certs/lonc.key, verify_hostname: true}");
my $cfg = write_config(
    name => 'km', log_level => 'debug', retry_attempts => 50,
    local_key_dir => tmp_dir() . '/keys', %tls,
    hosts => [
        { hostname => 'lond.test', port => $good->{port} },          # auto: ssl
        { hostname => 'wrongca', port => $wrongca->{port}, key_mode => 'ssl', tls_name => 'lond.test' },
        { hostname => 'expired', port => $expired->{port}, key_mode => 'ssl', tls_name => 'lond.test' },
        { hostname => 'wronghost', port => $wronghost->{port}, key_mode => 'ssl', tls_name => 'lond.test' },
        { hostname => 'nocerts', port => $nocerts->{port}, key_mode => 'ssl', tls_name => 'lond.test' },
        { hostname => 'refusing', port => $refusing->{port}, key_mode => 'ssl', tls_name => 'lond.test' },
        { hostname => 'plain', port => $plain->{port}, key_mode => 'insecure' },
        # auto: local; over loopback whatever address the entry has (an
        # address of TEST-NET-1, where nothing answers, as hosts.tab's
        # public address would be)
        { hostname => 'self', port => $local->{port}, ids => ['lonc-test'], address => '192.0.2.1' },
    ],
);
like(`@{[build_dir()]}/lonc -t -c $cfg`, qr/host lond\.test .*key_mode=ssl.*host self .*key_mode=local/s,
     'auto picks ssl with certificates and local for our own host ID');
my $lonc = start_lonc($cfg);
my $d = $lonc->{socket_dir};
my $log = sub { log_text($lonc->{log}) };

# ssl
is(request("$d/lond.test", 'ping'), 'pong', 'ssl: request through a TLS-keyed connection');
my $st = lond_stats($good);
is($st->{tls}, 1, 'ssl: lond completed one TLS key exchange');
is(request("$d/lond.test", "encrypt:echo:$secret"), $secret, 'ssl: encrypted request round trip');
is(lond_stats($good)->{encrypted}, 1, 'ssl: lond received it as enc:');
is(request("$d/lond.test", "encecho:$secret"), $secret, 'ssl: an enc: reply is decrypted for the client');
is(request("$d/lond.test", "sethost:testlond:encrypt:echo:$secret"), $secret, 'ssl: sethost:<id>:encrypt:<cmd>');
my @bad;
for my $n (0 .. 40) {
    my $x = substr('0123456789abcdefghijklmnopqrstuvwxyz!@#$%^&*', 0, $n);
    my $r = request("$d/lond.test", "encrypt:echo:$x");
    push @bad, $n unless defined $r && $r eq $x;
}
is("@bad", '', 'ssl: encrypted commands of every length 0..40 round-trip');

# insecure and local
is(request("$d/plain", "encrypt:echo:$secret"), $secret, 'insecure: encrypted round trip');
is(lond_stats($plain)->{encrypted}, 1, 'insecure: lond received it as enc:');
is(request("$d/self", "encrypt:echo:$secret"), $secret, 'local: encrypted round trip with the key from the file');
is(lond_stats($local)->{encrypted}, 1, 'local: lond received it as enc:');
is(lond_stats($local)->{local}, 1, 'local: lond read a key file');
my @left = glob(tmp_dir() . '/keys/*');
is(scalar @left, 0, 'local: no key file is left behind');

# certificate failures
for my $case ([ wrongca => qr/certificate verification failed: unable to get local issuer certificate/ ],
              [ expired => qr/certificate verification failed: certificate has expired/ ],
              [ wronghost => qr/certificate verification failed: hostname mismatch/ ]) {
    my ($h, $re) = @$case;
    is(request("$d/$h", 'ping'), 'con_lost', "$h: con_lost");
    like($log->(), qr/host=$h event=connect_failed kind=error reason="TLS handshake: .*/, "$h: connect failure logged");
    like($log->(), $re, "$h: the log says why");
}

# refused: counted as a refusal
is(request("$d/refusing", 'ping'), 'con_lost', 'refused: con_lost');
like($log->(), qr/host=refusing event=connect_failed kind=refused/, 'refused: logged as a refusal');
my $admin = $cfg =~ s/\.yaml$/-admin.sock/r;
like(`@{[build_dir()]}/lonc-ctl -s $admin status json`, qr/"host":"refusing"[^}]*"refusals":1/, 'refused: counted in status');

# fallback allowed (allow_insecure true here)
is(request("$d/nocerts", "encrypt:echo:$secret"), $secret, 'lond without certificates: continues insecure when allowed');
is(lond_stats($nocerts)->{encrypted}, 1, 'lond without certificates: still received it as enc:');
like($log->(), qr/host=nocerts worker=\d+ event=ssl_fallback_insecure/, 'the fallback is logged');

is(stop_lonc($lonc), 0, 'clean shutdown');
my $text = $log->();
unlike($text, qr/\Q$secret\E/, 'the plain text of encrypt: requests never reached the log (debug level)');
unlike($text, qr/enc:\d+:[0-9a-f]{16}/, 'no enc: line either');

# fallback refused
my $cfg2 = write_config(name => 'km2', allow_insecure => 'false', %tls,
    hosts => [ { hostname => 'nocerts', port => $nocerts->{port}, key_mode => 'ssl', tls_name => 'lond.test' } ]);
my $l2 = start_lonc($cfg2);
is(request("$l2->{socket_dir}/nocerts", 'ping'), 'con_lost', 'lond without certificates and allow_insecure false: con_lost');
like(log_text($l2->{log}), qr/lond has no certificates \(it sent a challenge\) and allow_insecure is false/, 'and the log says why');
is(stop_lonc($l2), 0, 'clean shutdown');
done_testing();

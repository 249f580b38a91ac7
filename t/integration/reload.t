#!/usr/bin/perl
# Live reload (SIGHUP, SIGUSR2, admin "reload"): all or nothing.  Added
# hosts get sockets, removed hosts lose theirs, changed hosts are rebuilt
# while unchanged hosts keep their pools; a broken config is logged and
# the running one kept; SIGHUP every 100 ms under load fails no request
# to an unchanged host.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use Time::HiRes qw(time sleep);
use LoncTest;

watchdog(300);
my $lond = start_lond();
my $lond2 = start_lond();
my %base = (name => 'reload', max_connections => 4);
my @hosts = (
    { hostname => 'keep', port => $lond->{port} },
    { hostname => 'change', port => $lond->{port} },
    { hostname => 'gone', port => $lond->{port}, aliases => ['gone-alias'] },
);
my $cfg = write_config(%base, hosts => \@hosts);
my $lonc = start_lonc($cfg);
my $dir = $lonc->{socket_dir};
my $log = sub { log_text($lonc->{log}) };
my $reloads = 0;
sub reloaded {
    my ($sig) = @_;
    $reloads++;
    kill $sig, $lonc->{pid};
    wait_for(sub { my @m = $log->() =~ /event=reload(?:_failed)? /g; @m >= $reloads }, 20, "reload $reloads");
}

is(request("$dir/$_", 'ping'), 'pong', "$_ serves before the reload") for qw(keep change gone);
# Connections lonc has made so far, per host, from its log.
sub connects { my ($h) = @_; my @m = $log->() =~ /host=$h worker=\d+ event=connected/g; scalar @m }
sub disconnects { my ($h) = @_; my @m = $log->() =~ /host=$h worker=\d+ event=disconnected/g; scalar @m }
my %before = map { $_ => connects($_) } qw(keep change gone);

# A broken config: logged, nothing changes.
open my $fh, '>>', $cfg or die;
print $fh "bogus_key: 1\n";
close $fh;
reloaded('HUP');
like($log->(), qr/event=reload_failed reason=".*unknown key/, 'broken config: reload_failed logged');
{
    my $m = `@{[build_dir()]}/lonc-ctl -s @{[tmp_dir()]}/reload-admin.sock metrics`;
    like($m, qr/^lonc_reload_failures_total 1$/m, 'the refused reload is counted in the metrics');
    like($m, qr/^lonc_last_reload_success 0$/m, 'and the latest reload shows as failed');
}
is(request("$dir/$_", 'ping'), 'pong', "$_ still serves after a failed reload") for qw(keep change gone);
is_deeply({ map { $_ => connects($_) } qw(keep change gone) }, \%before,
          'and kept its pooled connections (no new connection)');

# A change that needs a restart is refused as a whole.
write_config(%base, hosts => \@hosts, user => 'daemon');
reloaded('HUP');
like($log->(), qr/event=reload_failed reason=".*key 'user' changed; it takes effect only at a restart/, 'restart-only key refused');

# The real reload: keep unchanged, change one (new port), remove one, add one.
write_config(%base, hosts => [
    { hostname => 'keep', port => $lond->{port} },
    { hostname => 'change', port => $lond2->{port} },
    { hostname => 'added', port => $lond2->{port}, aliases => ['added-alias'] },
]);
reloaded('USR2');
like($log->(), qr/event=reload added=added removed=gone changed=change unchanged=1/, 'one-line diff logged');
ok(-S "$dir/added" && -S "$dir/added-alias", 'added host has its sockets');
ok(!-e "$dir/gone" && !-e "$dir/gone-alias", 'removed host lost its sockets');
is(request("$dir/added", 'ping'), 'pong', 'added host serves');
is(request("$dir/keep", 'ping'), 'pong', 'unchanged host serves');
is(connects('keep'), $before{keep}, 'unchanged host kept its pooled connection (no new one)');
is(disconnects('keep'), 0, 'and closed none');
lond_ctl($lond2, 'reset');
is(request("$dir/change", 'ping'), 'pong', 'changed host serves');
is(lond_stats($lond2)->{connections}, 1, 'changed host now talks to its new lond');
wait_for(sub { $log->() =~ /host=change event=retired/ }, 20, 'old change retired');
pass('the replaced host retired once idle');

# Reload through the admin socket.
my $ctl = build_dir() . '/lonc-ctl';
my $admin = $cfg =~ s/\.yaml$/-admin.sock/r;
my $out = `$ctl -s $admin reload`;
is($? >> 8, 0, 'lonc-ctl reload exits 0');
like($out, qr/^ok added=- removed=- changed=- unchanged=3/, 'and reports an empty diff');

# SIGHUP every 100 ms while 32 clients send requests to an unchanged host.
{
    my $pid = open(my $load, '-|', build_dir() . '/lonc-load', '--socket', "$dir/keep",
        '--clients', 32, '--requests', 2000, '--seconds', 4) or die;
    my $end = time + 4;
    my $n = 0;
    while (time < $end) {
        kill 'HUP', $lonc->{pid};
        $n++;
        sleep 0.1;
    }
    my $res = do { local $/; <$load> };
    waitpid($pid, 0);
    my %r = map { split /=/, $_, 2 } split ' ', $res;
    cmp_ok($n, '>=', 20, "sent $n SIGHUPs");
    cmp_ok($r{ok}, '>', 0, "requests went through during the reloads ($r{ok})");
    is($r{con_lost} + $r{errors} + $r{mismatch}, 0, 'no request to the unchanged host failed');
}
is(request("$dir/keep", 'ping'), 'pong', 'still serving after the reload storm');
is(stop_lonc($lonc), 0, 'clean shutdown');
done_testing();

#!/usr/bin/perl
# make deb: a Debian package built with debhelper, lintian without
# errors; its files where Debian wants them, binaries stripped (symbols
# in lonc-dbgsym), the configuration a conffile that lonc -t refuses
# until it is edited (so installing never starts lonc on it), the unit
# and the init script in place.  Nothing is installed on this machine:
# the package is only unpacked into the test's directory.  Skipped where
# the packaging tools cannot be installed.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Cwd qw(abs_path);
use Test::More;
use LoncTest;

plan skip_all => 'make deb needs root to install debhelper and lintian' if $> != 0;
system("$FindBin::Bin/../../scripts/install-deps deb >/dev/null 2>&1") == 0
    or plan skip_all => 'debhelper and lintian cannot be installed here';
watchdog(600);
my $top = abs_path("$FindBin::Bin/../..");
my $build = build_dir();
$build = "$top/$build" unless $build =~ m{^/};
my $out = `make -C $top --no-print-directory BUILD=$build deb 2>&1`;
is($? >> 8, 0, 'make deb (with lintian --fail-on error)') or diag $out;
my ($deb) = glob("$build/deb/lonc_[0-9]*.deb");
my ($dbg) = glob("$build/deb/lonc-dbgsym_*.deb");
ok($deb && -s $deb, 'the package') or BAIL_OUT('no package');
ok($dbg && -s $dbg, 'and its debug symbols apart (lonc-dbgsym)');

my $contents = `dpkg-deb -c $deb`;
for my $f (qw(./usr/sbin/lonc ./usr/sbin/lonc-ctl ./etc/init.d/lonc
              ./lib/systemd/system/lonc.service ./etc/lonc/lonc.yaml ./etc/default/lonc
              ./usr/share/man/man8/lonc.8.gz ./usr/share/man/man8/lonc-ctl.8.gz
              ./usr/share/man/man5/lonc.yaml.5.gz)) {
    like($contents, qr/ \Q$f\E$/m, "ships $f");
}
my $conffiles = `dpkg-deb -f $deb Package; dpkg-deb --ctrl-tarfile $deb | tar -xOf - ./conffiles`;
like($conffiles, qr{^/etc/lonc/lonc\.yaml$}m, '/etc/lonc/lonc.yaml is a conffile');
like($conffiles, qr{^/etc/init\.d/lonc$}m, 'so is the init script');

my $root = tmp_dir() . '/unpacked';
system('dpkg-deb', '-x', $deb, $root) == 0 or die "dpkg-deb -x: $?";
unlike(`readelf -S $root/usr/sbin/lonc 2>&1`, qr/\.symtab/, 'lonc is stripped');
like(`$root/usr/sbin/lonc --version`, qr/^lonc \d/, 'and runs');
my $t = `$root/usr/sbin/lonc -t -c $root/etc/lonc/lonc.yaml 2>&1`;
isnt($? >> 8, 0, 'the shipped configuration does not pass lonc -t until edited') or diag $t;
like($t, qr/host_id/, '... because host_id is left to the operator');
my $postinst = `dpkg-deb --ctrl-tarfile $deb | tar -xOf - ./postinst`;
like($postinst, qr{lonc -t -c /etc/lonc/lonc\.yaml}, 'postinst starts lonc only on a config lonc -t accepts');
{
    # Every start is behind the guard (debhelper's own were turned off).
    my $guard = index($postinst, 'lonc -t -c');
    my @starts;
    push @starts, $-[0] while $postinst =~ /^\s*(?:deb-systemd-invoke|invoke-rc\.d)\b/mg;
    ok(@starts && !grep({ $_ < $guard } @starts), 'no start before the lonc -t guard');
}
done_testing();

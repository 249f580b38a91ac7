#!/usr/bin/perl
# make install into a temporary DESTDIR: every file lands where it should,
# with its mode (also under a strict umask), nothing else is installed,
# and the init script gets the installed paths as its defaults.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Cwd qw(abs_path);
use File::Find;
use Test::More;
use LoncTest;

watchdog(120);
my $top = abs_path("$FindBin::Bin/../..");
my $build = build_dir();
my $dir = tmp_dir();

sub slurp {
    my ($path) = @_;
    open my $fh, '<', $path or return undef;
    binmode $fh;
    local $/;
    return <$fh>;
}

# Run make install; returns its output, fails the test on non-zero.
# -o keeps make from rebuilding lonc and lonc-ctl: this test is about installing.
sub make_install {
    my ($destdir, @vars) = @_;
    # Nothing from a calling make or the environment may change the paths.
    local %ENV = %ENV;
    delete @ENV{qw(MAKEFLAGS MFLAGS MAKELEVEL MAKEOVERRIDES PREFIX DESTDIR
        SBINDIR SYSCONFDIR MANDIR)};
    my @cmd = ('make', '-C', $top, '--no-print-directory', "BUILD=$build",
        '-o', "$build/lonc", '-o', "$build/lonc-ctl", 'install', "DESTDIR=$destdir", @vars);
    my $out = do {
        my $old = umask 077;
        my $o = `@cmd 2>&1`;
        umask $old;
        $o;
    };
    is($? >> 8, 0, "make install @vars") or diag $out;
    return $out;
}

sub mode { my @st = stat $_[0]; return @st ? sprintf('%04o', $st[2] & 07777) : 'missing' }

# Every regular file under $root, relative to it.
sub files_under {
    my ($root) = @_;
    my @f;
    find({ no_chdir => 1, wanted => sub {
        push @f, substr($File::Find::name, length($root)) if -f $File::Find::name;
    } }, $root);
    return sort @f;
}

my $ctl_src = -f "$build/lonc-ctl" ? "$build/lonc-ctl" : "$top/$build/lonc-ctl";
my $lonc_src = -f "$build/lonc" ? "$build/lonc" : "$top/$build/lonc";

# PREFIX=/usr: the Debian layout.
my $d = "$dir/destdir";
make_install($d, 'PREFIX=/usr');
my %want = (
    '/usr/sbin/lonc' => ['0755', undef],
    '/etc/lonc/lonc.yaml.example' => ['0644', "$top/etc/lonc.yaml"],
    '/etc/init.d/lonc' => ['0755', undef],
    '/usr/share/man/man8/lonc.8' => ['0644', "$top/doc/lonc.8"],
    '/usr/share/man/man8/lonc-ctl.8' => ['0644', "$top/doc/lonc-ctl.8"],
    '/usr/share/man/man5/lonc.yaml.5' => ['0644', "$top/doc/lonc.yaml.5"],
    '/usr/lib/systemd/system/lonc.service' => ['0644', undef],
    '/etc/default/lonc' => ['0644', "$top/scripts/lonc.default"],
);
$want{'/usr/sbin/lonc-ctl'} = ['0755', undef];
for my $f (sort keys %want) {
    my ($mode, $src) = @{ $want{$f} };
    is(mode("$d$f"), $mode, "$f installed with mode $mode");
    ok(slurp("$d$f") eq slurp($src), "$f is a copy of its source")
        if defined $src && -e "$d$f";
}
is_deeply([ files_under($d) ], [ sort keys %want ], 'nothing else installed');
like(`$d/usr/sbin/lonc --version`, qr/^lonc \d+\.\d+\.\d+$/m,
    'the installed lonc runs');
for my $bin (qw(lonc lonc-ctl)) {
    my $sections = `readelf -S $d/usr/sbin/$bin 2>&1`;
    unlike($sections, qr/\.symtab/, "$bin is installed stripped");
}
my $unit = slurp("$d/usr/lib/systemd/system/lonc.service") // '';
like($unit, qr{^Type=notify$}m, 'systemd unit: Type=notify');
like($unit, qr{^ExecStart=/usr/sbin/lonc --foreground -c \$\{CONFIG\}}m, 'systemd unit: the installed lonc');
like($unit, qr{^WatchdogSec=\d+$}m, 'systemd unit: a watchdog');

# The init script: the installed paths as defaults, otherwise unchanged.
my $init = slurp("$d/etc/init.d/lonc") // '';
like($init, qr{^DEFAULT_DAEMON=/usr/sbin/lonc$}m, 'init script: DAEMON is the installed lonc');
like($init, qr{^DEFAULT_CONFIG=/etc/lonc/lonc\.yaml$}m, 'init script: CONFIG under SYSCONFDIR');
like($init, qr{^DEFAULTS_FILE=/etc/default/lonc$}m, 'init script: /etc/default/lonc');
my $strip = sub { join '', grep { !/^(DEFAULT_DAEMON|DEFAULT_CONFIG|DEFAULTS_FILE)=/ } split /^/, $_[0] };
is($strip->($init), $strip->(slurp("$top/scripts/lonc.init")),
    'init script: nothing else changed');
system('sh', '-n', "$d/etc/init.d/lonc");
is($?, 0, 'init script parses');
{
    local $ENV{LONC_DEFAULTS} = '/nonexistent/lonc-defaults';
    local $ENV{PIDFILE} = "$dir/no-such.pid";
    local $ENV{CONFIG} = "$dir/no-such.yaml";
    my $out = `$d/etc/init.d/lonc status 2>&1`;
    is($? >> 8, 3, 'installed init script runs (status: 3, not running)');
}

# A second install keeps an edited init script and defaults file (the
# new ones land next to them); uninstall removes the rest, keeps those.
{
    open my $fh, '>>', "$d/etc/init.d/lonc" or die;
    print $fh "# edited here\n";
    close $fh;
    open $fh, '>>', "$d/etc/default/lonc" or die;
    print $fh "CONFIG=/srv/lonc.yaml\n";
    close $fh;
    my $out = make_install($d, 'PREFIX=/usr');
    like(slurp("$d/etc/init.d/lonc"), qr/# edited here/, 're-install keeps an edited init script');
    ok(-e "$d/etc/init.d/lonc.dist", '... and puts the new one beside it');
    like($out, qr{init.d/lonc differs}, '... and says so');
    like(slurp("$d/etc/default/lonc"), qr{^CONFIG=/srv/lonc\.yaml$}m, 're-install keeps /etc/default/lonc');
    unlink "$d/etc/init.d/lonc.dist";
    my $u = `make -C $top --no-print-directory BUILD=$build uninstall DESTDIR=$d PREFIX=/usr 2>&1`;
    is($? >> 8, 0, 'make uninstall') or diag $u;
    is_deeply([ files_under($d) ], [ '/etc/default/lonc', '/etc/init.d/lonc' ],
        'uninstall removes everything but the edited files');
}

# Other PREFIX, SYSCONFDIR and MANDIR.
my $d2 = "$dir/destdir2";
make_install($d2, 'PREFIX=/opt/lonc', 'SYSCONFDIR=/opt/lonc/etc',
    'MANDIR=/opt/lonc/man');
is(mode("$d2/opt/lonc/sbin/lonc"), '0755', 'PREFIX moves the binary');
is(mode("$d2/opt/lonc/etc/lonc/lonc.yaml.example"), '0644', 'SYSCONFDIR moves the example');
is(mode("$d2/opt/lonc/etc/init.d/lonc"), '0755', 'SYSCONFDIR moves the init script');
is(mode("$d2/opt/lonc/man/man8/lonc.8"), '0644', 'MANDIR moves the man pages');
is(mode("$d2/opt/lonc/man/man5/lonc.yaml.5"), '0644', 'MANDIR moves section 5 too');
$init = slurp("$d2/opt/lonc/etc/init.d/lonc") // '';
like($init, qr{^DEFAULT_DAEMON=/opt/lonc/sbin/lonc$}m, 'init script follows SBINDIR');
like($init, qr{^DEFAULT_CONFIG=/opt/lonc/etc/lonc/lonc\.yaml$}m, 'and SYSCONFDIR');
like($init, qr{^DEFAULTS_FILE=/opt/lonc/etc/default/lonc$}m, 'for its defaults file too');

done_testing();

#!/usr/bin/perl
# Documentation check: every configuration key that `lonc --list-options`
# prints is in the example config (etc/lonc.yaml) and has an entry in
# lonc.yaml(5), in the right place (tls keys under tls, host-entry keys
# under hosts); every long option of `lonc --help` is in lonc(8); the man
# pages parse without groff warnings (skipped without groff).
#
# The direction is lonc -> docs: the docs may describe keys that lonc
# does not have yet.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use LoncTest;

watchdog(60);
my $top = "$FindBin::Bin/../..";
my $lonc = build_dir() . '/lonc';
my @pages = qw(doc/lonc.8 doc/lonc-ctl.8 doc/lonc.yaml.5);

sub slurp {
    my ($path) = @_;
    open my $fh, '<', $path or die "$path: $!";
    local $/;
    return <$fh>;
}

my @keys = split /\n/, `$lonc --list-options`;
is($? >> 8, 0, 'lonc --list-options exits 0');
ok(scalar(grep { !/^(tls|hosts)\./ } @keys) > 10, 'and lists the top-level keys');

# etc/lonc.yaml: a top-level key at the start of a line (commented out
# is fine: optional keys may be shown that way); tls and hosts keys
# indented, host keys possibly after the "- " of an entry.
my $yaml = slurp("$top/etc/lonc.yaml");
# lonc.yaml(5): each key has a ".TP" entry ".B key"; tls keys in the
# "tls" subsection, host keys in the HOSTS section, the rest elsewhere.
my $man = slurp("$top/doc/lonc.yaml.5");
my ($tls_part) = $man =~ /^\.SS tls\n(.*?)^\.S[HS] /ms;
my ($hosts_part) = $man =~ /^\.SH HOSTS\n(.*?)^\.SH /ms;
(my $other = $man) =~ s/^\.SS tls\n.*?(?=^\.S[HS] )//ms;
$other =~ s/^\.SH HOSTS\n.*?(?=^\.SH )//ms;
ok(defined $tls_part && defined $hosts_part, 'lonc.yaml.5 has a tls subsection and a HOSTS section');
$tls_part //= '';
$hosts_part //= '';

for my $key (@keys) {
    my ($scope, $name) = $key =~ /^(?:(tls|hosts)\.)?(.+)$/;
    my $q = quotemeta $name;
    my ($in_yaml, $part);
    if (!defined $scope) {
        $in_yaml = $yaml =~ /^#? ?$q:/m;
        $part = $other;
    } elsif ($scope eq 'tls') {
        $in_yaml = $yaml =~ /^tls:\n(?:[ \t]+.*\n|#.*\n)*?[ \t]+#? ?$q:/m;
        $part = $tls_part;
    } else {
        $in_yaml = $yaml =~ /^hosts:\n(?:[ \t].*\n|#.*\n)*?[ \t]+(?:- )?#? ?$q:/m;
        $part = $hosts_part;
    }
    ok($in_yaml, "$key is in etc/lonc.yaml");
    like($part, qr/^\.TP\n\.B $q\n/m, "$key has an entry in lonc.yaml.5");
}

# Long options of lonc --help in lonc(8).
my $help = `$lonc --help`;
my %opts = map { $_ => 1 } $help =~ /(--[a-z][a-z-]*)/g;
ok(%opts, 'lonc --help lists long options');
my $lonc8 = slurp("$top/doc/lonc.8");
for my $o (sort keys %opts) {
    (my $roff = $o) =~ s/-/\\-/g;
    like($lonc8, qr/\Q$roff\E\b/, "$o is in lonc.8");
}

# Each page names itself in .TH as its file name says.
for my $p (@pages) {
    my ($name, $sec) = $p =~ m{doc/(.+)\.(\d)$};
    (my $th = uc $name) =~ s/-/\\-/g;
    like(slurp("$top/$p"), qr/^\.TH \Q$th\E $sec /m, "$p: .TH $th $sec");
}

SKIP: {
    skip 'groff is not installed', scalar @pages
        unless grep { -x "$_/groff" } split /:/, $ENV{PATH} // '';
    for my $p (@pages) {
        my $out = `groff -man -ww -z $top/$p 2>&1`;
        is($out, '', "$p parses without groff warnings") or diag $out;
    }
}

done_testing();

#!/usr/bin/perl
# scripts/check-shape on the tree: no function over 80 lines, no include
# cycle, every module's "May call:" names what it depends on.  First the
# checker itself against a small tree that breaks each rule, so that a
# checker that passes everything would fail here.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use Test::More;
use LoncTest;

my $top = "$FindBin::Bin/../..";
my $check = "$top/scripts/check-shape";

sub put {
    my ($path, $text) = @_;
    open my $fh, '>', $path or die "$path: $!";
    print $fh $text;
    close $fh;
}
my $bad = tmp_dir() . '/shape';
mkdir $bad;
mkdir "$bad/$_" for qw(src include);
put("$bad/src/a.c", "/* a.c.  May call: b. */\n#include \"a.h\"\n#include \"b.h\"\nint a(void)\n{\n"
    . ("\tx();\n" x 81) . "}\n");
put("$bad/include/a.h", "#include \"util.h\"\n");
put("$bad/src/b.c", "/* b.c: no list. */\n#include \"a.h\"\n");
put("$bad/include/b.h", "");
my $out = `LONC_TOP=$bad $check 2>&1`;
isnt($? >> 8, 0, 'a tree that breaks the rules fails');
like($out, qr{src/a\.c:\d+: a is 81 lines \(at most 80\)}, 'a long function is named');
like($out, qr/include cycle: /, 'a cycle is named');
like($out, qr{src/a\.c: depends on util, which its 'May call:' does not name}, 'a dependency left out of May call');
like($out, qr{src/b\.c: no 'May call:'}, 'a module without May call');

$out = `LONC_TOP=$top $check 2>&1`;
is($? >> 8, 0, 'lonc\'s own tree keeps the rules') or diag $out;
done_testing();

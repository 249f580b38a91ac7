#!/usr/bin/perl
# The chaos soak (t/soak/soak, described in t/soak/README) for a short
# time inside the suite: about 30 s of killed, stopped and faulted test
# londs, reloads (some broken), SIGUSR1, delayed files and abusive
# clients against the real daemon, with its invariants as TAP.  The seed
# is random and printed first; SOAK_SEED replays a run, SOAK_SECONDS
# changes its length (`make soak` runs it for 600 s).
use strict;
use warnings;
use FindBin;

my $secs = $ENV{SOAK_SECONDS} || 30;
my @seed = defined $ENV{SOAK_SEED} && $ENV{SOAK_SEED} =~ /^\d+$/ ? ('--seed', $ENV{SOAK_SEED}) : ();
exec $^X, "$FindBin::Bin/../soak/soak", '--seconds', $secs, @seed
    or die "exec t/soak/soak: $!\n";

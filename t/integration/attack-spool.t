#!/usr/bin/perl
# Attack: the spool under pressure.  spool_dir is a 768 KiB tmpfs the
# test mounts (root; skipped otherwise), reply_buffer 4 KiB.
#  1. Eight clients ask at once, for 8 s, for plain and enc: replies of
#     100 KB to 500 KB (together far more than the tmpfs holds): each
#     gets its whole reply or exactly con_lost\n.
#  2. The tmpfs filled to the last block by another file: big replies
#     con_lost, small ones (in memory) still whole; the file removed:
#     big replies whole again.
#  3. spool_dir renamed away, then a plain file in its place, while
#     lonc runs: con_lost for big replies (never a part of one), small
#     replies fine; the directory back: big replies whole again.
# Afterwards nothing is left in spool_dir and the daemon is healthy.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use POSIX qw(:sys_wait_h);
use Test::More;
use Time::HiRes qw(time sleep);
use LoncTest;

plan skip_all => 'needs root to mount a small tmpfs' if $> != 0;
my $spool = tmp_dir() . '/spool-attack';
mkdir $spool, 0700 or die "mkdir $spool: $!";
my $out = qx(mount -t tmpfs -o size=768k,mode=0700 lonc-attack-spool '$spool' 2>&1);
my $mounted = $? == 0;
chomp $out;
plan skip_all => "cannot mount a tmpfs here: $out" unless $mounted;

my ($lonc, $lonc2);
END {
    my $status = $?;
    if ($mounted) {
        for my $l (grep { $_ } $lonc, $lonc2) {
            if (waitpid($l->{pid}, WNOHANG) == 0) {
                kill 'KILL', $l->{pid};
                waitpid $l->{pid}, 0;
            }
        }
        system('umount', $spool) == 0 or system('umount', '-l', $spool);
    }
    $? = $status;
}

watchdog(150);
$SIG{PIPE} = 'IGNORE';
my $lond = start_lond();
$lonc = start_lonc(write_config(name => 'spoolattack', spool_dir => $spool,
    reply_buffer => 4096, max_connections => 8, transaction_timeout => 10,
    hosts => [ { hostname => 'h', port => $lond->{port} } ]));
my $sock = "$lonc->{socket_dir}/h";
my $PAT = pattern(600_000);

sub whole_or_lost {
    my ($req, $n) = @_;
    my ($got, $how) = request_bytes($sock, $req, 60);
    return 'whole' if defined $got && $got eq substr($PAT, 0, $n) . "\n";
    return 'lost' if defined $got && $got eq "con_lost\n";
    return 'bad: ' . describe_bytes($got) . " ($how)";
}
sub entries {
    my ($d) = @_;
    opendir my $dh, $d or return ("cannot open: $!");
    return grep { !/^\.\.?$/ } readdir $dh;
}

is(request($sock, 'ping'), 'pong', 'lonc is up, spool_dir on a 768 KiB tmpfs');

# ---- 1. concurrent big replies, more than the spool holds ----------------
{
    my $dir = tmp_dir() . '/spool-clients';
    mkdir $dir;
    my @pids;
    for my $c (1 .. 8) {
        my $pid = fork // die "fork: $!";
        if ($pid == 0) {
            $SIG{ALRM} = 'DEFAULT';
            srand($$);
            my %n = (whole => 0, lost => 0, bad => 0);
            my @bad;
            my $end = time + 8;
            while (time < $end) {
                my $n = 100_000 + int rand 400_000;
                my $req = (rand() < 0.5 ? 'bytes:' : 'encbytes:') . $n;
                my $r = whole_or_lost($req, $n);
                if ($r =~ /^bad/) { $n{bad}++; push @bad, "$req: $r" } else { $n{$r}++ }
            }
            open my $fh, '>', "$dir/$c" or die;
            print $fh join(' ', map { "$_=$n{$_}" } sort keys %n), "\n", map { "BAD $_\n" } @bad[0 .. ($#bad < 4 ? $#bad : 4)];
            close $fh;
            POSIX::_exit(0);
        }
        push @pids, $pid;
    }
    waitpid $_, 0 for @pids;
    my (%sum, @bad);
    for my $c (1 .. 8) {
        my $t = log_text("$dir/$c");
        my ($l) = split /\n/, $t;
        $sum{$1} += $2 while ($l // '') =~ /(\w+)=(\d+)/g;
        push @bad, $t =~ /^BAD (.*)$/mg;
    }
    diag('concurrent: ' . join(' ', map { "$_=" . ($sum{$_} // 0) } sort keys %sum));
    is($sum{bad} // 0, 0, 'eight clients at once: each reply whole or con_lost') or diag(join "\n", @bad);
    cmp_ok($sum{whole} // 0, '>', 0, 'some arrived whole');
    like(log_text($lonc->{log}), qr/reason=spool_failed/, 'the spool ran out meanwhile (logged)');
    is(whole_or_lost('bytes:500000', 500000), 'whole', 'alone, a 500 KB reply arrives whole');
}

# ---- 2. the tmpfs filled by someone else ---------------------------------
{
    system("dd if=/dev/zero of='$spool/filler' bs=4k count=1000 2>/dev/null");
    is(whole_or_lost('bytes:300000', 300000), 'lost', 'spool full: a big reply is con_lost');
    is(whole_or_lost('encbytes:300000', 300000), 'lost', 'and a big enc: reply');
    is(whole_or_lost('bytes:4000', 4000), 'whole', 'a reply held in memory arrives whole');
    unlink "$spool/filler";
    is(whole_or_lost('bytes:500000', 500000), 'whole', 'space again: a big reply arrives whole');
}

# ---- 3. spool_dir taken away under lonc ----------------------------------
{
    my $plain = tmp_dir() . '/spool-plain';
    mkdir $plain, 0700 or die;
    $lonc2 = start_lonc(write_config(name => 'spoolgone', spool_dir => $plain,
        socket_dir => tmp_dir() . '/s-spoolgone', reply_buffer => 4096,
        idle_timeout => 0.2, transaction_timeout => 10,
        hosts => [ { hostname => 'h', port => $lond->{port} } ]));
    my $s2 = "$lonc2->{socket_dir}/h";
    my $ask = sub {
        my ($req, $n) = @_;
        my ($got, $how) = request_bytes($s2, $req, 60);
        return 'whole' if defined $got && $got eq substr($PAT, 0, $n) . "\n";
        return 'lost' if defined $got && $got eq "con_lost\n";
        return 'bad: ' . describe_bytes($got) . " ($how)";
    };
    is($ask->('bytes:200000', 200000), 'whole', 'a big reply through a plain spool_dir');
    # Connections that kept a spool file open are gone after idle_timeout.
    request($s2, 'close_connection_exit');
    # Until no descriptor of lonc's points into the spool directory.
    wait_for(sub { !grep { (readlink($_) // '') =~ m{^\Q$plain\E/} } glob("/proc/$lonc2->{pid}/fd/*") },
        10, 'the old connections to drop their spool files');
    rename $plain, "$plain.away" or die "rename: $!";
    my %seen;
    $seen{ $ask->('bytes:200000', 200000) }++ for 1 .. 3;
    $seen{ $ask->('encbytes:200000', 200000) }++ for 1 .. 3;
    ok(!grep({ /^bad/ } keys %seen), 'spool_dir gone: whole or con_lost, never a part')
        or diag(join ', ', keys %seen);
    is($ask->('bytes:3000', 3000), 'whole', 'spool_dir gone: a small reply arrives whole');
    open my $fh, '>', $plain or die;
    close $fh;
    is($ask->('bytes:200000', 200000), 'lost', 'a plain file where spool_dir was: con_lost');
    unlink $plain;
    rename "$plain.away", $plain or die;
    request($s2, 'close_connection_exit');
    is($ask->('bytes:200000', 200000), 'whole', 'spool_dir back: a big reply arrives whole');
    is_deeply([ entries($plain) ], [], 'nothing left in the plain spool_dir');
    is(stop_lonc($lonc2), 0, 'the second lonc shuts down cleanly');
}

is_deeply([ entries($spool) ], [], 'nothing left in the tmpfs spool_dir');
is(request($sock, 'echo:fine'), 'fine', 'the daemon serves on');
is(stop_lonc($lonc), 0, 'clean shutdown');
done_testing();

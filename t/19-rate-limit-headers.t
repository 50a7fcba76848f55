# do_limit's RateLimit and RateLimit-Policy fields
# (draft-ietf-httpapi-ratelimit-headers-10) for r/s, r/m, fractional rates
# and bursts: r never exceeds q; q requests at once every w seconds are
# never rejected and pace at the rate when whole seconds can say it; a
# client that spends r and then waits t is never rejected nor kept waiting
# longer than the next free token (rounded up to a second); on a rejection
# t is Retry-After.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(sleep time);
use DoTest qw(http header_count);

my %rate = (
    tens   => 'rate=10r/s burst=20',
    small  => 'rate=10r/s burst=5',
    two    => 'rate=2r/s',
    pace   => 'rate=2r/s burst=3',
    third  => 'rate=3r/s burst=10',
    minute => 'rate=1r/m burst=20',
    half   => 'rate=0.5r/s burst=3',
    frac   => 'rate=1.5r/m burst=2',
    slow   => 'rate=0.5r/m',
);

# a static file behind each limit ("return" would answer before it)
my $conf = "    %%STORAGE%%\n"
    . join('', map { "    do_namespace $_ rate_limiter $rate{$_};\n" }
                   sort keys %rate)
    . "    server {\n"
    . "        listen 127.0.0.1:%%PORT%% reuseport;\n"
    . "        root %%PREFIX%%/html;\n"
    . join('', map { "        location = /$_ { do_limit $_ key=\$arg_k"
                     . " headers=on; try_files /ok =404; }\n" }
                   sort keys %rate)
    . "    }\n";

my $t = DoTest->new(workers => 2, http => $conf);
mkdir $t->prefix . '/html';
open my $fh, '>', $t->prefix . '/html/ok' or die $!;
print $fh "ok\n";
close $fh;
$t->start;
my $p = $t->port;

# one request: (status, q, w, r, t, Retry-After), each field checked once
sub probe {
    my ($ns, $key) = @_;
    my $r = http($p, 'GET', "/$ns?k=$key");
    my ($q, $w) = ($r->{headers}{'ratelimit-policy'} // '')
                  =~ /^"$ns";q=(\d+);w=(\d+)$/;
    my ($rem, $reset) = ($r->{headers}{ratelimit} // '')
                        =~ /^"$ns";r=(\d+);t=(\d+)$/;
    die "$ns: malformed or repeated fields:\n$r->{head}\n"
        unless defined $q && defined $rem
               && header_count($r, 'RateLimit-Policy') == 1
               && header_count($r, 'RateLimit') == 1;
    return ($r->{status}, $q, $w, $rem, $reset,
            $r->{headers}{'retry-after'});
}

# the policy and the first answer of a fresh key, from the configuration:
# q is burst or burst + 1, w the fewest whole seconds that refill q, and of
# the two the one nearer the rate (on a tie the larger q); t is the time
# until the request after the r remaining ones passes
my @cases = (
    # ns        q   w     r   t     q/w
    [ 'tens',   20, 2,    20, 1 ],  # 10/s exactly; 21 would need 2.1 s
    [ 'small',  6,  1,    5,  1 ],  # 6/s: a second's worth does not fit
    [ 'two',    1,  1,    0,  1 ],  # no burst: one at a time
    [ 'pace',   4,  2,    3,  1 ],  # 2/s exactly
    [ 'third',  11, 4,    10, 1 ],  # 2.75/s: 10 or 11 need 4 s
    [ 'minute', 21, 1260, 20, 60 ], # 1/m exactly, the whole bucket
    [ 'half',   4,  8,    3,  2 ],  # 0.5/s exactly
    [ 'frac',   3,  120,  2,  40 ], # 1.5/m exactly
    [ 'slow',   1,  120,  0,  120 ],
);
for my $c (@cases) {
    my ($ns, @want) = @$c;
    my ($status, @got) = probe($ns, 'first');
    is("$status @got[0 .. 3]", "200 @want",
       "$ns: the first request gets q=$want[0];w=$want[1] and "
       . "r=$want[2];t=$want[3]");
}

# r never exceeds q, down to the rejection, whose t is Retry-After and
# no more than w; after Retry-After the next request passes
for my $ns (qw(tens small two third minute half)) {
    my (@bad, @last);
    for (1 .. 100) {
        my @a = probe($ns, 'drain');
        push @bad, "r=$a[3] > q=$a[1]" if $a[3] > $a[1];
        @last = @a;
        last if $a[0] == 429;
    }
    is("@bad", '', "$ns: r never exceeds q");
    is($last[0], 429, "$ns: the bucket runs dry");
    ok(defined $last[5] && $last[4] == $last[5] && $last[4] <= $last[2],
       "$ns: a rejection says r=0 and t = Retry-After ($last[4] s) <= w");
}
my @a = probe('two', 'retry');
@a = probe('two', 'retry');
is($a[0], 429, 'two: the second request at once is rejected');
sleep $a[5];
is((probe('two', 'retry'))[0], 200,
   '... and after Retry-After seconds the next one passes');

# the policy's client: q at once, w seconds, q again; never rejected, and
# (where the policy is exact) at the configured rate
for my $ns (qw(tens small two pace)) {
    my ($status, $q, $w) = probe($ns, 'policy');
    my @s = ($status);
    push @s, (probe($ns, 'policy'))[0] for 2 .. $q;
    sleep $w;
    push @s, (probe($ns, 'policy'))[0] for 1 .. $q;
    is(scalar(grep { $_ != 200 } @s), 0,
       "$ns: q=$q at once, then w=$w s, then q again: none rejected");
}

# the draft's client that spends r and then waits t: never rejected, and
# not held back: in 3.5 s at 2r/s with a bucket of 4 it gets 4 + 3 * 2
my ($n, $rejected, $start) = (0, 0, time);
while (1) {
    my @s = probe('pace', 'client');
    $n++;
    $rejected++ if $s[0] != 200;
    next if $s[3] > 0;
    last if time + $s[4] > $start + 3.5;
    sleep $s[4];
}
is($rejected, 0, 'pace: a client that spends r, then waits t, is never '
                 . 'rejected');
is($n, 10, '... and gets every request the rate allows (10 in 3.5 s)');

$t->stop;
$t->check_logs;

done_testing();

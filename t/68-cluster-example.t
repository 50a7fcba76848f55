# conf-examples/cluster.conf, as an operator runs it: two nodes from the
# one file (each with its own name=, listen= and ports), one Redis, one
# secret.  Both nodes form one cluster; increments through either node
# count once each on one object; the limit (burst=20 at 10r/s) lets the
# same number through whichever node the requests reach.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(sleep time);
use JSON::PP;
use DoTest qw(http wait_for);

my $redis = DoTest::Redis->new->start;
my $raw = do {
    local $/;
    open my $fh, '<', DoTest::root() . '/conf-examples/cluster.conf' or die;
    <$fh>;
};
like($raw, qr/^\s*do_cluster name=node1 listen=127\.0\.0\.1:7946/m,
     'the example names its node and its node port');

my (@nodes, @nport);
for my $i (1 .. 2) {
    my $nport = DoTest::free_port();
    (my $text = $raw) =~ s/name=node1 listen=127\.0\.0\.1:7946/name=node$i listen=127.0.0.1:$nport/;
    my $t = DoTest->new(raw => $text, redis_port => $redis->port);
    # the comment's secret, the same for both nodes
    open my $fh, '>', $t->prefix . '/conf/do.secret' or die;
    print $fh "the one secret of both nodes of the example\n";
    close $fh;
    push @nodes, $t->start;
}
my @ports = map { $_->port } @nodes;

ok(wait_for(sub {
    my $held = 0;
    for my $p (@ports) {
        my $r = http($p, 'GET', '/do_status');
        my $s = eval { decode_json($r->{body}) } or return 0;
        my $c = $s->{cluster} or return 0;
        return 0 unless 2 == grep { $_->{live} } @{ $c->{peers} || [] };
        return 0 if $c->{shards} < 256;
        $held += $c->{shards};
    }
    return $held == 1024;
}, 30), 'the two nodes form one cluster and share the 1024 shards');
sleep 2.5;    # the last handovers of the start

my $ok = 0;
for my $i (1 .. 20) {
    $ok++ if http($ports[$i % 2], 'POST', '/counters/visits?key=n&op=incr')
                 ->{status} == 200;
}
is($ok, 20, 'increments through both nodes are acknowledged');
is(http($ports[$_], 'GET', '/counters/visits?key=n')->{body}, 20,
   "node " . ($_ + 1) . " reads 20") for 0, 1;

my %st;
my $t0 = time;
$st{ http($ports[$_ % 2], 'GET', '/')->{status} }++ for 1 .. 60;
# what one limit lets through meanwhile: its burst, its first request,
# and 10 a second; two limits (one per node) would let twice that
my $one = 21 + int((time - $t0) * 10) + 1;
cmp_ok($st{200} // 0, '>=', 21, 'the limit lets its burst through');
cmp_ok($st{200} // 0, '<=', $one,
       "the limit is one across the two nodes, not one per node (<= $one)")
    or diag explain \%st;
is(($st{200} // 0) + ($st{429} // 0), 60, 'the rest is refused with 429');

$_->stop for reverse @nodes;
$_->check_logs('cluster example') for @nodes;
done_testing;

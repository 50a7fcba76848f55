# Cluster mode, a shard is taken when its holder's time runs out, not a
# tick later: the agent ticks every lease/4 (3 s here), but when a lease
# of another node on a shard this node wins, or another node's registry
# entry, runs out before the next tick, it ticks just after that instead.
# One node (lease=12s) and Redis; the test plays a dead node twice:
#
# 1. a lease of another node on a shard this node wins, that the node
#    sees at a tick and that ends 0.6 s after it: the node takes the
#    shard back at once, not 2.4 s later at its next tick;
# 2. a registry entry of a node "ghost" that this node sees at two ticks
#    (it hands the shards ghost wins over to it: releases them), ending
#    0.6 s after the second: the node takes them back at once.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(sleep time);
use DoTest qw(http wait_for);
use DoCluster ();

my $redis = DoTest::Redis->new->start;
my $rport = $redis->port;

my $t = DoTest->new(workers => 2, http => <<"EOF");
    do_secret %%PREFIX%%/do.secret;
    do_storage redis://127.0.0.1:$rport/0 timeout=1s;
    do_cluster name=n1 listen=127.0.0.1:%%PORT2%% lease=12s;
    do_namespace kv store;

    server {
        listen 127.0.0.1:%%PORT%%;
        location ~ ^/kv/(?<o>[\\w-]+)\$ { do_pass kv name=\$o; }
        location = /status { do_status; }
    }
EOF
DoCluster::lone_start($t);

sub cluster { DoCluster::lone_cluster($t) }
sub lease { DoCluster::lease_of($redis, $_[0]) }
sub ticks { cluster()->{ticks} // 0 }

sub redis_ms {
    my ($s, $us) = split /\n/, $redis->cli('TIME');
    return $s * 1000 + int($us / 1000);
}

# polls Redis until the lease of shard $s is n1's at an epoch above $e:
# the time it was seen so
sub back_at {
    my ($s, $e, $secs) = @_;
    my $end = time + $secs;
    while (time < $end) {
        my ($ne) = lease($s) =~ /^(\d+) n1$/;
        return time if $ne && $ne > $e;
        sleep 0.01;
    }
    return undef;
}

ok(wait_for(sub { (cluster()->{shards} // 0) == 1024 }, 30),
   'the node holds all 1024 shards');

# -- 1. another node's lease runs out -----------------------------------

my $s = 7;
my $e = DoCluster::take_lease($t, $redis, $s, 3600);
ok($e, 'just after a tick, another node holds shard 7 for 3.6 s');
my $pttl = $redis->cli('PTTL', "do:cluster:lease:$s");
my $ends = time + $pttl / 1000;
my $back = back_at($s, $e, 10);
ok($back, 'the node takes the shard back');
# its next tick comes 3 s after the last, 2.4 s after the lease ends
cmp_ok(($back // 99) - $ends, '<', 1.2,
       sprintf('... %.3f s after the lease ran out, before its next tick',
               ($back // 99) - $ends));

# -- 2. another node's registry entry runs out --------------------------

# just after a tick, ghost's entry for 6.6 s (past two ticks); the node
# sees ghost live at both, and hands the shards ghost wins over to it
my $n = ticks();
ok(wait_for(sub { ticks() != $n }, 15), 'a tick');
my $left = 6600;
my $score = redis_ms() - 12000 + $left;
my $gone = time + $left / 1000;
$redis->cli('HSET', 'do:cluster:addrs', 'ghost', '127.0.0.1:1');
$redis->cli('ZADD', 'do:cluster:nodes', $score, 'ghost');

my $released;
ok(wait_for(sub {
    my $c = cluster();
    return 0 unless ($c->{shards} // 1024) < 1024;
    ($released) = grep { !exists $c->{epochs}{$_} } 0 .. 1023;
    return 1;
}, 10), 'the node sees ghost and gives the shards ghost wins up');
is(lease($released // 0), '',
   '... shard ' . ($released // '-') . ' among them has no lease');
$back = back_at($released // 0, 0, 10);
ok($back, 'the node takes the shard back once ghost is gone');
cmp_ok(($back // 99) - $gone, '<', 1.2,
       sprintf('... %.3f s after the entry ran out, before its next tick',
               ($back // 99) - $gone));
ok(wait_for(sub { (cluster()->{shards} // 0) == 1024 }, 5),
   '... with all the others');
is($redis->cli('ZSCORE', 'do:cluster:nodes', 'ghost'), "\n",
   'ghost is out of the registry');

$t->stop;
$t->check_logs('prompt takeover', expect => [
    qr/connect\(\) to node "ghost"/,
    qr/node "ghost" at .* is unreachable/,
]);
done_testing;

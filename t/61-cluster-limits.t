# Cluster mode, exactness: three nodes on one Redis decide each key at the
# one node that holds its shard.  rate=1r/m burst=19 lets exactly 20 of
# 200 concurrent requests spread over the three nodes through, five times
# with fresh keys (each node alone, as before cluster mode, lets up to 20
# through itself); store increments sent to one object through all nodes
# end at the count of the acknowledged ones; calls forwarded between nodes
# are counted in do_status, and the Prometheus form has the cluster's
# metrics.  DO_CLUSTER=off runs the same without do_cluster (and fails).

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP;
use DoTest qw(http parallel);
use DoCluster;

my $J = JSON::PP->new;
my $c = DoCluster->new(nodes => 3, http => <<'EOF', locations => <<'EOF');
    do_namespace per_key rate_limiter rate=1r/m burst=19;
    do_namespace state store;
EOF
        location /limited {
            do_limit per_key key=$arg_key;
            alias %%PREFIX%%/ok.txt;
        }
        location ~ ^/s/(?<o>[\w-]+)$ {
            do_pass state name=$o;
            add_header X-Id $do_object_id always;
        }
EOF
$c->start_all;
my @ports = map { $c->port($_) } 0 .. 2;

ok($c->converge(20), 'placement converges: 1024 shards over 3 live nodes');
my $cl = $c->cluster(0) // {};
is($cl->{node}, 'n1', 'the status names the node');
is($cl->{listen}, $c->addr(0), '... and where it listens');
is($cl->{lease_ms}, 2000, '... and the lease');
is(join(' ', sort map { $_->{name} } DoCluster::peers($cl)), 'n2 n3',
   '... and its two peers');

# 1. 200 concurrent requests over 3 nodes, a client each: exactly 20 pass
for my $round (1 .. 5) {
    my $key = "r$round-$$-" . int(rand 1e9);
    my @st = parallel(200, sub {
        my ($i) = @_;
        return http($ports[$i % 3], 'GET', "/limited?key=$key")->{status};
    });
    my $pass = grep { $_ == 200 } @st;
    my $other = grep { $_ != 200 && $_ != 429 && $_ != 503 } @st;
    is(scalar @st, 200, "round $round: 200 answers");
    is($pass, 20, "round $round: exactly 20 of 200 pass ($pass)");
    is($other, 0, "round $round: the others are refused, nothing else");
}

# 2. store incr on one object from all nodes
my @st = parallel(12, sub {
    my ($i) = @_;
    map { http($ports[($i + $_) % 3], 'POST',
               '/s/counter?key=n&op=incr')->{status} } 1 .. 25;
});
my $acked = grep { $_ == 200 } @st;
is($acked, 300, 'every increment through any node is acknowledged');
for my $i (0 .. 2) {
    my $r = http($ports[$i], 'GET', '/s/counter?key=n');
    is("$r->{status} $r->{body}", "200 $acked",
       'node ' . $c->name($i) . ' reads the acknowledged count');
}

# 3. the calls that arrived at the wrong node were forwarded
my $forwards = 0;
$forwards += $c->peer_sum($_, 'forwards') for 0 .. 2;
cmp_ok($forwards, '>', 0, "the nodes forwarded calls ($forwards)");
my $prom = $c->prometheus(0);
like($prom, qr/^ngx_do_cluster_shards(?:\{[^}]*\})? \d+/m,
     'Prometheus: shards held');
like($prom, qr/^ngx_do_(?:cluster_)?fenced_total(?:\{[^}]*\})? \d+/m,
     '... commits fenced');
like($prom, qr/^ngx_do_cluster_forwards_total\{peer="n2"\} \d+/m,
     '... forwards per peer');
# (a node connects to a peer when it first forwards to it)
like($prom, qr/^ngx_do_cluster_peer_up\{peer="n[23]"\} 1\b/m,
     '... and peers up');

$c->check_logs;
done_testing;

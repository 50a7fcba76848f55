# Cluster mode, a node on its way out: what a worker stores as it exits
# (its rate limiters' dirty buckets) is fenced like any other write.  The
# node holds every shard; a key is taken (its bucket dirty, not stored yet:
# do_flush_interval is long); another node takes the key's shard in Redis;
# then nginx stops.  The exit flush carries the old epoch and Redis refuses
# it: the other node's state of the key is not overwritten.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use DoTest qw(http wait_for);
use DoCluster ();

my $redis = DoTest::Redis->new->start;
my $rport = $redis->port;

my $t = DoTest->new(workers => 2, http => <<"EOF");
    do_secret %%PREFIX%%/do.secret;
    do_storage redis://127.0.0.1:$rport/0 timeout=1s;
    do_flush_interval 60s;
    do_cluster name=n1 listen=127.0.0.1:%%PORT2%% lease=10s;
    do_namespace lim rate_limiter rate=1r/m burst=2;

    server {
        listen 127.0.0.1:%%PORT%%;
        location = /lim { do_limit lim key=\$arg_k; alias %%PREFIX%%/ok.txt; }
        location ~ ^/id/(?<k>[\\w-]+)\$ {
            do_pass lim name=\$k;
            add_header X-Id \$do_object_id always;
        }
        location = /status { do_status; }
    }
EOF
DoCluster::lone_start($t);
my $p = $t->port;

sub cluster { DoCluster::lone_cluster($t) }

ok(wait_for(sub { (cluster()->{shards} // 0) == 1024 }, 30),
   'the node holds all 1024 shards');

my $id = http($p, 'GET', '/id/exiting')->{headers}{'x-id'} // '';
like($id, qr/^[0-9a-f]{64}$/, 'the key has an ID');
my $s = hex(substr($id, 0, 8)) % 1024;

is(http($p, 'GET', '/lim?k=exiting')->{status}, 200, 'the key passes');
is($redis->cli('EXISTS', "do:{lim:$id}:tat") + 0, 0,
   '... and its bucket is not stored yet (a flush a minute)');

# another node takes the key's shard, just after this node's agent ticked
ok(DoCluster::take_lease($t, $redis, $s, 60000), 'an agent tick');
$redis->cli('SET', "do:{lim:$id}:tat", 'the other node', 'PX', 60000);

$t->stop;
my $tat = $redis->cli('GET', "do:{lim:$id}:tat");
chomp $tat;
is($tat, 'the other node',
   'the exiting node stored nothing over the new holder\'s state');
like($t->error_log, qr/\[warn\].*refused: epoch \d+ is not the lease's/,
     '... its write was refused by epoch');

$t->check_logs('exit fence', expect => [qr/refused: epoch/]);
done_testing;

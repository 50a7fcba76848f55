# Cluster mode, fencing: every Redis write of object state carries the
# epoch of its shard's lease, and Redis refuses it when the lease moved on.
# A node holds all 1024 shards; the test plays another node by taking a
# shard's lease in Redis (INCR of its epoch, SET of the lease), just after
# the node's agent ticked, so that the node still believes it holds the
# shard.  A store write is refused (503 "the shard moved to another node",
# nothing stored, a warn line naming the holder, "fenced" grows), and so
# is a rate limiter's flush (the stored TAT stays).  When the node takes
# the shard back, with a new epoch, it uses nothing it kept under the old
# one: a store object shows what the other writer stored meanwhile, and a
# rate limiter key that the other node reset is decided on Redis's state,
# not on the node's exhausted bucket.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP;
use Time::HiRes qw(sleep);
use DoTest qw(http wait_for);
use DoCluster ();

my $J = JSON::PP->new;
my $redis = DoTest::Redis->new->start;
my $rport = $redis->port;

my $t = DoTest->new(workers => 2, http => <<"EOF");
    do_secret %%PREFIX%%/do.secret;
    do_storage redis://127.0.0.1:$rport/0 timeout=1s;
    do_flush_interval 50ms;
    do_cluster name=n1 listen=127.0.0.1:%%PORT2%% lease=10s;
    do_namespace state store;
    do_namespace lim rate_limiter rate=1r/m burst=2;

    server {
        listen 127.0.0.1:%%PORT%%;
        location ~ ^/s/(?<o>[\\w-]+)\$ { do_pass state name=\$o; }
        location = /lim { do_limit lim key=\$arg_k; alias %%PREFIX%%/ok.txt; }
        location = /status { do_status; }
    }
EOF
DoCluster::lone_start($t);
my $p = $t->port;

sub status { $J->decode(http($p, 'GET', '/status')->{body}) }
sub cluster { DoCluster::lone_cluster($t) }
sub fenced {
    my $n = 0;
    $n += $_->{fenced} // 0 for @{ status()->{workers} };
    return $n;
}

# the ID of the only object of a namespace with a key of that suffix
sub object_id {
    my ($ns, $suffix) = @_;
    my @k = grep { /\S/ } split /\n/,
        $redis->cli('--scan', '--pattern', "do:{$ns:*}:$suffix");
    return @k == 1 && $k[0] =~ /^do:\{\Q$ns\E:([0-9a-f]{64})\}/ ? $1 : undef;
}
sub shard_of { hex(substr($_[0], 0, 8)) % 1024 }
sub lease { DoCluster::lease_of($redis, $_[0]) }

# another node takes the shard just after the agent's tick: its epoch
sub take_over { DoCluster::take_lease($t, $redis, @_) }

# the node holds the shard again, at an epoch above $above
sub taken_back {
    my ($s, $above) = @_;
    return wait_for(sub {
        my ($e) = lease($s) =~ /^(\d+) n1$/;
        return 0 unless $e && $e > $above;
        my $c = cluster();
        return ($c->{epochs}{$s} // 0) == $e;
    }, 30);
}

ok(wait_for(sub { (cluster()->{shards} // 0) == 1024 }, 30),
   'the node holds all 1024 shards');

# 1. a store write after another node took the shard is refused
is(http($p, 'PUT', '/s/fence1?key=k', body => 'v1')->{status}, 200,
   'a store write while the node holds the shard is stored');
my $id = object_id('state', 'kv');
ok($id, 'the object is in Redis');
my $s = shard_of($id);
my ($e) = lease($s) =~ /^(\d+) n1$/;
ok($e, "the node holds the object's shard $s at epoch " . ($e // '?'));

my $f0 = fenced();
my $e2 = take_over($s, 3000);
my $r = http($p, 'PUT', '/s/fence1?key=k', body => 'v2');
is($r->{status}, 503, 'a write after another node took the shard is 503');
like($r->{body}, qr/"error":"the shard moved to another node"/,
     '... with a JSON error that says so');
like($redis->cli('HGET', "do:{state:$id}:kv", 'k'), qr/^\d+:v1$/,
     '... and nothing is stored');
like($t->error_log,
     qr/\[warn\].*do: commit of shard $s refused: epoch $e is not the lease's \(epoch $e2, held by "other" now\)/,
     '... a warn line names the epoch and the holder');
cmp_ok(fenced(), '>', $f0, '... and the "fenced" counter grows');

# 2a. taken back with a new epoch: the store shows the other writer's value
my $v = $redis->cli('GET', "do:{state:$id}:v");
chomp $v;
$redis->cli('HSET', "do:{state:$id}:kv", 'k', ($v + 1) . ':other');
$redis->cli('SET', "do:{state:$id}:v", $v + 1);
ok(taken_back($s, $e2), 'the node takes the shard back with a new epoch');
is(http($p, 'GET', '/s/fence1?key=k')->{body}, 'other',
   'a read there shows what the other writer stored meanwhile');
is(http($p, 'PUT', '/s/fence1?key=k', body => 'v3')->{status}, 200,
   'and a write is stored again');
like($redis->cli('HGET', "do:{state:$id}:kv", 'k'), qr/^\d+:v3$/,
     '... in Redis');

# 3. a rate limiter's flush after another node took the shard is refused
is(http($p, 'GET', '/lim?k=a')->{status}, 200, 'a limited key passes');
ok(wait_for(sub { object_id('lim', 'tat') }), 'its TAT is stored');
my $lid = object_id('lim', 'tat');
my $ls = shard_of($lid);
my $tat = $redis->cli('GET', "do:{lim:$lid}:tat");
($e) = lease($ls) =~ /^(\d+) n1$/;

$f0 = fenced();
$e2 = take_over($ls, 3000);
is(http($p, 'GET', '/lim?k=a')->{status}, 200,
   'the key is decided on the node (its bucket is warm)');
ok(wait_for(sub { $t->error_log =~
   /do: write of cells of shard $ls refused: epoch $e is not the lease's \(epoch $e2, held by "other" now\)/ }),
   'its flush is refused, with a warn line');
is($redis->cli('GET', "do:{lim:$lid}:tat"), $tat,
   '... and the stored TAT is not changed by this node');
cmp_ok(fenced(), '>', $f0, '... and the "fenced" counter grows');

# 4. taken back with a new epoch: a bucket of the old epoch is read again
ok(taken_back($ls, $e2), 'the node takes the shard back with a new epoch');
my $st;
for (1 .. 5) {
    $st = http($p, 'GET', '/lim?k=a')->{status};
    last if $st == 429;
}
is($st, 429, 'the key is exhausted there');
ok(wait_for(sub { $redis->cli('GET', "do:{lim:$lid}:tat") ne $tat }),
   'and stored under the new epoch');
($e) = lease($ls) =~ /^(\d+) n1$/;
$e2 = take_over($ls, 1500);
$redis->cli('DEL', "do:{lim:$lid}:tat");
ok(taken_back($ls, $e2), 'the other node reset the key; the node takes the '
   . 'shard back');
is(http($p, 'GET', '/lim?k=a')->{status}, 200,
   'the key is decided on what Redis holds, not on the old bucket');

$t->check_logs;
$redis->stop;
done_testing();

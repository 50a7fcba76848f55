# Cluster mode, calls follow their shard: a lock is held and three
# waiters are parked at the node that holds the lock's shard when the
# shard's lease is taken from the node in Redis (the test plays another
# node: INCR of the epoch, SET of the lease for 3 s, just after the node's
# agent ticked).  Once the node sees that it no longer holds the shard,
# the waiters are not answered 503: they are sent on where the shard is,
# wait while nobody holds it, and, once the node holds it again at a new
# epoch, park there again in their order; a release grants them one after
# the other with increasing fences.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP;
use Time::HiRes qw(sleep time);
use DoTest qw(http wait_for spawn collect);
use DoCluster ();

my $J = JSON::PP->new;
my $redis = DoTest::Redis->new->start;
my $rport = $redis->port;

my $t = DoTest->new(workers => 2, http => <<"EOF");
    do_secret %%PREFIX%%/do.secret;
    do_storage redis://127.0.0.1:$rport/0 timeout=1s;
    do_cluster name=n1 listen=127.0.0.1:%%PORT2%% lease=10s;
    do_call_timeout 30s;
    do_namespace locks lock;

    server {
        listen 127.0.0.1:%%PORT%%;
        location ~ ^/l/(?<o>[\\w-]+)\$ {
            do_pass locks name=\$o;
            add_header X-Id \$do_object_id always;
        }
        location = /status { do_status; }
    }
EOF
DoCluster::lone_start($t);
my $p = $t->port;

sub cluster { DoCluster::lone_cluster($t) }
sub lease { DoCluster::lease_of($redis, $_[0]) }

ok(wait_for(sub { (cluster()->{shards} // 0) == 1024 }, 30),
   'the node holds all 1024 shards');

my $r = http($p, 'POST', '/l/job?ttl=60s');
is($r->{status}, 200, 'the lock is acquired');
my $grant = $J->decode($r->{body});
my ($s) = map { hex(substr($_, 0, 8)) % 1024 } $r->{headers}{'x-id'} // '0';
my ($e) = lease($s) =~ /^(\d+) n1$/;
ok($e, "the node holds the lock's shard $s at epoch " . ($e // '?'));

# three waiters, 0.2 s apart, each holding the lock for 1 s once granted
my $t0 = time;
my $waiters = spawn(3, sub {
    my ($i) = @_;
    sleep 0.2 * $i;
    # in order: once the ones before it are parked
    wait_for(sub {
        ($J->decode(http($p, 'GET', '/l/job')->{body})->{waiters} // 0) >= $i
    }, 5);
    my $w = http($p, 'POST', '/l/job?ttl=1s&wait=25s', timeout => 40);
    my $f = eval { $J->decode($w->{body})->{fence} } // '-';
    return sprintf('%d %s %s %.2f', $i, $w->{status}, $f, time - $t0);
});
ok(wait_for(sub {
    ($J->decode(http($p, 'GET', '/l/job')->{body})->{waiters} // 0) == 3
}, 5), 'the three waiters are parked');

# just after the agent's tick, another node takes the shard for 3 s
my $e2 = DoCluster::take_lease($t, $redis, $s, 3000);
ok(wait_for(sub { !exists cluster()->{epochs}{$s} }, 10),
   'the node sees that it no longer holds the shard');
ok(wait_for(sub {
    my ($back) = lease($s) =~ /^(\d+) n1$/;
    $back && $back > $e2 && (cluster()->{epochs}{$s} // 0) == $back;
}, 20), 'the node holds the shard again, at a new epoch');
ok(wait_for(sub {
    ($J->decode(http($p, 'GET', '/l/job')->{body})->{waiters} // 0) == 3
}, 10), 'the three waiters are parked there again');

is(http($p, 'DELETE', "/l/job?token=$grant->{token}")->{status}, 200,
   'the holder releases the lock');
my @w = sort { (split / /, $a)[0] <=> (split / /, $b)[0] } collect($waiters);
is(join(' ', map { (split / /)[1] } @w), '200 200 200',
   'every waiter is granted the lock (none heard 503)')
    or diag explain \@w;
my @f = map { (split / /)[2] } @w;
ok(!grep({ $_ eq '-' } @f) && $f[0] > $grant->{fence} && $f[0] < $f[1]
   && $f[1] < $f[2], 'in their order, with increasing fences ('
   . join(', ', @f) . ')') or diag explain \@w;

$t->check_logs;
done_testing;

# Cluster mode, a node leaves: three nodes run (lease=10s), 30 keys limited
# to 30 each (rate=1r/m burst=29) take one request every 150 ms through
# the nodes that run, and n3 is stopped gracefully (SIGQUIT, as nginx -s
# quit) a second in.  Once its workers stored their deferred state and
# exited, its master releases its leases and takes its name out of the
# registry: Redis holds no lease under its name the moment it is gone,
# n1 and n2 hold every shard long before its leases would have run out,
# and every key let exactly 30 through across the move; increments of
# objects in its shards, sent through the other two all along, never
# fail (the calls that find it gone wait for the shard's next holder) and
# all of them are stored.  Its error log says how many leases it
# released.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(sleep time);
use DoTest qw(http);
use DoCluster qw(spawn collect shard_of);

my $c = DoCluster->new(nodes => 3, lease => '10s',
                       http => <<'EOF', locations => <<'EOF');
    do_namespace per_key rate_limiter rate=1r/m burst=29;
    do_namespace state store;
EOF
        location /limited {
            do_limit per_key key=$arg_key;
            alias %%PREFIX%%/ok.txt;
        }
        location ~ ^/inspect/(?<k>[\w-]+)$ {
            do_pass per_key name=$k;
            add_header X-Id $do_object_id always;
        }
        location ~ ^/s/(?<o>[\w-]+)$ {
            do_pass state name=$o;
            add_header X-Id $do_object_id always;
        }
EOF
$c->start_all;
my @ports = map { $c->port($_) } 0 .. 2;
my $lease = $c->lease_ms / 1000;
$c->converge_or_end(30, 'placement converges over 3 nodes');

my @keys = map { "l$$-$_" } 0 .. 29;
my %shard = map { $_ => shard_of(http($ports[0], 'GET', "/inspect/$_")
                                 ->{headers}{'x-id'}) } @keys;
is(scalar(grep { defined } values %shard), 30, 'the 30 keys have IDs');
my $h = $c->holders;
my $n3_shards = grep { $_ == 2 } values %$h;
my @moving = grep { ($h->{ $shard{$_} } // -1) == 2 } @keys;
ok(@moving >= 1, scalar(@moving) . " of the keys are in the $n3_shards "
   . 'shards that n3 holds');

# the leases under a name in Redis now
sub leases_of {
    my ($name) = @_;
    return $c->redis->cli('EVAL', "local n = 0 for s = 0, 1023 do "
        . "local v = redis.call('GET', 'do:cluster:lease:' .. s) "
        . "if v and string.match(v, ' (.*)\$') == ARGV[1] then n = n + 1 end "
        . "end return n", 0, $name) =~ /(\d+)/ ? $1 : -1;
}
is(leases_of('n3'), $n3_shards, "Redis holds n3's $n3_shards leases");

# objects of shards n3 holds, incremented through n1 and n2 all along
my @objs = map { $_->[0] } $c->objects_held_by(2, 4, sub { "/s/$_[0]?key=x" });
is(scalar @objs, 4, "four objects of shards n3 holds");

my $flag = $c->{dir} . '/left';
my $t0 = time + 0.2;
# a connection that n3 refused (its listener closed): taken through n1
my $load = $c->paced_takes(\@keys, procs => 6, rounds => 40, period => 0.15,
                           t0 => $t0, fallback => 0, pick => sub {
    my ($k, $round) = @_;
    return ($k + $round) % (-e $flag ? 2 : 3);
});

my $incr = $c->increments($t0 + 6, \@objs, 0, 1);

sleep 1.2;
open my $fh, '>', $flag or die;
close $fh;
my $t_stop = time;
ok($c->node(2)->stop, 'n3 stops gracefully under load');
my $stopped = time - $t_stop;
is(leases_of('n3'), 0, sprintf('the moment it is gone (%.2f s), Redis '
   . 'holds no lease under its name', $stopped));
is($c->redis->cli('ZSCORE', 'do:cluster:nodes', 'n3') =~ s/\s+//gr, '',
   '... nor its name in the registry');
like($c->node(2)->error_log,
     qr/node "n3" left the cluster: $n3_shards leases released/,
     "its error log says it released its $n3_shards leases");
ok($c->converge($lease - 1 - $stopped, 0, 1),
   sprintf('n1 and n2 hold every shard within %.1f s of the stop, before '
           . "n3's leases would have run out (lease=10s)", time - $t_stop));

my @lines = collect($load);
my ($pass, $by_status, $via) = DoCluster::tally(@lines);
is(scalar @lines, 1200, '40 requests for each of 30 keys');
ok($via->{2}, "n3 took requests before it left ($via->{2})")
    or diag explain $via;
is(join(' ', map { $pass->{$_} // 0 } 0 .. $#keys), join(' ', (30) x 30),
   'burst=29: exactly 30 passed for every key, across the leave')
    or diag explain $by_status;

$c->increments_ok($incr, \@objs, 0, "increments of n3's objects through n1 "
                  . 'and n2 never failed across the leave');

$c->check_logs;
done_testing;

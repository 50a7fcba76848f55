# Cluster mode through reloads under load: two nodes, 20 keys limited to
# 10 each (rate=1r/m burst=9) take paced requests through both nodes while
# each node is reloaded twice; every key lets exactly 10 through, and
# every node still holds its shards (no handover was needed: a reload
# keeps the node's zones and leases).  Increments of store objects of
# both nodes' shards, sent through both nodes all along, are all answered
# 200 and all stored: a call forwarded to a node whose worker exits is
# run and answered by it, or sent to its next worker (GOAWAY).

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(sleep time);
use DoTest qw(http);
use DoCluster qw(spawn collect);

my $c = DoCluster->new(nodes => 2, http => <<'EOF', locations => <<'EOF');
    do_namespace per_key rate_limiter rate=1r/m burst=9;
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
$c->converge_or_end(20, 'placement converges over 2 nodes');
my @ports = map { $c->port($_) } 0 .. 1;
my $before = { map { $_ => $c->cluster($_)->{shards} } 0 .. 1 };

my @objs = map { $_->[0] }
           map { $c->objects_held_by($_, 3, sub { "/s/$_[0]?key=x" }) } 0, 1;
is(scalar @objs, 6, 'three objects of shards each node holds');

my @keys = map { "r$$-$_" } 0 .. 19;
my $t0 = time;
my $incr = $c->increments($t0 + 3.2, \@objs, 0, 1);
my $load = $c->paced_takes(\@keys, procs => 4, rounds => 30, period => 0.1,
                           t0 => $t0,
                           pick => sub { ($_[0] + $_[1]) % 2 });

for my $n (0, 1, 0, 1) {
    sleep 0.5;
    $c->node($n)->reload;
}

my %pass;
my %st;
for (collect($load)) {
    my ($k, undef, $s) = split / /;
    $st{$s // 'none'}++;
    $pass{$k}++ if ($s // 0) == 200;
}
is(join(' ', map { $pass{$_} // 0 } 0 .. $#keys), join(' ', (10) x 20),
   'every key let exactly 10 through, across four reloads')
    or diag explain \%st;
is(($st{200} // 0) + ($st{429} // 0), 600, 'every request was answered')
    or diag explain \%st;
$c->increments_ok($incr, \@objs, 0, 'increments through both nodes never '
                  . 'failed across the reloads');
ok($c->converge(10), 'placement still converges');
is($c->cluster($_)->{shards}, $before->{$_},
   $c->name($_) . ' holds the shards it held before') for 0 .. 1;

$c->check_logs;
done_testing;

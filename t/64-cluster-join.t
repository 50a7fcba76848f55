# Cluster mode, a node joins under load: three nodes run, 30 keys limited
# to 30 each (rate=1r/m burst=29) take one request every 150 ms for six
# seconds through every node, and a fourth node starts a second in.
# Shards move to it (its status holds some, placement converges over
# four), some of the keys' shards are among them, and every key let
# exactly 30 through across the move.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP;
use Time::HiRes qw(sleep time);
use DoTest qw(http);
use DoCluster qw(spawn collect shard_of);

my $J = JSON::PP->new;
my $c = DoCluster->new(nodes => 3, http => <<'EOF', locations => <<'EOF');
    do_namespace per_key rate_limiter rate=1r/m burst=29;
EOF
        location /limited {
            do_limit per_key key=$arg_key;
            alias %%PREFIX%%/ok.txt;
        }
        location ~ ^/inspect/(?<k>[\w-]+)$ {
            do_pass per_key name=$k;
            add_header X-Id $do_object_id always;
        }
EOF
$c->start_all;
my $new = $c->add;
my @ports = map { $c->port($_) } 0 .. 3;
$c->converge_or_end(20, 'placement converges over 3 nodes');

my @keys = map { "j$$-$_" } 0 .. 29;
my %shard = map { $_ => shard_of(http($ports[0], 'GET', "/inspect/$_")
                                 ->{headers}{'x-id'}) } @keys;
is(scalar(grep { defined } values %shard), 30, 'the 30 keys have IDs');

my $flag = $c->{dir} . '/joined';
my $t0 = time + 0.2;
my $load = $c->paced_takes(\@keys, procs => 6, rounds => 40, period => 0.15,
                           t0 => $t0, pick => sub {
    my ($k, $round) = @_;
    return ($k + $round) % (-e $flag ? 4 : 3);
});

sleep 1.2;
$c->node($new)->start;
open my $fh, '>', $flag or die;
close $fh;
my $t_join = time;
ok($c->converge(15), sprintf('n4 joins: placement converges over 4 nodes'
                             . ' (%.2f s)', time - $t_join));
my $joined_at = time;

my @lines = collect($load);
ok(time > $joined_at, 'the load went on after placement converged');
my ($pass, $by_status, $via) = DoCluster::tally(@lines);
is(scalar @lines, 1200, '40 requests for each of 30 keys');
ok($via->{3}, "n4 took requests too ($via->{3})") or diag explain $via;
is(join(' ', map { $pass->{$_} // 0 } 0 .. $#keys), join(' ', (30) x 30),
   'burst=29: exactly 30 passed for every key, across the move')
    or diag explain $by_status;

my $cl = $c->cluster($new) // {};
my $held = $cl->{shards} // 0;
cmp_ok($held, '>', 0, "n4 holds shards ($held)");
my $h = $c->holders;
my @moved = grep { ($h->{ $shard{$_} } // -1) == $new } @keys;
ok(@moved >= 1, scalar(@moved) . ' of the keys are in shards that moved'
   . ' to n4');
my @left = map { my $p = $_;
                 map { $J->decode(http($p, 'GET', "/inspect/$_")->{body})
                         ->{remaining} } @moved } @ports;
is(join(' ', grep { $_ != 0 } @left), '',
   'every node says those keys have nothing left');

$c->check_logs;
done_testing;

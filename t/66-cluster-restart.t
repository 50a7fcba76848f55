# Cluster mode, a full restart: three nodes store values, exhaust limits
# and hold a lock; every node stops (gracefully, one after the other) and
# starts again.  Placement converges over the three, every shard at a
# higher epoch than before (epochs only grow); every node reads the
# values, the limits are still exhausted (a new key is not), and the lock
# is still held with its fence.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP;
use DoTest qw(http);
use DoCluster;

my $J = JSON::PP->new;
my $c = DoCluster->new(nodes => 3, http => <<'EOF', locations => <<'EOF');
    do_namespace state store;
    do_namespace per_key rate_limiter rate=0.1r/m burst=4;
    do_namespace locks lock ttl=10s;
EOF
        location ~ ^/s/(?<o>[\w-]+)$ { do_pass state name=$o; }
        location ~ ^/lock/(?<o>[\w-]+)$ { do_pass locks name=$o; }
        location /limited {
            do_limit per_key key=$arg_key;
            alias %%PREFIX%%/ok.txt;
        }
EOF
$c->start_all;
my @ports = map { $c->port($_) } 0 .. 2;
ok($c->converge(20), 'placement converges over 3 nodes');

sub j { my $r = shift; eval { $J->decode($r->{body}) } || {} }
sub statuses {
    my ($key, $n) = @_;
    join ' ', map { http($ports[$_ % 3], 'GET', "/limited?key=$key")->{status} }
              0 .. $n - 1;
}

# state written through every node
my @objs = map { "p$$-$_" } 0 .. 8;
my $acked = 0;
for my $i (0 .. $#objs) {
    my $p = $ports[$i % 3];
    $acked++ if http($p, 'PUT', "/s/$objs[$i]?key=v", body => "value $i")
                ->{status} == 200;
    for (0 .. $i) {
        $acked++ if http($ports[$_ % 3], 'POST',
                         "/s/$objs[$i]?key=n&op=incr")->{status} == 200;
    }
}
is($acked, 9 + 45, 'every write acknowledged');
my @limited = map { "lk$$-$_" } 0 .. 5;
is(statuses($_, 6), '200 200 200 200 200 429',
   "$_: 5 pass through three nodes, then it is limited") for @limited;
my $lock = j(http($ports[1], 'POST', "/lock/door$$?ttl=600s"));
ok($lock->{token} && $lock->{fence}, 'n2 holds a lock for ten minutes');

my %before;
for my $i (0 .. 2) {
    my $e = ($c->cluster($i) // {})->{epochs} || {};
    @before{ keys %$e } = values %$e;
}

# every node stops, then starts again
ok($c->stop_all, 'every node stops gracefully');
$c->node($_)->start for 0 .. 2;
ok($c->converge(20), 'they start again: placement converges over 3 nodes');

my %after;
for my $i (0 .. 2) {
    my $e = ($c->cluster($i) // {})->{epochs} || {};
    @after{ keys %$e } = values %$e;
}
is(scalar(keys %after), 1024, 'every shard is held again');
my @not_higher = grep { !defined $after{$_} || !defined $before{$_}
                        || $after{$_} <= $before{$_} } 0 .. 1023;
is(scalar @not_higher, 0, 'each at a higher epoch than before the restart')
    or diag "e.g. shard $not_higher[0]: " . ($before{ $not_higher[0] } // '-')
            . ' -> ' . ($after{ $not_higher[0] } // '-');

for my $n (0 .. 2) {
    my $p = $ports[$n];
    my @v = map { http($p, 'GET', "/s/$objs[$_]?key=v")->{body} // '' }
            0 .. $#objs;
    my @c = map { http($p, 'GET', "/s/$objs[$_]?key=n")->{body} // '' }
            0 .. $#objs;
    is("@v", join(' ', map { "value $_" } 0 .. $#objs),
       $c->name($n) . ' reads every stored value');
    is("@c", join(' ', 1 .. @objs), $c->name($n) . ' reads every count');
    my @l = map { http($p, 'GET', "/limited?key=$_")->{status} } @limited;
    is(join(' ', grep { $_ == 200 } @l), '',
       $c->name($n) . ': the exhausted keys are still limited');
    my $l = j(http($p, 'GET', "/lock/door$$"));
    ok($l->{held}, $c->name($n) . ': the lock is still held');
}
is(statuses("fresh$$", 6), '200 200 200 200 200 429',
   'a new key: 5 pass, then limited');
is(http($ports[0], 'DELETE', "/lock/door$$?token=$lock->{token}")->{status},
   200, "the lock's token from before the restart releases it");
my $next = j(http($ports[2], 'POST', "/lock/door$$?ttl=10s"));
cmp_ok($next->{fence} // 0, '>', $lock->{fence},
       'the next holder gets a higher fence');

$c->check_logs;
done_testing;

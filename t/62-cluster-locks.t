# Cluster mode, locks: a lock has one owner in the cluster, so its waiters
# queue in one place whatever node they came through.  Waiters arriving
# 0.2 s apart through three nodes in turn are granted in arrival order
# with increasing fences (the lock API, then do_lock in front of one
# recording origin), and every node reports the same queue.  Without
# cluster mode each node queues its own and wakes the others' by polling.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP;
use Time::HiRes qw(sleep time);
use DoTest qw(http parallel wait_for);
use DoCluster;

my $J = JSON::PP->new;
my $origin = DoTest::Origin->new;
my $op = $origin->port;

my $c = DoCluster->new(nodes => 3, http => <<'EOF', locations => <<"EOF");
    do_namespace locks lock ttl=10s;
    do_call_timeout 10s;
EOF
        location ~ ^/lock/(?<o>[\\w-]+)\$ { do_pass locks name=\$o; }
        location /ok/ {
            do_lock locks key=\$arg_key ttl=60s wait=10s;
            proxy_set_header X-Fencing-Token \$do_lock_fence;
            proxy_pass http://127.0.0.1:$op;
        }
EOF
$c->start_all;
my @ports = map { $c->port($_) } 0 .. 2;
ok($c->converge(20), 'placement converges over 3 nodes');

sub j { my $r = shift; eval { $J->decode($r->{body}) } || {} }

my $N = 6;

# the waiters of a lock, as a node reports them
sub queued {
    my ($port, $key) = @_;
    return j(http($port, 'GET', "/lock/$key"))->{waiters} // 0;
}

# waiter $i sends at its time, once the $i before it queued (a slow fork
# must not swap two of them; without cluster mode a node sees only its
# own, and the wait ends after 5 s); the last child, once all queued
sub arrive {
    my ($t0, $i, $key) = @_;
    my $d = $t0 + 0.2 * $i - time;
    sleep($d) if $d > 0;
    wait_for(sub { queued($ports[$i % 3], $key) >= $i }, 5);
}

# 1. the lock API: a holder through n1, then waiter i through node i % 3
# at 0.2 s intervals; the holder lets go once all arrived
my $key = "fifo$$";
my $h = j(http($ports[0], 'POST', "/lock/$key?ttl=10s"));
ok($h->{token} && $h->{fence}, 'n1 holds the lock');
my $t0 = time + 0.3;
my @got = parallel($N + 1, sub {
    my ($i) = @_;
    if ($i == $N) {
        arrive($t0, $N, $key);
        my @q = map { j(http($_, 'GET', "/lock/$key"))->{waiters} // -1 }
                @ports;
        http($ports[0], 'DELETE', "/lock/$key?token=$h->{token}");
        return "queue @q";
    }
    arrive($t0, $i, $key);
    my $r = http($ports[$i % 3], 'POST', "/lock/$key?wait=8s&ttl=5s");
    my $at = time;
    my $g = j($r);
    http($ports[$i % 3], 'DELETE', "/lock/$key?token=$g->{token}")
        if $g->{token};
    return sprintf "%d %d %d %.6f", $i, $r->{status}, $g->{fence} // 0, $at;
});
my ($queue) = map { /^queue (.*)/ ? $1 : () } @got;
is($queue, join(' ', ($N) x 3), "every node sees the $N waiters ($queue)");
my @g = sort { $a->[3] <=> $b->[3] } map { [ split / / ] }
        grep { /^\d/ } @got;
is(join(' ', map { $_->[1] } @g), join(' ', (200) x $N),
   'every waiter got the lock');
is(join(' ', map { $_->[0] } @g), join(' ', 0 .. $N - 1),
   'in the order they arrived, across the three nodes');
my @f = ($h->{fence}, map { $_->[2] } @g);
is(scalar(grep { $f[$_] <= $f[$_ - 1] } 1 .. $#f), 0,
   "... with increasing fences (@f)");

# 2. do_lock: the same through the gate, into one recording origin
$key = "gate$$";
$h = j(http($ports[1], 'POST', "/lock/$key?ttl=30s"));
ok($h->{token}, 'n2 holds the lock through the API');
$t0 = time + 0.3;
my @st = parallel($N + 1, sub {
    my ($i) = @_;
    if ($i == $N) {
        arrive($t0, $N, $key);
        http($ports[1], 'DELETE', "/lock/$key?token=$h->{token}");
        return ();
    }
    arrive($t0, $i, $key);
    my $r = http($ports[$i % 3], 'GET', "/ok/x?key=$key&c=$i&sleep=20");
    return "$i $r->{status}";
});
is(join(' ', sort @st), join(' ', map { "$_ 200" } 0 .. $N - 1),
   "$N do_lock requests through three nodes all passed");
my @l = sort { $a->[0] <=> $b->[0] }
        grep { $_->[3] =~ /key=\Q$key\E/ } $origin->requests;
is(join(' ', map { $_->[3] =~ /c=(\d+)/ } @l), join(' ', 0 .. $N - 1),
   '... and reached the origin in the order they arrived');
is(scalar(grep { $l[$_][0] < $l[$_ - 1][1] } 1 .. $#l), 0,
   '... one at a time');
@f = ($h->{fence}, map { $_->[2] } @l);
is(scalar(grep { $f[$_] !~ /^\d+$/ || $f[$_] <= $f[$_ - 1] } 1 .. $#f), 0,
   "... with increasing fences (@f)");

$c->check_logs;
done_testing;

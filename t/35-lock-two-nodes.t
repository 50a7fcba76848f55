# Two nginx instances (two "nodes") on one Redis share their locks: a
# release on one node reaches a waiter parked on the other, and do_lock on
# both, in front of one recording origin, never lets two holders overlap.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP;
use Time::HiRes qw(sleep time);
use DoTest qw(http parallel);

my $redis = DoTest::Redis->new->start;
my $rport = $redis->port;
my $origin = DoTest::Origin->new;
my $op = $origin->port;
my $J = JSON::PP->new;

sub node {
    my $t = DoTest->new(workers => 2, http => <<"EOF");
    do_secret %%PREFIX%%/do.secret;
    do_storage redis://127.0.0.1:$rport/0;
    do_namespace locks lock ttl=10s;
    server {
        listen 127.0.0.1:%%PORT%%;
        location ~ ^/lock/(?<o>[\\w-]+)\$ { do_pass locks name=\$o; }
        location /critical/ {
            do_lock locks key=\$arg_key wait=8s;
            proxy_set_header X-Fencing-Token \$do_lock_fence;
            proxy_pass http://127.0.0.1:$op;
        }
    }
EOF
    open my $fh, '>', $t->prefix . '/do.secret' or die;
    print $fh "one secret for both nodes, long enough\n";
    close $fh;
    return $t->start;
}

my $na = node();
my $nb = node();
my ($pa, $pb) = ($na->port, $nb->port);

# a waiter on node B is granted when node A releases
my $h = $J->decode(http($pa, 'POST', '/lock/shared?ttl=10s')->{body});
ok($h->{token}, 'node A holds the lock');
my @got = parallel(2, sub {
    my ($i) = @_;
    if ($i == 0) {
        sleep 1;
        http($pa, 'DELETE', "/lock/shared?token=$h->{token}");
        return 'released ' . time;
    }
    my $r = http($pb, 'POST', '/lock/shared?wait=5s');
    return "granted $r->{status} " . time;
});
my ($rel) = map { /^released (\S+)/ ? $1 : () } @got;
my ($st, $at) = map { /^granted (\d+) (\S+)/ ? ($1, $2) : () } @got;
is($st, 200, 'the waiter on node B gets the lock');
cmp_ok($at - $rel, '<', 1, '... within a second of the release on node A');

# do_lock on both nodes, one origin: never two holders
my $t0 = time;
my @st = parallel(12, sub {
    my ($i) = @_;
    my $p = $i % 2 ? $pa : $pb;
    my @out;
    while (time - $t0 < 3) {
        push @out, http($p, 'GET', "/critical/n$i?key=two&sleep=5")->{status};
    }
    return @out;
});
my @reqs = sort { $a->[0] <=> $b->[0] } $origin->requests;
is(scalar(grep { $_ != 200 } @st), 0, 'every request through either node got the lock');
my ($overlaps, $not_increasing) = (0, 0);
for my $i (1 .. $#reqs) {
    $overlaps++ if $reqs[$i][0] < $reqs[$i - 1][1];
    $not_increasing++ unless $reqs[$i][2] > $reqs[$i - 1][2];
}
cmp_ok(scalar @reqs, '>=', 10, scalar(@reqs) . ' requests reached the origin');
is($overlaps, 0, 'no two holders overlap, across the two nodes');
is($not_increasing, 0, 'fencing tokens strictly increase across the two nodes');
my %by_node;
$by_node{ $_->[3] =~ m{/n(\d+)} && $1 % 2 ? 'A' : 'B' }++ for @reqs;
ok($by_node{A} && $by_node{B}, "both nodes held it (A $by_node{A}, B $by_node{B})");

$na->check_logs('node A');
$nb->check_logs('node B');
done_testing;

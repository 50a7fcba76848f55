# Cluster mode, rooms: a room has one owner in the cluster.  Six members
# connected through three nodes (two each) are welcomed into one room of
# six; messages sent at the same time by a member on each node, and one
# published over HTTP through a node, reach every member once, in one
# order, numbered without gaps; a member that joins later through another
# node with since= gets the same history.  Without cluster mode each node
# has a room of its own.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP;
use DoTest qw(http);
use DoCluster;
use DoWs;

my $J = JSON::PP->new->utf8;
my $c = DoCluster->new(nodes => 3, http => <<'EOF', locations => <<'EOF');
    do_namespace rooms room history=200;
EOF
        location ~ ^/rooms/(?<room>[\w-]+)$ {
            do_pass rooms name=$room member=$arg_member;
        }
EOF
$c->start_all;
my @ports = map { $c->port($_) } 0 .. 2;
ok($c->converge(20), 'placement converges over 3 nodes');

sub ev { my $f = shift; $f && $f->{op} == 1 ? $J->decode($f->{payload}) : undef }

my $room = "r$$";

# joins through node $n; the client and its welcome
sub enter {
    my ($n, $member, $extra) = @_;
    my $ws = DoWs->connect($ports[$n],
                           "/rooms/$room?member=$member" . ($extra // ''));
    return (undef, undef) unless ref $ws eq 'DoWs';
    my $w = ev($ws->read_message(5));
    return ($ws, $w && $w->{type} eq 'welcome' ? $w : undef);
}

# the next $n messages (other events skipped)
sub messages {
    my ($ws, $n) = @_;
    my @m;
    while (@m < $n and my $e = ev($ws->read_message(5))) {
        push @m, $e if $e->{type} eq 'message';
    }
    return @m;
}

my (%ws, $last_welcome);
for my $m (qw(a1 b1 c1 a2 b2 c2)) {
    my $n = { a => 0, b => 1, c => 2 }->{ substr $m, 0, 1 };
    my ($ws, $w) = enter($n, $m);
    ok($ws && $w, "$m is welcomed through " . $c->name($n));
    $ws{$m} = $ws;
    $last_welcome = $w;
}
is(join(' ', sort @{ $last_welcome->{members} || [] }),
   'a1 a2 b1 b2 c1 c2', 'the last one is welcomed into a room of six');

# a member on each node sends 10, interleaved; then one over HTTP
my @sent;
for my $k (1 .. 10) {
    for my $m (qw(a1 b1 c1)) {
        $ws{$m}->send_text("$m $k") if $ws{$m};
        push @sent, "$m $k";
    }
}
my $r = http($ports[1], 'POST', "/rooms/$room?from=http", body => 'http 1');
is($r->{status}, 200, 'a message published through n2 over HTTP');
push @sent, 'http 1';

my %got;
for my $m (sort keys %ws) {
    next unless $ws{$m};
    $got{$m} = [ messages($ws{$m}, scalar @sent) ];
}
# the first number: the lowest any member saw (1 in a new room)
my ($first) = sort { $a <=> $b } map { @$_ ? $_->[0]{seq} : () }
                                  values %got;
$first //= 1;
for my $m (sort keys %got) {
    my @m = @{ $got{$m} };
    is(scalar @m, scalar @sent, "$m received all " . @sent . ' messages');
    is(join(' ', map { $_->{seq} } @m),
       join(' ', $first .. $first + $#sent), "$m: numbered without gaps");
}
my %orders = map { $_ => join(',', map { "$_->{seq}:$_->{data}" }
                                   @{ $got{$_} }) } keys %got;
is(scalar(keys %{ { reverse %orders } }), 1,
   'every member received them in one order');
my @most = sort { @$b <=> @$a } values %got;
is(join(',', sort map { $_->{data} } @{ $most[0] || [] }),
   join(',', sort @sent), '... each message once');

my ($late, $w) = enter(2, 'late', '&since=' . ($first - 1));
ok($w, 'a member joining later through n3 with since=');
my @h = $late ? messages($late, scalar @sent) : ();
is(join(',', map { "$_->{seq}:$_->{data}" } @h),
   join(',', map { "$_->{seq}:$_->{data}" } @{ $most[0] || [] }),
   '... gets the same messages in the same order');

undef %ws;
undef $late;
$c->check_logs;
done_testing;

# Cluster mode, losing a node and fencing (three nodes, lease=2s):
#
# 1. SIGKILL of a whole node (master and workers) under load: the others
#    hold its shards within the lease and a second; no acknowledged
#    increment is lost; calls for the other shards never fail.  The node
#    starts again and placement converges over three nodes.
# 2. SIGSTOP of a whole node past its lease, then SIGCONT: what the others
#    wrote meanwhile stays (a request that waited in its listen queue with
#    the If-Match of the old value is refused with 412, an increment that
#    waited there is counted once, the counter never goes back), it
#    answers with the current values, and it forwards.
# 3. Fencing itself: the lease of a shard that a node holds is overwritten
#    in Redis with a higher epoch and another name; the node's next write
#    to an object of that shard is refused (not stored, "fenced" counts
#    it), the node no longer holds the shard, and the shard comes back
#    with a higher epoch once the foreign lease ends.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP;
use Time::HiRes qw(sleep time);
use DoTest qw(http wait_for);
use DoCluster qw(spawn collect);

my $J = JSON::PP->new;
my $c = DoCluster->new(nodes => 3, lease => '2s', http => <<'EOF',
    do_namespace state store;
EOF
                       locations => <<'EOF');
        location ~ ^/s/(?<o>[\w-]+)$ {
            do_pass state name=$o;
            add_header X-Id $do_object_id always;
        }
EOF
$c->start_all;
my @ports = map { $c->port($_) } 0 .. 2;
my $lease = $c->lease_ms / 1000;
$c->converge_or_end(20, 'placement converges over 3 nodes');

sub uri { "/s/$_[0]?key=$_[1]" . ($_[2] // '') }
sub value { http($_[0], 'GET', uri($_[1], $_[2]))->{body} // '' }
sub id_uri { uri($_[0], 'x') }

# --- 1. SIGKILL of n3 under load ------------------------------------------

my @victim_objs = map { $_->[0] } $c->objects_held_by(2, 3, \&id_uri);
my @other_objs = map { $_->[0] } ($c->objects_held_by(0, 2, \&id_uri),
                                  $c->objects_held_by(1, 2, \&id_uri));
is(scalar @victim_objs, 3, 'three objects of shards n3 holds');
is(scalar @other_objs, 4, 'four objects of shards n1 and n2 hold');
my $h = $c->holders;
my @victim_shards = grep { $h->{$_} == 2 } keys %$h;

my $t_end = time + 7;
my $load = spawn(8, sub {
    my ($i) = @_;
    my (@out, %dead);
    my $j = 0;
    while (time < $t_end) {
        $j++;
        if ($i < 5) {
            # increments of n3's objects, through every node while it runs
            my $o = $victim_objs[$j % @victim_objs];
            my $n = ($i + $j) % 3;
            $n = $j % 2 if $dead{2};
            my $r = http($ports[$n], 'POST', uri($o, 'n', '&op=incr'),
                         timeout => 15);
            $dead{2} = 1 if $n == 2 && !$r->{status};
            push @out, "V $o $r->{status}";
        } else {
            # the other shards, through n1 and n2
            my $o = $other_objs[$j % @other_objs];
            my $r = http($ports[$j % 2], 'POST', uri($o, 'n', '&op=incr'),
                         timeout => 15);
            push @out, "S $o $r->{status}";
        }
        # a steady load, not a flood of the shared cores
        sleep 0.005;
    }
    return @out;
});

sleep 1.5;
my $killed = $c->kill_node(2);
my $t_kill = time;
ok($killed >= 3, "n3's master and workers killed ($killed processes)");
my $taken = wait_for(sub {
    my $hh = $c->holders(0, 1);
    !grep { !defined $hh->{$_} } @victim_shards;
}, $lease + 1);
my $took = time - $t_kill;
ok($taken, sprintf('n1 and n2 hold the %d shards of n3 within the lease'
                   . ' and a second (%.2f s)', scalar @victim_shards, $took));
ok($c->converge(10, 0, 1), '... and placement converges over n1 and n2');

my @lines = collect($load);
my (%acked, %sent, %other);
for (@lines) {
    my ($k, $o, $s) = split / /;
    next unless defined $s;
    if ($k eq 'V') {
        $sent{$o}++;
        $acked{$o}++ if $s == 200;
    } else {
        $other{$s}++;
    }
}
ok(!grep(/^ERROR/, @lines), 'the load ran') or diag grep(/^ERROR/, @lines);
my $other_n = 0;
$other_n += $_ for values %other;
is($other{200} // 0, $other_n,
   "calls for the other shards never failed ($other_n calls)")
    or diag explain \%other;
for my $o (@victim_objs) {
    my $v = value($ports[0], $o, 'n');
    my ($a, $s) = ($acked{$o} // 0, $sent{$o} // 0);
    ok($v >= $a && $v <= $s,
       "$o: no acknowledged increment lost ($a acknowledged <= $v <= $s sent)");
    is(value($ports[1], $o, 'n'), $v, "$o: n2 reads the same");
}
is(http($ports[$_], 'POST', uri($victim_objs[0], 'n', '&op=incr'))->{status},
   200, 'after the takeover, an increment through ' . $c->name($_)
   . ' of a shard of n3 is acknowledged') for 0, 1;

# n3 starts again
$c->node(2)->start;
ok($c->converge(20), 'n3 starts again: placement converges over 3 nodes');

# --- 2. SIGSTOP of n3 past its lease, then SIGCONT ------------------------

my ($p) = map { $_->[0] } $c->objects_held_by(2, 1, \&id_uri);
my $r = http($ports[2], 'PUT', uri($p, 'x'), body => 'v0');
is($r->{status}, 200, 'n3 stores v0 in an object of its shard');
my $e0 = $r->{headers}{etag};
my $n = 0;
for (1 .. 3) {
    $n++ if http($ports[2], 'POST', uri($p, 'n', '&op=incr'))->{status}
            == 200;
}
is(value($ports[2], $p, 'n'), 3, 'and counts to 3');
my $fw0 = $c->peer_sum(2, 'forwards');

$c->pause_node(2);
my $t_stop = time;
# requests that wait in the listen queue of the stopped node
my $queued = spawn(2, sub {
    my ($i) = @_;
    my $r = $i == 0
        ? http($ports[2], 'PUT', uri($p, 'x'), body => 'stale',
               headers => { 'If-Match' => $e0 }, timeout => 20)
        : http($ports[2], 'POST', uri($p, 'n', '&op=incr'), timeout => 20);
    return "$i $r->{status} " . ($r->{body} // '');
});
ok(wait_for(sub { $c->unconverged(0, 1) eq '' }, $lease + 1),
   sprintf('n1 and n2 hold every shard within the lease and a second'
           . ' (%.2f s)', time - $t_stop));
$r = http($ports[0], 'PUT', uri($p, 'x'), body => 'v1');
is($r->{status}, 200, 'meanwhile n1 stores v1');
for my $k (1 .. 5) {
    $n++ if http($ports[$k % 2], 'POST', uri($p, 'n', '&op=incr'))->{status}
            == 200;
}
is(value($ports[1], $p, 'n'), 8, '... and n1 and n2 count to 8');

$c->resume_node(2);
my @got = map { [ split / /, $_, 3 ] } collect($queued);
my ($put) = grep { ($_->[0] // -1) == 0 } @got;
my ($inc) = grep { ($_->[0] // -1) == 1 } @got;
# its lease ran out by its own clock: it forwards them, and the holder
# answers (a commit it tried anyway would be refused by epoch)
is($put->[1], 412, 'SIGCONT: the queued PUT with the If-Match of v0 is '
   . 'refused: v0 is not the current value');
is($inc->[1], 200, '... the queued increment is acknowledged');
$n++ if $inc->[1] == 200;
is(value($ports[2], $p, 'x'), 'v1', 'n3 answers v1, not its v0');
is(value($ports[2], $p, 'n'), $n,
   "n3 answers the count of acknowledged increments ($n)");
my @inc = map { http($ports[2], 'POST', uri($p, 'n', '&op=incr'))->{status} }
          1 .. 3;
is("@inc", '200 200 200', 'increments through n3 are acknowledged');
$n += 3;
cmp_ok($c->peer_sum(2, 'forwards'), '>', $fw0,
       'n3 forwarded them: its forward counters grew');
ok($c->converge(20), 'placement converges over 3 nodes again');
is(value($ports[$_], $p, 'x'), 'v1', $c->name($_) . ': x is still v1')
    for 0 .. 2;
is(value($ports[$_], $p, 'n'), $n, $c->name($_) . ": the count is $n")
    for 0 .. 2;

# --- 3. fencing: a foreign lease with a higher epoch -----------------------

my ($f) = $c->objects_held_by(0, 1, \&id_uri);
my ($fo, $s) = @$f;
is(http($ports[0], 'PUT', uri($fo, 'a'), body => 'orig')->{status}, 200,
   "n1 stores a value in an object of its shard $s");
my $fenced0 = $c->fenced(0);
my $lk = $c->lease_key($s);
my $lv = $c->redis_cmd('GET', $lk) // '';
my ($epoch) = $lv =~ /(\d+)/;
$epoch //= 0;
my $foreign = $epoch + 1000;
# just after n1's agent ticked, so that n1 writes before it reads the lease
my $tk = ($c->cluster(0) // {})->{ticks} // 0;
wait_for(sub { (($c->cluster(0) // {})->{ticks} // 0) != $tk }, 15);
$c->redis_cmd('SET', $c->epoch_key($s), $foreign);
$c->redis_cmd('SET', $lk, "$foreign intruder", 'PX', 4000);
$r = http($ports[0], 'PUT', uri($fo, 'a'), body => 'fenced');
my $cl = $c->cluster(0) // {};
my $fenced1 = $c->fenced(0);
note("lease $lk was \"$lv\"; the write got $r->{status}");
isnt($r->{status}, 200, "the lease taken away ($lk: \"$foreign intruder\"),"
     . " n1's write is refused ($r->{status})");
cmp_ok($fenced1, '>', $fenced0,
       'n1 counts the commit refused by epoch');
my $e = $cl->{epochs}{$s};
ok(!defined $e || $e > $foreign,
   "n1 does not hold shard $s at the old epoch any more");
ok(wait_for(sub { ($c->redis_cmd('GET', $lk) // '') !~ /intruder/ }, 6),
   'the foreign lease ends');
ok(wait_for(sub { my $x = $c->holders->{$s};
                  defined $x
                  && (($c->cluster($x) // {})->{epochs}{$s} // 0) > $foreign
              }, 10)
   && $c->converge(10), 'placement converges once the foreign lease ended');
my $hs = $c->holders->{$s};
my $e2 = defined $hs ? ($c->cluster($hs) // {})->{epochs}{$s} // 0 : 0;
cmp_ok($e2, '>', $foreign, "shard $s is held again, at a higher epoch ($e2)");
is(value($ports[$_], $fo, 'a'), 'orig',
   $c->name($_) . ': the fenced write was not stored') for 0 .. 2;
is(http($ports[0], 'PUT', uri($fo, 'a'), body => 'after')->{status}, 200,
   'a write afterwards is stored');

# what the kill of n3 and the foreign lease log on purpose
$c->check_logs(qr/\bn3\b|\Q${\ $c->addr(2)}\E|intruder|fenc/,
               qr/node channel from .* refused/, qr/connect\(\) to .* failed/,
               qr/timed out/);
done_testing;

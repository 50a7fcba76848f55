# The channel between cluster nodes: three nginx nodes on one Redis, each
# listening for the others on a loopback port.  A store object reached
# through every node is one object (its owner node decides every call);
# do_status counts the forwards per peer; a client that does not prove
# do_secret is cut off, logged, and nothing it sent runs; a node killed
# while calls are forwarded to it ends them with 502/503/504, never a hang.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP;
use IO::Socket::INET;
use IO::Select;
use Digest::SHA qw(hmac_sha256 sha256);
use Time::HiRes qw(sleep time);
use DoTest qw(http parallel spawn collect wait_for);

my $redis = DoTest::Redis->new->start;
my $rport = $redis->port;
my $J = JSON::PP->new;
my $secret_text = "one secret for all the nodes of the test\n";

my @names = qw(n1 n2 n3);
my %cport = map { $_ => DoTest::free_port() } @names;

sub node {
    my ($name) = @_;
    my $t = DoTest->new(workers => 2, http => <<"EOF");
    do_secret %%PREFIX%%/do.secret;
    do_storage redis://127.0.0.1:$rport/0;
    do_cluster name=$name listen=127.0.0.1:$cport{$name} lease=2s;
    do_call_timeout 20s;
    do_namespace kv store;
    do_namespace locks lock;
    server {
        listen 127.0.0.1:%%PORT%%;
        location ~ ^/kv/(?<o>[\\w-]+)\$ { do_pass kv name=\$o; }
        location ~ ^/l/(?<o>[\\w-]+)\$ { do_pass locks name=\$o; }
        location = /status { do_status; }
    }
EOF
    open my $fh, '>', $t->prefix . '/do.secret' or die;
    print $fh $secret_text;
    close $fh;
    return $t->start;
}

my %node = map { $_ => node($_) } @names;
my @ports = map { $node{$_}->port } @names;

sub status {
    my ($port) = @_;
    my $r = http($port, 'GET', '/status');
    return $r->{status} == 200 ? $J->decode($r->{body}) : {};
}

# every node sees the three in its registry, the shards are held once
# each, each node holds its share, and the placement stays the same for
# three agent ticks (a node seen a tick after another one takes its
# shards a tick later: a move under the load would forward to two nodes)
sub placement {
    my (%holder, $sum);
    for my $i (0 .. 2) {
        my $c = status($ports[$i])->{cluster} or return '';
        return '' unless (grep { $_->{live} } @{ $c->{peers} }) == 3;
        my @held = keys %{ $c->{epochs} || {} };
        return '' if @held < 1024 / 6;
        $sum += @held;
        $holder{$_} = $names[$i] for @held;
    }
    return '' unless $sum == 1024 && keys %holder == 1024;
    return join ',', map { "$_=$holder{$_}" } sort { $a <=> $b } keys %holder;
}
ok(wait_for(sub {
    my $before = placement() or return 0;
    sleep 1.6;
    return placement() eq $before;
}, 40), 'three nodes in the registry, the shards held once each, settled');

# -- one object through every node -------------------------------------

# the forward counters before the load (the placement's own calls)
my (%fwd0, %recv0);
for my $i (0 .. 2) {
    for my $p (grep { !$_->{self} } @{ status($ports[$i])->{cluster}{peers} || [] }) {
        $fwd0{"$names[$i]>$p->{name}"} = $p->{forwards} // 0;
        $recv0{"$names[$i]>$p->{name}"} = $p->{received} // 0;
    }
}

my @acked = parallel(12, sub {
    my ($i) = @_;
    my $n = 0;
    for (1 .. 25) {
        my $r = http($ports[$i % 3], 'POST', '/kv/counter?key=n&op=incr');
        $n++ if $r->{status} == 200;
    }
    return $n;
});
my $acked = 0;
$acked += $_ for @acked;
cmp_ok($acked, '>', 250, "most increments were acknowledged ($acked of 300)");

my @seen = map { http($_, 'GET', '/kv/counter?key=n')->{body} } @ports;
is_deeply(\@seen, [ ($acked) x 3 ],
          'every node reads the acknowledged count from one object');

# the two nodes that do not hold the object forwarded to the one that does
my (@fwd, %recv);
for my $i (0 .. 2) {
    my $ch = [ grep { !$_->{self} } @{ status($ports[$i])->{cluster}{peers} || [] } ];
    for my $p (@$ch) {
        my $k = "$names[$i]>$p->{name}";
        push @fwd, $k if $p->{forwards} > ($fwd0{$k} // 0);
        $recv{ $names[$i] } += ($p->{received} // 0) - ($recv0{$k} // 0);
    }
}
is(scalar(@fwd), 2, 'two nodes forwarded calls, each to one peer: @fwd')
    or diag explain \@fwd;
my ($holder) = grep { ($recv{$_} || 0) > 0 } @names;
ok($holder && (grep { /^\w+>$holder$/ } @fwd) == 2,
   'both forwarded to the node that received them');

my ($st) = grep { !$_->{self} } @{ status($ports[0])->{cluster}{peers} || [] };
$st ||= {};
ok(exists $st->{connected} && exists $st->{queue_bytes}
   && exists $st->{forward_duration_seconds}{p50},
   'do_status shows a peer\'s connection, queue and latency');

my $prom = http($ports[0], 'GET', '/status?format=prometheus')->{body};
like($prom, qr/^ngx_do_cluster_forwards_total\{peer="n\d"\} \d+$/m,
     'Prometheus: forwards per peer');
like($prom, qr/^ngx_do_cluster_peer_up\{peer="n\d"\} [01]$/m,
     'Prometheus: peer up');
like($prom, qr/^ngx_do_cluster_forward_duration_seconds_bucket\{peer="n\d",le="\+Inf"\} \d+$/m,
     'Prometheus: the forward latency histogram');

# -- strangers on the listen port ---------------------------------------

sub connect_to {
    my ($port) = @_;
    return IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                 Timeout => 3);
}

# 1: closed by the node (EOF) within the bound, 0: still open
sub closed_within {
    my ($s, $secs) = @_;
    my $sel = IO::Select->new($s);
    my $end = time + $secs;
    while (time < $end) {
        next unless $sel->can_read($end - time);
        my $n = sysread($s, my $buf, 4096);
        return 1 if !defined $n || $n == 0;
    }
    return 0;
}

# the n2 node's log, from here on
my $log_from = length $node{n2}->error_log;
sub new_log { substr($node{n2}->error_log, $log_from) }

my $s = connect_to($cport{n2});
print $s "GET / HTTP/1.0\r\n\r\n" . ("x" x 200);
ok(closed_within($s, 3), 'garbage on the listen port: disconnected');
ok(wait_for(sub { new_log() =~ /node channel from 127\.0\.0\.1:\d+ .*refused: not a node's handshake/ }, 3),
   '... and logged with the address');

# a HELLO with a fresh nonce, then a proof under a wrong secret (after a
# second: the log has one line a second of the kind)
sleep 1.1;
my $nc = pack('a32', 'n' x 32);
$s = connect_to($cport{n2});
print $s 'DOn1' . $nc . chr(2) . pack('a63', 'n1');
my $got = '';
my $sel = IO::Select->new($s);
while (length($got) < 132 && $sel->can_read(3)) {
    sysread($s, $got, 132 - length($got), length($got)) or last;
}
is(length $got, 132, 'a HELLO is answered with a challenge');
my $ns = substr($got, 4, 32);
my $sname = substr($got, 37, ord(substr($got, 36, 1)));
is($sname, 'n2', '... naming the node');
my $t = $nc . $ns . chr(2) . 'n1' . chr(length $sname) . $sname;
my $wrong = hmac_sha256('DOnc' . $t, 'another secret');
print $s 'DOn1' . $wrong;
ok(closed_within($s, 3), 'a proof under another secret: disconnected');
ok(wait_for(sub { new_log() =~ /refused: bad proof of the secret/ }, 3),
   '... and logged');

# the right secret (SHA-256 of the file without its outer blanks, as
# do_secret keys it) but a name that is not in the registry
sleep 1.1;
my $key = sha256($secret_text =~ s/\s+$//r);
$s = connect_to($cport{n2});
print $s 'DOn1' . $nc . chr(5) . pack('a63', 'ghost');
$got = '';
$sel = IO::Select->new($s);
while (length($got) < 132 && $sel->can_read(3)) {
    sysread($s, $got, 132 - length($got), length($got)) or last;
}
$ns = substr($got, 4, 32);
$t = $nc . $ns . chr(5) . 'ghost' . chr(2) . 'n2';
is(substr($got, 100, 32), hmac_sha256('DOns' . $t, $key),
   'the node proves the secret in its challenge');
print $s 'DOn1' . hmac_sha256('DOnc' . $t, $key);
ok(closed_within($s, 3), 'a node not in the registry: disconnected');
ok(wait_for(sub { new_log() =~ /node "ghost"\) refused: node not in the registry/ }, 3),
   '... and logged with its name');

# a frame after a good handshake but with a forged MAC runs nothing
sleep 1.1;
my $before = http($ports[1], 'GET', '/kv/counter?key=n')->{body};
$s = connect_to($cport{n2});
print $s 'DOn1' . $nc . chr(2) . pack('a63', 'n1');
$got = '';
$sel = IO::Select->new($s);
while (length($got) < 132 && $sel->can_read(3)) {
    sysread($s, $got, 132 - length($got), length($got)) or last;
}
$ns = substr($got, 4, 32);
$t = $nc . $ns . chr(2) . 'n1' . chr(2) . 'n2';
print $s 'DOn1' . hmac_sha256('DOnc' . $t, $key);
# a request frame of type 1 (a call) with a zeroed MAC
my $hdr = pack('CCCC N N N Q> Q>', 1, 1, 1, 0, 0, 8, 0, 7, 0);
print $s $hdr . ("\0" x 16) . ("\0" x 8) . ("\0" x 16);
ok(closed_within($s, 3), 'a frame with a forged MAC: disconnected');
ok(wait_for(sub { new_log() =~ /node "n1"\) refused: a frame failed its MAC/ }, 3),
   '... and logged');
is(http($ports[1], 'GET', '/kv/counter?key=n')->{body}, $before,
   'nothing ran');

# a sealed frame is answered; the same frame again (a replay) is not
sleep 1.1;
$s = connect_to($cport{n2});
print $s 'DOn1' . $nc . chr(2) . pack('a63', 'n1');
$got = '';
$sel = IO::Select->new($s);
while (length($got) < 132 && $sel->can_read(3)) {
    sysread($s, $got, 132 - length($got), length($got)) or last;
}
$ns = substr($got, 4, 32);
$t = $nc . $ns . chr(2) . 'n1' . chr(2) . 'n2';
print $s 'DOn1' . hmac_sha256('DOnc' . $t, $key);
my ($c2s, $s2c) = map { hmac_sha256($_ . $t, $key) } qw(DOk1 DOk2);

# a request of a type nobody handles, sequence 0
$hdr = pack('CCCC N N N Q> Q>', 1, 7, 1, 0, 0, 3, 0, 42, 0);
my $tag1 = substr(hmac_sha256($hdr, $c2s), 0, 16);
my $frame = $hdr . $tag1 . 'abc' . substr(hmac_sha256($tag1 . 'abc', $c2s), 0, 16);
print $s $frame;
$got = '';
while (length($got) < 64 && $sel->can_read(3)) {
    sysread($s, $got, 64 - length($got), length($got)) or last;
}
my ($kind, $type, $hops, $z, $status, $len, $z2, $id, $seq)
    = unpack('CCCC N N N Q> Q>', $got);
ok($kind == 2 && $id == 42 && $status == 501 && $len == 0 && $seq == 0,
   'a sealed request is answered by a reply frame of its id')
    or diag "kind $kind id $id status $status len $len seq $seq";
is(substr($got, 32, 16), substr(hmac_sha256(substr($got, 0, 32), $s2c), 0, 16),
   '... sealed with the key of its direction');
print $s $frame;
ok(closed_within($s, 3), 'the same frame again: disconnected');
ok(wait_for(sub { new_log() =~ /node "n1"\) refused: a frame out of sequence/ }, 3),
   '... and logged');

# -- a node killed while calls are forwarded to it ----------------------

sub received {
    my ($port) = @_;
    my $n = 0;
    $n += $_->{received} // 0 for @{ status($port)->{cluster}{peers} || [] };
    return $n;
}

# an object that n3 holds, reached through n1: the first one whose call
# n3 receives
sub held_by_n3 {
    my ($fmt) = @_;
    for my $i (1 .. 200) {
        my $before3 = received($ports[2]);
        my $r = http($ports[0], 'POST', sprintf($fmt, $i));
        return ($r, $i) if received($ports[2]) > $before3;
    }
    return;
}

my (undef, $ti) = held_by_n3('/kv/o%d?key=k&op=incr');
my $target = defined $ti ? "o$ti" : undef;
ok($target, 'an object that n3 holds');

# a lock that n3 holds, held, and a waiter parked there through n1: a call
# surely in flight when n3 dies
my ($lr, $li) = held_by_n3('/l/lk%d?ttl=60s');
is($lr && $lr->{status}, 200, 'a lock that n3 holds is acquired through n1');
my $waiter = spawn(1, sub {
    my $r = http($ports[0], 'POST', "/l/lk$li?ttl=1s&wait=9s", timeout => 20);
    return sprintf('%d %.3f', $r->{status}, time);
});
ok(wait_for(sub {
    (eval { $J->decode(http($ports[0], 'GET', "/l/lk$li")->{body})->{waiters} }
     // 0) == 1
}, 5), '... and a waiter is parked at n3');

my @victims = ($node{n3}->workers, $node{n3}->pid);
$node{n3}->expect_killed(@victims);
my $t0 = time;
my @res = parallel(9, sub {
    my ($i) = @_;
    if ($i == 8) {
        sleep 1;
        kill 'KILL', @victims;
        return sprintf('killed %.3f', time);
    }
    my @out;
    while (time - $t0 < 4) {
        my $a = time;
        my $r = http($ports[0], 'POST', "/kv/$target?key=k&op=incr");
        push @out, sprintf('%d %.2f', $r->{status}, time - $a);
    }
    return @out;
});
my ($killed) = map { /^killed (\S+)/ ? $1 : () } @res;
@res = grep { !/^killed / } @res;
my @bad = grep { !/^(200|502|503|504) / } @res;
is(scalar(@bad), 0, 'calls to a killed node end with 200, 502, 503 or 504')
    or diag explain [ @bad[0 .. ($#bad > 10 ? 10 : $#bad)] ];
my @slow = grep { (split / /)[1] > 21 } @res;
is(scalar(@slow), 0, '... none waits past do_call_timeout');
# a lost connection ends its calls at once (502), and a call for a shard
# that waits for its new holder waits about a lease and a tick or two;
# none of them may wait for the timeout (20 s), which is what a call the
# channel forgot does
my @late = grep { (split / /)[1] > 8 } @res;
is(scalar(@late), 0, '... none waits for its timeout: a lost connection '
                     . 'answers the calls it carried')
    or diag explain [ @late[0 .. ($#late > 10 ? 10 : $#late)] ];
# the waiter's call was in flight at n3: lost with its connection, it
# ends 502 at once, long before its wait or do_call_timeout
my ($wstatus, $wend) = split / /, (collect($waiter))[0] // '- 0';
ok($wstatus eq '502' && $wend - $killed < 2,
   'the waiter parked at the killed node ends 502 at once')
    or diag sprintf('%s, %.2f s after the kill', $wstatus, $wend - $killed);

delete $node{n3}{pid};
$node{n3}{checked} = 1;

# the dead node stays in the registry for a while, and n1 tries it again:
# the module says so (a warning, once a second), nginx's own lines on
# those connections are info
my $n1_log = $node{n1}->error_log;
like($n1_log, qr/\[warn\].*do: connect\(\) to node "n3" at .* failed/,
     'a refused connect to a dead node is logged by the module');
my @core = grep { /\[error\].*(?:recv|connect|writev)\(\) failed/ }
           split /\n/, $n1_log;
is(scalar(@core), 0, "... and not at error by nginx's core")
    or diag explain [ @core[0 .. ($#core > 5 ? 5 : $#core)] ];

for my $n (qw(n1 n2)) {
    $node{$n}->check_logs("node $n", expect => [
        qr/node channel from .* refused/,
        qr/connect\(\) to .* failed/,
        qr/connection to node "n3" lost/,
        qr/node "n3" at .* is unreachable/,
        qr/timed out/,
    ]);
}

done_testing();

# The room class: presence, one order for all, history and since=, the
# HTTP side, max_members, a member that stops reading, hibernation, a
# reload under traffic and a kill -9 of the room's owner.  Run again on
# Redis by 42-room-redis.t.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";

use JSON::PP;
use Socket;
use Test::More;
use DoTest qw(http wait_for);
use DoWs;

my $t = DoTest->new(workers => 2, http => <<'EOF')->start;
    %%STORAGE%%
    do_idle_timeout 1s;
    do_namespace rooms room history=20 max_members=3 max_message=2k;
    do_namespace big room history=1000;
    do_namespace quiet room presence=off;
    server {
        listen 127.0.0.1:%%PORT%% reuseport sndbuf=32k;
        location ~ ^/rooms/(?<room>[\w-]+)$ {
            do_pass rooms name=$room member=$arg_member;
        }
        location ~ ^/big/(?<room>[\w-]+)$ {
            do_ws_send_queue 64k;
            do_pass big name=$room member=$arg_member;
            add_header X-Owner $do_owner always;
            add_header X-Worker $do_worker always;
            add_header X-Pid $pid always;
        }
        location ~ ^/quiet/(?<room>[\w-]+)$ {
            do_pass quiet name=$room member=$arg_member;
        }
        location = /status { do_status; }
    }
EOF
my $p = $t->port;
my $J = JSON::PP->new->utf8;

sub ev { my $f = shift; $f && $f->{op} == 1 ? $J->decode($f->{payload}) : undef }

# joins and returns the welcome (and whatever came before its own join)
sub enter {
    my ($uri) = @_;
    my $ws = DoWs->connect($p, $uri);
    die "no 101 for $uri: $ws->{status}" unless ref $ws eq 'DoWs';
    my $w = ev($ws->read_message(5));
    die "no welcome for $uri" unless $w && $w->{type} eq 'welcome';
    return ($ws, $w);
}

# the next events up to one of type $type (or $n events)
sub until_type {
    my ($ws, $type, $limit) = @_;
    my @e;
    while (my $e = ev($ws->read_message($limit // 5))) {
        push @e, $e;
        last if $e->{type} eq $type;
    }
    return @e;
}

sub status {
    my $j = $J->decode(http($p, 'GET', '/status')->{body});
    my %s;
    for my $w (@{ $j->{workers} }) {
        $s{$_} += $w->{$_} // 0 for keys %$w;
    }
    return \%s;
}

# 1. presence
my ($a, $wa) = enter('/rooms/p?member=ann');
is_deeply($wa->{members}, ['ann'], 'the first member is alone');
my @e = until_type($a, 'join');
is($e[-1]{member}, 'ann', '... and sees its own join');

my ($b, $wb) = enter('/rooms/p?member=bob');
is_deeply([sort @{ $wb->{members} }], ['ann', 'bob'],
          'the second is welcomed with both names');
is($wb->{count}, 2, '... and the count');
@e = until_type($a, 'join');
is("$e[-1]{member} $e[-1]{count}", 'bob 2', 'the first sees the join, count 2');

my ($c) = enter('/rooms/p?member=cy');
my $d = DoWs->connect($p, '/rooms/p?member=dee');
my $f = $d->read_frame(5);
is($f && $f->{code}, 1008, 'max_members=3: the fourth is closed with 1008');
like($f && $f->{reason}, qr/full/, '... the room is full');

undef $c;
@e = until_type($a, 'leave');
is("$e[-1]{member} $e[-1]{count}", 'cy 2', 'a member that goes: leave, count 2');

my $info = $J->decode(http($p, 'GET', '/rooms/p')->{body});
is_deeply([sort @{ $info->{members} }], ['ann', 'bob'], 'GET: the members');
is($info->{count}, 2, 'GET: the count');

# 2. one order for everyone, each message once, the sender included
for my $i (1 .. 10) {
    ($i % 2 ? $a : $b)->send_text("msg $i");
}
my (%seen, %order);
for my $ws ([ann => $a], [bob => $b]) {
    my ($name, $s) = @$ws;
    my @m;
    while (@m < 10 and my $e = ev($s->read_message(5))) {
        push @m, $e if $e->{type} eq 'message';
    }
    $order{$name} = join ',', map { "$_->{seq}:$_->{data}" } @m;
    $seen{$name} = [ map { $_->{seq} } @m ];
}
is($order{ann}, $order{bob}, 'both members got the same messages in the same order');
is("@{ $seen{ann} }", join(' ', 1 .. 10), '... numbered 1 to 10, no gap');
is(scalar(() = $order{ann} =~ /:msg \d+/g), 10, '... each once');

# 3. since: what was missed, then live, nothing twice
undef $b;
until_type($a, 'leave');
$a->send_text("missed $_") for 1 .. 3;
my @m;
while (@m < 3 and my $e = ev($a->read_message(5))) {
    push @m, $e if $e->{type} eq 'message';
}
($b, $wb) = enter('/rooms/p?member=bob&since=10');
is($wb->{seq}, 13, 'rejoining with since=10: the room is at 13');
@m = ();
while (@m < 3 and my $e = ev($b->read_message(5))) {
    push @m, $e if $e->{type} eq 'message';
}
is(join(',', map { "$_->{seq}:$_->{data}" } @m),
   '11:missed 1,12:missed 2,13:missed 3', '... it gets exactly 11 to 13');
$a->send_text('live');
@m = ();
while (@m < 1 and my $e = ev($b->read_message(5))) {
    push @m, $e if $e->{type} eq 'message';
}
is($m[0] && "$m[0]{seq}:$m[0]{data}", '14:live', '... then live ones, from 14');
until_type($a, 'message');                  # ann's own "live"

$a->send_text("old $_") for 1 .. 20;
@m = ();
while (@m < 20 and my $e = ev($a->read_message(5))) {
    push @m, $e if $e->{type} eq 'message';
}
my ($late, $wl) = enter('/rooms/p?member=cy&since=5');
my $reset = ev($late->read_message(5));
is($reset && $reset->{type}, 'reset', 'since older than the history: a reset');
is($reset && "$reset->{since} $reset->{first}", '5 15',
   '... saying what it asked for and what the history starts at');
my $first = ev($late->read_message(5));
is($first && $first->{seq}, 15, '... then the history from its start');
undef $late;

my $h = $J->decode(http($p, 'GET', '/rooms/p?since=30')->{body});
is(join(',', map { $_->{seq} } @{ $h->{messages} }), '31,32,33,34',
   'GET ?since=30: the messages after 30');

# 4. HTTP publish
my $r = http($p, 'POST', '/rooms/p?from=deploy', body => 'v2 is live');
is($r->{status}, 200, 'POST publishes');
is($J->decode($r->{body})->{seq}, 35, '... and answers the seq');
my $e;
do { $e = ev($a->read_message(5)) } while $e && $e->{type} ne 'message';
is($e && "$e->{seq} $e->{from} $e->{data}", '35 deploy v2 is live',
   'the members receive it as a message from deploy');
is(http($p, 'PUT', '/rooms/p')->{status}, 405, 'PUT: 405');
undef $a;
undef $b;

# presence=off: no join or leave events, no names, messages as usual
my ($q1, $wq) = enter('/quiet/q?member=q1');
my ($q2) = enter('/quiet/q?member=q2');
is_deeply($wq->{members}, ['q1'], 'presence=off: the welcome names only '
   . 'the member itself');
my $quiet = $q1->read_frame(1);
ok(!$quiet, '... and nobody hears of a join');
$q2->send_text('hush');
$e = ev($q1->read_message(5));
is($e && $e->{data}, 'hush', '... messages go to all as usual');
is($J->decode(http($p, 'GET', '/quiet/q')->{body})->{count}, 2,
   '... and the room counts its members');
undef $q1;
undef $q2;

# 5. a member that stops reading: closed with 1013, the others go on
my ($slow) = enter('/big/s?member=slow');
setsockopt($slow->sock, Socket::SOL_SOCKET(), Socket::SO_RCVBUF(), 4096);
my ($fast) = enter('/big/s?member=fast');
my ($talk) = enter('/big/s?member=talker');
my $chunk = 'x' x 1000;
my $n = 3000;
my ($got, $last, $bad) = (0, 0, 0);
for my $batch (0 .. $n / 20 - 1) {
    $talk->send_raw(join '', map { DoWs::frame('text', "$_ $chunk") }
                             $batch * 20 + 1 .. $batch * 20 + 20);
    my $want = $batch * 20 + 20;
    while ($got < $want and my $g = ev($fast->read_message(10))) {
        next unless $g->{type} eq 'message';
        $bad++ unless $g->{seq} == $last + 1;
        $last = $g->{seq};
        $got++;
    }
    1 while $talk->read_frame(0);
}
is("$got $bad", "$n 0", "a reading member got all $n messages in order");
my $st = status();
ok($st->{ws_slow_closed} >= 1, 'the member that did not read was closed for '
   . 'lagging (ws_slow_closed ' . ($st->{ws_slow_closed} // 0) . ')');
ok($st->{ws_queued_bytes} < 1024 * 1024, 'the send queues hold '
   . "$st->{ws_queued_bytes} bytes now (do_ws_send_queue 64k each)");
my $code = $slow->close_code(10);
is($code, 1013, 'its stream ends with a close frame 1013');
undef $_ for $slow, $fast, $talk;

# 6. hibernation: the room goes from memory, its members stay
ok(wait_for(sub { status()->{ws_connections} == 0 }, 10),
   'the connections closed by the clients are gone');
my @members = map { (enter("/big/hib?member=m$_"))[0] } 1 .. 100;
$_->read_message(0.2) for @members;         # joins of those after it
my $before = status()->{evictions};
ok(wait_for(sub {
    for my $ws (@members) { 1 while $ws->read_frame(0) }
    status()->{objects} == 0 && status()->{evictions} > $before
}, 15), 'the idle room is evicted while 100 members stay connected');
is(status()->{ws_connections}, 100, '... all 100 still open');
$r = http($p, 'POST', '/big/hib?from=wake', body => 'after the nap');
is($r->{status}, 200, 'a message to the evicted room');
my $all = 0;
for my $ws (@members) {
    my $g;
    do { $g = ev($ws->read_message(5)) } while $g && $g->{type} ne 'message';
    $all++ if $g && $g->{data} eq 'after the nap';
}
is($all, 100, '... reaches all 100 members');
my ($extra, $we) = enter('/big/hib?member=extra');
is($we->{count}, 101, 'the 101st member is welcomed with the count, 101');
is(scalar @{ $we->{members} }, 101, '... and at most 100 other names');
undef $extra;
undef @members;

# 7. a reload under traffic: members are closed with 1012, come back with
# since, and nobody misses an acknowledged message
my @readers = map { [ (enter("/big/rl?member=r$_"))[0], 0, {} ] } 1 .. 10;
my ($sender) = enter('/big/rl?member=sender');
my (%acked, %closed, $sent);
$sent = 0;
my $reloaded = 0;
my $deadline = time + 30;

# what a member has now: numbered messages into its tally; 0 once it closed
sub drain {
    my ($rd) = @_;
    while (my $g = $rd->[0]->read_frame(0)) {
        if ($g->{op} == 8) {
            $closed{ $g->{code} }++;
            return 0;
        }
        my $ev = ev($g) or next;
        next unless $ev->{type} eq 'message';
        $rd->[2]{ $ev->{seq} }++;
        $rd->[1] = $ev->{seq} if $ev->{seq} > $rd->[1];
        $acked{ $ev->{data} } = $ev->{seq} if $rd->[3];
    }
    return !$rd->[0]{eof};
}

my $snd = [ $sender, 0, {}, 1 ];
while ($sent < 300 && time < $deadline) {
    $snd->[0]->send_text('r ' . ++$sent);
    $t->reload if $sent == 100 && !$reloaded++;
    for my $rd (@readers, $snd) {
        next if drain($rd);
        my $who = $rd->[3] ? 'sender' : 'again';
        ($rd->[0]) = enter("/big/rl?member=$who&since=$rd->[1]");
    }
    select(undef, undef, undef, 0.01);
}
ok(wait_for(sub {
    drain($_) for @readers, $snd;
    !grep { $_->[1] < $snd->[1] } @readers
}, 10), 'the readers catch up with the last message the sender saw')
    or diag(join "\n", "the sender is at $snd->[1]",
            map { "reader $_ is at $readers[$_][1]" } 0 .. $#readers);
my $stored = $J->decode(http($p, 'GET', '/big/rl?since=0')->{body});
my %stored = map { $_->{data} => $_->{seq} } @{ $stored->{messages} };
my $acked = keys %acked;
ok($acked > 150 && $reloaded, "$acked of $sent messages acknowledged "
   . '(seen by their sender with a number) around a reload');
is(scalar(grep { !exists $stored{$_} } keys %acked), 0,
   '... every one of them is stored');
my $top = $stored->{seq};
my ($missing, $dups) = (0, 0);
for my $rd (@readers) {
    for my $s (1 .. $top) {
        $missing++ unless $rd->[2]{$s};
        $dups++ if ($rd->[2]{$s} // 0) > 1;
    }
}
is($missing, 0, "no reader misses any of the $top stored messages");
is($dups, 0, '... and none gets one twice');
ok($closed{1012}, 'the old workers closed their members with 1012 ('
   . join(', ', map { "$_: $closed{$_}" } sort keys %closed) . ')');

# 7b. a join still waiting for its room when its worker starts to exit
# (Redis paused across a reload): the member is not left behind with the
# old worker, which would never exit; it is closed with 1012 like the rest
if (DoTest::redis_backend()) {
    my $redis = $t->redis;
    # the sockets each worker has open: one more once it accepted the join
    my $sockets = sub {
        join ',', map {
            my $pid = $_;
            opendir my $d, "/proc/$pid/fd" or return 0;
            scalar grep { (readlink("/proc/$pid/fd/$_") // '') =~ /^socket:/ }
                   readdir $d;
        } $t->workers;
    };
    kill 'STOP', $redis->{pid};
    my $before = $sockets->();
    my $j = DoWs->connect($p, '/big/inflight?member=late', pending => 1);
    ok(wait_for(sub { $sockets->() ne $before }, 5),
       'a join accepted by a worker while Redis is paused');
    select(undef, undef, undef, 0.3);
    my %old = map { $_ => 1 } $t->workers;
    $t->reload;
    # the old workers are on their way out before Redis answers
    my $exiting = sub {
        open my $fh, '<', "/proc/$_[0]/cmdline" or return 1;
        return (<$fh> // '') =~ /shutting down/;
    };
    wait_for(sub { !grep { !$exiting->($_) } keys %old }, 5);
    kill 'CONT', $redis->{pid};
    my $late = $j->answer;
    is(ref $late eq 'DoWs' ? $late->close_code(5) : $late->{status}, 1012,
       'a join answered by a worker on its way out: closed with 1012');
    ok(wait_for(sub { !grep { $old{$_} } $t->workers }, 10),
       '... and the old workers exit');
}

# 8. kill -9 of the room's owner: no acknowledged message is lost
my $w = DoTest::worker_conns($p, '/big/k', other => 1);
my $owner_pid = $w->{owner_pid};
ok($owner_pid && grep({ $_ == $owner_pid } $t->workers),
   "the room's owner worker is pid " . ($owner_pid // '?'))
    or BAIL_OUT('no owner pid');
%acked = ();
%closed = ();
my @kr = map { [ (enter("/big/k?member=k$_"))[0], 0, {} ] } 1 .. 5;
$snd = [ (enter('/big/k?member=sender'))[0], 0, {}, 1 ];
$sent = 0;
my $killed = 0;
$deadline = time + 30;
while ($sent < 200 && time < $deadline) {
    $snd->[0]->send_text('k ' . ++$sent);
    if ($sent == 100 && !$killed++) {
        $t->kill_worker('KILL', $owner_pid);
    }
    for my $rd (@kr, $snd) {
        next if drain($rd);
        my $who = $rd->[3] ? 'sender' : 'again';
        my $again;
        for (1 .. 50) {
            $again = DoWs->connect($p, "/big/k?member=$who&since=$rd->[1]");
            last if ref $again eq 'DoWs';
            select(undef, undef, undef, 0.1);
        }
        $rd->[0] = $again;
    }
    select(undef, undef, undef, 0.01);
}
ok(wait_for(sub {
    drain($_) for @kr, $snd;
    !grep { $_->[1] < $snd->[1] } @kr
}, 10), 'after the kill -9 the members catch up with the sender');
$stored = $J->decode(http($p, 'GET', '/big/k?since=0')->{body});
%stored = map { $_->{data} => $_->{seq} } @{ $stored->{messages} };
ok(keys(%acked) > 100, scalar(keys %acked) . " of $sent messages "
   . 'acknowledged around the kill');
is(scalar(grep { !exists $stored{$_} } keys %acked), 0,
   '... every one of them is stored');
($missing, $dups) = (0, 0);
for my $rd (@kr) {
    for my $s (1 .. $stored->{seq}) {
        $missing++ unless $rd->[2]{$s};
        $dups++ if ($rd->[2]{$s} // 0) > 1;
    }
}
is("$missing $dups", '0 0', 'no member misses a stored message or gets one '
   . 'twice');
undef @kr;
undef $snd;
undef @readers;
undef $sender;

# 9. the history outlives the whole nginx (Redis keeps it)
if (DoTest::redis_backend()) {
    $t->stop;
    $t->start;
    my $again = $J->decode(http($p, 'GET', '/big/rl?since=0')->{body});
    is(scalar @{ $again->{messages} }, $top,
       'after a full restart the history is all there');
}

$t->check_logs;
done_testing;

# WebSockets on the wire: the handshake's answers, every malformed frame
# closed with its code while the worker keeps serving, control frames,
# fragmentation, the keepalive and the closing handshake.  A real client
# on a socket (t/lib/DoWs.pm), frames built by hand.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";

use JSON::PP;
use Test::More;
use Time::HiRes qw(sleep time);
use DoTest qw(http wait_for);
use DoWs;

my $t = DoTest->new(workers => 2, http => <<'EOF')->start;
    %%STORAGE%%
    do_namespace rooms room history=10 max_message=1k;
    do_namespace joins rate_limiter rate=1r/m burst=1;
    log_format ws '$status $do_object_id $request_uri';
    server {
        listen 127.0.0.1:%%PORT%%;
        location ~ ^/rooms/(?<room>[\w-]+)$ {
            do_pass rooms name=$room member=$arg_member;
        }
        location ~ ^/strict/(?<room>[\w-]+)$ {
            do_ws_origins https://chat.example.com http://localhost:8080;
            do_ws_protocols chat.v2 chat.v1;
            do_pass rooms name=$room member=$arg_member;
        }
        location ~ ^/alive/(?<room>[\w-]+)$ {
            do_ws_keepalive 1s 1s;
            do_pass rooms name=$room member=$arg_member;
        }
        location ~ ^/gated/(?<room>[\w-]+)$ {
            access_log %%PREFIX%%/logs/ws.log ws;
            do_limit joins key=$arg_member;
            do_pass rooms name=$room member=$arg_member;
        }
        location ~ ^/rated/(?<room>[\w-]+)$ {
            do_ws_message_rate 1r/s burst=3;
            do_pass rooms name=$room member=$arg_member;
        }
        location ~ ^/tiny/(?<room>[\w-]+)$ {
            do_ws_send_queue 1k;
            do_ws_keepalive 0;
            do_pass rooms name=$room member=$arg_member;
        }
        location = /static { return 200 "ok\n"; }
    }
EOF
my $p = $t->port;
my $J = JSON::PP->new->utf8;

# the next event of a type, skipping others
sub ev_type {
    my ($ws, $type) = @_;
    while (my $g = $ws->read_message(5)) {
        return undef if $g->{op} != 1;
        my $ev = $J->decode($g->{payload});
        return $ev if $ev->{type} eq $type;
    }
    return undef;
}

sub join_room {
    my ($uri, %a) = @_;
    my $ws = DoWs->connect($p, $uri, %a);
    return $ws unless ref $ws eq 'DoWs';
    my $f = $ws->read_message(5);
    die "no welcome on $uri" unless $f && $f->{payload} =~ /"welcome"/;
    $ws->read_message(5);                   # its own join
    return $ws;
}

# 1. the handshake
my $ok = join_room('/rooms/h?member=ann');
is(ref $ok, 'DoWs', 'a valid handshake gets 101');
is($ok->{headers}{'sec-websocket-accept'} && length
   $ok->{headers}{'sec-websocket-accept'}, 28, '... with Sec-WebSocket-Accept');

my $known = DoWs->connect($p, '/rooms/h?member=rfc',
                          key => 'dGhlIHNhbXBsZSBub25jZQ==');
is($known->{headers}{'sec-websocket-accept'}, 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=',
   "the RFC's example key gets the RFC's accept value");

my $r = DoWs->connect($p, '/rooms/h?member=x', version => 8);
is($r->{status}, 426, 'version 8: 426');
is($r->{headers}{'sec-websocket-version'}, '13', '... naming version 13');

$r = DoWs->connect($p, '/rooms/h?member=x', key => 'c2hvcnQ=');
is($r->{status}, 400, 'a key that is not 16 bytes: 400');

$r = DoWs->connect($p, '/rooms/h?member=x', key => 'not base64 at all!!!!!==');
is($r->{status}, 400, 'a key that is not base64: 400');

$r = DoWs->connect($p, '/rooms/h?member=x',
                   headers => { Connection => 'keep-alive' });
is($r->{status}, 400, 'Connection without upgrade: 400');

$r = DoWs->connect($p, '/rooms/h?member=x',
                   headers => { Connection => 'keep-alive, Upgrade' });
is($r->{status}, 101, 'Connection as a token list with upgrade: 101');

$r = DoWs->connect($p, '/strict/h?member=x',
                   headers => { Origin => 'https://evil.example.com' });
is($r->{status}, 403, 'an origin not in do_ws_origins: 403');

$r = DoWs->connect($p, '/strict/h?member=x',
                   headers => { Origin => 'HTTPS://Chat.Example.com',
                                'Sec-WebSocket-Protocol' => 'chat.v1, chat.v2' });
is($r->{status}, 101, 'an allowed origin (any case): 101');
is($r->{headers}{'sec-websocket-protocol'}, 'chat.v2',
   "... and the server's preferred subprotocol of those offered");

$r = DoWs->connect($p, '/strict/h?member=x',
                   headers => { 'Sec-WebSocket-Protocol' => 'other' });
is($r->{status}, 101, 'no common subprotocol: 101 anyway');
ok(!exists $r->{headers}{'sec-websocket-protocol'}, '... naming none');

$r = http($p, 'GET', '/rooms/h');
is($r->{status}, 200, 'a GET without Upgrade is HTTP: room info');

$r = DoWs->connect($p, '/rooms/h');
is(ref $r, 'DoWs', 'no member name: the upgrade happens ...');
my $f = $r->read_frame(5);
is($f && $f->{op}, 8, '... and the room closes it at once');
is($f && $f->{code}, 1008, '... with 1008');
like($f && $f->{reason}, qr/member name/, '... saying why');

# gates run before the handshake, and the access log has the 101
my @g = map { DoWs->connect($p, '/gated/g?member=gus') } 1 .. 3;
is(join(' ', map { $_->{status} } @g), '101 101 429',
   'do_limit on the handshake: burst=1 lets two joins of one member in');
undef @g;
ok(wait_for(sub {
    open my $lf, '<', $t->prefix . '/logs/ws.log' or return 0;
    my @l = <$lf>;
    (grep { m{^101 [0-9a-f]{64} /gated/g\?member=gus$} } @l) == 2
}, 5), 'the access log has each WebSocket with status 101 and $do_object_id');

# 2. malformed frames: each closes with its code, the worker serves on
my @bad = (
    [ 'an unmasked frame', DoWs::frame('text', 'hi', mask => 0), 1002 ],
    [ 'RSV bits', DoWs::frame('text', 'hi', rsv => 4), 1002 ],
    [ 'an unknown opcode', DoWs::frame(3, 'hi'), 1002 ],
    [ 'a fragmented ping', DoWs::frame('ping', 'x', fin => 0), 1002 ],
    [ 'a ping over 125 bytes', DoWs::frame('ping', 'x' x 126), 1002 ],
    [ 'a continuation without a start', DoWs::frame('cont', 'x'), 1002 ],
    [ 'a new message inside a fragmented one',
      DoWs::frame('text', 'a', fin => 0) . DoWs::frame('text', 'b'), 1002 ],
    [ 'invalid UTF-8', DoWs::frame('text', "\xc3\x28"), 1007 ],
    [ 'UTF-8 cut between fragments and never finished',
      DoWs::frame('text', "ok \xe2\x82", fin => 0)
      . DoWs::frame('cont', "x"), 1007 ],
    [ 'a message over max_message', DoWs::frame('text', 'x' x 1025), 1009 ],
    [ 'fragments over max_message together',
      DoWs::frame('text', 'x' x 600, fin => 0)
      . DoWs::frame('cont', 'y' x 600), 1009 ],
    [ 'a close frame of one byte', DoWs::frame('close', 'x'), 1002 ],
    [ 'a close code that may not be sent (1005)',
      DoWs::frame('close', pack('n', 1005)), 1002 ],
    [ 'a close reason that is not UTF-8',
      DoWs::frame('close', pack('n', 1000) . "\xff"), 1007 ],
    [ 'a binary message (the room takes text)',
      DoWs::frame('binary', "\x00\x01"), 1003 ],
);

for my $case (@bad) {
    my ($name, $bytes, $code) = @$case;
    my $ws = join_room('/rooms/bad?member=m');
    $ws->send_raw($bytes);
    is($ws->close_code(5), $code, "$name: closed with $code");
    ok($ws->closed(5), "$name: ... and the connection ends");
}
is(http($p, 'GET', '/static')->{status}, 200, 'the workers serve on');

# 3. what is right: control frames, fragments, the closing handshake
my $a = join_room('/rooms/good?member=a');
$a->send_raw(DoWs::frame('ping', 'are you there'));
$f = $a->read_frame(5);
is($f->{op}, 10, 'a ping gets a pong');
is($f->{payload}, 'are you there', '... with its payload');

$a->send_raw(DoWs::frame('text', 'hel', fin => 0)
             . DoWs::frame('ping', 'mid')
             . DoWs::frame('cont', "lo \xe2\x82", fin => 0)
             . DoWs::frame('cont', "\xac"));
$f = $a->read_frame(5);
is($f->{op}, 10, 'a ping between fragments is answered at once');
$f = $a->read_message(5);
my $m = $J->decode($f->{payload});
is($m->{data}, "hel" . "lo \x{20ac}", 'the fragments make one message, '
   . 'UTF-8 split between them intact');

my @frames = map { DoWs::frame('text', "m$_") } 1 .. 50;
$a->send_raw(join '', @frames);
my @got;
while (@got < 50 and my $g = $a->read_message(5)) {
    push @got, $J->decode($g->{payload})->{data};
}
is("@got", join(' ', map { "m$_" } 1 .. 50),
   '50 messages in one write arrive, in order');

my $last = DoWs::frame('cont', 'yz');
$a->send_raw(DoWs::frame('text', 'x', fin => 0) . substr($last, 0, 3));
$f = $a->read_frame(1);
ok(!$f, 'a message is not delivered before its last fragment is whole');
$a->send_raw(substr($last, 3));
$f = $a->read_message(5);
is($f && $J->decode($f->{payload})->{data}, 'xyz', '... then it is');

$a->send_close(4001, 'bye');
$f = $a->read_frame(5);
$f = $a->read_frame(5) while $f && $f->{op} != 8;
is($f && $f->{code}, 4001, 'the close handshake echoes the code');
ok($a->closed(5), '... and the server ends the connection');

# 4. do_ws_message_rate 1r/s burst=3: four at once pass, the fifth closes
my $rt = join_room('/rated/r?member=fast');
$rt->send_raw(join '', map { DoWs::frame('text', "q$_") } 1 .. 6);
my $g;
do { $g = $rt->read_frame(5) } while $g && $g->{op} != 8;
is($g && $g->{code}, 1008, 'over do_ws_message_rate: closed with 1008');
like($g && $g->{reason}, qr/rate/, '... message rate exceeded');
# the four are stored by the room's owner, maybe after the close reached
# the client: wait for them, then a moment for any that should not be
my $kept = sub {
    my $m = eval { $J->decode(http($p, 'GET', '/rated/r?since=0')->{body}) };
    return join ' ', map { $_->{data} } @{ ($m || {})->{messages} || [] };
};
wait_for(sub { split(/ /, $kept->()) >= 4 }, 5);
sleep 0.3;
is($kept->(), 'q1 q2 q3 q4', '... after burst + 1 messages went through');

# do_ws_send_queue 1k: a join's replay of 10 messages of 900 bytes does
# not count against it; do_ws_keepalive 0: no pings
for my $i (1 .. 10) {
    http($p, 'POST', "/tiny/t?from=f", body => "$i " . ('y' x 900));
}
my $tiny = DoWs->connect($p, '/tiny/t?member=t');
my $n = 0;
while (my $g = $tiny->read_frame(2)) {
    my $ev = $J->decode($g->{payload});
    $n++ if $ev->{type} eq 'message';
    last if $n == 10;
}
is($n, 10, 'a join gets its whole replay (9 KB) past do_ws_send_queue 1k');
my ($pinged, $until) = (0, time + 2.5);
while (time < $until) {
    my $g = $tiny->read_frame($until - time) or last;
    $pinged++ if $g->{op} == 9;
}
ok(!$pinged, 'do_ws_keepalive 0: no ping after 2.5 s idle');
$tiny->send_text('still here');
my $back = ev_type($tiny, 'message');
is($back && $back->{data}, 'still here', '... and the connection works');
undef $tiny;

# 5. the keepalive: pings, and a client that never answers is closed
my $k = join_room('/alive/k?member=quiet');
$f = $k->read_frame(3);
is($f && $f->{op}, 9, 'an idle connection gets a ping after 1s');
ok($k->closed(4), 'no pong within 1s: the connection ends');

my $live = join_room('/alive/k?member=live');
my $pings = 0;
for (1 .. 4) {
    my $g = $live->read_frame(2) or next;
    if ($g->{op} == 9) {
        $pings++;
        $live->send_raw(DoWs::frame('pong', $g->{payload}));
    }
}
ok($pings >= 2, "a client that answers stays ($pings pings answered)");
ok(!$live->closed(0.1), '... connected');

$t->check_logs;
done_testing;

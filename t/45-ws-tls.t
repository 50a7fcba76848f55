# WebSockets behind TLS: a member over https and one over plain http in
# one room, on 2 workers; the connection stays on the worker that did the
# TLS handshake.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";

use JSON::PP;
use Test::More;
use DoTest;
use DoWs;

my $t = DoTest->new(workers => 2, http => <<'EOF');
    %%STORAGE%%
    do_namespace rooms room;
    server {
        listen 127.0.0.1:%%PORT%%;
        listen 127.0.0.1:%%PORT2%% ssl;
        ssl_certificate %%PREFIX%%/cert.pem;
        ssl_certificate_key %%PREFIX%%/key.pem;
        location ~ ^/rooms/(?<room>[\w-]+)$ {
            do_pass rooms name=$room member=$arg_member;
        }
    }
EOF
my $pre = $t->prefix;
system("openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=localhost "
       . "-days 2 -keyout $pre/key.pem -out $pre/cert.pem 2>/dev/null") == 0
    or die "openssl: $?";
$t->start;
my $J = JSON::PP->new->utf8;

sub ev { my $f = shift; $f && $f->{op} == 1 ? $J->decode($f->{payload}) : {} }

my $sec = DoWs->connect($t->port_n(2), '/rooms/tls?member=sec', tls => 1);
is(ref $sec && $sec->{status}, 101, 'a WebSocket over TLS: 101');
is(ev($sec->read_message(5))->{type}, 'welcome', '... welcomed');
my $plain = DoWs->connect($t->port, '/rooms/tls?member=plain');
is(ev($plain->read_message(5))->{type}, 'welcome', 'a plain member joins');

$sec->send_text('over tls ' . ('x' x 20000));
my ($got_plain, $got_sec);
for (1 .. 5) {
    my $e = ev($plain->read_message(5));
    if ($e->{type} && $e->{type} eq 'message') { $got_plain = $e; last }
}
for (1 .. 5) {
    my $e = ev($sec->read_message(5));
    if ($e->{type} && $e->{type} eq 'message') { $got_sec = $e; last }
}
is($got_plain && length $got_plain->{data}, 20009,
   'a 20 KB message from the TLS member reaches the plain one');
is($got_sec && $got_sec->{seq}, 1, '... and the sender, numbered 1');

$plain->send_text('back');
my $e;
do { $e = ev($sec->read_message(5)) } while $e->{type} && $e->{type} ne 'message';
is($e->{data}, 'back', 'the TLS member receives a message');

$sec->send_close(1000);
is($sec->close_code(5), 1000, 'the TLS member closes cleanly');
undef $sec;
undef $plain;

# nginx stops: a WebSocket is closed with 1001 (a reload says 1012, see
# t/42-room.t), over TLS too
my $last = DoWs->connect($t->port_n(2), '/rooms/tls?member=last', tls => 1);
is(ev($last->read_message(5))->{type}, 'welcome', 'one more member');
kill 'QUIT', $t->pid;
is($last->close_code(10), 1001, 'nginx stopping closes it with 1001');
undef $last;

$t->check_logs;
done_testing;

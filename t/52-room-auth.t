# A room's member names from auth_request, as the README shows: the
# member is who the auth service says, whatever the client claims, and a
# client it refuses gets its 401, never a WebSocket.  Also what the README
# says of the handshake and the replay: add_header does not apply to the
# 101, and a member that resumes gets the messages it missed, not the
# presence events.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";

use JSON::PP;
use Test::More;
use DoTest qw(http);
use DoWs;

my $t = DoTest->new(workers => 2, http => <<'EOF')->start;
    %%STORAGE%%
    do_namespace rooms room history=10;

    # the auth service: a session cookie names a user
    map $cookie_session $session_user {
        t-ann   ann;
        t-bob   bob;
        default "";
    }
    server {
        listen 127.0.0.1:%%PORT2%%;
        location = /auth {
            if ($session_user = "") { return 401; }
            add_header X-User $session_user;
            return 204;
        }
    }

    server {
        listen 127.0.0.1:%%PORT%%;
        location ~ ^/rooms/(?<room>[\w-]+)$ {
            auth_request /auth;
            auth_request_set $user $upstream_http_x_user;
            do_pass rooms name=$room member=$user;
            add_header X-Added yes always;
        }
        location = /auth {
            internal;
            proxy_pass http://127.0.0.1:%%PORT2%%;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header Upgrade "";
        }
    }
EOF
my $p = $t->port;
my $J = JSON::PP->new->utf8;

sub ev { my $f = shift; $f && $f->{op} == 1 ? $J->decode($f->{payload}) : undef }

my $ann = DoWs->connect($p, '/rooms/lobby?member=mallory',
                        headers => { Cookie => 'session=t-ann' });
is(ref $ann, 'DoWs', 'a client with a session joins') or diag explain $ann;
my $w = ev($ann->read_message(5));
is($w->{type}, 'welcome', '... is welcomed');
is($w->{member}, 'ann', '... under the name the auth service gave, not '
                        . 'the one it asked for');
ok(!exists $ann->{headers}{'x-added'},
   'add_header does not apply to the 101');

my $bob = DoWs->connect($p, '/rooms/lobby',
                        headers => { Cookie => 'session=t-bob' });
ev($bob->read_message(5));
my $j;
do { $j = ev($ann->read_message(5)) }
    while ($j && !($j->{type} eq 'join' && $j->{member} ne 'ann'));
is_deeply([$j->{type}, $j->{member}], ['join', 'bob'],
          'the others see the authenticated name join');

$bob->send_text('hello');
my $m;
do { $m = ev($ann->read_message(5)) } while ($m && $m->{type} ne 'message');
is_deeply([$m->{from}, $m->{data}], ['bob', 'hello'],
          'messages carry the authenticated name');

# bob leaves; a member resuming from the start gets the message, and no
# join or leave
$bob->send_close(1000);
my $l;
do { $l = ev($ann->read_message(5)) } while ($l && $l->{type} ne 'leave');
is($l->{member}, 'bob', 'bob\'s leave is seen live');
my $cid = DoWs->connect($p, '/rooms/lobby?since=0',
                        headers => { Cookie => 'session=t-bob' });
my @replay;
while (my $e = ev($cid->read_message(2))) {
    push @replay, $e->{type};
    last if $e->{type} eq 'message';
}
is_deeply([grep { $_ eq 'join' || $_ eq 'leave' || $_ eq 'message' }
           @replay[1 .. $#replay]], ['message'],
          'a resume replays the message, not the presence events before it')
    or diag "@replay";

my $r = DoWs->connect($p, '/rooms/lobby?member=ann');
is($r->{status}, 401, 'no session: the auth service\'s 401, no WebSocket');
$r = DoWs->connect($p, '/rooms/lobby?member=ann',
                   headers => { Cookie => 'session=forged' });
is($r->{status}, 401, 'an unknown session: 401');

$t->stop;
$t->check_logs('room behind auth_request');
done_testing();

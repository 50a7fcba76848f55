# Configuration mistakes fail `nginx -t` naming the file and line; every
# file in conf-examples/ passes it; the quickstart answers.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use DoTest qw(nginx_t http);

my $ok_ns = "do_namespace state store;\n";

sub fails_like {
    my ($http, $re, $line, $name) = @_;
    my ($rc, $out, $file) = nginx_t($http);
    isnt($rc, 0, "$name: nginx -t fails");
    like($out, $re, "$name: the message says why");
    like($out, qr/\Q$file\E:$line\b/, "$name: the message names file and line")
        if defined $line;
}

# the http text starts at line 19 of the generated file (see DoTest)
my $base = 19;

fails_like("do_namespace state nosuchclass;\n",
           qr/unknown do class "nosuchclass"/, $base, 'unknown class');

fails_like("${ok_ns}server { listen 127.0.0.1:%%PORT%%;\n"
           . "location / { do_pass nosuchns name=\$uri; } }\n",
           qr/unknown do namespace "nosuchns"/, $base + 2,
           'unknown namespace');

fails_like("${ok_ns}server { listen 127.0.0.1:%%PORT%%;\n"
           . "location / { do_pass state; } }\n",
           qr/needs an ID strategy/, $base + 2, 'do_pass without strategy');

fails_like("${ok_ns}server { listen 127.0.0.1:%%PORT%%;\n"
           . "location / { do_pass state color=\$uri; } }\n",
           qr/invalid ID strategy "color=\$uri"/, $base + 2,
           'do_pass with an unknown strategy');

fails_like("${ok_ns}do_namespace state store;\n",
           qr/duplicate do namespace "state"/, $base + 1,
           'duplicate namespace');

fails_like("do_namespace state store bogus=1;\n",
           qr/invalid parameter "bogus=1"/, $base, 'unknown class parameter');

fails_like("do_namespace state store max_value=lots;\n",
           qr/invalid size in "max_value=lots"/, $base, 'bad size parameter');

fails_like("do_namespace st.ate store;\n",
           qr/invalid do namespace name "st\.ate"/, $base,
           'bad namespace name');

my $locks = "do_namespace locks lock;\n";
fails_like("${locks}server { listen 127.0.0.1:%%PORT%%;\n"
           . "location / { do_lock nosuch key=\$uri; } }\n",
           qr/unknown do namespace "nosuch"/, $base + 2,
           'do_lock of an unknown namespace');
fails_like("${ok_ns}server { listen 127.0.0.1:%%PORT%%;\n"
           . "location / { do_lock state key=\$uri; } }\n",
           qr/do_lock needs a lock/, $base + 2,
           'do_lock of a namespace of another class');
fails_like("${locks}server { listen 127.0.0.1:%%PORT%%;\n"
           . "location / { do_lock locks wait=1s; } }\n",
           qr/needs key=/, $base + 2, 'do_lock without key=');
fails_like("${locks}server { listen 127.0.0.1:%%PORT%%;\n"
           . "location / { do_lock locks key=\$uri ttl=0; } }\n",
           qr/invalid time in "ttl=0"/, $base + 2, 'do_lock with ttl=0');
fails_like("${locks}server { listen 127.0.0.1:%%PORT%%;\n"
           . "location / { do_lock locks key=\$uri;\ndo_lock locks key=\$uri; } }\n",
           qr/"do_lock" directive is duplicate/, $base + 3,
           'two do_lock in one location');
my $over = 'do_lock ttl=7200000ms exceeds max_ttl=3600000ms of do namespace';
fails_like("${locks}server { listen 127.0.0.1:%%PORT%%;\n"
           . "location / { do_lock locks key=\$uri ttl=2h; } }\n",
           qr/\Q$over\E "locks"/,
           $base + 2, 'do_lock ttl= over the default max_ttl');
fails_like("server { listen 127.0.0.1:%%PORT%%;\n"
           . "location / { do_lock locks key=\$uri ttl=61s; } }\n"
           . "do_namespace locks lock max_ttl=1m;\n",
           qr/exceeds max_ttl=60000ms/, $base + 1,
           'do_lock ttl= over the max_ttl of a namespace declared later');
{
    my ($rc, $out) = nginx_t("do_namespace locks lock max_ttl=1m;\n"
                             . "server { listen 127.0.0.1:%%PORT%%;\n"
                             . "location / { do_lock locks key=\$uri "
                             . "ttl=60s; } }\n");
    is($rc, 0, 'do_lock ttl= equal to max_ttl passes nginx -t') or diag $out;
}
fails_like("do_namespace locks lock ttl=2h;\n",
           qr/ttl= exceeds max_ttl=/, $base, 'lock ttl over max_ttl');
fails_like("do_namespace locks lock lease=1s;\n",
           qr/unknown lock parameter/, $base, 'unknown lock parameter');

fails_like("do_storage memory size=1k;\n$ok_ns",
           qr/invalid do storage size "size=1k"/, $base, 'tiny storage zone');

fails_like("do_storage floppy;\n$ok_ns",
           qr/unsupported do storage "floppy"/, $base, 'unknown storage');

# IDs must not change at a restart or between nodes sharing one Redis
fails_like("do_storage redis://127.0.0.1:6379/0;\n$ok_ns",
           qr/do_storage redis needs do_secret: object IDs must be the same after restarts and on every node/,
           $base, 'redis storage without do_secret');
fails_like("${ok_ns}do_storage redis+unix:///tmp/redis.sock?db=1;\n",
           qr/do_storage redis needs do_secret/, $base + 1,
           'redis storage over a unix socket without do_secret');

fails_like("do_secret /nonexistent/secret;\n$ok_ns",
           qr/open\(\) "\/nonexistent\/secret" failed/, $base,
           'missing secret file');

# the rate limiter and its gate
fails_like("do_namespace api rate_limiter rate=0r/s;\n",
           qr/rate must be positive "rate=0r\/s"/, $base, 'rate=0');
fails_like("do_namespace api rate_limiter rate=10r/s burst=-1;\n",
           qr/invalid number "burst=-1"/, $base, 'burst=-1');
fails_like("do_namespace api rate_limiter rate=10r/h;\n",
           qr/invalid rate \(expected r\/s or r\/m\) "rate=10r\/h"/, $base,
           'a rate per hour');
fails_like("do_namespace api rate_limiter burst=5;\n",
           qr/rate= is required in do_namespace "api"/, $base, 'no rate');
fails_like("do_namespace api rate_limiter rate=1r/s burst=2 delay=3;\n",
           qr/delay= must not exceed burst=/, $base, 'delay over burst');
fails_like("${ok_ns}server { listen 127.0.0.1:%%PORT%%;\n"
           . "location / { do_limit nosuch key=\$uri; } }\n",
           qr/unknown do namespace "nosuch"/, $base + 2,
           'do_limit with an unknown namespace');
fails_like("${ok_ns}server { listen 127.0.0.1:%%PORT%%;\n"
           . "location / { do_limit state key=\$uri; } }\n",
           qr/do namespace "state" is of class "store", do_limit needs a rate_limiter/,
           $base + 2, 'do_limit on a namespace that is not a rate_limiter');
fails_like("do_namespace api rate_limiter rate=1r/s;\n"
           . "server { listen 127.0.0.1:%%PORT%%;\n"
           . "location / { do_limit api; } }\n",
           qr/do_limit "api" needs key=/, $base + 2, 'do_limit without key=');
fails_like("do_namespace api rate_limiter rate=1r/s;\n"
           . "server { listen 127.0.0.1:%%PORT%%;\n"
           . "location / { do_limit api key=\$uri status=200; } }\n",
           qr/invalid status "status=200"/, $base + 2, 'do_limit status=200');

fails_like("${ok_ns}server { listen 127.0.0.1:%%PORT%%;\n"
           . "location / { do_pass state name=\$uri member=\$arg_m; } }\n",
           qr/member= needs a class that takes WebSockets, "state" is of class "store"/,
           $base + 2, 'member= on a class without WebSockets');
fails_like("do_namespace rooms room;\nserver { listen 127.0.0.1:%%PORT%%;\n"
           . "location / { do_pass rooms name=\$uri who=\$arg_m; } }\n",
           qr/invalid parameter "who=\$arg_m", expected member=/, $base + 2,
           'do_pass with an unknown parameter');
fails_like("do_namespace rooms room history=20000;\n",
           qr/invalid number "history=20000"/, $base, 'room history over 10000');
fails_like("do_namespace rooms room speed=1;\n",
           qr/unknown room parameter "speed=1"/, $base, 'unknown room parameter');
fails_like("${ok_ns}server { listen 127.0.0.1:%%PORT%%;\n"
           . "location / { do_ws_message_rate fast; } }\n",
           qr/invalid do_ws_message_rate "fast"/, $base + 2,
           'do_ws_message_rate without a rate');
fails_like("${ok_ns}server { listen 127.0.0.1:%%PORT%%;\n"
           . "location / { do_ws_keepalive 10s 0; } }\n",
           qr/do_ws_keepalive.*invalid timeout/, $base + 2,
           'do_ws_keepalive with a zero timeout');

{
    my $t = DoTest->new(http => '');
    my $f = $t->prefix . '/short.secret';
    open my $fh, '>', $f or die;
    print $fh "short\n";
    close $fh;
    fails_like("do_secret $f;\n$ok_ns", qr/must hold at least 16 bytes/,
               $base, 'short secret');
}

{
    my $t = DoTest->new(http => '');
    my $f = $t->prefix . '/long.secret';
    open my $fh, '>', $f or die;
    print $fh 'k' x 4097;
    close $fh;
    fails_like("do_secret $f;\n$ok_ns", qr/is larger than 4096 bytes/,
               $base, 'a secret over 4 KiB is refused, not truncated');

    open $fh, '>', $f or die;
    print $fh 'k' x 4096;
    close $fh;
    my ($rc, $out) = nginx_t("do_secret $f;\n$ok_ns");
    is($rc, 0, 'a secret of exactly 4 KiB is accepted') or diag $out;
}

{
    my ($rc, $out) = nginx_t("${ok_ns}server { listen 127.0.0.1:%%PORT%%;\n"
                              . "location / { do_pass state name=\$uri; } }\n");
    is($rc, 0, 'a correct configuration passes nginx -t') or diag $out;
    like($out, qr/no do_secret is set/, 'a missing do_secret is warned about');
}

{
    my $t = DoTest->new(http => '');
    my $f = $t->prefix . '/do.secret';
    open my $fh, '>', $f or die;
    print $fh "a secret for nginx -t with redis\n";
    close $fh;
    my ($rc, $out) = nginx_t("do_storage redis://127.0.0.1:6379/0;\n"
                              . "do_secret $f;\n$ok_ns");
    is($rc, 0, 'redis storage with do_secret (after it) passes nginx -t')
        or diag $out;
    unlike($out, qr/do_secret/, '... without a warning');
}

# every example passes nginx -t
my @examples = glob(DoTest::root() . '/conf-examples/*.conf');
ok(@examples >= 1, 'conf-examples/ has examples');
for my $f (@examples) {
    open my $fh, '<', $f or die;
    local $/;
    my $raw = <$fh>;
    my $t = DoTest->new(raw => $raw);
    if ($raw =~ /do_secret do\.secret/) {
        open my $sf, '>', $t->prefix . '/conf/do.secret' or die;
        print $sf "a secret for nginx -t of the example\n";
        close $sf;
    }
    my $out = `@{[ DoTest::nginx_cmd() ]} -p @{[ $t->prefix ]} -c @{[ $t->prefix ]}/conf/nginx.conf -t 2>&1`;
    is($? >> 8, 0, "conf-examples/" . ($f =~ s{.*/}{}r) . " passes nginx -t")
        or diag $out;
}

# the quickstart answers
{
    open my $fh, '<', DoTest::root() . '/conf-examples/quickstart.conf' or die;
    local $/;
    my $t = DoTest->new(raw => <$fh>, workers => 2)->start;
    my $p = $t->port;

    my $r = http($p, 'PUT', '/objects/demo?key=greeting', body => 'hello');
    is($r->{status}, 200, 'quickstart: PUT stores a value');
    $r = http($p, 'GET', '/objects/demo?key=greeting');
    is($r->{body}, 'hello', 'quickstart: GET reads it back');
    $r = http($p, 'POST', '/objects/demo?key=hits&op=incr');
    like($r->{body}, qr/"value":1/, 'quickstart: incr counts');
    $r = http($p, 'PUT', '/sessions?key=user', body => 'ann');
    like($r->{headers}{'do-object-id'} // '', qr/^[0-9a-f]{64}$/,
         'quickstart: /sessions mints an ID');
    my $id = $r->{headers}{'do-object-id'};
    $r = http($p, 'GET', "/by-id?id=$id&key=user");
    is($r->{body}, 'ann', 'quickstart: the minted ID reaches its object');

    ok($t->stop, 'quickstart stops on QUIT');
    $t->check_logs('quickstart');
}

# the rate limiting example limits and proxies
{
    open my $fh, '<', DoTest::root() . '/conf-examples/rate-limit-origin.conf'
        or die;
    local $/;
    my $t = DoTest->new(raw => <$fh>, workers => 1)->start;
    my $p = $t->port;

    my @st = map { http($p, 'GET', '/login?user=bob')->{status} } 1 .. 8;
    is("@st", '200 200 200 200 200 200 429 429',
       'rate-limit-origin: /login lets burst+1 through per user');
    my $r = http($p, 'GET', '/');
    is($r->{body}, "hello from the origin\n", 'rate-limit-origin: / reaches the origin');
    like($r->{headers}{ratelimit} // '', qr/^"per_ip";r=\d+;t=\d+$/,
         'rate-limit-origin: with RateLimit headers');
    ok($t->stop, 'rate-limit-origin stops');
    open my $log, '<', $t->prefix . '/logs/access.log' or die;
    my @lines = split /\n/, scalar <$log>;
    is(scalar(grep { /limit=REJECTED / } @lines), 2,
       'rate-limit-origin: the access log shows $do_limit_status');
    $t->check_logs('rate-limit-origin');
}

# the lock example: a job under do_lock, and the lock API
{
    open my $fh, '<', DoTest::root() . '/conf-examples/locks.conf' or die;
    local $/;
    my $t = DoTest->new(raw => <$fh>, workers => 2)->start;
    my $p = $t->port;

    my $r = http($p, 'GET', '/jobs/nightly-report');
    like($r->{body}, qr{^ran /jobs/nightly-report with fence \d+$},
         'locks: a job runs holding the lock, the origin sees the fence');
    $r = http($p, 'POST', '/locks/deploy?ttl=60s');
    my ($token) = $r->{body} =~ /"token":"(\w+)"/;
    ok($token, 'locks: the API grants a lock');
    is(http($p, 'POST', '/locks/deploy')->{status}, 423,
       'locks: a second acquire is refused');
    is(http($p, 'DELETE', "/locks/deploy?token=$token")->{status}, 200,
       'locks: the holder releases it');
    ok($t->stop, 'locks stops');
    $t->check_logs('locks');
}

done_testing();

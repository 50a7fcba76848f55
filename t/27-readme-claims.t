# More claims of README.md that no other test covered, each test named
# after its claim: the quickstart lists keys and status as JSON; a forged
# or malformed id= is 400 before any storage work (Redis stopped: still
# 400, not 503); a new do_storage memory size= on reload is a new, empty
# zone; Redis pool= defaults to 1 connection per worker and 65 fails
# nginx -t; the defaults of do_call_timeout (10s) and do_flush_interval
# (written within seconds); do_limit runs before do_lock; a lock API wait=
# must end 500 ms before do_call_timeout; an API waiter whose client went
# away still gets the lock; lock waiters keep their object from eviction;
# with memory storage the fence keeps growing across a full stop (it is
# the wall clock).
#
# Not tested here: that the owner worker is shard % worker_processes (a
# test would have to re-implement the shard hash), and the 60s default of
# do_idle_timeout (it shows only after a minute of idling).

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP;
use IO::Select;
use IO::Socket::INET;
use Time::HiRes qw(time);
use DoTest qw(http nginx_t parallel wait_for);

my $J = JSON::PP->new->canonical;

sub json { my $b = shift->{body} // ''; my $j = eval { $J->decode($b) }; $j }

sub status_sum {
    my ($port, $field) = @_;
    my $j = json(http($port, 'GET', '/status')) or return -1;
    my $n = 0;
    $n += $_->{$field} for @{ $j->{workers} || [] };
    return $n;
}

sub write_secret {
    my ($t) = @_;
    open my $fh, '>', $t->prefix . '/do.secret' or die $!;
    print $fh "the secret of the claims test, long enough\n";
    close $fh;
    return $t;
}

# a request sent on a socket of its own, whose answer is read later (or
# never: the client goes away)
sub send_only {
    my ($port, $method, $uri) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port)
        or die "connect: $!";
    print {$s} "$method $uri HTTP/1.1\r\nHost: localhost\r\n"
        . "Connection: close\r\nContent-Length: 0\r\n\r\n";
    return $s;
}

sub read_answer {
    my ($s) = @_;
    local $/;
    my $sel = IO::Select->new($s);
    return '' unless $sel->can_read(30);
    my $buf = '';
    while ($sel->can_read(30)) {
        my $n = sysread($s, $buf, 65536, length $buf);
        last unless $n;
    }
    return $buf;
}

my $origin = DoTest::Origin->new;
my $op = $origin->port;

# ---------------------------------------------------------------------
# 1. the quickstart: listing an object's keys, and /do/status, are JSON
{
    open my $fh, '<', DoTest::root() . '/conf-examples/quickstart.conf'
        or die;
    local $/;
    my $q = DoTest->new(raw => <$fh>, workers => 2)->start;
    my $p = $q->port;

    is(http($p, 'PUT', '/objects/demo?key=greeting', body => 'hello')
       ->{status}, 200, 'quickstart: a PUT stores greeting');
    is(http($p, 'POST', '/objects/demo?key=hits&op=incr')->{status}, 200,
       'quickstart: incr stores hits');
    my $r = http($p, 'GET', '/objects/demo');
    is($r->{status}, 200, 'quickstart: GET of an object without key= is 200');
    my $l = json($r) || {};
    is(join(',', map { "$_->{key}=$_->{value}" } @{ $l->{items} || [] }),
       'greeting=hello,hits=1',
       'quickstart: listing an object\'s keys returns JSON items of its keys');
    ok(defined $l->{truncated} && !$l->{truncated}, '... not truncated');

    $r = http($p, 'GET', '/do/status');
    is($r->{status}, 200, 'quickstart: /do/status is 200');
    my $s = json($r) || {};
    is($s->{storage}{backend}, 'memory',
       'quickstart: /do/status returns JSON metrics (memory backend)');
    is($s->{storage}{size}, 16 * 1024 * 1024, '... with the zone size of '
       . 'size=16m');
    is(scalar @{ $s->{workers} || [] }, 2, '... and one record per worker');
    like($q->error_log . $q->stderr, qr/no do_secret is set/,
         'quickstart: runs without do_secret (and warns)');
    ok($q->stop, 'quickstart: nginx stops gracefully');
    $q->check_logs('quickstart');
}

# ---------------------------------------------------------------------
# The memory instance: do_limit before do_lock, the wait= rule with the
# default do_call_timeout, an API waiter that went away, the fence across a
# full stop, a new zone size on reload.
my $http_mem = sub {
    my ($size) = @_;
    return <<"EOF";
    do_secret %%PREFIX%%/do.secret;
    do_storage memory size=$size;
    do_namespace s     store;
    do_namespace locks lock;
    do_namespace once  rate_limiter rate=1r/m;

    server {
        listen 127.0.0.1:%%PORT%%;
        location = /status { do_status; }
        location ~ ^/s/(?<o>[\\w-]+)\$     { do_pass s name=\$o; }
        location ~ ^/locks/(?<o>[\\w-]+)\$ { do_pass locks name=\$o; }
        # do_lock written first: the order is the phase's, not the text's
        location /job {
            do_lock locks key=\$arg_k wait=5s;
            do_limit once key=\$arg_k;
            proxy_set_header X-Fencing-Token \$do_lock_fence;
            proxy_pass http://127.0.0.1:$op;
        }
    }
EOF
};

my $t = write_secret(DoTest->new(workers => 2, http => $http_mem->('4m')));
$t->start;
my $p = $t->port;

# --- 6. do_limit runs before do_lock: a rejected request takes no lock
{
    my $r = http($p, 'GET', '/job?k=a');
    is($r->{status}, 200, 'do_limit + do_lock: the first request passes');
    my ($f1) = ($r->{body} // '') =~ /^fence (\d+)$/;
    ok($f1, '... holding the lock (the origin saw a fence)');
    # the release is sent when the request ends, after its answer left
    my $g = {};
    wait_for(sub { $g = json(http($p, 'GET', '/locks/a')) || {};
                   !$g->{held} }, 10);
    is("$g->{fence} " . ($g->{held} ? 1 : 0), ($f1 // 'none') . ' 0',
       '... and released it');

    $r = http($p, 'GET', '/job?k=a');
    is($r->{status}, 429, 'the second request is rejected by do_limit (429)');
    $g = json(http($p, 'GET', '/locks/a')) || {};
    is($g->{fence}, $f1, 'do_limit runs before do_lock: the rejected request '
       . 'never took the lock (the fence did not move)');
    ok(!$g->{held} && $g->{waiters} == 0, '... the lock is free, no waiters');
    is(scalar(grep { $_->[3] =~ /k=a\b/ } $origin->requests), 1,
       '... and the origin saw only the first request');

    # the limit of key c spent, then the lock held through the API: a
    # request for c is rejected at once (429), not queued for the lock
    # (which would end in 423 after wait=5s)
    is(http($p, 'GET', '/job?k=c')->{status}, 200, 'key c: one request passes');
    ok(wait_for(sub { !(json(http($p, 'GET', '/locks/c')) || {})->{held} },
                10), '... and its lock is released once it ended');
    is(http($p, 'POST', '/locks/c?token=h&ttl=60s')->{status}, 200,
       'lock c is taken through the API');
    my $parked = status_sum($p, 'parked');
    $r = http($p, 'GET', '/job?k=c');
    is($r->{status}, 429, 'a request whose limit is spent gets 429 while '
       . 'the lock is held, not 423: do_limit decided first');
    is(status_sum($p, 'parked'), $parked, '... and it never waited for the '
       . 'lock (no call parked)');
    is((json(http($p, 'GET', '/locks/c')) || {})->{waiters}, 0,
       '... the lock has no waiters');
    is(http($p, 'DELETE', '/locks/c?token=h')->{status}, 200,
       'the API holder releases lock c');
}

# --- 7. + 5. a lock API wait= must end 500 ms before do_call_timeout,
# whose default is 10s
{
    my $r = http($p, 'POST', '/locks/w7?wait=9500ms');
    is($r->{status}, 200, 'with the default do_call_timeout, wait=9500ms is '
       . 'accepted (a free lock is granted)');
    my $tok = (json($r) || {})->{token} // '';
    $r = http($p, 'POST', '/locks/w7b?wait=9600ms');
    is($r->{status}, 400, 'a lock API wait must end 500 ms before '
       . 'do_call_timeout: with the default (10s), wait=9600ms is 400');
    like($r->{body}, qr/wait= must end 500ms before do_call_timeout/,
         '... saying so');
    is((json(http($p, 'GET', '/locks/w7b')) || {})->{held}, JSON::PP::false,
       '... and nothing was granted');
    $r = http($p, 'POST', '/locks/w7?wait=9600ms');
    is($r->{status}, 400, 'wait=9600ms is 400 on a held lock too, at once');
    is(http($p, 'DELETE', "/locks/w7?token=$tok")->{status}, 200,
       'the holder releases');
}

# --- 8. an API waiter whose client went away still gets the lock
{
    my $h = http($p, 'POST', '/locks/gone?token=holder&ttl=60s');
    is($h->{status}, 200, 'the lock is held');
    my $hf = (json($h) || {})->{fence} // 0;
    my $s = send_only($p, 'POST', '/locks/gone?token=waiter&wait=8s&ttl=60s');
    ok(wait_for(sub {
           ((json(http($p, 'GET', '/locks/gone')) || {})->{waiters} // 0) == 1
       }, 10), 'a lock API waiter (do_pass) is queued');
    close $s;
    is(http($p, 'DELETE', '/locks/gone?token=holder')->{status}, 200,
       'its client went away; then the holder releases');
    my $g = json(http($p, 'GET', '/locks/gone')) || {};
    ok($g->{held}, 'an API waiter whose client went away before the grant '
       . 'still receives the lock: GET shows it held');
    is($g->{waiters}, 0, '... with no waiter left');
    my $r = http($p, 'POST', '/locks/gone?token=waiter');
    is($r->{status}, 200, '... by the waiter\'s token (acquiring again with '
       . 'it returns the grant)');
    cmp_ok((json($r) || {})->{fence} // 0, '>', $hf,
           '... with a fence above the first holder\'s');
    is(http($p, 'POST', '/locks/gone?token=other')->{status}, 423,
       '... and another token is refused');
    is(http($p, 'DELETE', '/locks/gone?token=waiter')->{status}, 200,
       'the waiter\'s token releases it');
}

# --- 10. memory storage: the fence keeps growing after a full stop
{
    my $t0 = time;
    my $r = http($p, 'POST', '/locks/clock?ttl=1s');
    is($r->{status}, 200, 'a lock is granted');
    my $f1 = (json($r) || {})->{fence} // 0;
    cmp_ok($f1, '>=', int($t0 * 1000) * 1000, '... its fence is at least the '
       . 'wall clock in microseconds at the grant');

    ok($t->stop, 'a full stop of nginx');
    $t->start;
    is((json(http($p, 'GET', '/locks/clock')) || {})->{fence}, 0,
       'after the start the memory zone is new: the lock has no fence stored');
    $t0 = time;
    $r = http($p, 'POST', '/locks/clock?ttl=1s');
    my $t1 = time;
    is($r->{status}, 200, 'the lock is granted again');
    my $f2 = (json($r) || {})->{fence} // 0;
    cmp_ok($f2, '>', $f1, 'with memory storage, the fence keeps growing '
       . 'after a full stop of nginx');
    cmp_ok($f2, '>=', int($t0 * 1000) * 1000, '... it is at least the wall '
       . 'clock in microseconds at the grant');
    cmp_ok($f2, '<=', (int($t1 * 1000) + 1000) * 1000,
           '... and not far above it (under a second): it is the clock');
}

# --- 3. a new memory size= on reload: a new, empty zone
{
    is(http($p, 'PUT', '/s/zone?key=k', body => 'before')->{status}, 200,
       'a key is written');
    my $size = (json(http($p, 'GET', '/status')) || {})->{storage}{size};
    is($size, 4 * 1024 * 1024, 'the zone is 4m');

    $t->reload;
    is(http($p, 'GET', '/s/zone?key=k')->{body}, 'before',
       'a reload with the same size keeps the zone: the key reads back');

    $t->write_conf(http => $http_mem->('5m'));
    $t->reload;
    # the old workers (which still see the old zone) are gone first
    ok(wait_for(sub { my @w = $t->workers; @w == 2 }, 15),
       'the workers of the old zone have exited');
    ok(wait_for(sub {
           ((json(http($p, 'GET', '/status')) || {})->{storage}{size} // 0)
               == 5 * 1024 * 1024
       }, 10), 'after a reload with size=5m the zone is 5m');
    my $r = http($p, 'GET', '/s/zone?key=k');
    is($r->{status}, 404, 'changing do_storage memory size= on reload '
       . 'creates a new, empty zone: the key written before reads 404');
    is(http($p, 'PUT', '/s/zone?key=k', body => 'after')->{status}, 200,
       '... and the new zone takes writes');
    is(http($p, 'GET', '/s/zone?key=k')->{body}, 'after', '... and reads');
}

ok($t->stop, 'nginx stops gracefully');
$t->check_logs('memory');

# ---------------------------------------------------------------------
# --- 9. + 5. lock waiters keep their object from eviction; the wait= rule
# follows a do_call_timeout that is set
{
    my $e = write_secret(DoTest->new(workers => 1, http => <<'EOF'));
    do_secret %%PREFIX%%/do.secret;
    do_storage memory;
    do_idle_timeout 1s;
    do_call_timeout 9s;
    do_namespace s     store;
    do_namespace locks lock;
    server {
        listen 127.0.0.1:%%PORT%%;
        location = /status { do_status; }
        location ~ ^/s/(?<o>[\w-]+)$     { do_pass s name=$o; }
        location ~ ^/locks/(?<o>[\w-]+)$ { do_pass locks name=$o; }
    }
EOF
    $e->start;
    my $ep = $e->port;

    is(http($ep, 'POST', '/locks/rule?wait=8500ms')->{status}, 200,
       'do_call_timeout 9s: wait=8500ms is accepted');
    is(http($ep, 'POST', '/locks/rule2?wait=8600ms')->{status}, 400,
       'do_call_timeout 9s: wait=8600ms is 400 (the rule follows '
       . 'do_call_timeout)');

    ok(wait_for(sub { status_sum($ep, 'objects') == 0 }, 10),
       'the objects so far are evicted (do_idle_timeout 1s)');

    my $h = http($ep, 'POST', '/locks/ev?token=h&ttl=60s');
    is($h->{status}, 200, 'the lock is held');
    my $act = $h->{headers}{'do-activation'} // '';
    like($act, qr/^\d+\.\d+$/, '... by an object with a DO-Activation');
    my $parked = status_sum($ep, 'parked');
    my $s = send_only($ep, 'POST', '/locks/ev?token=w&wait=8s');
    ok(wait_for(sub { status_sum($ep, 'parked') > $parked }, 10),
       'a waiter is queued (wait=8s)');

    # a clock: an object touched after the waiter came, evicted after
    # do_idle_timeout (1s) of idling; the lock object idles longer than it
    my $ev = status_sum($ep, 'evictions');
    is(http($ep, 'PUT', '/s/clock?key=k', body => 'x')->{status}, 200,
       'another object is touched after the waiter came');
    ok(wait_for(sub { status_sum($ep, 'evictions') > $ev
                      && status_sum($ep, 'objects') == 1 }, 10),
       '... and one object is evicted after do_idle_timeout, one stays');

    my $d = http($ep, 'DELETE', '/locks/ev?token=h');
    is($d->{status}, 200, 'the holder releases');
    is($d->{headers}{'do-activation'}, $act, 'lock waiters keep their object '
       . 'from eviction: the lock object idled past do_idle_timeout and is '
       . 'the same activation');
    my $a = read_answer($s);
    like($a, qr{^HTTP/1\.1 200 }, '... and the waiter gets 200');
    like($a, qr/"token":"w"/, '... with the grant');

    is(http($ep, 'DELETE', '/locks/ev?token=w')->{status}, 200,
       'the waiter releases');
    ok(wait_for(sub { status_sum($ep, 'objects') == 0 }, 10),
       'without waiters, lock objects are evicted too');

    ok($e->stop, 'nginx stops gracefully');
    $e->check_logs('eviction');
}

# ---------------------------------------------------------------------
# Redis: pool= defaults to 1 connection per worker; rate limiter state is
# stored within seconds with the default do_flush_interval
my $redis = DoTest::Redis->new->start;
my $rport = $redis->port;

{
    my $r = write_secret(DoTest->new(workers => 1, http => <<"EOF"));
    do_secret %%PREFIX%%/do.secret;
    do_storage redis://127.0.0.1:$rport/0;
    do_namespace s  store;
    do_namespace rl rate_limiter rate=1r/m;
    server {
        listen 127.0.0.1:%%PORT%%;
        location = /status { do_status; }
        location ~ ^/s/(?<o>[\\w-]+)\$ { do_pass s name=\$o; }
        location /limited { do_limit rl key=\$arg_k;
                            proxy_pass http://127.0.0.1:$op; }
    }
EOF
    $r->start;
    my $rp = $r->port;

    my $conns = sub {
        scalar grep { /cmd=/ && !/cmd=client/ }
               split /\n/, $redis->cli('CLIENT', 'LIST');
    };
    ok(wait_for(sub { $conns->() >= 1 }, 10), 'the worker connects to Redis');
    my @st = parallel(8, sub {
        map { http($rp, 'PUT', "/s/o$_[0]-$_?key=k", body => 'v')->{status} }
            1 .. 5
    });
    is(scalar(grep { $_ eq '200' } @st), 40, '40 writes from 8 clients');
    is($conns->(), 1, 'the Redis pool defaults to 1 connection per worker '
       . '(CLIENT LIST, 1 worker, after concurrent writes)');
    is((json(http($rp, 'GET', '/status')) || {})->{storage}{connected}, 1,
       '... and do_status counts 1 connection ready');

    my $ev = status_sum($rp, 'evictions');
    is(http($rp, 'GET', '/limited?k=flush')->{status}, 200,
       'a rate limiter key passes a request');
    ok(wait_for(sub { $redis->cli('KEYS', 'do:{rl:*') =~ /\S/ }, 10),
       'with the default do_flush_interval, the rate limiter state is '
       . 'stored in Redis within seconds (not at its eviction)');
    is(status_sum($rp, 'evictions'), $ev, '... while the key was not evicted');
    is(http($rp, 'GET', '/limited?k=flush')->{status}, 429,
       '... and still limits');

    ok($r->stop, 'nginx stops gracefully');
    $r->check_logs('redis pool');
}

# pool=64 passes nginx -t, pool=65 fails it
{
    my $sec = DoTest->new(http => '');
    write_secret($sec);
    my $f = $sec->prefix . '/do.secret';
    my ($rc, $out) = nginx_t("do_secret $f;\n"
        . "do_storage redis://127.0.0.1:$rport/0 pool=64;\n"
        . "do_namespace s store;\n");
    is($rc, 0, 'pool=64 (the maximum) passes nginx -t') or diag $out;
    ($rc, $out) = nginx_t("do_secret $f;\n"
        . "do_storage redis://127.0.0.1:$rport/0 pool=65;\n"
        . "do_namespace s store;\n");
    isnt($rc, 0, 'pool=65 fails nginx -t');
    like($out, qr/invalid pool "pool=65", expected 1\.\.64/, '... saying so');
}

# --- 2. a forged or malformed id= is 400 before any storage work: with
# Redis stopped, still 400 (not 503)
{
    my $r = write_secret(DoTest->new(workers => 2, http => <<"EOF"));
    do_secret %%PREFIX%%/do.secret;
    do_storage redis://127.0.0.1:$rport/0 timeout=1s;
    do_namespace state store;
    do_namespace other store;
    server {
        listen 127.0.0.1:%%PORT%%;
        location = /sessions { do_pass state unique; }
        location = /by-id    { do_pass state id=\$arg_id; }
        location = /other    { do_pass other name=\$arg_n; }
    }
EOF
    $r->start;
    my $rp = $r->port;

    my $w = http($rp, 'PUT', '/sessions?key=user', body => 'ann');
    is($w->{status}, 200, 'an object is minted on Redis');
    my $id = $w->{headers}{'do-object-id'} // '';
    like($id, qr/^[0-9a-f]{64}$/, '... with an ID');
    my $forged = substr($id, 0, 63)
                 . (substr($id, 63) eq '0' ? '1' : '0');
    my $foreign = http($rp, 'GET', '/other?n=x&key=k')
                  ->{headers}{'do-object-id'} // '';
    like($foreign, qr/^[0-9a-f]{64}$/, 'an ID of another namespace');
    is(http($rp, 'GET', "/by-id?id=$forged&key=user")->{status}, 400,
       'with Redis up, a forged ID is 400');

    $redis->stop;
    ok(wait_for(sub {
           http($rp, 'GET', "/by-id?id=$id&key=user")->{status} == 503
       }, 10), 'Redis is stopped: a call with a valid ID gets 503');

    my %bad = ('a forged id=' => $forged, 'a malformed id=' => 'xyz',
               'an upper-case id=' => uc $id,
               'an id= of another namespace' => $foreign);
    for my $what (sort keys %bad) {
        my $b = http($rp, 'GET', "/by-id?id=$bad{$what}&key=user");
        is($b->{status}, 400, "$what is 400 before any storage work: "
           . 'with Redis stopped it is still 400, not 503');
        ok(!exists $b->{headers}{'do-object-id'},
           "... and carries no DO-Object-Id");
    }

    ok($r->stop, 'nginx stops gracefully');
    $r->check_logs('redis stopped', expect => [
        qr/do: redis \S+: (connection lost|connect failed|is unavailable|command not sent|did not answer in time)/,
        qr/do: a commit of \d+ calls of namespace "\w+" failed/,
    ]);
}

done_testing;

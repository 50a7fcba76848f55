# Quotas and caps: a namespace's max_bytes= (keys and values) and
# max_objects= (objects with state) are exact across workers and reloads,
# refuse a commit whole with 507, always let deletes through and give
# their bytes back; a store at its quota does not touch the locks and
# limiters of the same nginx; a full storage zone leaves them a clear
# status and intact state; do_max_objects caps the objects a worker holds
# (the least recently called idle ones go, their state stays); a read of
# a key over max_key is refused and reads nothing.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP;
use POSIX ();
use DoTest qw(http nginx_t parallel wait_for);

my $REDIS = DoTest::redis_backend();
my $J = JSON::PP->new;

sub j { my $d = eval { $J->decode($_[0]{body} // '') }; return $d // {} }

sub slurp { open my $fh, '<', $_[0] or return ''; local $/; return <$fh> }

# the origin behind the gates answers with the fence it was given
my $gates = <<'EOF';
    server {
        listen 127.0.0.1:%%PORT2%%;
        location / { return 200 "fence $http_x_fencing_token\n"; }
    }
EOF

my $conf = <<'EOF';
    %%STORAGE%%
    do_namespace files store max_key=64 max_bytes=%%MAXB%%;
    do_namespace few   store max_objects=3;
    do_namespace race  store max_objects=50;
    do_namespace api   rate_limiter rate=1r/m burst=9;
    do_namespace locks lock ttl=10s;
    do_namespace legacy store;
    server {
        listen 127.0.0.1:%%PORT%%;
        location ~ ^/legacy/(?<o>[\w-]+)$ { do_pass legacy name=$o; }
        location ~ ^/files/(?<o>[\w-]+)$ { do_pass files name=$o; }
        location ~ ^/few/(?<o>[\w-]+)$   { do_pass few name=$o; }
        location ~ ^/race/(?<o>[\w-]+)$  { do_pass race name=$o; }
        location /limited {
            do_limit api key=$arg_k;
            proxy_pass http://127.0.0.1:%%PORT2%%;
        }
        location /critical {
            do_lock locks key=$arg_k wait=5s;
            proxy_set_header X-Fencing-Token $do_lock_fence;
            proxy_pass http://127.0.0.1:%%PORT2%%;
        }
        location = /status { do_status; }
    }
EOF
$conf .= $gates;

my $t = DoTest->new(workers => 4,
                    main => 'error_log %%PREFIX%%/logs/debug.log debug;',
                    http => $conf =~ s/%%MAXB%%/100/r)->start;
my $p = $t->port;

sub put {
    my ($ns, $o, $k, $v) = @_;
    return http($p, 'PUT', "/$ns/$o?key=$k", body => $v);
}

sub total {
    my ($field) = @_;
    my $s = $J->decode(http($p, 'GET', '/status')->{body});
    my $n = 0;
    $n += $_->{$field} for @{ $s->{workers} };
    return $n;
}

my $x48 = 'x' x 48;

# 1. max_bytes counts keys and values exactly, across objects (and so
# across workers)
is(put('files', 'a', 'k1', $x48)->{status}, 200,
   'a first value fits (50 bytes)');
is(put('files', 'b', 'k2', $x48)->{status}, 200,
   'a second object fills the quota to exactly max_bytes=100');
my $r = put('files', 'c', 'k3', '');
is($r->{status}, 507, 'one byte more (a key, an empty value) is refused: 507');
is(j($r)->{error}, 'namespace quota max_bytes exceeded',
   '... with a JSON error that names the quota');
is(http($p, 'GET', '/files/c?key=k3')->{status}, 404,
   '... and nothing was stored');
is(put('files', 'a', 'k1', $x48 . 'y')->{status}, 507,
   'a value that grows by one byte is refused');
is(http($p, 'GET', '/files/a?key=k1')->{body}, $x48,
   '... and the old one stays');
is(put('files', 'a', 'k1', 'z' x 48)->{status}, 200,
   'a value of the same size is written at the quota');
is(put('files', 'a', 'k1', 'x' x 40)->{status}, 200,
   'a smaller value is written');
is(put('files', 'c', 'k3', 'x' x 6)->{status}, 200,
   '... and the 8 bytes it gave back fit a new key exactly');
is(put('files', 'c', 'k4', '')->{status}, 507, '... and not one byte more');

$r = http($p, 'POST', '/files/a',
          body => '{"put": {"n1": "1", "n2": "22"}, "delete": ["k1"]}');
is($r->{status}, 200, 'a batch that deletes more than it adds passes');
$r = http($p, 'POST', '/files/a',
          body => '{"put": {"n3": "' . ('q' x 40) . '"}}');
is($r->{status}, 507, 'a batch over the quota is refused');
is(http($p, 'GET', '/files/a?key=n3')->{status}, 404, '... whole');

# in use now: a (n1, n2) 7 bytes, b 50, c 8
is(http($p, 'DELETE', '/files/b?key=k2')->{status}, 200,
   'a delete is allowed');
is(put('files', 'd', 'k5', 'x' x 83)->{status}, 200,
   '... and gives its 50 bytes back: 85 more fit');
is(put('files', 'd', 'k6', '')->{status}, 507, '... exactly');
is(http($p, 'DELETE', '/files/d?all=1')->{status}, 200,
   'deleting an object whole is allowed');
is(put('files', 'e', 'k7', 'x' x 83)->{status}, 200,
   '... and gives all of it back');

# calls that commit together (Redis groups the calls queued behind a
# commit): a refused write fails its own call only
my @mixed = parallel(8, sub {
    my ($i) = @_;
    return map {
        $i % 2 ? 'put ' . put('files', 'a', 'big', 'x' x 200)->{status}
               : 'get ' . http($p, 'GET', '/files/a?key=n1')->{status}
    } 1 .. 40;
});
is(scalar(grep { $_ eq 'get 200' } @mixed), 160,
   'reads beside writes over the quota all succeed');
is(scalar(grep { $_ eq 'put 507' } @mixed), 160, '... and the writes all fail');

like($t->error_log,
     qr/\[warn\] .*do: namespace "files": quota max_bytes exceeded, a commit/,
     'the refusal is logged, naming the namespace and the quota');
is(total('quota_exceeded'), 165, 'do_status counts the refusals');

# 2. max_objects counts objects with state
is(put('few', "o$_", 'k', 'v')->{status}, 200, "object $_ of max_objects=3")
    for 1 .. 3;
$r = put('few', 'o4', 'k', 'v');
is($r->{status}, 507, 'a fourth object is refused');
is(j($r)->{error}, 'namespace quota max_objects exceeded',
   '... naming the quota');
is(put('few', 'o1', 'k2', 'v')->{status}, 200,
   'an object that has state takes more keys');
is(http($p, 'DELETE', '/few/o2?key=k')->{status}, 200,
   'the last key of an object is deleted');
is(put('few', 'o4', 'k', 'v')->{status}, 200,
   '... and a new object takes its place');
is(put('few', 'o5', 'k', 'v')->{status}, 507, '... and no other');

# 3. exact under contention: 200 new objects from 8 clients on 4 workers
my @st = parallel(8, sub {
    my ($i) = @_;
    return map { put('race', "r$i-$_", 'k', 'v')->{status} } 1 .. 25;
});
is(scalar(@st), 200, '200 writes to 200 new objects answered');
is(scalar(grep { $_ == 200 } @st), 50, 'exactly max_objects=50 of them stored');
is(scalar(grep { $_ == 507 } @st), 150, 'the others refused with 507');

# 4. a store at its quota leaves the limiters and locks of the same nginx
# alone
is(put('files', 'f', 'k8', 'x' x 48)->{status}, 507,
   'the store is at its quota');
@st = parallel(10, sub {
    return map { http($p, 'GET', "/limited?k=one")->{status} } 1 .. 2;
});
is(scalar(grep { $_ == 200 } @st), 10, 'do_limit lets exactly its burst pass');
is(scalar(grep { $_ == 429 } @st), 10, '... and rejects the rest');
my @fences;
for (1 .. 5) {
    $r = http($p, 'GET', '/critical?k=one');
    push @fences, $r->{body} =~ /^fence (\d+)/ ? $1 : 0;
}
is(scalar(grep { $_ } @fences), 5, 'do_lock grants every request a fence');
ok((!grep { $fences[$_] <= $fences[$_ - 1] } 1 .. $#fences),
   '... increasing: ' . join(' ', @fences));

# 5. a read of a key over max_key reads nothing, caches nothing
my $long = 'L' x 65;
$r = http($p, 'GET', "/files/a?key=$long");
is($r->{status}, 414, 'a GET of a key over max_key=64 is refused: 414');
is(j($r)->{error}, 'key is longer than max_key', '... with a JSON error');
is(http($p, 'HEAD', "/files/a?key=$long")->{status}, 414, '... and a HEAD');
is(http($p, 'GET', '/files/a?key=' . ('L' x 64))->{status}, 404,
   'a key of max_key bytes is read as any other');
$r = http($p, 'POST', '/files/a', body => qq({"get": ["$long", "n1"]}));
is_deeply(j($r)->{get}, { $long => undef, n1 => '1' },
          'a batch reads such a key as absent');
SKIP: {
    skip 'nginx without --with-debug writes no debug lines', 1
        unless DoTest::nginx_debug();
    like(slurp($t->prefix . '/logs/debug.log'),
         qr/do get: a key of 65 bytes is over max_key/,
         '... without asking storage or the cache');
}

# 6. the counts survive a reload, and a lower quota still lets deletes
# through
$t->write_conf(http => $conf =~ s/%%MAXB%%/60/r);
my %old = map { $_ => 1 } $t->workers;
$t->reload;
ok(wait_for(sub { !grep { $old{$_} } $t->workers }),
   'a reload to max_bytes=60 replaced every worker');
is(put('files', 'g', 'k9', '')->{status}, 507,
   'after a reload to max_bytes=60 the store (at 100 bytes) is over it');
is(http($p, 'DELETE', '/files/e?key=k7')->{status}, 200, '... deletes pass');
is(put('files', 'g', 'k9', 'x' x 43)->{status}, 200,
   '... and the count they leave (15) is exact: 45 bytes fit');
is(put('files', 'g', 'k0', '')->{status}, 507, '... to the byte');

# 7. Redis: an object written before counts existed (no :b key) is
# counted whole at its next commit, and the counts are where the README
# says
if ($REDIS) {
    my $id = http($p, 'GET', '/legacy/old?key=a')->{headers}{'do-object-id'};
    like($id, qr/^[0-9a-f]{64}$/, 'an object of a namespace without a quota');
    my $obj = "do:{legacy:$id}";
    $t->redis->cli('HSET', "$obj:kv", 'a', '3:aaaa', 'b', '3:bb');
    $t->redis->cli('SET', "$obj:v", '3');
    is(put('legacy', 'old', 'c', 'ccc')->{status}, 200,
       'it is written after its state was stored without a count');
    is($t->redis->cli('HGET', 'do:quota:legacy', 'bytes'), "12\n",
       '... and counted whole: its 8 bytes and the 4 new ones');
    is($t->redis->cli('HGET', 'do:quota:legacy', 'objects'), "1\n",
       '... as one object');
    is($t->redis->cli('GET', "$obj:b"), "12\n", '... which keeps its count');
    is(http($p, 'DELETE', '/legacy/old?all=1')->{status}, 200, 'it is emptied');
    is($t->redis->cli('HGET', 'do:quota:legacy', 'bytes'), "0\n",
       '... and its bytes are given back');
    is($t->redis->cli('EXISTS', "$obj:b"), "0\n", '... with its count');
}

$t->stop;
$t->check_logs('quotas', expect => []);

# 8. do_max_objects: a worker holds at most that many objects; the least
# recently called idle ones go, and come back with their state
my $c = DoTest->new(workers => 2, http => <<'EOF' . $gates)->start;
    %%STORAGE%%
    do_max_objects 100;
    do_call_timeout 150s;
    do_namespace kv    store;
    do_namespace api   rate_limiter rate=1r/m burst=9;
    do_namespace locks lock ttl=600s;
    server {
        listen 127.0.0.1:%%PORT%%;
        location ~ ^/kv/(?<o>[\w-]+)$ { do_pass kv name=$o; }
        location ~ ^/lock/(?<o>[\w-]+)$ { do_pass locks name=$o; }
        location /limited {
            do_limit api key=$arg_k;
            proxy_pass http://127.0.0.1:%%PORT2%%;
        }
        location = /status { do_status; }
    }
EOF
my $cp = $c->port;

sub most {
    my $s = $J->decode(http($cp, 'GET', '/status')->{body});
    my ($max, $ev) = (0, 0);
    for my $w (@{ $s->{workers} }) {
        $max = $w->{objects} if $w->{objects} > $max;
        $ev += $w->{cap_evictions};
    }
    return ($max, $ev);
}

# a lock with a parked waiter is not idle: it must stay through it all
# (its lease and the wait long enough for 3000 requests under ASan)
my $grant = j(http($cp, 'POST', '/lock/held'));
ok($grant->{token}, 'a lock is held');
my $waiter = fork() // die;
if ($waiter == 0) {
    my $w = http($cp, 'POST', '/lock/held?wait=140s', timeout => 160);
    POSIX::_exit($w->{status} == 200 ? 0 : 1);
}
ok(wait_for(sub { j(http($cp, 'GET', '/lock/held'))->{waiters} == 1 }),
   '... and a waiter is parked on it');

is(http($cp, 'GET', "/limited?k=kept")->{status}, 200,
   "a limiter key takes one") for 1 .. 5;

my ($over, $bad) = (0, 0);
for my $i (1 .. 1000) {
    $bad++ if http($cp, 'PUT', "/kv/o$i?key=k", body => "v$i")->{status} != 200;
    my ($max) = most();
    $over = $max if $max > $over;
}
is($bad, 0, '1000 objects written');
cmp_ok($over, '<=', 100, "no worker ever held more than 100 objects ($over)");
my ($max, $ev) = most();
cmp_ok($ev, '>=', 800, "do_status counts the evictions for the cap ($ev)");

my $lost = 0;
for my $i (1 .. 1000) {
    $lost++ if (http($cp, 'GET', "/kv/o$i?key=k")->{body} // '') ne "v$i";
}
is($lost, 0, 'every evicted object comes back with its state');

my @lim = map { http($cp, 'GET', "/limited?k=kept")->{status} } 1 .. 8;
is(scalar(grep { $_ == 200 } @lim), 5,
   'the limiter key kept its count (5 more of 10)');

is(j(http($cp, 'GET', '/lock/held'))->{waiters}, 1,
   'the waiter is still parked');
is(http($cp, 'DELETE', "/lock/held?token=$grant->{token}")->{status}, 200,
   'the lock is released');
waitpid($waiter, 0);
is($?, 0, '... and its parked waiter, never evicted, gets it');

$c->stop;
$c->check_logs('do_max_objects');

# 9. a full storage zone (memory): locks and limiters answer clearly and
# keep their state; the quota of a store keeps it from getting there
SKIP: {
    skip 'the storage zone is the memory backend', 1 if $REDIS;

    my $z = DoTest->new(workers => 2, storage => 'memory size=256k',
                        http => <<'EOF' . $gates)->start;
    %%STORAGE%%
    do_namespace capped store max_bytes=64k;
    do_namespace open   store;
    do_namespace api    rate_limiter rate=1r/m burst=9;
    do_namespace locks  lock ttl=10s;
    server {
        listen 127.0.0.1:%%PORT%%;
        location ~ ^/capped/(?<o>[\w-]+)$ { do_pass capped name=$o; }
        location ~ ^/open/(?<o>[\w-]+)$   { do_pass open name=$o; }
        location /limited {
            do_limit api key=$arg_k;
            proxy_pass http://127.0.0.1:%%PORT2%%;
        }
        location /critical {
            do_lock locks key=$arg_k wait=2s;
            proxy_set_header X-Fencing-Token $do_lock_fence;
            proxy_pass http://127.0.0.1:%%PORT2%%;
        }
    }
EOF
    my $zp = $z->port;
    my $v = 'x' x 1000;

    sub fill {
        my ($port, $ns) = @_;
        for my $i (1 .. 1000) {
            my $s = http($port, 'PUT', "/$ns/o" . ($i % 50) . "?key=k$i",
                         body => $v)->{status};
            return $s if $s != 200;
        }
        return 200;
    }

    sub fence {
        my ($port) = @_;
        my $r = http($port, 'GET', '/critical?k=z');
        return $r->{status} == 200 && $r->{body} =~ /^fence (\d+)/
               ? $1 : -$r->{status};
    }

    my $f1 = fence($zp);
    cmp_ok($f1, '>', 0, 'a lock is granted');
    is(fill($zp, 'capped'), 507,
       'a store with max_bytes=64k in a 256k zone stops at its quota');
    like(http($zp, 'PUT', '/capped/x?key=y', body => $v)->{body}, qr/max_bytes/,
         '... which is what it says');
    my $f2 = fence($zp);
    cmp_ok($f2, '>', $f1,
           '... and a lock is granted beside it, fence increasing');

    is(fill($zp, 'open'), 507, 'a store without a quota fills the zone');
    like(http($zp, 'PUT', '/open/x?key=y', body => $v)->{body},
         qr/storage is full/, '... which is what it says');
    is(http($zp, 'GET', '/limited?k=full')->{status}, 200,
       'do_limit decides on a full zone') for 1 .. 4;
    my $f3 = fence($zp);
    ok($f3 == -503 || $f3 > $f2,
       "do_lock answers a clear 503 or grants with a higher fence ($f3)");

    is(http($zp, 'DELETE', "/open/o$_?all=1")->{status}, 200,
       "object $_ is emptied") for 0 .. 49;
    my $f4 = fence($zp);
    cmp_ok($f4, '>', $f2,
           'with room again a lock is granted with a higher fence');
    my @l = map { http($zp, 'GET', '/limited?k=full')->{status} } 1 .. 8;
    is(scalar(grep { $_ == 200 } @l), 6,
       'the limiter key kept its count through the full zone (6 more of 10)');

    $z->stop;
    $z->check_logs('full zone',
                   expect => [qr/storage is full|a commit .* failed|flush/]);
}

# 10. configuration
SKIP: {
    skip 'the storage size is the memory backend\'s', 4 if $REDIS;

    my ($rc, $out, $file) = nginx_t(<<'EOF', storage => 'memory size=1m');
    %%STORAGE%%
    do_namespace big store max_bytes=2m;
EOF
    isnt($rc, 0, 'max_bytes= over the zone size fails nginx -t');
    like($out, qr/max_bytes=2097152\ of\ do\ namespace\ "big"\ exceeds
                  \ the\ storage\ size\ 1048576\ in\ \Q$file\E:\d+/x,
         '... naming the namespace, the sizes, the file and the line');

    ($rc, $out) = nginx_t(<<'EOF', storage => 'memory size=1m');
    %%STORAGE%%
    do_namespace a store max_bytes=600k;
    do_namespace b store max_bytes=600k;
EOF
    is($rc, 0, 'quotas that add up to more than the zone pass nginx -t');
    like($out, qr/\[warn\] .*max_bytes=\ add\ up\ to\ 1228800,\ more\ than
                  \ the\ storage\ size\ 1048576/x,
         '... with a warning');
}

my ($rc, $out, $file) = nginx_t(<<'EOF');
    %%STORAGE%%
    do_namespace api rate_limiter rate=1r/s max_objects=10;
EOF
isnt($rc, 0, 'a quota on a deferred class fails nginx -t');
like($out, qr/"max_objects=10"\ needs\ a\ class\ whose\ writes\ are\ stored
              \ before\ its\ replies,\ "rate_limiter"\ defers\ them
              \ in\ \Q$file\E:\d+/x,
     '... saying why, with the file and line');

for my $bad ('max_bytes=0', 'max_bytes=x', 'max_objects=0', 'max_objects=-1') {
    ($rc, $out, $file) = nginx_t(<<"EOF");
    %%STORAGE%%
    do_namespace kv store $bad;
EOF
    isnt($rc, 0, "$bad fails nginx -t");
    like($out, qr/invalid (size|number) in "\Q$bad\E" in \Q$file\E:\d+/,
         '... with the file and line');
}

($rc, $out, $file) = nginx_t(<<'EOF');
    %%STORAGE%%
    do_max_objects lots;
    do_namespace kv store;
EOF
isnt($rc, 0, 'an invalid do_max_objects fails nginx -t');
like($out, qr/"do_max_objects" directive invalid number in \Q$file\E:\d+/,
     '... with the file and line');

done_testing();

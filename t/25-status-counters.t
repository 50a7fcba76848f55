# Every do_status counter moves when its event happens, by the amount it
# should, in the JSON and in the Prometheus form alike: objects,
# activations, evictions, turns, forwarded, timeouts, conflicts,
# storage_full, alarms_fired, alarms_failed, parked, park_timeouts, and
# the storage's size, free and connected.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP;
use IO::Socket::INET;
use DoTest qw(http wait_for worker_conns);

my $J = JSON::PP->new;

my @COUNTERS = qw(objects activations evictions turns forwarded timeouts
                  conflicts storage_full alarms_fired alarms_failed parked
                  park_timeouts);

# while a worker is stopped, requests go over this keep-alive connection
# to the one that runs (a new connection may wait in the stopped one's
# accept queue)
my $VIA;

# the sums over all workers, from the JSON form; dies on anything else
sub status {
    my ($t) = @_;
    my $r = http($t->port, 'GET', '/status', $VIA ? (sock => $VIA) : ());
    die "do_status: $r->{status}" unless $r->{status} == 200;
    my $j = $J->decode($r->{body});
    my %sum = map { $_ => 0 } @COUNTERS;
    for my $w (@{ $j->{workers} }) {
        for my $c (@COUNTERS) {
            die "do_status: no $c" unless defined $w->{$c};
            $sum{$c} += $w->{$c};
        }
    }
    $sum{$_} = $j->{storage}{$_} for keys %{ $j->{storage} };
    return \%sum;
}

# the same from the Prometheus form
sub prometheus {
    my ($t) = @_;
    my $r = http($t->port, 'GET', '/status?format=prometheus',
                 $VIA ? (sock => $VIA) : ());
    die "do_status: $r->{status}" unless $r->{status} == 200;
    my %sum;
    for my $c (@COUNTERS) {
        # a counter's name ends in _total, a gauge's (objects) does not
        my $name = $c eq 'objects' ? "ngx_do_$c" : "ngx_do_${c}_total";
        my @v = $r->{body} =~ /^$name\{worker="\d+"\} (\d+)$/mg;
        die "prometheus: no $c" unless @v;
        $sum{$c} += $_ for @v;
    }
    ($sum{size}) = $r->{body} =~ /^ngx_do_storage_bytes (\d+)$/m;
    ($sum{free}) = $r->{body} =~ /^ngx_do_storage_free_bytes (\d+)$/m;
    ($sum{connected}) = $r->{body} =~ /^ngx_do_redis_connections (\d+)$/m;
    return \%sum;
}

# runs $do; $counter must have moved by $by (a number, or a sub that
# says whether the difference is right), in both forms
sub moves {
    my ($t, $counter, $by, $do, $name) = @_;
    my ($j0, $p0) = (status($t), prometheus($t));
    is($p0->{$counter}, $j0->{$counter},
       "$counter: the Prometheus form says what the JSON says");
    my $want = $do->();
    $by = $want if ref $by eq '' && $by eq 'returned';
    my ($j1, $p1);
    my $ok = wait_for(sub {
        ($j1, $p1) = (status($t), prometheus($t));
        my $d = $j1->{$counter} - $j0->{$counter};
        my $dp = $p1->{$counter} - $p0->{$counter};
        return ref $by ? ($by->($d) && $by->($dp)) : ($d == $by && $dp == $by);
    }, 15);
    ok($ok, "$counter moves: $name ("
       . "$j0->{$counter} -> $j1->{$counter}, prometheus $p0->{$counter} -> "
       . "$p1->{$counter})");
}

sub more { my $d = shift; $d > 0 }

# a request sent now, answered later
sub send_only {
    my ($port, $method, $uri) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                  Timeout => 30) or die $!;
    print {$s} "$method $uri HTTP/1.1\r\nHost: localhost\r\n"
               . "Connection: close\r\nContent-Length: 0\r\n\r\n";
    return $s;
}

sub answer {
    my ($s) = @_;
    local $/;
    my $a = <$s> // '';
    close $s;
    my ($st) = $a =~ m{^HTTP/1\.\d (\d+)};
    return $st // 0;
}

my $conf = <<'EOF';
    %%STORAGE%%
    do_call_timeout 1500ms;
    do_idle_timeout %%IDLE%%;
    do_namespace state store;
    do_namespace locks lock;
    server {
        listen 127.0.0.1:%%PORT%%;
        location ~ ^/s/(?<o>[\w-]+)$ {
            do_pass state name=$o;
            add_header X-Owner $do_owner always;
            add_header X-Worker $do_worker always;
            add_header X-Pid $pid always;
        }
        location ~ ^/lock/(?<o>[\w-]+)$ { do_pass locks name=$o; }
        location = /status { do_status; }
    }
EOF

# 1. memory storage: everything but evictions, conflicts, alarms_failed
my $t = DoTest->new(workers => 2, storage => 'memory size=256k',
                    http => $conf =~ s/%%IDLE%%/60s/r)->start;
my $p = $t->port;

my $s0 = status($t);
if (!DoTest::redis_backend()) {
    is($s0->{backend}, 'memory', 'the backend is named');
    is($s0->{size}, 262144, 'size is the zone size');
    is(prometheus($t)->{size}, 262144, '... in Prometheus too');
    ok($s0->{free} > 0 && $s0->{free} < $s0->{size},
       "free is less than size ($s0->{free})");
}

moves($t, 'activations', 5, sub {
    http($p, 'PUT', "/s/a$_?key=k", body => 'x') for 1 .. 5;
}, 'five new objects, five activations');
moves($t, 'objects', 3, sub {
    http($p, 'PUT', "/s/b$_?key=k", body => 'x') for 1 .. 3;
}, 'three more objects in memory');
moves($t, 'activations', 0, sub {
    http($p, 'GET', "/s/a$_?key=k") for 1 .. 5;
}, 'objects in memory are not activated again');
moves($t, 'turns', 7, sub {
    http($p, 'GET', '/s/a1?key=k') for 1 .. 7;
}, 'seven calls to an active object, seven turns');

# forwarded: the calls whose owner is not the worker that accepted them
moves($t, 'forwarded', 'returned', sub {
    my $n = 0;
    for (1 .. 40) {
        my $r = http($p, 'GET', "/s/a$_?key=k");
        my ($o, $w) = @{ $r->{headers} }{qw(x-owner x-worker)};
        die "no X-Owner or X-Worker" unless defined $o && defined $w;
        $n++ if $o ne $w;
    }
    ok($n > 0, "some of 40 calls went to the other worker ($n)");
    return $n;
}, 'as many as were answered by another worker');

if (!DoTest::redis_backend()) {
    my $free = status($t)->{free};
    http($p, 'PUT', "/s/big?key=k$_", body => 'x' x 8000) for 1 .. 3;
    ok(status($t)->{free} < $free, 'writes take free space');

    moves($t, 'storage_full', 1, sub {
        my $r;
        for my $i (1 .. 100) {
            $r = http($p, 'PUT', "/s/fill$i?key=v", body => 'x' x 20000);
            last if $r->{status} == 507;
        }
        is($r->{status}, 507, 'the zone fills up: 507');
    }, 'one refused commit');
    http($p, 'DELETE', "/s/fill$_?all=1") for 1 .. 100;
}

moves($t, 'alarms_fired', 1, sub {
    http($p, 'PUT', '/s/ttl?key=k&ttl=300ms', body => 'x');
}, 'a TTL that comes due');

# parked: a waiter for a held lock; park_timeouts: one that gives up
my $lock = http($p, 'POST', '/lock/l?token=holder&ttl=30s');
is($lock->{status}, 200, 'a lock is taken');
my $waiter;
moves($t, 'parked', 1, sub {
    $waiter = send_only($p, 'POST', '/lock/l?token=waiter&wait=1s');
}, 'a waiter for the lock');
moves($t, 'park_timeouts', 1, sub {
    is(answer($waiter), 423, 'the waiter gives up after wait=: 423');
}, 'the waiter whose wait ran out');
moves($t, 'parked', 1, sub {
    $waiter = send_only($p, 'POST', '/lock/l?token=second&wait=1s');
}, 'another waiter');
moves($t, 'park_timeouts', 0, sub {
    is(http($p, 'DELETE', '/lock/l?token=holder')->{status}, 200,
       'the holder releases');
    is(answer($waiter), 200, '... and the waiter gets the lock');
}, 'a waiter that got the lock did not time out');

# timeouts: the owner of an object stopped
my $r = http($p, 'GET', '/s/a1?key=k');
my $owner = $r->{headers}{'x-owner'};
my ($opid) = map { $_->{pid} }
             grep { $_->{worker} == $owner }
             @{ $J->decode(http($p, 'GET', '/status')->{body})->{workers} };
ok($opid, "the owner worker of a1 is $owner, pid " . ($opid // '?'));
$VIA = worker_conns($p, '/s/a1?key=k', other => 1)->{other}[0];
ok($VIA, 'a connection accepted by the worker that is not the owner');
END { kill 'CONT', $opid if $opid }
kill 'STOP', $opid;
moves($t, 'timeouts', 'returned', sub {
    $r = http($p, 'GET', '/s/a1?key=k', sock => $VIA);
    is($r->{status}, 504, 'a call to a stopped owner: 504');
    return $r->{status} == 504 ? 1 : 0;
}, 'one call whose owner did not answer');
kill 'CONT', $opid;
close $VIA;
undef $VIA;
ok(wait_for(sub { http($p, 'GET', '/s/a1?key=k')->{status} == 200 }, 10),
   'the owner answers again once it runs');

ok($t->stop, 'nginx stops gracefully');
$t->check_logs('memory', expect => [qr/do: storage is full/,
                                    qr/do: a commit of 1 calls .* failed/,
                                    qr/do: call to owner worker \d+ timed out/]);

# 2. evictions, and objects going down again
$t = DoTest->new(workers => 2, http => $conf =~ s/%%IDLE%%/1s/r)->start;
$p = $t->port;
my $before = status($t);
http($p, 'PUT', "/s/e$_?key=k", body => 'x') for 1 .. 4;
ok(wait_for(sub { status($t)->{evictions} - $before->{evictions} >= 4 }, 15),
   'evictions: four idle objects are evicted');
my $after = status($t);
is($after->{evictions} - $before->{evictions}, 4, '... exactly four');
is($after->{objects}, $before->{objects}, '... and objects is back down');
is(prometheus($t)->{evictions}, $after->{evictions},
   '... the Prometheus form agrees');
ok($t->stop, 'nginx stops gracefully');
$t->check_logs('evictions');

# 3. Redis: conflicts, alarms_failed, connected
my $redis = DoTest::Redis->new->start;
my $rport = $redis->port;
my $rconf = $conf =~ s/%%IDLE%%/60s/r;
$rconf =~ s{%%STORAGE%%}{do_secret %%PREFIX%%/do.secret;
    do_storage redis://127.0.0.1:$rport/0 pool=2 timeout=1s;};
$t = DoTest->new(workers => 2, http => $rconf);
open my $fh, '>', $t->prefix . '/do.secret' or die;
print $fh "the secret of this test, long enough\n";
close $fh;
$t->start;
$p = $t->port;

ok(wait_for(sub { status($t)->{connected} == 2 }, 10),
   'connected: the pool of the worker that answered');
is(prometheus($t)->{connected}, 2, '... in Prometheus too');
is(status($t)->{backend}, 'redis', 'the backend is redis');

$r = http($p, 'PUT', '/s/c?key=k', body => 'one');
my $id = $r->{headers}{'do-object-id'};
moves($t, 'conflicts', 1, sub {
    # another writer (another node) moved the object's version
    $redis->cli('INCR', "do:{state:$id}:v");
    is(http($p, 'PUT', '/s/c?key=k', body => 'two')->{status}, 200,
       'a write after a foreign one succeeds');
}, 'the write found a newer version and ran again');

# an alarm whose turn cannot commit: Redis refuses writes for a while
moves($t, 'alarms_failed', \&more, sub {
    http($p, 'PUT', '/s/t?key=k&ttl=300ms', body => 'x');
    $redis->cli('CONFIG', 'SET', 'min-replicas-to-write', '1');
}, 'an alarm that could not be committed');
moves($t, 'alarms_fired', 1, sub {
    $redis->cli('CONFIG', 'SET', 'min-replicas-to-write', '0');
}, '... is retried, and fires once Redis takes writes again');
is(http($p, 'GET', '/s/t?key=k')->{status}, 404, 'the key is gone');

ok($t->stop, 'nginx stops gracefully');
$t->check_logs('redis', expect => [qr/do: redis: commit failed: NOREPLICAS/,
                                   qr/do: a commit of \d+ calls .* failed/]);

done_testing();

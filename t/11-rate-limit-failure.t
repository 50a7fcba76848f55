# When a limiter cannot answer, the gate does not hang.  A rate limiter on
# Redis decides in its namespace's bucket table, in the worker that
# accepted the request; only a cold key needs Redis (it is read before it
# is decided).  So: a stopped worker holds up no other worker's keys, cold
# or not (a limiter has no owner worker); while Redis does not answer
# (stopped), a key in the table goes on deciding from its copy, and a cold
# key fails open or closed as the namespace says once the storage's
# timeout= has passed; once Redis answers again, so do cold keys.  A cold
# key whose Redis value is damaged fails the same way, and the decision is
# logged (beside the storage's own line, of another kind).  (On memory every key is decided in the table at once;
# its failure, a table full of live buckets, is in 54-limit-buckets.t.)

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP;
use IO::Socket::INET;
use Time::HiRes qw(sleep time);
use DoTest qw(http wait_for);

my $redis = DoTest::Redis->new->start;
my $rport = $redis->port;

my $t = DoTest->new(workers => 2, http => <<"EOF");
    do_secret %%PREFIX%%/do.secret;
    do_storage redis://127.0.0.1:$rport/0 timeout=1s;
    do_namespace open   rate_limiter rate=1r/m burst=100;
    do_namespace closed rate_limiter rate=1r/m burst=100 fail=closed;

    server {
        listen 127.0.0.1:%%PORT%%;
        keepalive_timeout 60s;
        # the origin: a file (a server of this nginx could be accepted
        # by the stopped worker, and the request would wait for it)
        location /open   { do_limit open key=\$arg_k;
                           alias %%PREFIX%%/origin.txt; }
        location /closed { do_limit closed key=\$arg_k;
                           alias %%PREFIX%%/origin.txt; }
        location = /w      { return 200 \$do_worker; }
        location = /id     { do_pass open name=\$arg_k; }
        location = /id-closed { do_pass closed name=\$arg_k; }
        location = /status { do_status; }
    }
EOF
open my $fh, '>', $t->prefix . '/do.secret' or die;
print $fh "a test secret of some length\n";
close $fh;
open $fh, '>', $t->prefix . '/origin.txt' or die;
print $fh "origin\n";
close $fh;
$t->start;
my $p = $t->port;

# a keep-alive connection stays on the worker that accepted it
my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $p) or die;
my $mine = http($p, 'GET', '/w', sock => $s)->{body};
my $other = 1 - $mine;

# the other worker's pid, once it has registered in the status zone
my $pid = 0;
wait_for(sub {
    my $st = JSON::PP->new->decode(http($p, 'GET', '/status', sock => $s)->{body});
    $pid = $st->{workers}[$other]{pid} // 0;
    $pid > 1;
}, 10);
ok($pid > 1 && grep({ $_ == $pid } $t->workers), "worker $other is pid $pid")
    or BAIL_OUT('no pid for the other worker: not stopping anything');

# 1. a stopped worker: every key is still decided, cold ones too
is(http($p, 'GET', '/closed?k=warm', sock => $s)->{status}, 200,
   'a key is decided and is in the table');
kill 'STOP', $pid;
my @st = map {
    (http($p, 'GET', "/open?k=cold$_", sock => $s)->{status},
     http($p, 'GET', "/closed?k=cold$_", sock => $s)->{status})
} 1 .. 10;
is("@st", join(' ', ('200') x 20),
   "worker $other stopped: 20 cold keys of both namespaces are decided "
   . 'by this one (no owner worker to wait for)');
kill 'CONT', $pid;

# 2. Redis stopped: the table decides what it has, cold keys fail per fail=
kill 'STOP', $redis->{pid};
my $start = time;
my $r = http($p, 'GET', '/closed?k=warm', sock => $s);
is("$r->{status} $r->{body}", "200 origin\n",
   'Redis stopped: a key in the table goes on deciding (fail=closed too)');
ok(time - $start < 0.5, '... at once');
$start = time;
$r = http($p, 'GET', '/open?k=new-open', sock => $s);
is("$r->{status} $r->{body}", "200 origin\n",
   'Redis stopped: a cold key with fail=open lets the request through');
cmp_ok(time - $start, '>=', 0.9, '... once timeout=1s has passed');
$r = http($p, 'GET', '/closed?k=new-closed', sock => $s);
is($r->{status}, 503, 'Redis stopped: a cold key with fail=closed is 503');
kill 'CONT', $redis->{pid};

ok(wait_for(sub {
       http($p, 'GET', '/closed?k=healed', sock => $s)->{status} == 200
   }, 15), 'once Redis answers again, a cold key is decided again');
is(http($p, 'GET', '/closed?k=new-closed', sock => $s)->{status}, 200,
   '... the one that failed too');

# 3. a damaged value (not a string): the read fails, the gate as fail= says
for my $ns (qw(open closed)) {
    my $id = http($p, 'GET', "/id" . ($ns eq 'open' ? '' : '-closed')
                  . "?k=bad-$ns")->{headers}{'do-object-id'} // '';
    like($id, qr/^[0-9a-f]{64}$/, "the ID of $ns key bad-$ns");
    $redis->cli('DEL', "do:{$ns:$id}:tat");
    $redis->cli('HSET', "do:{$ns:$id}:tat", 'not', 'a string');
    sleep 1.1;    # one line a second of each kind
}
$r = http($p, 'GET', '/open?k=bad-open', sock => $s);
is($r->{status}, 200, 'a damaged value, fail=open: the request goes on');
ok(wait_for(sub { $t->error_log =~ /do: rate limiter "open" did not answer \(503\), failing open/ }, 3),
   '... and the decision is logged');
sleep 1.1;
$r = http($p, 'GET', '/closed?k=bad-closed', sock => $s);
is($r->{status}, 503, 'a damaged value, fail=closed: 503');
ok(wait_for(sub { $t->error_log =~ /do: rate limiter "closed" did not answer \(503\), failing closed/ }, 3),
   '... and the decision is logged');
like($t->error_log, qr/do: redis: unexpected reply type \d+ to a read/,
     'the storage logs what it read');

$t->stop;
$t->check_logs(undef, expect => [qr/do: redis\b/,
                                 qr/do: rate limiter "\w+" did not answer/,
                                 qr/do: deferred writes of namespace/]);

done_testing();

# The do_lock gate in front of a real proxy_pass origin: waiters reach the
# origin in arrival order; the lock is let go when the upstream fails
# (connection refused, a 502 answer, proxy_read_timeout); a holder whose
# worker is killed (-9) keeps the lock only until its lease ends, and the
# next waiter then gets it with a higher fence; an empty key takes no lock.
# (An owner worker that does not answer: t/37-owner-stopped.t.)

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP;
use Time::HiRes qw(time);
use DoTest qw(http parallel wait_for worker_conns);

my $origin = DoTest::Origin->new;
my $op = $origin->port;

my $t = DoTest->new(workers => 2, http => <<"EOF")->start;
    %%STORAGE%%
    do_namespace locks lock ttl=10s;
    do_call_timeout 10s;
    server {
        listen 127.0.0.1:%%PORT%% reuseport;
        location ~ ^/lock/(?<o>[\\w-]+)\$ {
            do_pass locks name=\$o;
            add_header X-Owner \$do_owner always;
            add_header X-Worker \$do_worker always;
            add_header X-Pid \$pid always;
        }
        location /ok/ {
            do_lock locks key=\$arg_key ttl=60s wait=10s;
            proxy_set_header X-Fencing-Token \$do_lock_fence;
            proxy_pass http://127.0.0.1:$op;
        }
        location /short/ {
            do_lock locks key=\$arg_key ttl=1s wait=10s;
            proxy_set_header X-Fencing-Token \$do_lock_fence;
            proxy_pass http://127.0.0.1:$op;
        }
        location /refused/ {
            do_lock locks key=\$arg_key ttl=60s wait=10s;
            proxy_pass http://127.0.0.1:%%PORT3%%;
        }
        location /bad-gateway/ {
            do_lock locks key=\$arg_key ttl=60s wait=10s;
            proxy_pass http://127.0.0.1:%%PORT2%%;
        }
        location /slow/ {
            do_lock locks key=\$arg_key ttl=60s wait=10s;
            proxy_read_timeout 500ms;
            proxy_pass http://127.0.0.1:$op;
        }
    }
    server {
        listen 127.0.0.1:%%PORT2%%;
        location / { return 502; }
    }
EOF
my $p = $t->port;
my $J = JSON::PP->new;

# the lock's state through the API; anything but JSON ends the test
sub lock_state {
    my ($name) = @_;
    my $r = http($p, 'GET', "/lock/$name");
    my $d = eval { $J->decode($r->{body}) };
    die "GET /lock/$name: $r->{status} " . ($r->{error} // $r->{body})
        unless ref $d eq 'HASH';
    return $d;
}

# the origin's lines of these requests, once $n of them are logged (the
# origin logs after it answered)
sub origin_lines {
    my ($re, $n) = @_;
    my @l;
    wait_for(sub {
        @l = grep { $_->[3] =~ $re } $origin->requests;
        @l >= ($n // 1);
    }, 5);
    return sort { $a->[0] <=> $b->[0] } @l;
}

# 1. waiters reach the origin in the order they arrived, whichever worker
# accepted them: each is sent once the one before it is queued
my $h = $J->decode(http($p, 'POST', '/lock/fifo?ttl=30s')->{body});
ok($h->{token}, 'the lock is held through the API');
my @st = parallel(6, sub {
    my ($i) = @_;
    wait_for(sub { lock_state('fifo')->{waiters} >= $i }, 10)
        or return "$i not queued";
    if ($i == 5) {
        http($p, 'DELETE', "/lock/fifo?token=$h->{token}");
        return ();
    }
    my $r = http($p, 'GET', "/ok/fifo?key=fifo&c=$i&sleep=20");
    return "$i $r->{status}";
});
is(join(' ', sort @st), '0 200 1 200 2 200 3 200 4 200',
   'five do_lock requests queued behind a holder all passed');
my @fifo = origin_lines(qr{^/ok/fifo}, 5);
is(join(' ', map { $_->[3] =~ /c=(\d)/ } @fifo), '0 1 2 3 4',
   '... and reached the origin in the order they queued');
is(scalar(grep { $fifo[$_][0] < $fifo[$_ - 1][1] } 1 .. $#fifo), 0,
   '... one at a time');
my @f = ($h->{fence}, map { $_->[2] } @fifo);
is(scalar(grep { $f[$_] !~ /^\d+$/ || $f[$_] <= $f[$_ - 1] } 1 .. $#f), 0,
   '... with fences increasing in that order');

# 2. the upstream fails: the request ends, and so does its hold on the
# lock, long before its 60 s lease
for my $case (['refused', 502, 'connection refused'],
              ['bad-gateway', 502, 'the upstream answers 502'],
              ['slow', 504, 'proxy_read_timeout'])
{
    my ($loc, $status, $what) = @$case;
    my $key = "fail-$loc";
    my $s = time;
    my $r = http($p, 'GET', "/$loc/x?key=$key&sleep=5000");
    is($r->{status}, $status, "$what: the client gets $status");
    my $l = lock_state($key);
    cmp_ok($l->{fence}, '>', 0, "$what: ... from a request that held the lock");
    ok(wait_for(sub { !lock_state($key)->{held} }, 5),
       "$what: ... and the lock is free again");
    cmp_ok(time - $s, '<', 10, "$what: ... within 10 s, not at its lease");
    $r = http($p, 'GET', "/ok/after-$loc?key=$key");
    is($r->{status}, 200, "$what: the next request through do_lock passes");
    my ($o) = origin_lines(qr{^/ok/after-\Q$loc\E});
    cmp_ok($o ? $o->[2] : 0, '>', $l->{fence},
           "$what: ... with a higher fence");
}
ok(!grep({ $_->[3] =~ m{^/(refused|bad-gateway)/} } $origin->requests),
   'the failing upstreams were not the recording origin');

# 3. the worker that accepted the holding request is killed: nobody
# releases or renews the lock, its lease (ttl=1s) ends it, and the waiter
# queued behind it gets it with a higher fence.  The holder is accepted by
# the worker that does not own the lock; the waiter by the owner.
my $wc = worker_conns($p, '/lock/killed', owner => 1, other => 1);
my ($conn_holder, $conn_waiter, $holder_pid) =
    ($wc->{other}[0], $wc->{owner}[0], $wc->{other_pid});
ok($conn_holder && $conn_waiter && $holder_pid && $holder_pid > 1
   && grep({ $_ == $holder_pid } $t->workers),
   'a connection on each worker, and the pid of the non-owner')
    or BAIL_OUT('no connections on both workers');

print {$conn_holder} "GET /short/holder?key=killed&sleep=8000 HTTP/1.1\r\n"
    . "Host: x\r\n\r\n";
ok(wait_for(sub { lock_state('killed')->{held} }, 5),
   'the request on the non-owner holds the lock');
my $fence = lock_state('killed')->{fence};

my $waiter = fork() // die "fork: $!";
if ($waiter == 0) {
    my $r = http($p, 'GET', '/short/waiter?key=killed', sock => $conn_waiter);
    open my $fh, '>', $t->prefix . '/waiter' or POSIX::_exit(1);
    print $fh "$r->{status} " . time . "\n";
    close $fh;
    POSIX::_exit(0);
}
ok(wait_for(sub { lock_state('killed')->{waiters} == 1 }, 5),
   'a second request waits for it on the owner');
my $killed_at = time;
$t->kill_worker('KILL', $holder_pid);
waitpid($waiter, 0);
my ($wstatus, $wtime) = split ' ',
    do { open my $fh, '<', $t->prefix . '/waiter'; <$fh> // '0 0' };
is($wstatus, 200, 'after a kill -9 of the holding worker the waiter gets '
   . 'the lock');
cmp_ok($wtime - $killed_at, '<', 8,
       '... when the lease ends, not at the end of its wait');
my ($w) = origin_lines(qr{^/short/waiter});
ok($w && $w->[0] >= $killed_at, '... and reaches the origin only after the '
   . 'holder died');
cmp_ok($w ? $w->[2] : 0, '>', $fence, '... with a higher fence');
close $conn_holder;
close $conn_waiter;
ok(wait_for(sub { my @w = $t->workers;
                  @w == 2 && !grep { $_ == $holder_pid } @w }, 10),
   'the killed worker is replaced');

# 4. an empty key takes no lock (like limit_req and do_limit): the request
# runs with no fence, alongside others with an empty key
my @e = parallel(2, sub {
    my ($i) = @_;
    my $r = http($p, 'GET', "/ok/empty$i?key=&sleep=2000");
    return "$i $r->{status}";
});
is(join(' ', sort @e), '0 200 1 200', 'requests with an empty key pass');
my @empty = origin_lines(qr{^/ok/empty}, 2);
is(join(' ', map { $_->[2] } @empty), '- -', '... with no fencing token');
ok(@empty == 2 && $empty[1][0] < $empty[0][1],
   '... and are not serialized (both at the origin at once)');

ok($t->stop, 'nginx stops gracefully');
$t->check_logs;

done_testing;

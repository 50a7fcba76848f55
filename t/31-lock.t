# The lock class and the do_lock gate: mutual exclusion seen by a real
# origin, strictly increasing fencing tokens, FIFO waiters, waits that
# time out, lease expiry by alarm with no request arriving, wrong tokens,
# and a do_lock that serializes requests and lets go on client abort.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP;
use IO::Socket::INET;
use Time::HiRes qw(sleep time);
use DoTest qw(http parallel wait_for);

my $origin = DoTest::Origin->new;
my $op = $origin->port;

my $t = DoTest->new(workers => 4, http => <<"EOF")->start;
    %%STORAGE%%
    do_namespace locks lock ttl=10s;
    do_call_timeout 10s;
    server {
        listen 127.0.0.1:%%PORT%%;
        location ~ ^/lock/(?<o>[\\w-]+)\$ { do_pass locks name=\$o; }
        location = /status { do_status; }
        location /critical/ {
            do_lock locks key=\$arg_key ttl=20s wait=8s;
            proxy_set_header X-Fencing-Token \$do_lock_fence;
            proxy_pass http://127.0.0.1:$op;
        }
        location /renewed/ {
            do_lock locks key=\$arg_key ttl=1s wait=5s;
            proxy_set_header X-Fencing-Token \$do_lock_fence;
            proxy_pass http://127.0.0.1:$op;
        }
        location /short/ {
            do_lock locks key=\$arg_key wait=300ms status=409;
            proxy_set_header X-Fencing-Token \$do_lock_fence;
            proxy_pass http://127.0.0.1:$op;
        }
    }
    server {
        listen 127.0.0.1:%%PORT2%%;
        root %%PREFIX%%;
        do_lock locks key=\$arg_key wait=1s;
        location / { try_files /nonexistent \@app; }
        location /other/ { try_files /nonexistent \@app2; }
        location \@app2 {
            do_lock locks key=z\$arg_key wait=1s;
            proxy_pass http://127.0.0.1:$op;
        }
        location \@app {
            proxy_set_header X-Fencing-Token \$do_lock_fence;
            proxy_pass http://127.0.0.1:$op;
        }
    }
EOF
my $p = $t->port;
my $J = JSON::PP->new;
# the JSON body of a reply; a body that is not JSON fails the test (in
# the test's own process: children report what they got instead)
my $MAIN = $$;
sub j {
    my $b = $_[0]{body} // '';
    my $d = eval { $J->decode($b) };
    fail("a JSON body, not '" . substr($b, 0, 80) . "'")
        if !ref $d && $$ == $MAIN;
    return $d // {};
}

# 1. mutual exclusion: 20 clients on 4 workers contend for one key
my $t0 = time;
my @lines = parallel(20, sub {
    my ($i) = @_;
    my @out;
    while (time - $t0 < 3) {
        my $r = http($p, 'GET', "/critical/x?key=one&sleep=5&c=$i");
        push @out, "status $r->{status}";
    }
    return @out;
});
my @reqs = sort { $a->[0] <=> $b->[0] } $origin->requests;
my $ok200 = grep { $_ eq 'status 200' } @lines;
cmp_ok(scalar @reqs, '>=', 10, scalar(@reqs) . ' requests reached the origin');
is($ok200, scalar @reqs, 'every request that reached the origin answered 200');
is(scalar(grep { !/^status (200|409|423)$/ } @lines), 0,
   'no request failed otherwise') or diag join ' ', grep { !/status 200/ } @lines;
my ($overlaps, $not_increasing) = (0, 0);
for my $i (1 .. $#reqs) {
    $overlaps++ if $reqs[$i][0] < $reqs[$i - 1][1];
    $not_increasing++ unless $reqs[$i][2] =~ /^\d+$/
                             && $reqs[$i][2] > $reqs[$i - 1][2];
}
is($overlaps, 0, 'no two holders overlap at the origin');
is($not_increasing, 0, 'fencing tokens strictly increase, in holding order');
like($reqs[0][2], qr/^\d+$/, 'the origin sees the fence in X-Fencing-Token');

# 2. waiters are served in arrival order
my $h = j(http($p, 'POST', '/lock/fifo?ttl=10s'));
ok($h->{token} && $h->{fence}, 'an acquire returns a token and a fence');
my @order = parallel(6, sub {
    my ($i) = @_;
    # waiter i queues once the i before it are queued
    my $queued = sub {
        my $s = eval { $J->decode(http($p, 'GET', '/lock/fifo')->{body}) };
        return ($s->{waiters} // -1) >= $_[0];
    };
    if ($i == 5) {
        # once all five are queued, the holder lets go
        wait_for(sub { $queued->(5) }, 10);
        http($p, 'DELETE', "/lock/fifo?token=$h->{token}");
        return ();
    }
    wait_for(sub { $queued->($i) }, 10);
    my $r = http($p, 'POST', '/lock/fifo?wait=8s&ttl=5s');
    my $g = j($r);
    sleep 0.05;
    http($p, 'DELETE', "/lock/fifo?token=$g->{token}") if $g->{token};
    return "$i $r->{status} " . ($g->{fence} // 0) . ' ' . time;
});
my @got = sort { $a->[3] <=> $b->[3] } map { [ split / / ] } @order;
is(scalar @got, 5, 'five waiters answered');
is(join(' ', map { $_->[1] } @got), '200 200 200 200 200', 'every waiter got the lock');
is(join(' ', map { $_->[0] } @got), '0 1 2 3 4', 'in the order they arrived');
my @fences = map { $_->[2] } @got;
is(scalar(grep { $fences[$_] <= $fences[$_ - 1] } 1 .. $#fences), 0,
   '... with increasing fences');

# a waiter whose wait ends gets 423 and leaves the queue
$h = j(http($p, 'POST', '/lock/busy?ttl=10s'));
my $s = time;
my $r = http($p, 'POST', '/lock/busy?wait=400ms');
is($r->{status}, 423, 'a waiter whose wait ends gets 423');
cmp_ok(time - $s, '>=', 0.35, '... after its wait');
is(j(http($p, 'GET', '/lock/busy'))->{waiters}, 0, '... and left the queue');
my $stats = j(http($p, 'GET', '/status'));
my ($parked, $timeouts) = (0, 0);
$parked += $_->{parked} for @{ $stats->{workers} };
$timeouts += $_->{park_timeouts} for @{ $stats->{workers} };
cmp_ok($parked, '>=', 6, "do_status counts the parked waiters ($parked)");
cmp_ok($timeouts, '>=', 1, "... and those whose wait ended ($timeouts)");
is(http($p, 'POST', '/lock/busy')->{status}, 423, 'no wait= means an answer at once');
like(http($p, 'POST', '/lock/busy?wait=30s')->{body}, qr/do_call_timeout/,
     'a wait longer than do_call_timeout is refused');

# 3. a holder that never releases loses the lock at ttl; the next waiter
# gets it though no other request arrives
$h = j(http($p, 'POST', '/lock/lease?ttl=1s'));
$s = time;
$r = http($p, 'POST', '/lock/lease?wait=5s');
is($r->{status}, 200, 'the waiter behind an abandoned lease is granted');
my $waited = time - $s;
cmp_ok($waited, '>=', 0.9, "... once the lease ran out ($waited s)");
cmp_ok($waited, '<', 3, '... by the lease alarm, not by a later request');
cmp_ok(j($r)->{fence}, '>', $h->{fence}, '... with a higher fence');
is(http($p, 'DELETE', "/lock/lease?token=$h->{token}")->{status}, 409,
   'the expired holder can no longer release it');

# 4. wrong tokens change nothing
$h = j(http($p, 'POST', '/lock/tok?ttl=10s'));
my $before = j(http($p, 'GET', '/lock/tok'));
is(http($p, 'DELETE', '/lock/tok?token=wrong')->{status}, 409,
   'release with a wrong token is 409');
is(http($p, 'PUT', '/lock/tok?token=wrong&ttl=60s')->{status}, 409,
   'renew with a wrong token is 409');
my $after = j(http($p, 'GET', '/lock/tok'));
is("$after->{held} $after->{fence} $after->{expires}",
   "$before->{held} $before->{fence} $before->{expires}",
   '... and the lock is unchanged');
is(http($p, 'DELETE', '/lock/tok')->{status}, 400, 'release without token= is 400');
is(http($p, 'POST', '/lock/tok2?ttl=bogus')->{status}, 400, 'a bad ttl is 400');
is(http($p, 'POST', '/lock/tok2?token=a%20b')->{status}, 400, 'a bad token is 400');
is(http($p, 'POST', '/lock/tok2?ttl=2h')->{status}, 400,
   'a ttl over the namespace max_ttl is 400');
is(http($p, 'POST', '/lock/tok2?wait=soon')->{status}, 400, 'a bad wait is 400');
is(http($p, 'PUT', '/lock/tok2?ttl=10s')->{status}, 400, 'renew without token= is 400');
is(http($p, 'PATCH', '/lock/tok2')->{status}, 405, 'other methods are 405');
is(j(http($p, 'GET', '/lock/tok2'))->{held}, JSON::PP::false,
   '... and none of them took the lock');
$r = http($p, 'PUT', "/lock/tok?token=$h->{token}&ttl=60s");
is($r->{status}, 200, 'renew with the token extends the lease');
cmp_ok(j($r)->{expires}, '>', $before->{expires}, '... to later');
is(j($r)->{fence}, $h->{fence}, '... keeping the fence');
is(http($p, 'DELETE', "/lock/tok?token=$h->{token}")->{status}, 200,
   'release with the token');
is(j(http($p, 'GET', '/lock/tok'))->{held}, JSON::PP::false, '... frees the lock');

# the owner worker of a held lock is killed: the lock, its lease and its
# fence are in storage, and the respawned owner goes on from them
$r = http($p, 'POST', '/lock/kill?ttl=10s');
$h = j($r);
my ($owner) = ($r->{headers}{'do-activation'} // '') =~ /^(\d+)\./;
ok($owner && $owner > 1 && grep({ $_ == $owner } $t->workers),
   'found the owner worker of the lock') or BAIL_OUT('no owner pid');
$t->kill_worker('KILL', $owner);
wait_for(sub { my @w = $t->workers; @w == 4 && !grep { $_ == $owner } @w }, 10);
$after = j(http($p, 'GET', '/lock/kill'));
is("$after->{held} $after->{fence}", "1 $h->{fence}",
   'after a kill -9 of its owner the lock is still held, same fence');
is(http($p, 'POST', '/lock/kill')->{status}, 423, '... and still refused to others');
is(http($p, 'DELETE', "/lock/kill?token=$h->{token}")->{status}, 200,
   '... and its holder releases it at the new owner');
cmp_ok(j(http($p, 'POST', '/lock/kill'))->{fence}, '>', $h->{fence},
       '... the next grant has a higher fence');

# 6. do_lock serializes per key, and lets go when the client goes away
my $c = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $p)
    or die "connect: $!";
print {$c} "GET /critical/abort?key=k6&sleep=4000 HTTP/1.1\r\nHost: x\r\n\r\n";
ok(wait_for(sub { j(http($p, 'GET', '/lock/k6'))->{held} }, 5),
   'a do_lock request holds k6 while its origin takes 4 s');
$s = time;
$r = http($p, 'GET', '/short/other?key=k7');
is($r->{status}, 200, 'another key is not held up');
is(http($p, 'GET', '/short/same?key=k6')->{status}, 409,
   'the same key waits, and gets status= when wait= ends');
close $c;
$s = time;
$r = http($p, 'GET', '/critical/after?key=k6');
is($r->{status}, 200, 'after the client went away the lock is free');
cmp_ok(time - $s, '<', 2, '... at once, not when the origin answers');

# a client that goes away while it waits leaves the queue
$h = j(http($p, 'POST', '/lock/kw?ttl=10s'));
$c = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $p)
    or die "connect: $!";
print {$c} "GET /critical/w?key=kw HTTP/1.1\r\nHost: x\r\n\r\n";
ok(wait_for(sub { j(http($p, 'GET', '/lock/kw'))->{waiters} == 1 }, 3),
   'a do_lock request waits in the queue');
close $c;
ok(wait_for(sub { j(http($p, 'GET', '/lock/kw'))->{waiters} == 0 }, 3),
   '... and leaves it when its client goes away');
http($p, 'DELETE', "/lock/kw?token=$h->{token}");
is(j(http($p, 'GET', '/lock/kw'))->{held}, JSON::PP::false,
   '... so the release grants the lock to nobody');

# a request that runs longer than the lease keeps it: do_lock renews it
my @two = parallel(2, sub {
    my ($i) = @_;
    # the second once the first holds the lock
    wait_for(sub { j(http($p, 'GET', '/lock/k8'))->{held} }, 5) if $i;
    my $r = http($p, 'GET', "/renewed/r$i?key=k8&sleep=" . ($i ? 10 : 2500));
    return "$i $r->{status}";
});
is(join(' ', sort @two), '0 200 1 200', 'two requests longer than ttl= both ran');
my ($r0) = grep { $_->[3] =~ m{^/renewed/r0} } $origin->requests;
my ($r1) = grep { $_->[3] =~ m{^/renewed/r1} } $origin->requests;
ok($r0 && $r1 && $r1->[0] >= $r0->[1],
   'the second started only after the first ended, though ttl=1s');

# reloads under load: 10 clients through do_lock while nginx reloads twice
my $t1 = time;
my @rl = parallel(11, sub {
    my ($i) = @_;
    if ($i == 10) {
        sleep 1;
        $t->reload;
        sleep 1;
        $t->reload;
        return ();
    }
    my @out;
    while (time - $t1 < 4) {
        my $r = http($p, 'GET', "/critical/rl?key=reload&sleep=5");
        push @out, "status $r->{status}";
    }
    return @out;
});
my @rlreq = sort { $a->[0] <=> $b->[0] }
            grep { $_->[3] =~ m{^/critical/rl} } $origin->requests;
my %st;
$st{$_}++ for @rl;
is(join(' ', map { "$_=$st{$_}" } sort keys %st), 'status 200=' . @rlreq,
   'through two reloads every request got the lock and reached the origin');
($overlaps, $not_increasing) = (0, 0);
for my $i (1 .. $#rlreq) {
    $overlaps++ if $rlreq[$i][0] < $rlreq[$i - 1][1];
    $not_increasing++ unless $rlreq[$i][2] > $rlreq[$i - 1][2];
}
is($overlaps, 0, '... with no two holders overlapping (' . @rlreq . ' requests)');
is($not_increasing, 0, '... and strictly increasing fences');

# an internal redirect (try_files to a named location) keeps the lock it has
$s = time;
$r = http($t->port_n(2), 'GET', '/x?key=k9');
is($r->{status}, 200, 'do_lock at server level passes a request that is '
   . 'redirected internally');
cmp_ok(time - $s, '<', 0.9, '... without waiting for its own lock');
my @both = parallel(2, sub {
    my ($i) = @_;
    if ($i == 0) {
        my $r = http($t->port_n(2), 'GET', '/other/y?key=k10&sleep=1500');
        return "request $r->{status}";
    }
    # both held while the request runs (1.5 s at the origin)
    my $held = '';
    wait_for(sub {
        $held = join ',', map { j(http($p, 'GET', "/lock/$_"))->{held} ? 1 : 0 }
                          qw(k10 zk10);
        $held eq '1,1';
    }, 1.2);
    return "held $held";
});
is(join(' ', sort @both), 'held 1,1 request 200',
   'redirected to a location with another do_lock, it holds both locks');

$t->check_logs;
done_testing;

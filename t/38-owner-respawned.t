# A call sent to a worker just respawned after a kill -9 is not taken for
# a call of the dead one.  Worker A waits for worker C (a lock waiter
# parked there), so A watches its owners' PIDs every 250 ms; worker B is
# killed and, as soon as the master has started its successor, A sends a
# waiter to a lock of B's.  It must wait its 2 s and get 423; it got 502
# at A's next look when A still had the dead worker's PID for B (the PID
# it noted while nothing waited for B), which the successor's did not
# match.  Three rounds: each round's gap between kill and call is well
# inside the 250 ms.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use IO::Socket::INET;
use JSON::PP;
use POSIX ();
use Time::HiRes qw(sleep time);
use DoTest qw(http wait_for);

my $t = DoTest->new(workers => 3, http => <<'EOF')->start;
    %%STORAGE%%
    do_namespace locks lock ttl=60s;
    do_call_timeout 60s;
    server {
        listen 127.0.0.1:%%PORT%% reuseport;
        location ~ ^/lock/(?<o>[\w-]+)$ {
            do_pass locks name=$o;
            add_header X-Owner $do_owner always;
            add_header X-Worker $do_worker always;
            add_header X-Pid $pid always;
        }
    }
EOF
my $p = $t->port;
my $J = JSON::PP->new;

# keep-alive connections by the worker that accepted them, and the owner
# of each lock name probed
my (%conns, %owner_of);
for my $i (1 .. 200) {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $p,
                                  Timeout => 10) or next;
    my $h = http($p, 'GET', "/lock/n$i", sock => $s)->{headers} || {};
    next unless defined $h->{'x-worker'} && defined $h->{'x-owner'};
    $owner_of{"n$i"} = $h->{'x-owner'};
    push @{ $conns{ $h->{'x-worker'} } }, $s;
    last if (grep { @{ $conns{$_} } >= 4 } keys %conns)
            && (keys %{ { reverse %owner_of } }) == 3;
}
my ($wa) = grep { @{ $conns{$_} } >= 4 } sort keys %conns;
my @others = grep { $_ ne ($wa // '') } 0 .. 2;
my %name = map { my $w = $_; $w => (grep { $owner_of{$_} eq $w }
                                    sort keys %owner_of)[0] } @others;
my ($wb, $wc) = @others;
ok(defined $wa && $name{$wb} && $name{$wc},
   'four connections on one worker, and a lock owned by each other one')
    or BAIL_OUT('no such connections');

# both locks held
my %token;
for my $w ($wb, $wc) {
    my $r = http($p, 'POST', "/lock/$name{$w}?ttl=60s");
    $token{$w} = eval { $J->decode($r->{body})->{token} };
    ok($token{$w}, "the lock of worker $w is held");
}

# a waiter parked at C through A, for the whole test
my $parked = shift @{ $conns{$wa} };
my $child = fork() // die;
if ($child == 0) {
    my $r = http($p, 'POST', "/lock/$name{$wc}?wait=50s", sock => $parked,
                 timeout => 60);
    POSIX::_exit($r->{status} == 200 ? 0 : 1);
}
close $parked;
ok(wait_for(sub {
    (eval { $J->decode(http($p, 'GET', "/lock/$name{$wc}")->{body}) }
     || {})->{waiters} == 1
}, 5), "a waiter through worker $wa is parked at worker $wc");

# the PID of worker $w, from a connection it accepted
sub pid_of {
    my ($w) = @_;
    for (1 .. 100) {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                      PeerPort => $p, Timeout => 10) or next;
        my $r = http($p, 'GET', "/lock/$name{$w}", sock => $s);
        close $s;
        return $r->{headers}{'x-pid'}
            if ($r->{headers}{'x-worker'} // '') eq $w
               && $r->{headers}{'x-pid'};
    }
    return undef;
}

for my $round (1 .. 3) {
    my @before = $t->workers;
    my ($victim) = pid_of($wb);
    ok($victim, "round $round: worker $wb is pid " . ($victim // '?'));
    $t->expect_killed($victim);
    kill 'KILL', $victim;
    ok(wait_for(sub {
        my @w = $t->workers;
        @w == 3 && !grep { $_ == $victim } @w;
    }, 10), "round $round: the master started its successor");
    my $s = shift @{ $conns{$wa} };
    my $t0 = time;
    my $r = http($p, 'POST', "/lock/$name{$wb}?wait=2s", sock => $s,
                 timeout => 30);
    is($r->{status}, 423, sprintf("round $round: a waiter through worker $wa"
       . " at the successor waits its wait (%.2f s) and gets 423",
       time - $t0));
    close $s;
}

is(http($p, 'DELETE', "/lock/$name{$wc}?token=$token{$wc}")->{status}, 200,
   'the lock of C is released');
waitpid($child, 0);
is($?, 0, '... and the waiter parked at C all along gets it');

$t->check_logs;
done_testing;

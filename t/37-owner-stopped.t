# An owner worker that is alive but silent (SIGSTOP): do_pass answers 504
# at do_call_timeout, do_lock 503, do_status counts the timeouts; calls
# that would queue more than the channel's limit (64 MiB) for it get 503
# at once; after SIGCONT the owner answers again, the lock a timed-out
# do_lock was granted is released, and nothing stays stuck.

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
    do_namespace locks lock ttl=60s;
    do_namespace kv store max_value=4m;
    do_call_timeout 1s;
    client_max_body_size 4m;
    client_body_buffer_size 4m;
    server {
        listen 127.0.0.1:%%PORT%% reuseport;
        add_header X-Owner \$do_owner always;
        add_header X-Worker \$do_worker always;
        add_header X-Pid \$pid always;
        location ~ ^/kv/(?<o>[\\w-]+)\$ { do_pass kv name=\$o; }
        location ~ ^/lock/(?<o>[\\w-]+)\$ { do_pass locks name=\$o; }
        location /gate/ {
            do_lock locks key=\$arg_key wait=500ms;
            proxy_set_header X-Fencing-Token \$do_lock_fence;
            proxy_pass http://127.0.0.1:$op;
        }
        location = /status { do_status; }
    }
EOF
my $p = $t->port;
my $J = JSON::PP->new;

sub json {
    my ($r) = @_;
    my $d = eval { $J->decode($r->{body}) };
    die "not JSON: $r->{status} " . ($r->{error} // $r->{body})
        unless ref $d eq 'HASH';
    return $d;
}

# the owner slot of an object, seen from any worker
sub owner_of {
    my ($uri) = @_;
    return http($p, 'GET', $uri)->{headers}{'x-owner'};
}

# a store object and a lock with the same owner worker
my $owner = owner_of('/kv/stopped');
ok(defined $owner, "the store object's owner is worker $owner")
    or BAIL_OUT('no X-Owner');
my ($lock) = grep { owner_of("/lock/$_") eq $owner } map { "l$_" } 1 .. 50;
ok($lock, "lock \"$lock\" has the same owner") or BAIL_OUT('no lock name');

# keep-alive connections accepted by the other worker (while the owner is
# stopped, a new connection could land on it and hang), and the owner's pid
my $w = worker_conns($p, '/kv/stopped?key=a', other => 50);
my ($owner_pid, @conns) = ($w->{owner_pid}, @{ $w->{other} });
ok(@conns >= 50 && $owner_pid && $owner_pid > 1
   && grep({ $_ == $owner_pid } $t->workers),
   '50 connections on the other worker, and the pid of the owner')
    or BAIL_OUT('no connections');
my $c = shift @conns;

sub timeouts {
    my $s = json(http($p, 'GET', '/status', sock => $c));
    my $n = 0;
    $n += $_->{timeouts} for @{ $s->{workers} };
    return $n;
}

my $timeouts = timeouts();

my $stopped = $owner_pid;
END { kill 'CONT', $stopped if $stopped }
kill 'STOP', $owner_pid;

# do_pass: 504 once do_call_timeout (1 s) is over
my $s = time;
my $r = http($p, 'GET', '/kv/stopped?key=a', sock => $c);
my $took = time - $s;
is($r->{status}, 504, 'do_pass to a stopped owner answers 504');
cmp_ok($took, '>=', 0.9, sprintf('... at do_call_timeout (%.1f s)', $took));
cmp_ok($took, '<', 10, '... within 10 s');

# do_lock: 503 once wait= and do_call_timeout are over
$s = time;
$r = http($p, 'GET', "/gate/x?key=$lock", sock => $c);
$took = time - $s;
is($r->{status}, 503, 'do_lock whose lock owner is stopped answers 503');
cmp_ok($took, '<', 10, sprintf('... within 10 s (%.1f s)', $took));
ok(!grep({ $_->[3] =~ m{^/gate/x} } $origin->requests),
   '... and the request never reached the origin');

is(timeouts(), $timeouts + 2, 'do_status counts both in timeouts');

# a full channel: 2 MiB PUTs queue for the stopped owner until 64 MiB are
# queued; the calls beyond that are refused at once with 503
my $n = 45;
my @put = parallel($n, sub {
    my ($i) = @_;
    my $r = http($p, 'PUT', "/kv/stopped?key=big", sock => $conns[$i],
                 body => chr(65 + $i % 26) x (2 * 1024 * 1024));
    return "$r->{status}";
});
my %st;
$st{$_}++ for @put;
is(join(' ', grep { !/^(503|504)$/ } @put), '',
   "$n PUTs of 2 MiB to a stopped owner get 503 or 504")
    or diag explain \%st;
cmp_ok($st{503} // 0, '>=', 1, ($st{503} // 0) . ' got 503: the channel was '
       . 'full');
cmp_ok($st{504} // 0, '>=', 30, ($st{504} // 0) . ' were queued (504 at '
       . 'their timeout)');
like($t->error_log, qr/do: channel to worker $owner is full/,
     'the error log says the channel is full');

# SIGCONT: the owner works through its queue, and everything answers again
kill 'CONT', $owner_pid;
undef $stopped;
ok(wait_for(sub { http($p, 'GET', '/kv/stopped?key=a', sock => $c)->{status}
                  == 404 }, 30),
   'after SIGCONT do_pass answers again');
is(http($p, 'PUT', '/kv/stopped?key=a', sock => $c, body => 'v')->{status},
   200, '... a PUT is stored');
is(http($p, 'GET', '/kv/stopped?key=a')->{body}, 'v', '... and read back');
is(length http($p, 'GET', '/kv/stopped?key=big')->{body}, 2 * 1024 * 1024,
   '... and a queued 2 MiB PUT ran');
ok(wait_for(sub { !json(http($p, 'GET', "/lock/$lock"))->{held} }, 5),
   'the lock granted to the timed-out do_lock is released again');
$r = http($p, 'GET', "/gate/y?key=$lock");
is($r->{status}, 200, 'do_lock passes again');
is($r->{body}, "fence " . json(http($p, 'GET', "/lock/$lock"))->{fence}
   . "\n", '... with the latest fence');

close $_ for $c, @conns;
ok($t->stop, 'nginx stops gracefully');
$t->check_logs(undef, expect => [
    qr/do: call to owner worker \d+ timed out/,
    qr/do: lock "locks" did not answer \(504\)/,
]);

done_testing;

# A caller whose owner worker goes away hears it at once, not at its
# timeout: a lock waiter parked at an owner that is killed (-9) gets 502,
# one parked at an owner that exits (TERM: its parked calls are answered
# at exit and the answers still leave) gets 503.  Both waited with
# wait=30s and do_call_timeout 60s.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP;
use Time::HiRes qw(time);
use DoTest qw(http wait_for worker_conns);

my $t = DoTest->new(workers => 2, http => <<'EOF')->start;
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

for my $case (['KILL', 502, qr/exited before it answered/],
              ['TERM', 503, qr/shut down/])
{
    my ($sig, $status, $body) = @$case;
    my $name = "held-$sig";
    my $h = $J->decode(http($p, 'POST', "/lock/$name?ttl=60s")->{body});
    ok($h->{token}, "$sig: the lock is held");

    my $w = worker_conns($p, "/lock/$name", other => 1);
    my ($conn, $owner_pid) = ($w->{other}[0], $w->{owner_pid});
    ok($conn && $owner_pid && $owner_pid > 1
       && grep({ $_ == $owner_pid } $t->workers),
       "$sig: a connection on the other worker, and the owner's pid")
        or next;

    # the waiter parks at the owner; then the owner goes
    my $start;
    $t->expect_killed($owner_pid);
    my $pid = fork() // die;
    if ($pid == 0) {
        sleep 1;
        kill $sig, $owner_pid;
        POSIX::_exit(0);
    }
    $start = time;
    my $r = http($p, 'POST', "/lock/$name?wait=30s", sock => $conn);
    my $took = time - $start;
    waitpid($pid, 0);
    is($r->{status}, $status, "$sig: the waiter gets $status");
    like($r->{body}, $body, "$sig: ... saying why");
    cmp_ok($took, '<', 10, sprintf("$sig: ... after %.1f s, not at its "
                                   . "30 s wait", $took));
    close $conn;

    wait_for(sub { my @w = $t->workers; @w == 2
                   && !grep { $_ == $owner_pid } @w }, 10);
}

like($t->error_log, qr/owner worker \d+ \(pid \d+\) exited, answering 1 /,
     'the killed owner is in the error log');
ok($t->stop, 'nginx stops gracefully');
$t->check_logs;

done_testing;

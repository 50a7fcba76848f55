# When a limiter's owner cannot answer (here: its worker is stopped), the
# gate does not hang: after do_call_timeout it fails open or closed as the
# namespace says, with an error log line, and recovers when the owner does.
# Limiters have owners on Redis storage only (on memory every worker
# decides in the namespace's bucket table, whose failure, a table full of
# live buckets, is in 54-limit-buckets.t), so this runs against Redis.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP;
use IO::Socket::INET;
use DoTest qw(http wait_for);

my $secret = "a test secret of some length\n";

$ENV{DO_BACKEND} = 'redis';

my $t = DoTest->new(workers => 2, http => <<'EOF');
    do_secret %%PREFIX%%/do.secret;
    %%STORAGE%%
    do_call_timeout 1s;
    do_namespace open   rate_limiter rate=1r/m burst=100;
    do_namespace closed rate_limiter rate=1r/m burst=100 fail=closed;

    server {
        listen 127.0.0.1:%%PORT2%%;
        location / { return 200 "origin\n"; }
    }

    server {
        listen 127.0.0.1:%%PORT%%;
        keepalive_timeout 60s;
        location /open   { do_limit open key=$arg_k;
                           proxy_pass http://127.0.0.1:%%PORT2%%; }
        location /closed { do_limit closed key=$arg_k;
                           proxy_pass http://127.0.0.1:%%PORT2%%; }
        location = /w      { return 200 $do_worker; }
        # the same objects through do_pass: the module says who owns a key
        location = /owner-open {
            do_pass open name=$arg_k;
            add_header X-Owner $do_owner always;
        }
        location = /owner-closed {
            do_pass closed name=$arg_k;
            add_header X-Owner $do_owner always;
        }
        location = /status { do_status; }
    }
EOF
open my $fh, '>', $t->prefix . '/do.secret' or die;
print $fh $secret;
close $fh;
$t->start;
my $p = $t->port;

# the owner worker of a key, as the module answers it (a GET of the
# limiter's state takes no token)
sub owner_of {
    my ($ns, $name) = @_;
    my $r = http($p, 'GET', "/owner-$ns?k=$name");
    return $r->{status} == 200 ? $r->{headers}{'x-owner'} // -1 : -1;
}

# a keep-alive connection stays on the worker that accepted it
my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $p) or die;
my $mine = http($p, 'GET', '/w', sock => $s)->{body};
my $other = 1 - $mine;
my ($k_open) = grep { owner_of('open', $_) == $other } map { "k$_" } 1 .. 100;
my ($k_closed) = grep { owner_of('closed', $_) == $other } map { "k$_" } 1 .. 100;

# the other worker's pid, once it has registered in the status zone
my $pid = 0;
wait_for(sub {
    my $st = JSON::PP->new->decode(http($p, 'GET', '/status', sock => $s)->{body});
    $pid = $st->{workers}[$other]{pid} // 0;
    $pid > 1;
}, 10);
ok($pid > 1 && grep({ $_ == $pid } $t->workers), "worker $other is pid $pid")
    or BAIL_OUT('no pid for the other worker: not stopping anything');

is(http($p, 'GET', "/open?k=$k_open", sock => $s)->{status}, 200,
   "the limiter on worker $other answers");

ok(defined $k_open && defined $k_closed,
   "keys owned by worker $other: $k_open, $k_closed");

kill 'STOP', $pid;
my $r = http($p, 'GET', "/open?k=$k_open", sock => $s);
is($r->{status}, 200, 'owner stopped: fail=open lets the request through');
$r = http($p, 'GET', "/closed?k=$k_closed", sock => $s);
is($r->{status}, 503, 'owner stopped: fail=closed answers 503');
kill 'CONT', $pid;

like($t->error_log, qr/do: call to owner worker $other timed out/,
     'the timeout is logged');
like($t->error_log, qr/do: rate limiter "open" did not answer \(504\), failing open/,
     'the fail-open decision is logged');
ok(wait_for(sub {
       http($p, 'GET', "/closed?k=$k_closed", sock => $s)->{status} == 200
   }, 10), 'once the owner runs again, the limiter answers again');

$t->stop;
$t->check_logs(undef, expect => [qr/do: call to owner worker \d+ timed out/,
                                 qr/do: rate limiter "\w+" did not answer/]);

done_testing();

# Idle objects are evicted after do_idle_timeout and come back with their
# state: everything an object keeps lives in storage.  do_status shows it.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP;
use DoTest qw(http wait_for);

my $t = DoTest->new(workers => 2, http => <<'EOF')->start;
    %%STORAGE%%
    do_namespace state store;
    do_idle_timeout 2s;
    server {
        listen 127.0.0.1:%%PORT%%;
        location ~ ^/s/(?<o>[\w-]+)$ { do_pass state name=$o; }
        location = /status { do_status; }
    }
EOF
my $p = $t->port;
my $J = JSON::PP->new;

sub total {
    my ($field) = @_;
    my $s = $J->decode(http($p, 'GET', '/status')->{body});
    my $n = 0;
    $n += $_->{$field} for @{ $s->{workers} };
    return $n;
}

my $r1 = http($p, 'PUT', '/s/sleepy?key=k', body => 'kept');
my $r2 = http($p, 'POST', '/s/sleepy?key=n&op=incr');
my $act = $r1->{headers}{'do-activation'};
ok($act, "the reply names the activation ($act)");
is($r2->{headers}{'do-activation'}, $act, 'a busy object stays activated');
is(total('objects'), 1, 'do_status counts one object in memory');

ok(wait_for(sub { total('objects') == 0 }, 10),
   'the idle object is evicted after the idle timeout');
ok(total('evictions') >= 1, 'do_status counts the eviction');

my $r3 = http($p, 'GET', '/s/sleepy?key=k');
ok($r3->{headers}{'do-activation'}, 'the next call names its activation');
isnt($r3->{headers}{'do-activation'}, $act, 'the next call activates it again');
is($r3->{body}, 'kept', 'and its data came back from storage');
like(http($p, 'POST', '/s/sleepy?key=n&op=incr')->{body}, qr/"value":2/,
     'its counter continues where it was');
is(total('activations'), 2, 'do_status counts two activations');

my $prom = http($p, 'GET', '/status?format=prometheus');
like($prom->{headers}{'content-type'}, qr{^text/plain}, 'Prometheus format');
like($prom->{body}, qr/^ngx_do_activations_total\{worker="\d"\} \d+$/m,
     '... with per-worker counters');
like($prom->{body}, qr/^ngx_do_storage_free_bytes \d+$/m,
     '... and storage usage');

$t->stop;
$t->check_logs;

done_testing();

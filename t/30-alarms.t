# Alarms: store TTLs fire on time with no request arriving, alarms are found
# again after their owner was killed, or (redis) after nginx was stopped
# for 5 s; a failed alarm is retried with backoff; fencing tokens keep
# increasing from what storage holds across a full restart (redis).

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP;
use Time::HiRes qw(sleep time);
use DoTest qw(http wait_for);

my $J = JSON::PP->new;
my $redis_backend = DoTest::redis_backend();

my $t = DoTest->new(workers => 2, http => <<'EOF');
    do_secret %%PREFIX%%/do.secret;
    %%STORAGE%%
    do_namespace state store;
    do_namespace locks lock;
    server {
        listen 127.0.0.1:%%PORT%%;
        location ~ ^/s/(?<o>[\w-]+)$ { do_pass state name=$o; }
        location ~ ^/l/(?<o>[\w-]+)$ { do_pass locks name=$o; }
        location = /status { do_status; }
    }
EOF
open my $fh, '>', $t->prefix . '/do.secret' or die;
print $fh "the secret of the alarm test, long enough\n";
close $fh;
$t->start;
my $p = $t->port;

# the keys of a store object; a list runs no alarm and hides nothing
sub keys_of {
    my $r = http($p, 'GET', "/s/$_[0]");
    return join ' ', map { $_->{key} } @{ $J->decode($r->{body})->{items} };
}
sub fired {
    my $s = $J->decode(http($p, 'GET', '/status')->{body});
    my $n = 0;
    $n += $_->{alarms_fired} for @{ $s->{workers} };
    return $n;
}

# a TTL ends the key on time, by its alarm
my $r = http($p, 'PUT', '/s/t1?key=short&ttl=1s', body => 'x');
is($r->{status}, 200, 'PUT with ttl= is accepted');
is($J->decode($r->{body})->{ttl_ms}, 1000, '... and reports the ttl');
http($p, 'PUT', '/s/t1?key=forever', body => 'x');
http($p, 'PUT', '/s/t1?key=cleared&ttl=1s', body => 'x');
http($p, 'PUT', '/s/t1?key=cleared', body => 'y');
is(http($p, 'GET', '/s/t1?key=short')->{body}, 'x', 'the key is there before its ttl');
my $fired = fired();
ok(wait_for(sub { keys_of('t1') eq 'cleared forever' }, 10),
   'after its ttl the key is gone, with no request')
    or diag 'keys: ' . keys_of('t1');
cmp_ok(fired(), '>', $fired, 'do_status counts the fired alarm');
is(http($p, 'GET', '/s/t1?key=short')->{status}, 404, '... and reads as absent');
is(http($p, 'PUT', '/s/t1?key=k&ttl=soon', body => 'x')->{status}, 400,
   'an invalid ttl is 400');
is(http($p, 'PUT', '/s/t1?key=%00alarms', body => 'x')->{status}, 400,
   'keys that start with a zero byte are refused');

# many keys with TTLs in many objects all end
http($p, 'PUT', "/s/many$_?key=k&ttl=" . (500 + 10 * $_) . 'ms', body => 'x')
    for 1 .. 100;
ok(wait_for(sub { !grep { keys_of("many$_") ne '' } 1 .. 100 }, 15),
   'TTLs of 100 objects all ran out');

# alarms due across a reload: the new workers find them
http($p, 'PUT', "/s/rl$_?key=k&ttl=" . (800 + 10 * $_) . 'ms', body => 'x')
    for 1 .. 50;
sleep 0.7;
$t->reload;
ok(wait_for(sub { !grep { keys_of("rl$_") ne '' } 1 .. 50 }, 15),
   'TTLs that came due during a reload all ran');

if (!$redis_backend) {
    # the owner dies before the alarm is due: the new workers find it in the
    # shared index
    http($p, 'PUT', '/s/t2?key=a&ttl=1500ms', body => 'x');
    my @old = $t->workers;
    $t->kill_worker('KILL', @old);
    wait_for(sub { my %o = map { $_ => 1 } @old;
                   my @w = grep { !$o{$_} } $t->workers; @w == 2 }, 10);
    ok(wait_for(sub { keys_of('t2') eq '' }, 10),
       'an alarm fires after every worker was killed');

    # stopped (SIGSTOP) for 5 s past the due time: it fires on waking
    http($p, 'PUT', '/s/t3?key=a&ttl=2s', body => 'x');
    my @all = ($t->pid, $t->workers);
    kill 'STOP', @all;
    sleep 5;
    kill 'CONT', @all;
    ok(wait_for(sub { keys_of('t3') eq '' }, 3),
       'an alarm due while nginx was stopped fires when it runs again');
    $t->check_logs;
    done_testing;
    exit;
}

my $redis = $t->redis;

# a full stop of nginx for 5 s: the restarted owner finds the alarm in the
# shard index and fires it
$r = http($p, 'PUT', '/s/t3?key=a&ttl=2s', body => 'x');
my $id = $r->{headers}{'do-object-id'};
like($redis->cli('ZRANGE', 'do:alarms:' . shard($id), 0, -1), qr/state:$id/,
     'the alarm is in its shard index in Redis');
$t->stop;
sleep 5;
$t->start;
ok(wait_for(sub { $redis->cli('HEXISTS', "do:{state:$id}:kv", 'a') =~ /^0/ }, 3),
   'an alarm due while nginx was stopped for 5 s fires after the start');
unlike($redis->cli('ZRANGE', 'do:alarms:' . shard($id), 0, -1), qr/state:$id/,
       '... and leaves the index');

# a failing alarm is retried: Redis stalls its writes (CLIENT PAUSE WRITE)
# past the alarm's time, so the alarm's commit times out
# (the pause starts as soon as the PUT is stored, well before the alarm)
$r = http($p, 'PUT', '/s/t4?key=a&ttl=1500ms', body => 'x');
$id = $r->{headers}{'do-object-id'};
$redis->cli('CLIENT', 'PAUSE', '4000', 'WRITE');
ok(wait_for(sub { $redis->cli('HEXISTS', "do:{state:$id}:kv", 'a') =~ /^0/ }, 15),
   'an alarm that failed while Redis stalled runs on a retry');
like($t->error_log, qr/alarm of "state" object \w+ could not run \(50\d\), retry in 2000 ms/,
     '... and the retry was logged');

# a lock waiter keeps its place while Redis stalls under its wake turns
my $held = $J->decode(http($p, 'POST', '/l/stall?ttl=10s')->{body});
my @w = DoTest::parallel(2, sub {
    my ($i) = @_;
    if ($i == 1) {
        sleep 0.3;
        $redis->cli('CLIENT', 'PAUSE', '2500', 'WRITE');
        return ();
    }
    my $s = time;
    my $r = http($p, 'POST', '/l/stall?wait=4s');
    return sprintf "%d %.1f", $r->{status}, time - $s;
});
my ($wst, $wtime) = split / /, $w[0] // '0 0';
is($wst, 423, 'a waiter whose object could not be read meanwhile gets 423');
cmp_ok($wtime, '>=', 3.9, '... once its wait= is out, not at once');

# fencing tokens go on from the stored one after a full restart
$r = http($p, 'POST', '/l/f?ttl=1s');
my $g = $J->decode($r->{body});
$id = $r->{headers}{'do-object-id'};
$t->stop;
my $ahead = $g->{fence} + 1_000_000_000_000;    # far ahead of the clock
$redis->cli('HSET', "do:{locks:$id}:kv", 'fence', "1:$ahead");
$redis->cli('HDEL', "do:{locks:$id}:kv", 'holder');
$t->start;
$r = http($p, 'POST', '/l/f?ttl=1s');
is($J->decode($r->{body})->{fence}, $ahead + 1,
   'after a full restart the fence continues from the stored one');

# the stalls above, on purpose
$t->check_logs(undef, expect => [
    qr/do: redis \S+: (did not answer in time|connection lost|is unavailable)/,
    qr/do: a commit of \d+ calls of namespace "\w+" failed/,
    qr/do: alarm of "\w+" object \w+ could not run/,
]);
done_testing;

# the shard of an ID: its first 32 bits mod 1024
sub shard { hex(substr($_[0], 0, 8)) % 1024 }

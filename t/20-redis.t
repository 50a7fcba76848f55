# The redis storage backend: state survives a full stop of nginx, an
# acknowledged write is in Redis, a Redis outage fails calls fast and heals
# by itself, AUTH, ACL users, db numbers and unix sockets work, and no
# command runs before AUTH and SELECT have succeeded.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP;
use File::Temp;
use POSIX ();
use Time::HiRes qw(time);
use DoTest qw(http parallel wait_for);

my $J = JSON::PP->new;

sub nginx_with {
    my ($storage, %args) = @_;
    return DoTest->new(workers => 2, %args, http => <<"EOF");
    do_secret %%PREFIX%%/do.secret;
    do_storage $storage;
    do_call_timeout 30s;
    do_namespace state store;
    do_namespace api rate_limiter rate=1r/m burst=2;
    do_namespace open rate_limiter rate=1r/m burst=1000;

    server {
        listen 127.0.0.1:%%PORT2%%;
        location / { return 200 "origin\\n"; }
    }

    server {
        listen 127.0.0.1:%%PORT%%;
        location ~ ^/s/(?<o>[\\w-]+)\$ { do_pass state name=\$o; }
        location /api  { do_limit api key=\$arg_k;
                         proxy_pass http://127.0.0.1:%%PORT2%%; }
        location /open { do_limit open key=\$arg_k;
                         proxy_pass http://127.0.0.1:%%PORT2%%; }
        location = /status { do_status; }
    }
EOF
}

sub secret {
    my ($t) = @_;
    open my $fh, '>', $t->prefix . '/do.secret' or die;
    print $fh "the secret of this test, long enough\n";
    close $fh;
    return $t;
}

# 1. a full stop, and the data is still there
my $redis = DoTest::Redis->new->start;
my $rport = $redis->port;
my $t = secret(nginx_with("redis://127.0.0.1:$rport/0 timeout=1s pool=3"))->start;
my $p = $t->port;

ok(wait_for(sub {
       my @c = grep { /cmd=/ } split /\n/, $redis->cli('CLIENT', 'LIST');
       @c >= 7;
   }, 5), 'pool=3: each of the 2 workers holds 3 connections');

my $r = http($p, 'PUT', '/s/keep?key=k', body => 'durable');
is($r->{status}, 200, 'a value is stored');
my $id = $r->{headers}{'do-object-id'};
my ($ver) = $r->{headers}{etag} =~ /(\d+)/;
is($redis->cli('HGET', "do:{state:$id}:kv", 'k'), "$ver:durable\n",
   'the acknowledged write is in Redis, under the documented key');
is($redis->cli('GET', "do:{state:$id}:v"), "$ver\n",
   '... with the object version beside it');

is(join(' ', map { http($p, 'GET', '/api?k=u')->{status} } 1 .. 4),
   '200 200 200 429', 'a rate limiter key takes burst+1');

$t->stop;
$t->start;
is(http($p, 'GET', '/s/keep?key=k')->{body}, 'durable',
   'after a full stop of nginx the store object has its data');
is(http($p, 'GET', '/api?k=u')->{status}, 429,
   '... and the rate limiter its state');

# a corrupted object in Redis is an error for its calls, not a crash
$r = http($p, 'PUT', '/s/broken?key=k', body => 'x');
my $bid = $r->{headers}{'do-object-id'};
$t->stop;
$redis->cli('DEL', "do:{state:$bid}:kv");
$redis->cli('SET', "do:{state:$bid}:kv", 'not a hash');
$t->start;
is(http($p, 'GET', '/s/broken?key=k')->{status}, 503,
   'a key of the wrong type in Redis: 503');
like($t->error_log, qr/do: redis: unexpected reply to a load \(type 6: WRONGTYPE/,
     '... and a log line naming the reply');
$redis->cli('DEL', "do:{state:$bid}:kv");
$redis->cli('HSET', "do:{state:$bid}:kv", 'k', 'no version prefix');
is(http($p, 'GET', '/s/broken?key=k')->{status}, 503,
   'a value without its version prefix: 503');
$redis->cli('DEL', "do:{state:$bid}:kv", "do:{state:$bid}:v");
is(http($p, 'GET', '/s/broken?key=k')->{status}, 404,
   'once the key is cleaned up, the object is simply empty');

# 2. Redis killed under load: fast 503s (not 504s after do_call_timeout),
#    a fail-open gate lets traffic through, and it heals by itself
my @workers = $t->workers;
is(http($p, 'GET', '/s/keep?key=k')->{body}, 'durable', 'an object is loaded');

# clients keep writing while Redis dies and comes back
my $dir = File::Temp::tempdir(CLEANUP => 1);
my @clients;
for my $c (1 .. 4) {
    my $pid = fork() // die;
    if ($pid == 0) {
        my %seen;
        my $i = 0;
        until (-e "$dir/stop") {
            my $st = http($p, 'POST', "/s/load$c-" . ($i++ % 50) . '?key=n&op=incr');
            $seen{ $st->{status} || "error" }++;
        }
        open my $fh, '>', "$dir/$c" or POSIX::_exit(1);
        print $fh join(' ', map { "$_=$seen{$_}" } sort keys %seen), "\n";
        close $fh;
        POSIX::_exit(0);
    }
    push @clients, $pid;
}

wait_for(sub { 0 }, 0.3);
$redis->stop('KILL');

my @during = map { http($p, 'POST', "/s/fresh$_?key=n&op=incr")->{status} } 1 .. 10;
is("@during", join(' ', ('503') x 10),
   'with Redis gone, calls that need it get 503 at once');
is(http($p, 'GET', '/open?k=new')->{status}, 200,
   'a fail-open limiter lets requests through');
# one outage line a second for all of nginx: whichever came first
like($t->error_log,
     qr/\[error\] .*do: (redis redis:\/\/127\.0\.0\.1:$rport\/0: (connection lost|connect failed|is unavailable|command not sent)|a commit of \d+ calls of namespace "\w+" failed)/,
     'the outage is in the error log');
my $kept = http($p, 'GET', '/s/keep?key=k');
is($kept->{status}, 503,
   'an object already in memory answers 503, not what it last saw: '
   . 'Redis may hold a newer value');

$redis = DoTest::Redis->new->start_on($rport);
ok(wait_for(sub {
       http($p, 'POST', '/s/after?key=n&op=incr')->{status} == 200
   }, 15), 'once Redis is back, calls succeed without touching nginx');
is(http($p, 'GET', '/s/keep?key=k')->{status}, 404,
   '... and the object in memory reads what Redis has now (the new, empty '
   . 'server lost the key), not its old copy');

open my $stop, '>', "$dir/stop" or die;
close $stop;
waitpid($_, 0) for @clients;
my %all;
for my $c (1 .. 4) {
    open my $fh, '<', "$dir/$c" or die "client $c left no result";
    for (split ' ', scalar <$fh>) {
        my ($k, $v) = split /=/;
        $all{$k} += $v;
    }
}
ok($all{503}, "clients during the outage got 503s ($all{503})");
ok($all{200}, "... and 200s before and after it ($all{200})");
is(join(' ', grep { $_ ne '200' && $_ ne '503' } sort keys %all), '',
   '... and nothing else: no 504, no dropped connection');
is_deeply([ sort { $a <=> $b } $t->workers ], [ sort { $a <=> $b } @workers ],
          'no worker died');
$t->stop;
$t->check_logs(undef, expect => [
    qr/do: redis redis:\S+: (connection lost|connect failed|is unavailable|command not sent|did not answer in time)/,
    qr/do: a commit of \d+ calls of namespace "\w+" failed/,
    qr/do: rate limiter "\w+" did not answer/,
    qr/do: deferred writes of namespace "\w+" could not/,
    qr/do: redis: unexpected reply to a load/,    # the corrupted key
]);

# 3. AUTH with a password, a db number
my $auth = DoTest::Redis->new(args => [
    '--requirepass', 'sesame',
    '--user', 'alice', 'on', '>wonderland', '~*', '&*', '+@all',
])->start;
$auth->{cli_auth} = ['-a', 'sesame', '--no-auth-warning'];
my $ap = $auth->port;

$t = secret(nginx_with("redis://:sesame\@127.0.0.1:$ap/2"))->start;
$r = http($t->port, 'PUT', '/s/db2?key=k', body => 'in two');
is($r->{status}, 200, 'AUTH with a password: stored');
$id = $r->{headers}{'do-object-id'};
like($auth->cli('-n', 2, 'HGET', "do:{state:$id}:kv", 'k'), qr/^\d+:in two$/,
     '... in db 2');
is($auth->cli('-n', 0, 'EXISTS', "do:{state:$id}:kv"), "0\n", '... not in db 0');
$t->stop;
$t->check_logs('password');

# an ACL user, and a key prefix
$t = secret(nginx_with("redis://alice:wonderland\@127.0.0.1:$ap prefix=app1:"))
     ->start;
$r = http($t->port, 'PUT', '/s/acl?key=k', body => 'alice');
is($r->{status}, 200, 'AUTH with an ACL user and password works');
$id = $r->{headers}{'do-object-id'};
like($auth->cli('HGET', "app1:{state:$id}:kv", 'k'), qr/:alice$/,
     'prefix= puts the keys under the prefix');
$t->stop;
$t->check_logs('ACL user');

# Setup order.  A paused Redis holds nginx's AUTH and SELECT unanswered,
# so that the first call arrives while its connection is still in setup:
# it must wait for them, and fail with 503 when they fail.
sub start_during_setup {
    my ($redis, $storage) = @_;
    $redis->cli('CONFIG', 'RESETSTAT');
    $redis->cli('CLIENT', 'PAUSE', 1000, 'ALL');
    return secret(nginx_with("$storage timeout=5s"))->start;
}

# statuses of PUTs to /s/<name>1..<n>, and those that took over a second
sub puts {
    my ($t, $name, $n) = @_;
    my (@st, @slow);
    for my $i (1 .. $n) {
        my $t0 = time;
        push @st, http($t->port, 'PUT', "/s/$name$i?key=k", body => 'x')
                  ->{status};
        push @slow, $i if time - $t0 > 1;
    }
    return ("@st", "@slow");
}

# the commands that Redis ran (or rejected) since CONFIG RESETSTAT, but a
# connection's setup (AUTH, SELECT, SCRIPT LOAD of the scripts)
sub commands_run {
    my ($redis) = @_;
    my @c = $redis->cli('INFO', 'commandstats') =~ /^cmdstat_([\w|]+):/mg;
    return join ' ', sort grep { !/^(auth|select|script\|load|config\|resetstat)$/
                                 && !/^client\|pause$/ } @c;
}

# a wrong password: a clear log line, 503s at once, no command sent
$t = start_during_setup($auth, "redis://:wrong\@127.0.0.1:$ap");
is(http($t->port, 'PUT', '/s/early?key=k', body => 'x')->{status}, 503,
   'a wrong password: a call made during AUTH gets 503');
my ($st, $slow) = puts($t, 'no', 5);
is($st, '503 503 503 503 503', '... and so do later calls');
is($slow, '', '... at once');
ok(wait_for(sub { $t->error_log =~ /do: redis redis:\/\/127\.0\.0\.1:$ap\/0: AUTH failed: WRONGPASS/ }, 5),
   '... and the error log says AUTH failed');
is(commands_run($auth), '', '... and no command reached Redis');
unlike($t->error_log, qr/NOAUTH|unexpected reply/,
       '... nor was answered by it');
unlike($t->error_log, qr/wrong/, '... without the password itself');
$t->stop;
$t->check_logs('wrong password', expect => [qr/do: redis \S+: (AUTH failed|is unavailable)/]);

# a db that does not exist: SELECT fails, and no command runs on db 0
my $two = DoTest::Redis->new(args => ['--databases', '2'])->start;
my $tp = $two->port;
$t = start_during_setup($two, "redis://127.0.0.1:$tp/5");
is(http($t->port, 'PUT', '/s/early?key=k', body => 'x')->{status}, 503,
   'a db that does not exist: a call made during SELECT gets 503');
($st, $slow) = puts($t, 'sel', 5);
is($st, '503 503 503 503 503', '... and so do later calls');
is($slow, '', '... at once');
ok(wait_for(sub { $t->error_log =~ m{do: redis redis://127\.0\.0\.1:$tp/5: SELECT failed: ERR DB index is out of range} }, 5),
   '... and the error log says SELECT failed');
is(commands_run($two), '', '... and no command reached Redis');
is($two->cli('DBSIZE'), "0\n", '... so nothing is in db 0');
is($J->decode(http($t->port, 'GET', '/status')->{body})->{storage}{connected},
   0, '... and do_status counts no ready connection');
$t->stop;
$t->check_logs('db out of range', expect => [qr/do: redis \S+: (SELECT failed|is unavailable)/]);

# the right db: the keys land there from the very first call
$t = start_during_setup($two, "redis://127.0.0.1:$tp/1 pool=2");
($st, $slow) = puts($t, 'one', 3);
is($st, '200 200 200', 'a db that exists: calls made during SELECT succeed');
# three objects of three keys (:kv, :v, :b) and their namespace's count
is($two->cli('-n', 1, 'DBSIZE'), "10\n", '... their keys are in db 1');
is($two->cli('DBSIZE'), "0\n", '... and none in db 0');
$t->stop;
$t->check_logs('db 1');

# 4. a unix socket, with a db
my $sock = DoTest::Redis->new->start;
$t = secret(nginx_with('redis+unix://' . $sock->socket . '?db=3'))->start;
$r = http($t->port, 'PUT', '/s/unix?key=k', body => 'via socket');
is($r->{status}, 200, 'a unix socket: stored');
$id = $r->{headers}{'do-object-id'};
like($sock->cli('-n', 3, 'HGET', "do:{state:$id}:kv", 'k'), qr/:via socket$/,
     '... in db 3');
$t->stop;
$t->check_logs('unix socket');

# 5. the redis example configuration works as it says
{
    my $r5 = DoTest::Redis->new->start;
    open my $fh, '<', DoTest::root() . '/conf-examples/redis-durable.conf'
        or die;
    local $/;
    my $ex = DoTest->new(raw => <$fh>, workers => 2,
                         redis_port => $r5->port);
    open my $sf, '>', $ex->prefix . '/conf/do.secret' or die;
    print $sf "a secret for the example test\n";
    close $sf;
    $ex->start;
    my $ep = $ex->port;
    http($ep, 'POST', '/counters/visits?key=n&op=incr') for 1 .. 2;
    $r = http($ep, 'POST', '/counters/visits?key=n&op=incr');
    like($r->{body}, qr/"value":3/, 'redis-durable: the counter counts');
    like($r5->cli('--scan', '--pattern', 'do:{counters:*'), qr/:kv$/m,
         'redis-durable: its object is in Redis');
    is(http($ep, 'GET', '/')->{body}, "hello from the origin\n",
       'redis-durable: the gated origin answers');
    $ex->stop;
    $ex->check_logs('redis-durable');
}

done_testing();

# The redis storage in operation: the password@ URL form, reconnecting
# with a backoff from 100 ms to 5 s, one error line a second while Redis
# is down, fail=closed, rate limiter keys that expire in Redis when their
# bucket is full again, acknowledged writes that survive a Redis
# restart with appendonly, and scripts flushed from Redis (SCRIPT FLUSH)
# loaded again.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Temp qw(tempdir);
use IO::Socket::INET;
use POSIX ();
use Time::HiRes qw(time);
use DoTest qw(http parallel wait_for);

# the lines an outage makes, on purpose
my @OUTAGE = (qr/do: redis \S+: (connection lost|connect failed|is unavailable|command not sent)/,
              qr/do: rate limiter "\w+" did not answer \(503\)/,
              qr/do: a commit of \d+ calls of namespace "\w+" failed/,
              qr/do: deferred writes of namespace "\w+" could not be stored/);

sub nginx_on {
    my ($storage, %args) = @_;
    my $t = DoTest->new(workers => 2, %args, http => <<"EOF");
    do_secret %%PREFIX%%/do.secret;
    do_storage $storage;
    do_flush_interval 100ms;
    do_namespace state store;
    do_namespace open rate_limiter rate=1r/m burst=100000;
    do_namespace closed rate_limiter rate=1r/m burst=100000 fail=closed;
    do_namespace ten rate_limiter rate=1r/s burst=9;
    do_namespace minute rate_limiter rate=1r/m;
    do_namespace fast rate_limiter rate=10r/s burst=4;

    server {
        listen 127.0.0.1:%%PORT2%%;
        location / { return 200 "origin\\n"; }
    }

    server {
        listen 127.0.0.1:%%PORT%%;
        location ~ ^/s/(?<o>[\\w-]+)\$ { do_pass state name=\$o; }
        location /open { do_limit open key=\$arg_k;
                         proxy_pass http://127.0.0.1:%%PORT2%%; }
        location /closed { do_limit closed key=\$arg_k;
                           proxy_pass http://127.0.0.1:%%PORT2%%; }
        location /ten { do_limit ten key=\$arg_k;
                        proxy_pass http://127.0.0.1:%%PORT2%%; }
        location /minute { do_limit minute key=\$arg_k;
                           proxy_pass http://127.0.0.1:%%PORT2%%; }
        location /fast { do_limit fast key=\$arg_k;
                         proxy_pass http://127.0.0.1:%%PORT2%%; }
    }
EOF
    open my $fh, '>', $t->prefix . '/do.secret' or die;
    print $fh "the secret of this test, long enough\n";
    close $fh;
    return $t;
}

# 1. redis://password@host: AUTH with the requirepass password alone
{
    my $redis = DoTest::Redis->new(args => ['--requirepass', 'sesame'])
                ->start;
    $redis->{cli_auth} = ['-a', 'sesame', '--no-auth-warning'];
    my $rp = $redis->port;
    my $t = nginx_on("redis://sesame\@127.0.0.1:$rp/1")->start;
    my $r = http($t->port, 'PUT', '/s/pw?key=k', body => 'open sesame');
    is("$r->{status}", '200', 'redis://password@host: a write is stored');
    my $id = $r->{headers}{'do-object-id'} // '';
    like($redis->cli('-n', 1, 'HGET', "do:{state:$id}:kv", 'k'),
         qr/^\d+:open sesame$/, '... in Redis, in db 1');
    is(http($t->port, 'GET', '/s/pw?key=k')->{body}, 'open sesame',
       '... and read back');
    unlike($t->error_log, qr/AUTH failed|NOAUTH/, '... with no AUTH error');
    ok($t->stop, 'nginx stops gracefully');
    $t->check_logs('password@');

    # the same form with a wrong password is refused by Redis
    $t = nginx_on("redis://wrong\@127.0.0.1:$rp/1")->start;
    is(http($t->port, 'PUT', '/s/pw?key=k', body => 'x')->{status}, 503,
       'redis://password@host with a wrong password: 503');
    ok(wait_for(sub { $t->error_log =~ /AUTH failed: WRONGPASS/ }, 5),
       '... and AUTH failed is logged');
    unlike($t->error_log, qr/wrong\@/, '... without the password');
    ok($t->stop, 'nginx stops gracefully');
    $t->check_logs('wrong password@',
                   expect => [qr/AUTH failed/, qr/do: redis \S+: is unavailable/]);
}

# 2. Reconnect backoff: a server that accepts and hangs up at once, and
#    logs the time of every connection attempt
{
    my $dir = tempdir(CLEANUP => 1);
    my $listen = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
                                       LocalPort => 0, Listen => 16,
                                       ReuseAddr => 1) or die $!;
    my $fport = $listen->sockport;
    my $pid = fork() // die;
    if ($pid == 0) {
        while (my $c = $listen->accept) {
            open my $fh, '>>', "$dir/accepts" or POSIX::_exit(1);
            syswrite $fh, sprintf("%.6f\n", time);
            close $fh;
            close $c;
        }
        POSIX::_exit(0);
    }
    close $listen;

    my $attempts = sub {
        open my $fh, '<', "$dir/accepts" or return wantarray ? () : 0;
        chomp(my @a = <$fh>);
        return @a;
    };

    my $t = nginx_on("redis://127.0.0.1:$fport/0 pool=1", workers => 1)
            ->start;
    ok(wait_for(sub { $attempts->() >= 9 }, 40),
       'a connection that keeps dropping is tried again and again')
        or diag(join ' ', $attempts->());
    my @at = $attempts->();
    my @gap = map { $at[$_] - $at[$_ - 1] } 1 .. $#at;
    my $gaps = join ' ', map { sprintf '%.2f', $_ } @gap;
    ok($at[4] - $at[0] < 3,
       "the first retries come fast (100 ms, doubling): $gaps");
    ok($gap[5] > 1.5, "... then the worker backs off: $gaps");
    ok($gap[6] > 4 && $gap[6] < 7.5 && $gap[7] > 4 && $gap[7] < 7.5,
       "... up to 5 s between attempts, no more: $gaps");
    ok($t->stop, 'nginx stops gracefully');
    $t->check_logs('backoff', expect => [@OUTAGE]);
    kill 'KILL', $pid;
    waitpid($pid, 0);
}

# 3. Redis down under load: fail=closed answers 503, fail=open lets
#    requests through, and the whole nginx logs one error line a second
{
    my $redis = DoTest::Redis->new->start;
    my $rp = $redis->port;
    my $t = nginx_on("redis://127.0.0.1:$rp/0 timeout=1s pool=3")->start;
    my $p = $t->port;

    # objects and limiter keys in memory, with state in Redis
    my @up = map {
        (http($p, 'PUT', "/s/o$_?key=n", body => '0')->{status},
         http($p, 'GET', "/open?k=$_")->{status},
         http($p, 'GET', "/closed?k=$_")->{status})
    } 1 .. 10;
    is("@up", join(' ', ('200') x 30), 'while Redis is up, all is well');
    my $r = http($p, 'GET', '/closed?k=up');
    is("$r->{status} $r->{body}", "200 origin\n",
       'fail=closed lets requests through while Redis is up');

    $redis->stop('KILL');

    # load for four seconds: loaded objects, new ones, both limiters
    my @st = parallel(4, sub {
        my ($c) = @_;
        my %seen;
        my $end = time + 4;
        my $i = 0;
        while (time < $end) {
            $i++;
            my $o = $i % 12;
            $seen{ 's' . http($p, 'POST', "/s/o$o?key=n&op=incr")->{status} }++;
            $seen{ 'o' . http($p, 'GET', "/open?k=$c-$i")->{status} }++;
            $seen{ 'c' . http($p, 'GET', "/closed?k=$c-$i")->{status} }++;
            $seen{ 'm' . http($p, 'GET', "/closed?k=" . ($i % 10 + 1))
                         ->{status} }++;
        }
        return map { "$_ $seen{$_}" } sort keys %seen;
    });
    my %all;
    for (@st) {
        my ($k, $n) = split / /;
        $all{$k} += $n;
    }
    my $seen = join ' ', map { "$_=$all{$_}" } sort keys %all;
    is(join(' ', sort grep { !/^(s503|o200|c503|m200)$/ } keys %all), '',
       'with Redis down: the store answers 503, a new limiter key 200 with '
       . 'fail=open and 503 with fail=closed, and a key in memory goes on '
       . "deciding from its copy ($seen)");
    ok($all{s503} && $all{o200} && $all{c503} && $all{m200},
       '... each of them seen');

    $r = http($p, 'GET', '/closed?k=after');
    is($r->{status}, 503, 'fail=closed: 503 while Redis is down');
    like($r->{body}, qr/503 Service Temporarily Unavailable/,
         '... with the 503 page');
    $r = http($p, 'GET', '/open?k=after');
    is("$r->{status} $r->{body}", "200 origin\n",
       'fail=open: the origin answers');

    my %per_second;
    my @lines = grep { /\[error\] .*do: / } split /\n/, $t->error_log;
    $per_second{ substr($_, 0, 19) }++ for @lines;
    my @busy = grep { $per_second{$_} > 1 } sort keys %per_second;
    ok(@lines >= 4, 'the outage is logged every second ('
       . scalar(@lines) . ' lines)');
    is("@busy", '', 'at most one error line a second, for all workers '
       . 'and causes together')
        or diag(join "\n", @lines);

    $redis = DoTest::Redis->new->start_on($rp);
    ok(wait_for(sub {
           http($p, 'GET', '/closed?k=healed')->{status} == 200
       }, 15), 'once Redis is back, fail=closed lets requests through again');
    ok($t->stop, 'nginx stops gracefully');
    $t->check_logs('outage', expect => [@OUTAGE]);
}

# 4. Rate limiter state expires in Redis when the bucket is full again
{
    my $redis = DoTest::Redis->new->start;
    my $t = nginx_on('redis://127.0.0.1:' . $redis->port . '/0')->start;
    my $p = $t->port;

    # the Redis keys of a limiter's key, once its state is flushed
    my $keys_of = sub {
        my ($ns) = @_;
        my @k;
        wait_for(sub {
            @k = grep { length } split /\n/,
                 $redis->cli('--scan', '--pattern', "do:{$ns:*");
            @k == 1;
        }, 5);
        return sort @k;
    };

    is(join(' ', map { http($p, 'GET', '/ten?k=a')->{status} } 1 .. 11),
       join(' ', ('200') x 10, '429'),
       'rate=1r/s burst=9: ten pass, the eleventh is rejected');
    my @k = $keys_of->('ten');
    is(scalar @k, 1, 'its state is in Redis (one string, the TAT)');
    like($k[0] // '', qr/^do:\{ten:[0-9a-f]{64}\}:tat$/,
         '... under the key\'s ID');
    for my $k (@k) {
        my $pttl = $redis->cli('PTTL', $k) + 0;
        ok($pttl > 6000 && $pttl <= 11000,
           "$k expires when the bucket is full again, in about 10 s "
           . "(PTTL $pttl ms)");
    }

    is(http($p, 'GET', '/minute?k=a')->{status}, 200,
       'rate=1r/m: one request passes');
    for my $k ($keys_of->('minute')) {
        my $pttl = $redis->cli('PTTL', $k) + 0;
        ok($pttl > 50000 && $pttl <= 61000,
           "$k expires in about 60 s (PTTL $pttl ms)");
    }

    is(join(' ', map { http($p, 'GET', '/fast?k=a')->{status} } 1 .. 5),
       '200 200 200 200 200', 'rate=10r/s burst=4: five pass');
    my $stored = 0;
    ok(wait_for(sub {
           my $n = () = $redis->cli('--scan', '--pattern', 'do:{fast:*')
                        =~ /\S+/g;
           $stored ||= $n;
           $stored && $n == 0;
       }, 10), 'its keys appear in Redis, then go when it is full again');

    ok($t->stop, 'nginx stops gracefully');
    $t->check_logs('expiry');
}

# 5. appendonly yes: acknowledged writes survive a Redis kill and restart
{
    my $redis = DoTest::Redis->new(args => ['--appendonly', 'yes'])->start;
    like($redis->cli('CONFIG', 'GET', 'appendonly'), qr/^appendonly\nyes$/m,
         'the args given to DoTest::Redis override its --appendonly no');
    my $rp = $redis->port;
    my $t = nginx_on("redis://127.0.0.1:$rp/0 timeout=1s")->start;
    my $p = $t->port;

    my @st = parallel(4, sub {
        my ($c) = @_;
        return map {
            (http($p, 'POST', '/s/durable?key=n&op=incr')->{status},
             http($p, 'PUT', "/s/durable?key=c$c-$_", body => "v$_")
                 ->{status})
        } 1 .. 25;
    });
    my $acked = grep { $_ eq '200' } @st;
    is($acked, 200, 'every write is acknowledged');

    $redis->stop('KILL');
    $redis->start;

    ok(wait_for(sub {
           http($p, 'GET', '/s/durable?key=n')->{status} == 200
       }, 15), 'after Redis was killed and restarted, the object reads');
    is(http($p, 'GET', '/s/durable?key=n')->{body}, '100',
       '... every acknowledged incr');
    my $lost = grep {
        my ($c, $i) = @$_;
        http($p, 'GET', "/s/durable?key=c$c-$i")->{body} ne "v$i"
    } map { my $c = $_; map { [$c, $_] } 1 .. 25 } 0 .. 3;
    is($lost, 0, '... and every acknowledged PUT');
    ok($t->stop, 'nginx stops gracefully');
    $t->check_logs('appendonly', expect => [@OUTAGE]);
}

# the scripts run as EVALSHA, loaded with each connection's setup; a
# SCRIPT FLUSH fails the commands that meet it and the connections are
# made again, which loads the scripts again
{
    my $redis = DoTest::Redis->new->start;
    my $t = nginx_on('redis://127.0.0.1:' . $redis->port . '/0')->start;
    my $p = $t->port;
    is(http($p, 'PUT', '/s/sha?key=k', body => 'one')->{status}, 200,
       'a write before SCRIPT FLUSH');
    like($redis->cli('INFO', 'commandstats'), qr/^cmdstat_evalsha:calls=/m,
         '... went as EVALSHA');
    unlike($redis->cli('INFO', 'commandstats'), qr/^cmdstat_eval:/m,
           '... never as EVAL with the script\'s text');
    $redis->cli('SCRIPT', 'FLUSH');
    my @st = map { http($p, 'POST', '/s/sha?key=n&op=incr')->{status} } 1 .. 3;
    ok(wait_for(sub {
           http($p, 'POST', '/s/sha?key=n&op=incr')->{status} == 200
       }, 10), 'after SCRIPT FLUSH, writes are stored again')
        or diag "@st";
    is(http($p, 'GET', '/s/sha?key=k')->{body}, 'one',
       '... and what was stored before is there');
    ok(wait_for(sub { $t->error_log =~ /the scripts were flushed/ }, 5),
       '... and the error log says what happened');
    ok($t->stop, 'nginx stops gracefully');
    $t->check_logs('script flush',
                   expect => [@OUTAGE, qr/the scripts were flushed/,
                              qr/NOSCRIPT/]);
}

done_testing();

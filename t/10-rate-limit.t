# do_limit with the rate_limiter class: exact across workers, refill at the
# rate, RateLimit headers, independent keys, several limits per location,
# rejected requests never reach the origin, dry_run, delay, a reload that
# changes the rate keeps the keys' state, idle keys are forgotten (full
# buckets leave the namespace's table), and on Redis an exhausted key
# stays exhausted across a full stop.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP;
use Time::HiRes qw(sleep time);
use DoTest qw(http parallel wait_for);

my $conf = <<'EOF';
    %%STORAGE%%
    do_namespace api   rate_limiter rate=1r/m burst=20;
    do_namespace slow  rate_limiter rate=1r/s;
    do_namespace pair  rate_limiter rate=1r/m burst=1;
    do_namespace dry   rate_limiter rate=1r/m dry_run;
    do_namespace paced rate_limiter rate=1r/s burst=5 delay=1;
    do_namespace many  rate_limiter rate=100r/s;
    do_namespace slim  rate_limiter rate=1r/m;
    do_namespace grow  rate_limiter rate=1r/m burst=%%BURST%%;
    do_limit_log_level info;

    upstream origin { server 127.0.0.1:%%PORT2%%; }

    # the origin counts what reaches it
    server {
        listen 127.0.0.1:%%PORT2%%;
        access_log %%PREFIX%%/logs/origin.log;
        location / { return 200 "origin\n"; }
    }

    server {
        listen 127.0.0.1:%%PORT%% reuseport;
        add_header X-Limit $do_limit_status always;
        add_header X-Remaining $do_limit_remaining always;

        location /api   { do_limit api key=$arg_k; proxy_pass http://origin; }
        location /slow  { do_limit slow key=$arg_k headers=on;
                          proxy_pass http://origin; }
        location /two   { do_limit pair key=a$arg_a; do_limit pair key=b$arg_b;
                          proxy_pass http://origin; }
        location /dry   { do_limit dry key=$arg_k; proxy_pass http://origin; }
        location /paced { do_limit paced key=$arg_k; proxy_pass http://origin; }
        location /slim  { do_limit slim key=$arg_k status=503;
                          proxy_pass http://origin; }
        location /many  { do_limit many key=$arg_k;
                          proxy_pass http://origin; }
        location /grow  { do_limit grow key=$arg_k; proxy_pass http://origin; }
        location = /status { do_status; }
    }
EOF

my $t = DoTest->new(workers => 4, http => $conf =~ s/%%BURST%%/3/r)->start;
my $p = $t->port;
my $J = JSON::PP->new;

sub origin_hits {
    my ($path) = @_;
    open my $fh, '<', $t->prefix . '/logs/origin.log' or return 0;
    return scalar grep { /\Q$path\E/ } <$fh>;
}

# 1. exact across workers
my @r = parallel(20, sub {
    map {
        my $r = http($p, 'GET', '/api?k=hot');
        join ' ', $r->{status}, $r->{headers}{'retry-after'} // '-',
            $r->{headers}{'ratelimit'} // '-',
            $r->{headers}{'ratelimit-policy'} // '-';
    } 1 .. 10;
});
my $pass = grep { /^200 / } @r;
my @rej = grep { /^429 / } @r;
is($pass, 21, '200 concurrent requests on one key: exactly burst+1 = 21 pass');
is(scalar @rej, 179, '... and 179 are rejected with 429');
is(scalar(grep { m{^429 \d+ "api";r=0;t=\d+ "api";q=21;w=1260$} } @rej), 179,
   '... each with Retry-After, RateLimit and RateLimit-Policy');
wait_for(sub { origin_hits('/api?k=hot') >= 21 }, 5);
is(origin_hits('/api?k=hot'), 21, 'rejected requests never reach the origin');

# 2. refill at the rate
my $r1 = http($p, 'GET', '/slow?k=x');
my $r2 = http($p, 'GET', '/slow?k=x');
is($r1->{status}, 200, 'the first request at 1r/s passes');
like($r1->{headers}{ratelimit} // '', qr/^"slow";r=0;t=1$/,
     'headers=on adds RateLimit to passed responses');
is($r1->{headers}{'ratelimit-policy'}, '"slow";q=1;w=1',
   '... and RateLimit-Policy (one at a time: no burst)');
is($r2->{status}, 429, 'the second at once is rejected');
my $wait = $r2->{headers}{'retry-after'};
is($wait, 1, 'Retry-After says 1 second');
sleep $wait;
is(http($p, 'GET', '/slow?k=x')->{status}, 200,
   'after waiting what Retry-After said, the next request passes');

# 3. keys, empty keys, two limits
is(http($p, 'GET', '/api?k=other')->{status}, 200, 'another key has its own bucket');
is(scalar(grep { http($p, 'GET', '/api')->{status} == 200 } 1 .. 30), 30,
   'an empty key is not limited');
is(http($p, 'GET', '/api')->{headers}{'x-limit'}, undef,
   '... and has no $do_limit_status');
is(http($p, 'GET', '/two?a=1&b=1')->{status}, 200, 'two limits: first request passes');
is(http($p, 'GET', '/two?a=1&b=2')->{status}, 200, 'a=1 has one more (burst=1)');
is(http($p, 'GET', '/two?a=1&b=3')->{status}, 429, 'the first limit rejects a=1 now');
is(http($p, 'GET', '/two?a=2&b=1')->{status}, 200, 'b=1 has one more');
is(http($p, 'GET', '/two?a=3&b=1')->{status}, 429, 'the second limit rejects b=1 now');
is(http($p, 'GET', '/two?a=3&b=4')->{status}, 200,
   'the token a=3 took for the rejected request was given back');
is(http($p, 'GET', '/two?a=3&b=5')->{status}, 200, 'a=3 has its second token');
is(http($p, 'GET', '/two?a=3&b=6')->{status}, 429,
   '... and no more: the refund gave back exactly one');

# without headers=on a passed request has no RateLimit fields
my $plain = http($p, 'GET', '/api?k=plain');
is($plain->{status}, 200, 'a request within the limit passes');
ok(!exists $plain->{headers}{ratelimit}
   && !exists $plain->{headers}{'ratelimit-policy'},
   '... with no RateLimit fields: headers=on is off by default');
like($t->error_log, qr/\[info\] .*do: limiting requests by "api", retry in \d+ ms/,
     'rejections are logged at info, with the namespace');

# variables
my $v = http($p, 'GET', '/api?k=vars');
is($v->{headers}{'x-limit'}, 'PASSED', '$do_limit_status is PASSED');
is($v->{headers}{'x-remaining'}, 20, '$do_limit_remaining counts down');
is(http($p, 'GET', '/api?k=hot')->{headers}{'x-limit'}, 'REJECTED',
   '$do_limit_status is REJECTED');

# dry run
is(http($p, 'GET', '/dry?k=d')->{status}, 200, 'dry_run: the first passes');
my $d = http($p, 'GET', '/dry?k=d');
is($d->{status}, 200, 'dry_run: an excess request passes too');
is($d->{headers}{'x-limit'}, 'REJECTED_DRY_RUN', '... marked REJECTED_DRY_RUN');
like($t->error_log, qr/limiting requests, dry run, by "dry"/,
     '... and logged');

# delay
my $t0 = time;
my @paced = map {
    my $r = http($p, 'GET', '/paced?k=p');
    $r->{done} = time - $t0;
    $r;
} 1 .. 4;
is(scalar(grep { $_->{status} == 200 } @paced), 4, 'delay=1: all within burst pass');
is(join(' ', map { $_->{headers}{'x-limit'} } @paced),
   'PASSED PASSED DELAYED DELAYED', 'beyond delay=1 they are DELAYED');
# 1r/s with delay=1: the third is let through no sooner than 1 s after the
# first arrived, the fourth no sooner than 2 s (later if slow)
cmp_ok($paced[2]{done}, '>=', 0.99,
       sprintf('... the third really waited for its slot (at %.3f s)',
               $paced[2]{done}));
cmp_ok($paced[3]{done}, '>=', 1.99,
       sprintf('... and the fourth for its own (at %.3f s)',
               $paced[3]{done}));

# status=
http($p, 'GET', '/slim?k=s');
is(http($p, 'GET', '/slim?k=s')->{status}, 503, 'status= sets the reject status');

# a reload with a larger burst keeps the key's state
is(scalar(grep { http($p, 'GET', '/grow?k=g')->{status} == 200 } 1 .. 6), 4,
   'burst=3: four pass');
$t->write_conf(http => $conf =~ s/%%BURST%%/5/r);
$t->reload;
wait_for(sub { my @w = $t->workers; @w == 4 }, 15);
is(scalar(grep { http($p, 'GET', '/grow?k=g')->{status} == 200 } 1 .. 6), 2,
   'after a reload to burst=5 the same key has exactly two more');

# idle keys are forgotten.  A key is a bucket in the namespace's table:
# every new key frees the full buckets it finds, so the table holds the
# keys still live, not every key it saw.  On Redis a bucket that changed
# is stored by the next flush, which also lets go of the full ones (and a
# full bucket is not written to Redis at all).
sub status { $J->decode(http($p, 'GET', '/status')->{body}) }
{
    my $s0 = status()->{namespaces}{many};
    my @st = parallel(8, sub {
        my ($c) = @_;
        map { http($p, 'GET', "/many?k=k$c-$_")->{status} } 1 .. 500;
    });
    my $s1 = status()->{namespaces}{many};
    is(scalar(grep { $_ == 200 } @st), 4000, '4000 distinct keys: each passes');
    is($s1->{calls} - $s0->{calls}, 4000,
       '... each a take from a bucket of its own (4000 calls)');
    is($s0->{table}{entries}, 0, 'the table was empty before');
    # 4000 buckets would hold 125 pages of 4 KiB
    my $s2 = $s1;
    wait_for(sub {
        $s2 = status()->{namespaces}{many};
        $s2->{table}{entries} < 400;
    }, 10) if DoTest::redis_backend();
    ok($s2->{table}{entries} < 400,
       "full buckets are forgotten: $s2->{table}{entries} left of 4000 "
       . '(the ones still live)');
    cmp_ok($s0->{table}{free} - $s2->{table}{free}, '<=', 65536,
           '... and the table\'s zone is back where it was, but for the '
           . 'pages of those');
    ok(!grep({ $_->{objects} || $_->{activations} } @{ status()->{workers} }),
       '... and no object was made for them');
    is($t->redis->cli('--scan', '--pattern', 'do:{many:*'), '',
       '... nor anything stored in Redis for them (full when flushed)')
        if DoTest::redis_backend();
}

# Redis keeps a key's state across a full stop: the same key (do_secret)
# reaches the same bucket
if (DoTest::redis_backend()) {
    my @st = map { http($p, 'GET', '/api?k=restart')->{status} } 1 .. 22;
    is(scalar(grep { $_ == 200 } @st), 21, 'a key takes burst+1 = 21');
    is($st[-1], 429, '... and is then exhausted');
    ok($t->stop, 'a full stop of nginx');
    $t->start;
    is(http($p, 'GET', '/api?k=restart')->{status}, 429,
       'after a full stop and start the exhausted key is still exhausted');
}

$t->stop;
$t->check_logs;

done_testing();

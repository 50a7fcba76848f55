# limit_req's habits on do_limit: burst=, delay= and nodelay per location
# over the namespace's (one bucket per key, judged by each location's own
# burst, as limit_req judges one zone's state by each limit_req's burst),
# do_limit_dry_run and do_limit_status inherited like limit_req_dry_run and
# limit_req_status, with the headers and the variables; and the nginx -t
# errors of these parameters.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time);
use DoTest qw(http nginx_t);

my $t = DoTest->new(workers => 2, http => <<'EOF')->start;
    %%STORAGE%%
    do_namespace per_key rate_limiter rate=1r/m burst=2;
    do_namespace paced   rate_limiter rate=1r/s burst=4 delay=4;

    server {
        listen 127.0.0.1:%%PORT2%%;
        location / { return 200 "origin\n"; }
    }

    server {
        listen 127.0.0.1:%%PORT%% reuseport;
        add_header X-Limit $do_limit_status always;
        add_header X-Remaining $do_limit_remaining always;
        do_limit_status 503;

        location /ns    { do_limit per_key key=$arg_k headers=on;
                          proxy_pass http://127.0.0.1:%%PORT2%%; }
        location /wide  { do_limit per_key key=$arg_k burst=5 headers=on;
                          proxy_pass http://127.0.0.1:%%PORT2%%; }
        location /own   { do_limit per_key key=$arg_k status=418;
                          proxy_pass http://127.0.0.1:%%PORT2%%; }
        location /teapot {
            do_limit_status 429;
            do_limit per_key key=$arg_k;
            proxy_pass http://127.0.0.1:%%PORT2%%;
        }
        location /dry   { do_limit_dry_run on;
                          do_limit per_key key=$arg_k;
                          proxy_pass http://127.0.0.1:%%PORT2%%; }
        location /delayed { do_limit paced key=$arg_k;
                            proxy_pass http://127.0.0.1:%%PORT2%%; }
        location /nodelay { do_limit paced key=$arg_k nodelay;
                            proxy_pass http://127.0.0.1:%%PORT2%%; }
        location /delay1  { do_limit paced key=$arg_k delay=1;
                            proxy_pass http://127.0.0.1:%%PORT2%%; }
        location /drydelay { do_limit_dry_run on;
                             do_limit paced key=$arg_k delay=1;
                             proxy_pass http://127.0.0.1:%%PORT2%%; }
    }
EOF
my $p = $t->port;

sub statuses { join ' ', map { http($p, 'GET', $_[0])->{status} } 1 .. $_[1] }

# the namespace's burst=2 and the inherited do_limit_status 503
is(statuses('/ns?k=a', 4), '200 200 200 503',
   'the namespace\'s burst: 3 pass, then the server\'s do_limit_status');

# burst=5 on the location: 6 pass on a fresh key, and its headers say so
my $r = http($p, 'GET', '/wide?k=b');
is($r->{headers}{'ratelimit-policy'}, '"per_key";q=6;w=360',
   'burst=5: RateLimit-Policy is the location\'s bucket');
is($r->{headers}{'x-remaining'}, 5, 'burst=5: $do_limit_remaining from it');
is(statuses('/wide?k=b', 6), '200 200 200 200 200 503',
   'burst=5: six pass in all');

# one key, two locations: one bucket, each judged by its own burst
is(statuses('/ns?k=c', 3), '200 200 200', 'burst=2: three pass');
is(http($p, 'GET', '/ns?k=c')->{status}, 503, '... the fourth is over it');
is(statuses('/wide?k=c', 4), '200 200 200 503',
   'the same key through burst=5: three more, the state is shared');

# status= wins over do_limit_status; a location's do_limit_status over the
# server's
http($p, 'GET', "/own?k=d") for 1 .. 3;
is(http($p, 'GET', '/own?k=d')->{status}, 418, 'status= wins');
http($p, 'GET', "/teapot?k=e") for 1 .. 3;
$r = http($p, 'GET', '/teapot?k=e');
is($r->{status}, 429, 'a location\'s do_limit_status wins over the server\'s');
is($r->{headers}{'x-limit'}, 'REJECTED', '... $do_limit_status REJECTED');

# do_limit_dry_run on: over the limit, passes, marked and logged
is(statuses('/dry?k=f', 5), '200 200 200 200 200',
   'do_limit_dry_run on: nothing is rejected');
$r = http($p, 'GET', '/dry?k=f');
is($r->{headers}{'x-limit'}, 'REJECTED_DRY_RUN',
   '... $do_limit_status is REJECTED_DRY_RUN');
like($t->error_log, qr/limiting requests, dry run, by "per_key"/,
     '... and it is logged as a dry run');
is(statuses('/wide?k=f', 4), '200 200 200 503',
   '... and the requests over it took nothing, as limit_req\'s dry run: '
   . 'burst=5 has exactly three more for the key');

# delay: the namespace's delay=4 lets 5 through at once; nodelay and
# delay=1 on the location
is(join(' ', map { http($p, 'GET', '/delayed?k=g')->{headers}{'x-limit'} }
             1 .. 5),
   'PASSED PASSED PASSED PASSED PASSED', 'the namespace\'s delay=4: no delay');
my $t0 = time;
my @d = map { http($p, 'GET', '/delay1?k=h')->{headers}{'x-limit'} } 1 .. 3;
is("@d", 'PASSED PASSED DELAYED', 'delay=1 on the location: the third waits');
cmp_ok(time - $t0, '>=', 0.99, '... for its slot (1r/s)');
@d = map { http($p, 'GET', '/drydelay?k=j')->{headers}{'x-limit'} } 1 .. 3;
is("@d", 'PASSED PASSED DELAYED_DRY_RUN',
   'a dry run does not hold: DELAYED_DRY_RUN, as limit_req');
@d = map { http($p, 'GET', '/nodelay?k=i')->{headers}{'x-limit'} } 1 .. 5;
is("@d", 'PASSED PASSED PASSED PASSED PASSED',
   'nodelay on the location: none waits');

$t->stop;
$t->check_logs('limit_req habits');

# nginx -t: file and line
my $ns = "do_namespace rl rate_limiter rate=1r/s burst=2 delay=2;\n";
my $srv = "server { listen 127.0.0.1:%%PORT%%;\n";
my @bad = (
    ["location / { do_limit rl key=\$uri burst=1; } }\n",
     qr/do_limit "rl": delay 2 exceeds burst 1 in \S+:21/,
     'a location burst under the namespace\'s delay'],
    ["location / { do_limit rl key=\$uri burst=1 burst=2; } }\n",
     qr/burst= or delay= given twice in \S+:21/, 'burst= twice'],
    ["location / { do_limit rl key=\$uri delay=x; } }\n",
     qr/invalid number in "delay=x" in \S+:21/, 'a bad delay='],
    ["location / { do_limit_status 200; } }\n",
     qr/value must be between 400 and 599 in \S+:21/,
     'do_limit_status out of range'],
    ["location / { do_limit_dry_run maybe; } }\n",
     qr/invalid value "maybe" in "do_limit_dry_run" directive.* in \S+:21/,
     'do_limit_dry_run not on|off'],
);
for (@bad) {
    my ($rc, $out) = nginx_t($ns . $srv . $_->[0]);
    isnt($rc, 0, "$_->[2]: nginx -t fails");
    like($out, $_->[1], "$_->[2]: says why, with file and line");
}

done_testing();

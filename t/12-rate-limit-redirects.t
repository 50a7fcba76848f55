# do_limit counts once per main request: an internal redirect (index,
# try_files, error_page) clears the module contexts, but the request is
# neither charged again nor given its RateLimit headers twice, whether it
# passed or was rejected, and $do_limit_status survives the redirect.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use File::Path qw(make_path);
use Test::More;
use DoTest qw(http header_count);

my $conf = <<'EOF';
    %%STORAGE%%
    do_namespace gate rate_limiter rate=1r/m burst=2;
    do_namespace app  rate_limiter rate=1r/m;

    server {
        listen 127.0.0.1:%%PORT%% reuseport;
        root %%PREFIX%%/html;
        add_header X-Limit $do_limit_status always;

        location /idx/ { do_limit gate key=idx headers=on; index index.html; }

        location /tf/  { do_limit gate key=tf headers=on;
                         try_files $uri /tf/fallback.html; }

        location /ep/  { do_limit gate key=ep headers=on;
                         error_page 404 /ep/404.html;
                         error_page 429 /ep/429.html; }

        location /named/ { do_limit gate key=named headers=on;
                           try_files $uri @app; }
        location @app    { do_limit app key=app headers=on;
                           root %%PREFIX%%/html/app; }
    }
EOF

my $t = DoTest->new(workers => 2, http => $conf);
my $html = $t->prefix . '/html';
make_path("$html/idx", "$html/tf", "$html/ep", "$html/app/named");
for (['idx/index.html', "index page\n"], ['tf/fallback.html', "fallback\n"],
     ['ep/404.html', "not here\n"], ['ep/429.html', "slow down\n"],
     ['app/named/x', "from app\n"])
{
    open my $fh, '>', "$html/$_->[0]" or die $!;
    print $fh $_->[1];
    close $fh;
}
$t->start;
my $p = $t->port;

# each passed request: its status and body, one RateLimit and one
# RateLimit-Policy, and one token less than the one before
sub passes {
    my ($what, $uri, $status, $body) = @_;
    for my $left (2, 1, 0) {
        my $r = http($p, 'GET', $uri);
        subtest "$what: request with $left left is charged once" => sub {
            is($r->{status}, $status, "status $status");
            is($r->{body}, $body, 'the redirect target answers');
            is(header_count($r, 'RateLimit'), 1, 'one RateLimit');
            is(header_count($r, 'RateLimit-Policy'), 1,
               'one RateLimit-Policy');
            like($r->{headers}{ratelimit} // '', qr/^"gate";r=$left;t=\d+$/,
                 "r=$left");
            is($r->{headers}{'x-limit'}, 'PASSED',
               '$do_limit_status survives the redirect');
        };
    }
}

# the bucket holds 3: three requests pass, each charged once, the fourth is
# rejected (with a redirect counted twice, the second is rejected already)
passes('index', '/idx/', 200, "index page\n");
my $r = http($p, 'GET', '/idx/');
is($r->{status}, 429, 'index: the fourth request is rejected');
is(header_count($r, 'Retry-After'), 1, '... with one Retry-After');

passes('try_files', '/tf/missing', 200, "fallback\n");
is(http($p, 'GET', '/tf/missing')->{status}, 429,
   'try_files: the fourth request is rejected');

passes('error_page 404', '/ep/missing', 404, "not here\n");

$r = http($p, 'GET', '/ep/missing');
subtest 'error_page 429: a rejection is answered by the error page' => sub {
    is($r->{status}, 429, 'status 429');
    is($r->{body}, "slow down\n",
       'the error page, not a second rejection of the error page');
    is(header_count($r, 'Retry-After'), 1, 'one Retry-After');
    is(header_count($r, 'RateLimit'), 1, 'one RateLimit');
    is(header_count($r, 'RateLimit-Policy'), 1, 'one RateLimit-Policy');
    like($r->{headers}{ratelimit} // '', qr/^"gate";r=0;t=\d+$/, 'r=0');
    is($r->{headers}{'x-limit'}, 'REJECTED', '$do_limit_status is REJECTED');
};

# like limit_req: once the request was limited, a redirect to a location
# with other limits does not limit it again
for my $i (1 .. 2) {
    $r = http($p, 'GET', '/named/x');
    subtest "try_files to a named location with its own limit ($i)" => sub {
        is($r->{status}, 200, 'passes');
        is($r->{body}, "from app\n", 'served by the named location');
        is(header_count($r, 'RateLimit'), 1, 'one RateLimit');
        like($r->{headers}{ratelimit} // '', qr/^"gate";/,
             'from the first location\'s limit');
    };
}

$t->stop;
$t->check_logs;

done_testing();

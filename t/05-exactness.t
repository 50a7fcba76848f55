# Exactness under concurrency: one owner per object, one turn at a time.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use IO::Socket::INET;
use DoTest qw(http parallel);

my $t = DoTest->new(workers => 4, http => <<'EOF')->start;
    %%STORAGE%%
    do_namespace counters store;
    keepalive_requests 100000;
    server {
        listen 127.0.0.1:%%PORT%% reuseport;
        location ~ ^/c/(?<o>[\w-]+)$ { do_pass counters name=$o; }
    }
EOF
my $p = $t->port;

# each client keeps one connection, so the load lands on all workers
sub client {
    my ($n, $path) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $p)
        or return ("ERROR connect");
    my @bad;
    for my $i (1 .. $n) {
        my $r = http($p, 'POST', $path->($i), sock => $s);
        push @bad, "$r->{status}" unless $r->{status} == 200;
    }
    return @bad;
}

my @bad = parallel(50, sub { client(200, sub { '/c/one?key=n&op=incr' }) });
is(scalar @bad, 0, '50 clients x 200 incr on one object all succeed')
    or diag "@bad[0..9]";
is(http($p, 'GET', '/c/one?key=n')->{body}, 10000,
   'the object counted exactly 10000');

@bad = parallel(50, sub {
    my ($c) = @_;
    client(200, sub { '/c/obj' . (($c * 200 + $_[0]) % 100) . '?key=n&op=incr' });
});
is(scalar @bad, 0, '10000 incr over 100 objects all succeed');
my $sum = 0;
my @counts = map { http($p, 'GET', "/c/obj$_?key=n")->{body} } 0 .. 99;
$sum += $_ for @counts;
is($sum, 10000, 'the 100 objects counted 10000 in all');
is(scalar(grep { $_ == 100 } @counts), 100, 'each of the 100 counted exactly 100');

$t->stop;
$t->check_logs;

done_testing();

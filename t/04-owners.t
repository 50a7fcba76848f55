# Worker affinity: one name reaches one owner worker from every worker that
# accepts the request, and a 1 MiB body crosses the channel intact.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Digest::MD5 qw(md5_hex);
use DoTest qw(http parallel);

# reuseport gives each worker its own listening socket, so connections
# spread over all four workers
my $t = DoTest->new(workers => 4, http => <<'EOF')->start;
    %%STORAGE%%
    client_max_body_size 4m;
    client_body_buffer_size 64k;
    do_namespace state store max_value=2m;
    server {
        listen 127.0.0.1:%%PORT%% reuseport;
        location ~ ^/s/(?<o>[\w-]+)$ {
            do_pass state name=$o;
            add_header X-Owner $do_owner always;
            add_header X-Worker $do_worker always;
        }
    }
EOF
my $p = $t->port;

my @seen = parallel(8, sub {
    map {
        my $r = http($p, 'POST', '/s/hot?key=n&op=incr');
        "$r->{status} $r->{headers}{'x-worker'} $r->{headers}{'x-owner'}"
    } 1 .. 25;
});

my (%workers, %owners, %status);
for (@seen) {
    my ($s, $w, $o) = split / /;
    $status{$s}++;
    $workers{$w}++;
    $owners{$o}++;
}
is_deeply(\%status, { 200 => 200 }, 'all 200 calls succeed');
is(scalar keys %workers, 4, 'all four workers accepted calls')
    or diag explain \%workers;
is(scalar keys %owners, 1, 'every call found the same owner worker')
    or diag explain \%owners;
is(http($p, 'GET', '/s/hot?key=n')->{body}, 200, 'the object counted 200');

# different names spread over owners
my %spread;
for my $i (1 .. 64) {
    my $r = http($p, 'GET', "/s/obj$i?key=x");
    $spread{ $r->{headers}{'x-owner'} }++;
}
is(scalar keys %spread, 4, 'names spread over all four owners')
    or diag explain \%spread;

# 1 MiB bodies, many through another worker than their owner
srand(42);
my $crossed = 0;
for my $i (1 .. 12) {
    my $body = join '', map { chr(int(rand(256))) } 1 .. 1024 * 1024;
    my $r = http($p, 'PUT', "/s/big$i?key=blob", body => $body);
    is($r->{status}, 200, "1 MiB body #$i stored");
    $crossed++ if $r->{headers}{'x-worker'} ne $r->{headers}{'x-owner'};
    my $g = http($p, 'GET', "/s/big$i?key=blob");
    is(md5_hex($g->{body}), md5_hex($body), "1 MiB body #$i reads back intact");
}
ok($crossed >= 1, "some 1 MiB bodies crossed to another worker ($crossed of 12)");

$t->stop;
$t->check_logs;

done_testing();

# Two nginx instances ("nodes") with one do_secret on one Redis: what
# holds across nodes today.  Reads on one node never return a value older
# than a write acknowledged on the other; rate limits are enforced by each
# node on its own (one Redis key per limiter, but each node decides alone:
# N nodes let up to N times the limit through; see the README).

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use DoTest qw(http parallel);

my $redis = DoTest::Redis->new->start;
my $rport = $redis->port;

sub node {
    my $t = DoTest->new(workers => 2, http => <<"EOF");
    do_secret %%PREFIX%%/do.secret;
    do_storage redis://127.0.0.1:$rport/0;
    do_namespace state store;
    do_namespace per_key rate_limiter rate=1r/m burst=19;
    server {
        listen 127.0.0.1:%%PORT%%;
        location ~ ^/s/(?<o>[\\w-]+)\$ { do_pass state name=\$o; }
        location /limited/ {
            do_limit per_key key=\$arg_key;
            alias %%PREFIX%%/html/;
        }
    }
EOF
    open my $fh, '>', $t->prefix . '/do.secret' or die;
    print $fh "one secret for both nodes, long enough\n";
    close $fh;
    mkdir $t->prefix . '/html';
    open $fh, '>', $t->prefix . '/html/index.html' or die;
    print $fh "origin\n";
    close $fh;
    return $t->start;
}

my $na = node();
my $nb = node();
my ($pa, $pb) = ($na->port, $nb->port);

# the object is active (and cached) on node B before node A writes
for my $i (1 .. 5) {
    my $w = http($pa, 'PUT', '/s/shared?key=k', body => "v$i");
    is($w->{status}, 200, "write $i acknowledged on node A");
    my $r = http($pb, 'GET', '/s/shared?key=k');
    is("$r->{status} $r->{body}", "200 v$i",
       "node B reads write $i at once");
    my $ra = http($pa, 'GET', '/s/shared?key=k');
    ok(defined $r->{headers}{etag} && defined $ra->{headers}{etag},
       "both nodes send an ETag after write $i");
    is($r->{headers}{etag}, $ra->{headers}{etag},
       "node B's ETag is node A's after write $i");
}

my $first = http($pb, 'GET', '/s/counter?key=n');
is($first->{status}, 404, 'node B has read the counter: absent');
for my $i (1 .. 5) {
    http($pa, 'POST', '/s/counter?key=n&op=incr');
    my $r = http($pb, 'GET', '/s/counter?key=n');
    is("$r->{status} $r->{body}", "200 $i", "node B sees increment $i");
}

# and the other way round, from every worker of both nodes in parallel
my @lines = parallel(8, sub {
    my ($i) = @_;
    my $p = $i % 2 ? $pa : $pb;
    map { http($p, 'POST', '/s/both?key=n&op=incr')->{status} } 1 .. 25;
});
is(scalar(grep { $_ == 200 } @lines), 200, '200 increments on two nodes');
is(http($pa, 'GET', '/s/both?key=n')->{body}, 200, 'node A counts 200');
is(http($pb, 'GET', '/s/both?key=n')->{body}, 200, 'node B counts 200');

# a limit's state reaches the other node once its owner flushed it
my $a_pass = grep { http($pa, 'GET', '/limited/index.html?key=seq')->{status} == 200 }
             1 .. 30;
is($a_pass, 20, "node A alone lets exactly 20 of 30 through ($a_pass)");
ok(DoTest::wait_for(sub { $redis->cli('--scan', '--pattern', 'do:{per_key:*')
                          =~ /:tat/ }, 10),
   "node A's bucket is stored in Redis");
my $b_pass = grep { http($pb, 'GET', '/limited/index.html?key=seq')->{status} == 200 }
             1 .. 30;
is($b_pass, 0, 'node B, new to the key, finds the bucket empty');

# at the same time, each node decides alone: no node passes more than the
# limit, and the two together at most twice the limit
my @st = parallel(4, sub {
    my ($i) = @_;
    my $p = $i % 2 ? $pa : $pb;
    map { ($i % 2 ? 'A' : 'B') . ' '
          . http($p, 'GET', '/limited/index.html?key=both')->{status} } 1 .. 50;
});
my %pass = (A => 0, B => 0);
for (@st) {
    my ($n, $s) = split / /;
    $pass{$n}++ if $s == 200;
}
cmp_ok($pass{A}, '<=', 20, "node A lets at most 20 through ($pass{A})");
cmp_ok($pass{B}, '<=', 20, "node B lets at most 20 through ($pass{B})");
cmp_ok($pass{A} + $pass{B}, '>=', 20, 'the two let at least 20 through');

ok($na->stop, 'node A stops gracefully');
ok($nb->stop, 'node B stops gracefully');
$na->check_logs('node A');
$nb->check_logs('node B');

done_testing;

# do_limit on memory storage keeps each namespace's buckets in a table of
# its own (size=), decided by the worker that accepted the request: exact
# across 4 workers under 50 concurrent clients; a table full of live
# buckets fails open or closed as the namespace says, logs it, never drops
# a live bucket, and takes new keys again once the buckets are full (their
# space returned); do_pass name= inspects a key's bucket, id= and unique
# are 400; a do_limit with a smaller burst does not reset a bucket that a
# larger one filled; the table and its state survive a reload that keeps
# size=; nginx -t refuses a bad size=.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP;
use IO::Socket::INET;
use Time::HiRes qw(sleep time);
use DoTest qw(http nginx_t parallel wait_for);

plan skip_all => 'the bucket table is the memory storage\'s'
    if DoTest::redis_backend();

my $J = JSON::PP->new;

my $conf = <<'EOF';
    do_storage memory;
    do_namespace hot    rate_limiter rate=1r/m burst=99;
    do_namespace open   rate_limiter rate=4r/m size=32k;
    do_namespace closed rate_limiter rate=4r/m size=32k fail=closed;
    do_namespace look   rate_limiter rate=1r/m burst=4;
    do_namespace two    rate_limiter rate=1r/m burst=5;
    do_namespace kept   rate_limiter rate=1r/m burst=2 size=%%SIZE%%;
    keepalive_requests 100000;

    server {
        listen 127.0.0.1:%%PORT%% reuseport;
        add_header X-Worker $do_worker always;

        location /hot    { do_limit hot key=$arg_k; alias %%PREFIX%%/ok; }
        location /open   { do_limit open key=$arg_k; alias %%PREFIX%%/ok; }
        location /closed { do_limit closed key=$arg_k; alias %%PREFIX%%/ok; }
        location /look   { do_limit look key=$arg_k; alias %%PREFIX%%/ok; }
        location /big    { do_limit two key=$arg_k; alias %%PREFIX%%/ok; }
        location /small  { do_limit two key=$arg_k burst=0;
                           alias %%PREFIX%%/ok; }
        location /kept   { do_limit kept key=$arg_k; alias %%PREFIX%%/ok; }
        location ~ ^/inspect/(?<k>[\w-]+)$ { do_pass look name=$k; }
        location ~ ^/by-id/(?<k>[\w-]+)$   { do_pass look id=$k; }
        location = /unique                 { do_pass look unique; }
        location = /status { do_status; }
    }
EOF

my $t = DoTest->new(workers => 4, http => $conf =~ s/%%SIZE%%/1m/r);
open my $fh, '>', $t->prefix . '/ok' or die;
print $fh "ok\n";
close $fh;
$t->start;
my $p = $t->port;

sub ns { $J->decode(http($p, 'GET', '/status')->{body})->{namespaces}{$_[0]} }

# 1. exact: 50 clients, each on a keep-alive connection of its own (so all
# 4 workers accept some), 1000 requests on one key, and 10 keys at once
my @r = parallel(50, sub {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $p)
        or return 'ERROR connect';
    map {
        my $r = http($p, 'GET', '/hot?k=one', sock => $s);
        "$r->{status} " . ($r->{headers}{'x-worker'} // '-');
    } 1 .. 20;
});
my %st;
$st{(split / /)[0]}++ for @r;
my %w = map { (split / /)[1] => 1 } @r;
is($st{200}, 100, '1000 requests on one key from 50 clients: exactly '
   . 'burst + 1 = 100 pass') or diag explain \%st;
is($st{429}, 900, '... and 900 are rejected');
is(scalar keys %w, 4, '... accepted by all 4 workers');

@r = parallel(50, sub {
    my ($c) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $p)
        or return 'ERROR connect';
    map {
        my $k = "k" . (($c + $_) % 10);
        "$k " . http($p, 'GET', "/hot?k=$k", sock => $s)->{status};
    } 1 .. 40;
});
my %pass;
/^(\w+) 200$/ and $pass{$1}++ for @r;
is(join(' ', map { $pass{"k$_"} // 0 } 0 .. 9), join(' ', (100) x 10),
   '2000 requests on 10 keys at once: exactly 100 pass on each');
my $hot = ns('hot');
is($hot->{table}{entries}, 11, 'the table holds the 11 keys');
is("$hot->{calls} $hot->{limit_passed} $hot->{limit_rejected}",
   '3000 1100 1900', 'every take is a call, counted passed or rejected');
ok(!grep({ $_->{activations} } @{ $J->decode(http($p, 'GET', '/status')
                                                 ->{body})->{workers} }),
   '... and no object was activated');

# 2. a table full of live buckets: fail=closed answers 503, fail=open lets
# the request through, a key already in the table is still judged, and once
# the buckets are full (4r/m: 15 s) new keys take the space of old ones
# new keys until one is refused (fail=closed) or the table stops growing
sub fill {
    my ($ns) = @_;
    my ($n, $r) = (0);
    while ($n < 2000) {
        my $before = ns($ns)->{table}{entries};
        for (1 .. 10) {
            $n++;
            $r = http($p, 'GET', "/$ns?k=$ns$n");
            return ($n, $r) if $r->{status} != 200;
        }
        return ($n, $r) if ns($ns)->{table}{entries} < $before + 10;
    }
    return ($n, $r);
}

my $t0 = time;
my ($n, $full) = fill('closed');
my $spent = time;
my $c = ns('closed');
is($full->{status}, 503, "fail=closed: the new key after $c->{table}{entries} "
   . 'live buckets is refused with 503');
cmp_ok($c->{table}{entries}, '>', 100, '... a 32k table held more than 100 '
       . 'buckets');
like($t->error_log, qr/\[error\] .*do: rate limiter "closed": no room for a new key among the live buckets \(size=\), failing closed/,
     '... and the refusal is logged');
is(http($p, 'GET', '/closed?k=closed1')->{status}, 429,
   'the first key is still in the table, its bucket spent: 429');
is(http($p, 'GET', "/closed?k=closed$n")->{status}, 503,
   'another new key: 503 again');

my ($m) = fill('open');
my $o = ns('open');
my $more = 0;
ok(wait_for(sub {
       $t->error_log =~ /do: rate limiter "open": no room for a new key among the live buckets \(size=\), failing open/
       || !http($p, 'GET', '/open?k=more' . $more++) }, 3),
   "fail=open: a full table (after $m keys) is logged (one line a second)");
is(http($p, 'GET', '/open?k=one-more')->{status}, 200,
   '... and a new key passes');
is(http($p, 'GET', '/open?k=open1')->{status}, 429,
   '... while the first key is still judged: 429');
is(ns('open')->{table}{entries}, $o->{table}{entries},
   '... and no live bucket was dropped for the new ones');
cmp_ok(time - $t0, '<', 15, 'all of it while the buckets were live');

my $free_full = ns('closed')->{table}{free};
# the last of them was taken before $spent: full 15 s later
sleep $spent + 15.3 - time if time < $spent + 15.3;
my @new = map { http($p, 'GET', "/closed?k=again$_")->{status} } 1 .. 100;
is(scalar(grep { $_ == 200 } @new), 100,
   'once the buckets are full again, 100 new keys pass');
$c = ns('closed');
cmp_ok($c->{table}{entries}, '<', $n - 1,
       "... in a table that holds fewer buckets ($c->{table}{entries})");
cmp_ok($c->{table}{free}, '>', $free_full,
       "... and more free bytes: the full buckets' space came back "
       . "($free_full -> $c->{table}{free} bytes)");

# 3. do_pass name= reads the bucket; id= and unique have no bucket
http($p, 'GET', '/look?k=seen') for 1 .. 2;
my $i = $J->decode(http($p, 'GET', '/inspect/seen')->{body});
is("$i->{limit} $i->{remaining}", '5 3',
   'GET through do_pass name=: limit 5, 3 remaining after two takes');
ok($i->{reset_ms} > 119000 && $i->{reset_ms} <= 120000,
   "... full again in two minutes ($i->{reset_ms} ms)");
is($J->decode(http($p, 'GET', '/inspect/seen')->{body})->{remaining}, 3,
   '... and inspecting takes nothing');
is(http($p, 'GET', '/inspect/never')->{body},
   qq({"limit":5,"remaining":5,"reset_ms":0}\n), 'a key never seen is full');
my $h = http($p, 'HEAD', '/inspect/seen');
is("$h->{status} " . length($h->{body}), '200 0', 'HEAD: 200, no body');
is(http($p, 'POST', '/inspect/seen')->{status}, 405, 'POST: 405');
my $id = http($p, 'GET', '/inspect/seen')->{headers}{'do-object-id'};
for my $req (["/by-id/$id", 'id='], ['/unique', 'unique']) {
    my $b = http($p, 'GET', $req->[0]);
    is("$b->{status} " . (eval { $J->decode($b->{body})->{error} } // ''),
       '400 a rate_limiter is keyed by name: use do_pass name=',
       "do_pass $req->[1]: 400, saying why");
}

# 4. per-location bursts share the bucket: a do_limit with burst=0 finds
# the bucket that burst=5 spent and rejects, rather than starting afresh
is(scalar(grep { http($p, 'GET', '/big?k=b')->{status} == 200 } 1 .. 7), 6,
   'burst=5: six pass');
is(http($p, 'GET', '/small?k=b')->{status}, 429,
   'then burst=0 on the same key: 429, the bucket is not reset');

# 5. a reload that keeps size= keeps the table: a spent key stays spent
is(join(' ', map { http($p, 'GET', '/kept?k=r')->{status} } 1 .. 4),
   '200 200 200 429', 'burst=2: three pass, the fourth is rejected');
$t->reload;
wait_for(sub { my @w = $t->workers; @w == 4 }, 15);
is(http($p, 'GET', '/kept?k=r')->{status}, 429,
   'after a reload the key is still spent');
is(ns('hot')->{table}{entries}, 11, '... and the other tables kept their '
   . 'buckets');
$t->write_conf(http => $conf =~ s/%%SIZE%%/2m/r);
$t->reload;
wait_for(sub { my @w = $t->workers; @w == 4 }, 15);
is(http($p, 'GET', '/kept?k=r')->{status}, 200,
   'a reload with another size= starts that table afresh');

$t->check_logs(undef, expect => [qr/do: rate limiter "(open|closed)": no room/]);

# 6. nginx -t checks size=
for my $bad (qw(size=1k size=lots size= size=33g)) {
    my ($rc, $out, $file) = nginx_t("do_namespace api rate_limiter "
                                    . "rate=1r/s $bad;\n");
    isnt($rc, 0, "$bad: nginx -t fails");
    like($out, qr/invalid bucket table size "\Q$bad\E", at (least 32k is needed|most 32g) in \Q$file\E:19/,
         "$bad: the message says why, with file and line");
}

done_testing();

# The store class: GET/PUT/DELETE, ordered lists, atomic incr, If-Match
# compare-and-set, atomic JSON batches, and clear answers for bad input.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP;
use DoTest qw(http);

my $t = DoTest->new(workers => 2, storage => 'memory size=2m',
                    http => <<'EOF')->start;
    client_max_body_size 2m;
    %%STORAGE%%
    do_namespace state store max_key=64 max_value=300k;
    server {
        listen 127.0.0.1:%%PORT%%;
        location ~ ^/s/(?<o>[\w-]+)$ { do_pass state name=$o; }
    }
EOF
my $p = $t->port;
my $J = JSON::PP->new;

sub keys_of { join ' ', map { $_->{key} } @{ $J->decode($_[0]->{body})->{items} } }

my $r = http($p, 'GET', '/s/a?key=missing');
is($r->{status}, 404, 'GET of an absent key is 404');
like($r->{body}, qr/"error"/, '... with a JSON error');

$r = http($p, 'PUT', '/s/a?key=k1', body => "v\x00\xff1");
is($r->{status}, 200, 'PUT stores');
my ($etag) = ($r->{headers}{etag} // '') =~ /^"(\d+)"$/;
ok($etag, 'PUT returns the version as ETag');

$r = http($p, 'GET', '/s/a?key=k1');
is($r->{body}, "v\x00\xff1", 'GET returns the exact bytes');
is($r->{headers}{etag}, "\"$etag\"", 'GET returns the same ETag');

is(http($p, 'PUT', '/s/a?key=k1', body => 'x',
        headers => { 'If-Match' => '"999999"' })->{status}, 412,
   'PUT with a stale If-Match is 412');
is(http($p, 'GET', '/s/a?key=k1')->{body}, "v\x00\xff1",
   '... and changes nothing');
$r = http($p, 'PUT', '/s/a?key=k1', body => 'v2',
          headers => { 'If-Match' => "\"$etag\"" });
is($r->{status}, 200, 'PUT with the current If-Match succeeds');
like($r->{headers}{etag} // '', qr/^"\d+"$/, '... sends an ETag');
isnt($r->{headers}{etag}, "\"$etag\"", '... and makes a new version');
is(http($p, 'PUT', '/s/a?key=new', body => 'x',
        headers => { 'If-Match' => '*' })->{status}, 412,
   'If-Match: * on an absent key is 412');
is(http($p, 'PUT', '/s/a?key=k1', body => 'x',
        headers => { 'If-None-Match' => '*' })->{status}, 412,
   'If-None-Match: * on an existing key is 412');
is(http($p, 'PUT', '/s/a?key=k9', body => 'x',
        headers => { 'If-None-Match' => '*' })->{status}, 200,
   'If-None-Match: * creates an absent key');
is(http($p, 'PUT', '/s/a?key=k1', body => 'x',
        headers => { 'If-Match' => 'yesterday' })->{status}, 400,
   'a malformed If-Match is 400');

# incr
$r = http($p, 'POST', '/s/a?key=n&op=incr') for 1 .. 3;
is($J->decode($r->{body})->{value}, 3, 'incr counts from zero');
$r = http($p, 'POST', '/s/a?key=n&op=incr&by=-10');
is($J->decode($r->{body})->{value}, -7, 'incr by a negative amount');
is(http($p, 'POST', '/s/a?key=n&op=incr&by=x')->{status}, 400,
   'incr by a non-integer is 400');
is(http($p, 'POST', '/s/a?key=k1&op=incr')->{status}, 409,
   'incr of a non-integer value is 409');
http($p, 'PUT', '/s/a?key=big', body => '9223372036854775807');
is(http($p, 'POST', '/s/a?key=big&op=incr')->{status}, 409,
   'incr past int64 is 409');
is(http($p, 'POST', '/s/a?key=n&op=frobnicate')->{status}, 400,
   'an unknown op is 400');

# delete
$r = http($p, 'DELETE', '/s/a?key=k9');
ok($J->decode($r->{body})->{deleted}, 'DELETE reports a deletion');
$r = http($p, 'DELETE', '/s/a?key=k9');
ok(!$J->decode($r->{body})->{deleted}, '... and a key that was absent');
is(http($p, 'GET', '/s/a?key=k9')->{status}, 404, 'a deleted key is gone');
is(http($p, 'DELETE', '/s/a')->{status}, 400,
   'DELETE without key or all is 400');

# lists
http($p, 'PUT', "/s/l?key=$_", body => "v$_") for qw(b a c ab aa ba bz z);
is(keys_of(http($p, 'GET', '/s/l')), 'a aa ab b ba bz c z',
   'list is in byte order');
is(keys_of(http($p, 'GET', '/s/l?prefix=b')), 'b ba bz', 'list by prefix');
is(keys_of(http($p, 'GET', '/s/l?prefix=b&reverse=1')), 'bz ba b',
   'list by prefix, reversed');
is(keys_of(http($p, 'GET', '/s/l?start=ab&end=c')), 'ab b ba bz',
   'list from start (inclusive) to end (exclusive)');
is(keys_of(http($p, 'GET', '/s/l?start=ab&end=c&reverse=1')), 'bz ba b ab',
   'the same range reversed');
$r = http($p, 'GET', '/s/l?limit=3');
is(keys_of($r), 'a aa ab', 'list with a limit');
ok($J->decode($r->{body})->{truncated}, '... says it was cut');
is(keys_of(http($p, 'GET', '/s/l?reverse=1&limit=2')), 'z c',
   'a reverse list with a limit starts at the end');
is($J->decode(http($p, 'GET', '/s/l?prefix=b')->{body})->{items}[1]{value},
   'vba', 'list returns values');
is(http($p, 'GET', '/s/l?limit=0')->{status}, 400, 'limit=0 is 400');
http($p, 'PUT', '/s/bin?key=x', body => "\xff\xfe");
is_deeply($J->decode(http($p, 'GET', '/s/bin')->{body})->{items}[0]{value},
          { base64 => '//4=' }, 'a value that is not UTF-8 is listed as base64');

$r = http($p, 'DELETE', '/s/l?all=1');
is($r->{status}, 200, 'DELETE ?all=1 empties the object');
is(keys_of(http($p, 'GET', '/s/l')), '', '... and the list is empty');

# batches
$r = http($p, 'POST', '/s/b', body => '{"put":{"x":"1","y":"2"},"get":["x"]}');
is($r->{status}, 200, 'a JSON batch is accepted');
is_deeply($J->decode($r->{body})->{get}, { x => undef },
          'batch reads see the state before the batch');
$r = http($p, 'POST', '/s/b',
          body => '{"get":["x","y","q"],"delete":["y"],"put":{"z":"3"}}');
is_deeply($J->decode($r->{body}),
          { get => { x => '1', y => '2', q => undef }, deleted => 1, put => 1 },
          'a batch of get, delete and put');
is(keys_of(http($p, 'GET', '/s/b')), 'x z', 'the batch was applied');
is(http($p, 'POST', '/s/b', body => '{"put":')->{status}, 400,
   'bad JSON is 400');
is(http($p, 'POST', '/s/b', body => '[1,2]')->{status}, 400,
   'a JSON body that is not an object is 400');
is(http($p, 'POST', '/s/b', body => '{"put":{"x":1}}')->{status}, 400,
   'a non-string put value is 400');
is(http($p, 'POST', '/s/b', body => '{"drop":[]}')->{status}, 400,
   'an unknown batch member is 400');
my $many = '{"get":[' . join(',', map { "\"k$_\"" } 1 .. 129) . ']}';
is(http($p, 'POST', '/s/b', body => $many)->{status}, 400,
   'more than 128 keys in a batch is 400');
$r = http($p, 'POST', '/s/b',
          body => '{"put":{"ok":"1","' . ('k' x 65) . '":"2"}}');
is($r->{status}, 413, 'a batch with an oversized key is 413');
is(http($p, 'GET', '/s/b?key=ok')->{status}, 404,
   '... and nothing of it is stored');

# limits
is(http($p, 'PUT', '/s/a?key=' . ('k' x 65), body => 'x')->{status}, 413,
   'a key over max_key is 413');
is(http($p, 'PUT', '/s/a?key=v', body => 'x' x (300 * 1024 + 1))->{status},
   413, 'a value over max_value is 413');
is(http($p, 'PUT', '/s/a?key=v', body => 'x' x (300 * 1024))->{status}, 200,
   'a value of exactly max_value is stored');
is(http($p, 'PUT', '/s/a?key=', body => 'x')->{status}, 400,
   'an empty key is 400');
is(http($p, 'PUT', '/s/a', body => 'x')->{status}, 400,
   'PUT without key is 400');
is(http($p, 'PATCH', '/s/a?key=x', body => 'x')->{status}, 405,
   'an unsupported method is 405');
is(http($p, 'PUT', '/s/a?key=v', body => 'x' x (3 * 1024 * 1024))->{status},
   413, 'a body over client_max_body_size is 413 from nginx');

# a full zone is a clear error, and nothing breaks (the memory zone: a full
# Redis is its operator's to configure)
if (!DoTest::redis_backend()) {
my ($full, @st);
for my $i (1 .. 40) {
    $r = http($p, 'PUT', "/s/fill$i?key=v", body => 'x' x (250 * 1024));
    push @st, $r->{status};
    if ($r->{status} == 507) { $full = $r; last }
}
ok($full, 'filling the zone ends in 507 Insufficient Storage') or diag "@st";
like($full->{body} // '', qr/storage is full/, '... saying so');
like($t->error_log, qr/do: storage is full/, '... and the error log says so');
is(http($p, 'GET', '/s/a?key=k1')->{body}, 'v2', 'reads still work when full');
http($p, 'DELETE', "/s/fill$_?all=1") for 1 .. 40;
is(http($p, 'PUT', '/s/a?key=after', body => 'ok')->{status}, 200,
   'writes work again after space is freed');
}

$t->stop;
$t->check_logs(undef, expect => [qr/do: storage is full/]);

done_testing();

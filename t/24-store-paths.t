# Every error path of the store class, with its status and its JSON body
# (and that it changes nothing); TTLs kept by incr and batches and ended by
# a batch's delete; delete and put of one key in one batch; the bounds of
# limit=; and the rate limiter class reached with do_pass.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP;
use DoTest qw(http wait_for);

my $t = DoTest->new(workers => 2, storage => 'memory size=1m',
                    http => <<'EOF')->start;
    client_max_body_size 1m;
    %%STORAGE%%
    do_namespace state store max_key=64 max_value=300;
    do_namespace small store max_value=40;
    do_namespace rl rate_limiter rate=1r/m burst=4;
    server {
        listen 127.0.0.1:%%PORT%%;
        location ~ ^/s/(?<o>[\w-]+)$ { do_pass state name=$o; }
        location ~ ^/small/(?<o>[\w-]+)$ { do_pass small name=$o; }
        location ~ ^/rl/(?<o>[\w-]+)$ { do_pass rl name=$o; }
    }
EOF
my $p = $t->port;
my $J = JSON::PP->new->canonical;

sub req { http($p, @_) }

# status and {"error": msg}, as one string
sub err {
    my $r = http($p, @_);
    my $e = eval { $J->decode($r->{body})->{error} } // "no JSON error: "
            . ($r->{body} // '');
    return "$r->{status} $e";
}

sub body_of { my $r = http($p, @_); "$r->{status} " . ($r->{body} // '') }

sub json_of {
    my $r = http($p, @_);
    my $j = eval { $J->decode($r->{body}) };
    ok($j, "$_[0] $_[1] answers JSON") or diag($r->{body});
    return $j // {};
}

# state that the error paths must leave alone
is(req('PUT', '/s/e?key=k', body => 'before')->{status}, 200, 'a key is set');
my $etag = req('GET', '/s/e?key=k')->{headers}{etag};
ok(defined $etag, '... with an ETag');
sub unchanged {
    my ($what) = @_;
    my $r = req('GET', '/s/e?key=k');
    is("$r->{status} $r->{body} " . ($r->{headers}{etag} // ''),
       "200 before $etag", "$what changes nothing");
}

# 400: arguments
is(err('PUT', '/s/e?key=', body => 'x'), '400 empty key',
   'PUT with an empty key: 400');
is(err('GET', '/s/e?key='), '400 empty key', 'GET with an empty key: 400');
is(err('PUT', '/s/e?key=%00k', body => 'x'), '400 invalid key',
   'a key that starts with a zero byte (the runtime\'s) is 400');
is(err('DELETE', '/s/e?key=%00alarms'), '400 invalid key',
   '... for DELETE too');
is(err('PUT', '/s/e', body => 'x'), '400 key= is required',
   'PUT without key=: 400');
is(err('POST', '/s/e?op=incr'), '400 key= is required',
   'incr without key=: 400');
is(err('POST', '/s/e?key=k&op=decr'), '400 unknown op', 'an unknown op: 400');
is(err('DELETE', '/s/e'), '400 key= or all=1 is required',
   'DELETE without key= or all=1: 400');
is(err('DELETE', '/s/e?all=yes'), '400 key= or all=1 is required',
   'DELETE ?all=yes: 400');
is(err('POST', '/s/e?key=n&op=incr&by=1.5'), '400 by= must be an integer',
   'incr by=1.5: 400');
is(err('POST', '/s/e?key=n&op=incr&by=99999999999999999999'),
   '400 by= must be an integer', 'incr by= beyond int64: 400');
for my $ttl ('0', 'soon', '-1s', '') {
    is(err('PUT', "/s/e?key=k&ttl=$ttl", body => 'x'), '400 invalid ttl',
       "ttl=$ttl: 400");
}
is(err('PUT', '/s/e?key=k', body => 'x',
       headers => { 'If-Match' => '"0"' }), '400 invalid If-Match',
   'If-Match: "0" is 400');
is(err('PUT', '/s/e?key=k', body => 'x',
       headers => { 'If-Match' => '"abc"' }), '400 invalid If-Match',
   'If-Match: "abc" is 400');
is(err('PUT', '/s/e?key=k', body => 'x',
       headers => { 'If-None-Match' => "$etag" }),
   '400 only If-None-Match: * is supported',
   'If-None-Match with a version is 400');
unchanged('the argument errors');

# 412
is(err('PUT', '/s/e?key=k', body => 'x',
       headers => { 'If-Match' => '"123456789"' }), '412 version mismatch',
   'a stale If-Match: 412');
is(err('PUT', '/s/e?key=absent', body => 'x',
       headers => { 'If-Match' => $etag }), '412 version mismatch',
   'If-Match on an absent key: 412');
is(err('PUT', '/s/e?key=absent', body => 'x',
       headers => { 'If-Match' => '*' }), '412 key does not exist',
   'If-Match: * on an absent key: 412');
is(err('PUT', '/s/e?key=k', body => 'x',
       headers => { 'If-None-Match' => '*' }), '412 key exists',
   'If-None-Match: * on a key that exists: 412');
unchanged('the failed preconditions');

# 400: batches
my $bad = '400 get and delete take arrays of at most 128 strings, put an '
          . 'object of at most 128 strings';
is(err('POST', '/s/e', body => 'not json'), '400 body must be a JSON object',
   'a batch that is not JSON: 400');
is(err('POST', '/s/e', body => '"get"'), '400 body must be a JSON object',
   'a batch that is a JSON string: 400');
is(err('POST', '/s/e', body => ''), '400 body must be a JSON object',
   'an empty batch body: 400');
is(err('POST', '/s/e', body => '{"put":{"\u0000k":"x"}}'),
   '400 body must be a JSON object',
   'a batch key with a zero byte is refused by the JSON parser: 400');
is(err('POST', '/s/e', body => '{"get":["k"],"incr":["k"]}'),
   '400 unknown batch member', 'an unknown batch member: 400');
is(err('POST', '/s/e', body => '{"get":"k"}'), $bad, 'get not an array: 400');
is(err('POST', '/s/e', body => '{"get":[""]}'), $bad, 'an empty get key: 400');
is(err('POST', '/s/e', body => '{"delete":[1]}'), $bad,
   'a delete key that is not a string: 400');
is(err('POST', '/s/e', body => '{"put":["k","v"]}'), $bad,
   'put not an object: 400');
my $keys = join ',', map { "\"k$_\"" } 1 .. 129;
is(err('POST', '/s/e', body => "{\"delete\":[$keys]}"), $bad,
   '129 deletes: 400');
is(err('POST', '/s/e', body => '{"put":{'
       . join(',', map { "\"k$_\":\"v\"" } 1 .. 129) . '}}'), $bad,
   '129 puts: 400');
is(err('POST', '/s/e', body => '{"delete":["k"],"put":{"a":"1","b":2}}'),
   '400 put values must be strings',
   'a put value that is not a string: 400');
is(err('POST', '/s/e', body => '{"delete":["k"],"put":{"":"v"}}'),
   '400 put keys must not be empty', 'an empty put key: 400');
is(req('POST', '/s/e', body => '{"delete":['
       . join(',', map { "\"k$_\"" } 1 .. 128) . ']}')->{status}, 200,
   '128 deletes are allowed');
unchanged('the refused batches (one with a delete of the key)');

# 413
is(err('PUT', '/s/e?key=' . ('k' x 65), body => 'x'),
   '413 key or value too large', 'PUT of a key over max_key: 413');
is(err('PUT', '/s/e?key=k', body => 'x' x 301),
   '413 key or value too large', 'PUT of a value over max_value: 413');
is(err('POST', '/s/e?op=incr&key=' . ('k' x 65)),
   '413 key or value too large', 'incr of a key over max_key: 413');
is(err('POST', '/s/e', body => '{"delete":["k"],"put":{"' . ('k' x 65)
       . '":"v"}}'), '413 key or value too large',
   'a batch put of a key over max_key: 413');
is(err('POST', '/s/e', body => '{"delete":["k"],"put":{"a":"'
       . ('v' x 301) . '"}}'), '413 key or value too large',
   'a batch put of a value over max_value: 413');
is(req('PUT', '/s/e?key=k', body => 'x' x (1024 * 1024 + 1))->{status}, 413,
   'a body over client_max_body_size: 413 from nginx');
unchanged('the oversized writes');
is(req('GET', '/s/e?key=a')->{status}, 404,
   '... and a refused batch stored none of its puts');

# 409
req('PUT', '/s/e?key=max', body => '9223372036854775807');
req('PUT', '/s/e?key=min', body => '-9223372036854775808');
req('PUT', '/s/e?key=text', body => '12abc');
is(err('POST', '/s/e?key=max&op=incr'), '409 integer overflow',
   'incr past INT64_MAX: 409');
is(err('POST', '/s/e?key=min&op=incr&by=-1'), '409 integer overflow',
   'incr below INT64_MIN: 409');
is(err('POST', '/s/e?key=text&op=incr'), '409 value is not an integer',
   'incr of a value that is not an integer: 409');
is(body_of('GET', '/s/e?key=max'), '200 9223372036854775807',
   '... and the values stay');
is(body_of('GET', '/s/e?key=min'), '200 -9223372036854775808', '...');
is(body_of('GET', '/s/e?key=text'), '200 12abc', '...');
is(body_of('POST', '/s/e?key=min&op=incr&by=9223372036854775807'),
   "200 {\"key\":\"min\",\"value\":-1}", 'incr to the edge works');

# 405
for my $m (qw(PATCH OPTIONS)) {
    is(err($m, '/s/e?key=k'), '405 method not allowed', "$m on a store: 405");
}
unchanged('the refused methods');

# each TTL is stored on its own: max_value does not bound how many
my @ttl = map {
    req('PUT', "/small/t?key=k$_&ttl=1h", body => 'x')->{status}
} 1 .. 30;
is(join(' ', grep { $_ != 200 } @ttl), '',
   'max_value=40: thirty keys of one object get a TTL');
is(req('GET', '/small/t?key=k30')->{body}, 'x', '... the last one is stored');
is(body_of('PUT', '/small/t?key=k3', body => 'x'),
   "200 {\"key\":\"k3\",\"size\":1}", '... a PUT without ttl= takes one away');
is(req('GET', '/small/t?key=k3')->{body}, 'x', '... and the key stays');

# the rate limiter class through do_pass: GET its state, nothing else
is(body_of('GET', '/rl/a'), "200 {\"limit\":5,\"remaining\":5,\"reset_ms\":0}\n",
   'GET of a rate limiter object: its state');
for my $m (qw(PUT POST DELETE PATCH)) {
    is(err($m, '/rl/a', body => 'x'), '405 method not allowed',
       "$m on a rate limiter object: 405");
}
is(body_of('GET', '/rl/a'), "200 {\"limit\":5,\"remaining\":5,\"reset_ms\":0}\n",
   '... and it took no token');

# limit= bounds
req('PUT', "/s/list?key=k$_", body => 'v') for 1 .. 3;
for my $l ('0', '-1', '10001', 'x', '', '1e3') {
    is(err('GET', "/s/list?limit=$l"), '400 limit must be 1..10000',
       "limit=$l: 400");
}
my $j = json_of('GET', '/s/list?limit=1');
is(join(' ', map { $_->{key} } @{ $j->{items} }) . ' '
   . ($j->{truncated} ? 'truncated' : 'whole'), 'k1 truncated',
   'limit=1: one item, truncated');
$j = json_of('GET', '/s/list?limit=3');
is(join(' ', map { $_->{key} } @{ $j->{items} }) . ' '
   . ($j->{truncated} ? 'truncated' : 'whole'), 'k1 k2 k3 whole',
   'limit=3 of 3: all, not truncated');
$j = json_of('GET', '/s/list?limit=10000');
is(join(' ', map { $_->{key} } @{ $j->{items} }) . ' '
   . ($j->{truncated} ? 'truncated' : 'whole'), 'k1 k2 k3 whole',
   'limit=10000: the upper bound is allowed');

# delete and put of one key in one batch: deletes first, then the put
req('PUT', '/s/b?key=k', body => 'old');
$j = json_of('POST', '/s/b',
             body => '{"get":["k"],"delete":["k","gone"],"put":{"k":"new"}}');
is($J->encode($j), '{"deleted":1,"get":{"k":"old"},"put":1}',
   'a batch that deletes and puts one key: the get sees the old value');
is(body_of('GET', '/s/b?key=k'), '200 new', '... and the put wins');

# TTLs: kept by incr and batch puts, ended by a batch's delete
is(body_of('PUT', '/s/ttl?key=n&ttl=1s', body => '5'),
   "200 {\"key\":\"n\",\"size\":1,\"ttl_ms\":1000}", 'a key with ttl=1s');
req('PUT', '/s/ttl?key=b&ttl=1s', body => 'x');
req('PUT', '/s/ttl?key=d&ttl=1s', body => 'old');
req('PUT', '/s/ttl?key=sentinel&ttl=1500ms', body => 'x');
is(body_of('POST', '/s/ttl?key=n&op=incr'),
   "200 {\"key\":\"n\",\"value\":6}", 'incr of it');
is($J->encode(json_of('POST', '/s/ttl',
                      body => '{"put":{"b":"y"},"delete":["d"]}')),
   '{"deleted":1,"get":{},"put":1}',
   'a batch puts one key with a TTL and deletes another');
is($J->encode(json_of('POST', '/s/ttl', body => '{"put":{"d":"new"}}')),
   '{"deleted":0,"get":{},"put":1}', '... and a later batch puts it again');
ok(wait_for(sub { req('GET', '/s/ttl?key=n')->{status} == 404 }, 10),
   'the incremented key still goes at its TTL');
ok(wait_for(sub { req('GET', '/s/ttl?key=b')->{status} == 404 }, 10),
   'the key put by a batch still goes at its TTL');
ok(wait_for(sub { req('GET', '/s/ttl?key=sentinel')->{status} == 404 }, 10),
   'a later TTL has passed');
is(body_of('GET', '/s/ttl?key=d'), '200 new',
   'the key deleted by a batch lost its TTL: put again, it stays');
is(json_of('GET', '/s/ttl')->{items}[0]{key}, 'd',
   '... and is listed alone');

ok($t->stop, 'nginx stops gracefully');
$t->check_logs;

done_testing();

# Claims of README.md that no other test covered, each test named after
# its claim: do_secret ignores surrounding whitespace; without do_secret
# IDs change after a full stop; a namespace declared after its do_pass;
# the default max_key/max_value and the 32m maximum; the lock's default
# ttl; do_lock's defaults (no wait, 423); re-acquire with the holder's
# token and the token rules; $do_limit_remaining is the smallest; do_limit
# at server level is inherited; return is never limited; the store's
# Content-Type, list limit and versions; a bare TTL number is seconds.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP;
use DoTest qw(http nginx_t wait_for);

my $J = JSON::PP->new->canonical;

my $origin = DoTest::Origin->new;
my $op = $origin->port;

# Memory, no do_secret.  The first server names a namespace that is only
# declared below it.
my $t = DoTest->new(workers => 2, http => <<"EOF");
    %%STORAGE%%
    server {
        listen 127.0.0.1:%%PORT3%%;
        location / { do_pass late name=\$arg_n; }
    }

    do_namespace late  store;
    do_namespace s     store;
    do_namespace locks lock;
    do_namespace big   rate_limiter rate=1r/m burst=5;
    do_namespace small rate_limiter rate=1r/m burst=2;
    do_namespace srv   rate_limiter rate=1r/m;
    do_namespace ret   rate_limiter rate=1r/m;

    upstream origin { server 127.0.0.1:$op; }

    server {
        listen 127.0.0.1:%%PORT%%;
        location = /status { do_status; }
        location ~ ^/s/(?<o>[\\w-]+)\$    { do_pass s name=\$o; }
        location ~ ^/lock/(?<o>[\\w-]+)\$ { do_pass locks name=\$o; }
        location /gate {
            do_lock locks key=\$arg_key;
            proxy_set_header X-Fencing-Token \$do_lock_fence;
            proxy_pass http://origin;
        }
        location /min {
            do_limit big key=\$arg_k;
            do_limit small key=\$arg_k;
            add_header X-Remaining \$do_limit_remaining always;
            proxy_pass http://origin;
        }
        location /nim {
            do_limit small key=n\$arg_k;
            do_limit big key=n\$arg_k;
            add_header X-Remaining \$do_limit_remaining always;
            proxy_pass http://origin;
        }
        location /ret       { do_limit ret key=\$arg_k; return 204; }
        location /ret-proxy { do_limit ret key=\$arg_k;
                              proxy_pass http://origin; }
    }

    server {
        listen 127.0.0.1:%%PORT4%%;
        do_limit srv key=\$arg_k;
        location /inherit { proxy_pass http://origin; }
        location /own     { do_limit ret key=own\$arg_k;
                            proxy_pass http://origin; }
    }
EOF
$t->start;
my $p = $t->port;

sub json { my $b = shift->{body}; my $j = eval { $J->decode($b) }; $j }

sub parked {
    my $j = json(http($p, 'GET', '/status')) or return -1;
    my $n = 0;
    $n += $_->{parked} for @{ $j->{workers} };
    return $n;
}

# --- 3. the namespace may be declared after the do_pass that names it
{
    my $p3 = $t->port_n(3);
    my $w = http($p3, 'PUT', '/?n=x&key=k', body => 'late');
    is($w->{status}, 200,
       'the namespace may be declared after the do_pass that names it: '
       . 'a PUT is served');
    like($w->{headers}{'do-object-id'} // '', qr/^[0-9a-f]{64}$/,
         '... by an object (DO-Object-Id)');
    is(http($p3, 'GET', '/?n=x&key=k')->{body}, 'late', '... and a GET reads it');
}

# --- 4. max_key (default 2k) and max_value (default 128k): 413 over them
{
    my $k = http($p, 'PUT', '/s/lim?key=' . ('k' x 2048), body => 'x');
    is($k->{status}, 200, 'max_key defaults to 2k: a 2048-byte key is stored');
    $k = http($p, 'PUT', '/s/lim?key=' . ('k' x 2049), body => 'x');
    is($k->{status}, 413, 'max_key defaults to 2k: a 2049-byte key is 413');
    like($k->{body}, qr/"error":"key or value too large"/, '... saying so');

    my $v = http($p, 'PUT', '/s/lim?key=v', body => 'v' x (128 * 1024));
    is($v->{status}, 200,
       'max_value defaults to 128k: a 131072-byte value is stored');
    is(length(http($p, 'GET', '/s/lim?key=v')->{body}), 128 * 1024,
       '... and read back whole');
    $v = http($p, 'PUT', '/s/lim?key=v2', body => 'v' x (128 * 1024 + 1));
    is($v->{status}, 413, 'max_value defaults to 128k: a 131073-byte value '
       . 'is 413');
    like($v->{body}, qr/"error":"key or value too large"/, '... saying so');
    is(http($p, 'GET', '/s/lim?key=v2')->{status}, 404, '... and not stored');
}

# --- 5. the lock class's ttl defaults to 30s
{
    my $r = http($p, 'POST', '/lock/deflt');
    is($r->{status}, 200, 'a lock is granted');
    is(json($r)->{ttl_ms}, 30000,
       'the lock ttl defaults to 30s: a POST with no ttl= gets ttl_ms 30000');
}

# --- 6. do_lock defaults: no wait, 423
{
    my $h = http($p, 'POST', '/lock/held?token=holder');
    is($h->{status}, 200, 'the lock is held through the HTTP lock API');
    my $fence = json($h)->{fence};
    my $before = parked();
    my $r = http($p, 'GET', '/gate?key=held');
    is($r->{status}, 423, 'do_lock defaults: with no wait= and no status=, '
       . 'a request for a held lock gets 423');
    is(parked(), $before, '... at once: it never waited in the queue');
    is(scalar(grep { $_->[3] =~ /key=held/ } $origin->requests), 0,
       '... and did not reach the origin');

    is(http($p, 'DELETE', '/lock/held?token=holder')->{status}, 200,
       'the holder releases');
    $r = http($p, 'GET', '/gate?key=held');
    is($r->{status}, 200, 'then do_lock passes the request');
    like($r->{body}, qr/^fence (\d+)$/, '... with a fencing token');
    my ($f) = $r->{body} =~ /(\d+)/;
    cmp_ok($f // 0, '>', $fence, '... higher than the HTTP holder\'s');
}

# --- 7. re-acquire with the holder's token; token rules
{
    my $a = http($p, 'POST', '/lock/again?token=mine');
    is($a->{status}, 200, 'a lock is granted to token=mine');
    my $g = json($a);
    my $b = http($p, 'POST', '/lock/again?token=mine');
    is($b->{status}, 200, 'acquiring again with the holder\'s token is 200');
    my $g2 = json($b) || {};
    is($g2->{fence}, $g->{fence}, 'acquiring again with the holder\'s token '
       . 'returns the same grant: the same fence');
    is($g2->{token}, 'mine', '... the same token');
    is($g2->{expires}, $g->{expires}, '... the same expiry');
    is(join(',', sort keys %$g2), 'expires,fence,token',
       '... given as token, fence and expires (without ttl_ms)');
    is(http($p, 'POST', '/lock/again?token=other')->{status}, 423,
       'another token is refused meanwhile');

    my $r = http($p, 'POST', '/lock/tok65?token=' . ('a' x 65));
    is($r->{status}, 400, 'a 65-character token is 400');
    like($r->{body}, qr/invalid token/, '... saying so');
    $r = http($p, 'POST', '/lock/tok64?token=' . ('A-z_9' x 12) . 'abcd');
    is($r->{status}, 200, 'a 64-character token of [A-Za-z0-9_-] is granted');
    is(json($r)->{token}, ('A-z_9' x 12) . 'abcd', '... with that token');
    is(http($p, 'POST', '/lock/tokdot?token=a.b')->{status}, 400,
       'a token with a character outside [A-Za-z0-9_-] is 400');
}

# --- 8. $do_limit_remaining is the smallest across several limits
{
    my $r = http($p, 'GET', '/min?k=a');
    is($r->{status}, 200, 'two limits pass the first request');
    is($r->{headers}{'x-remaining'}, 2, '$do_limit_remaining is the smallest '
       . 'across several limits (burst=5 first, burst=2 second: 2)');
    $r = http($p, 'GET', '/nim?k=a');
    is($r->{headers}{'x-remaining'}, 2, '$do_limit_remaining is the smallest '
       . 'across several limits (burst=2 first, burst=5 second: 2)');
}

# --- 9. do_limit at server level applies to a location without one
{
    my $p4 = $t->port_n(4);
    is(http($p4, 'GET', '/inherit?k=i')->{status}, 200,
       'do_limit at server level: the first request passes');
    is(http($p4, 'GET', '/inherit?k=i')->{status}, 429,
       'do_limit at server level applies to a location that has none: the '
       . 'second is 429');
    is(http($p4, 'GET', '/own?k=i')->{status}, 200,
       'a location with its own do_limit does not inherit the server\'s');
    is(http($p4, 'GET', '/own?k=i')->{status}, 429, '... but applies its own');
}

# --- 10. return runs before the access phase: never limited
{
    my @st = map { http($p, 'GET', '/ret?k=r')->{status} } 1 .. 5;
    is("@st", '204 204 204 204 204', '`return` in a location with do_limit '
       . 'is never limited: 5 requests over a burst of 0 all get 204');
    is(http($p, 'GET', '/ret-proxy?k=r')->{status}, 200,
       '... and took no token: the same key still passes in front of a '
       . 'proxy_pass');
    is(http($p, 'GET', '/ret-proxy?k=r')->{status}, 429,
       '... where the limit does apply');
}

# --- 11. store: Content-Type, list limit default 1000, versions
{
    http($p, 'PUT', '/s/ct?key=k', body => 'hello');
    my $r = http($p, 'GET', '/s/ct?key=k');
    is($r->{body}, 'hello', 'a stored value reads back');
    is($r->{headers}{'content-type'}, 'application/octet-stream',
       'store: GET ?key= returns Content-Type application/octet-stream');

    my $ok = 1;
    for my $b (0 .. 7) {
        my %put = map { (sprintf('k%04d', $_) => "v$_") }
                  grep { $_ < 1000 } $b * 128 .. $b * 128 + 127;
        my $w = http($p, 'POST', '/s/list', body => $J->encode({ put => \%put }));
        $ok &&= $w->{status} == 200;
    }
    ok($ok, '1000 keys written in batches of at most 128');
    my $l = json(http($p, 'GET', '/s/list')) || {};
    is(scalar @{ $l->{items} || [] }, 1000, 'the list of 1000 keys has 1000 items');
    ok(defined $l->{truncated} && !$l->{truncated}, '... not truncated');

    is(http($p, 'PUT', '/s/list?key=k1000', body => 'v1000')->{status}, 200,
       'the 1001st key is written');
    $l = json(http($p, 'GET', '/s/list')) || {};
    is(scalar @{ $l->{items} || [] }, 1000,
       'store: the list limit defaults to 1000 (1001 keys, 1000 items)');
    ok($l->{truncated}, '... with truncated set');
    is($l->{items}[-1]{key}, 'k0999', '... the first 1000 in key order');
    is(scalar(grep { defined $_->{version} && $_->{version} =~ /^\d+$/ }
              @{ $l->{items} || [] }), 1000,
       'store: list items carry a version');
    my $all = json(http($p, 'GET', '/s/list?limit=1001')) || {};
    is(scalar @{ $all->{items} || [] }, 1001, 'limit=1001 lists all 1001');
    ok(defined $all->{truncated} && !$all->{truncated}, '... not truncated');
    my $etag = http($p, 'GET', '/s/list?key=k1000')->{headers}{etag} // '';
    is('"' . $all->{items}[-1]{version} . '"', $etag,
       'an item\'s version is the key\'s ETag');
}

# --- 12. a store TTL given as a bare number means seconds
{
    my $r = http($p, 'PUT', '/s/ttl?key=k&ttl=1', body => 'x');
    is($r->{status}, 200, 'a PUT with ttl=1 is stored');
    is(json($r)->{ttl_ms}, 1000,
       'a store TTL given as a bare number means seconds: ttl=1 is ttl_ms 1000');
    ok(wait_for(sub { http($p, 'GET', '/s/ttl?key=k')->{status} == 404 }, 10),
       '... and the key goes away');
}

# --- 2. without do_secret, IDs from name= change after a full stop
{
    my $id1 = http($p, 'GET', '/s/stable?key=k')->{headers}{'do-object-id'};
    like($id1 // '', qr/^[0-9a-f]{64}$/, 'an ID from name=');
    is(http($p, 'GET', '/s/stable?key=k')->{headers}{'do-object-id'}, $id1,
       '... the same while nginx runs');
    ok($t->stop, 'a full stop');
    $t->start;
    my $id2 = http($p, 'GET', '/s/stable?key=k')->{headers}{'do-object-id'};
    like($id2 // '', qr/^[0-9a-f]{64}$/, 'after the start the name has an ID');
    isnt($id2, $id1, 'without do_secret (memory backend), IDs from name= '
         . 'change after a full stop and start of nginx');
    is(http($p, 'GET', '/s/stable?key=k')->{headers}{'do-object-id'}, $id2,
       '... and are stable again while it runs');
    is(http($p, "GET", "/lock/x")->{status}, 200,
       'the new nginx serves');
}

ok($t->stop, 'nginx stops gracefully');
$t->check_logs;

# --- 4b. max_value at most 32m: nginx -t
{
    my ($rc, $out) = nginx_t(<<'EOF');
    %%STORAGE%%
    do_namespace s store max_value=32m;
    server { listen 127.0.0.1:%%PORT%%; location / { do_pass s name=a; } }
EOF
    is($rc, 0, 'max_value=32m (the maximum) passes nginx -t') or diag $out;
    ($rc, $out) = nginx_t(<<'EOF');
    %%STORAGE%%
    do_namespace s store max_value=33554433;
    server { listen 127.0.0.1:%%PORT%%; location / { do_pass s name=a; } }
EOF
    isnt($rc, 0, 'max_value over the maximum (32m + 1) fails nginx -t');
    like($out, qr/invalid size in "max_value=33554433"/, '... naming it');
}

# --- 1. do_secret: surrounding whitespace of the file is ignored
my $s = DoTest->new(http => <<'EOF');
    do_secret %%PREFIX%%/do.secret;
    %%STORAGE%%
    do_namespace s store;
    server {
        listen 127.0.0.1:%%PORT%%;
        location / { do_pass s name=$arg_n; }
    }
EOF

sub id_with_secret {
    my ($content) = @_;
    open my $fh, '>', $s->prefix . '/do.secret' or die $!;
    print $fh $content;
    close $fh;
    $s->start;
    my $id = http($s->port, 'GET', '/?n=x&key=k')->{headers}{'do-object-id'};
    ok($s->stop, 'nginx stops');
    return $id;
}

my $base = 'correct horse battery staple 0123456789';
my $plain = id_with_secret("$base\n");
like($plain // '', qr/^[0-9a-f]{64}$/, 'an ID from name= with do_secret');
is(id_with_secret("  \t\n$base  \r\n\n\n"), $plain,
   'do_secret: surrounding whitespace of the secret file is ignored (the '
   . 'same ID for one name=)');
isnt(id_with_secret("${base}X\n"), $plain,
     'a secret file with other content gives another ID');
$s->start;
ok($s->stop, 'nginx stops gracefully');
$s->check_logs('the do_secret instances');

done_testing;

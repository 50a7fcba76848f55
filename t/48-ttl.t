# Store TTLs at any scale: every key up to max_key can have one (exactly
# max_key bytes, the default 2048 and a larger max_key); each TTL is stored
# on its own, so 5,000 keys of one object get one in a namespace whose
# max_value could not hold a list of three, reads and a batch of 128 gets
# see them before they end, and every one of them ends by its alarm; a TTL
# moved later no longer fires at its first time; TTLs survive a reload
# (memory) or a full restart (Redis, where alarms stored by earlier
# versions as one list still fire); a memory zone too small for the alarm
# index fails nginx -t with its file and line, and the smallest one it
# accepts holds a TTL.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP;
use List::Util qw(max);
use Time::HiRes qw(time sleep);
use DoTest qw(http wait_for nginx_t);

my $J = JSON::PP->new->canonical;
my $redis_backend = DoTest::redis_backend();

my $http = <<'EOF';
    do_secret %%PREFIX%%/do.secret;
    %%STORAGE%%
    do_namespace state store;
    do_namespace big   store max_key=8k;
    do_namespace tight store max_value=64;
    server {
        listen 127.0.0.1:%%PORT%%;
        large_client_header_buffers 4 32k;
        location ~ ^/s/(?<o>[\w-]+)$ { do_pass state name=$o; }
        location ~ ^/b/(?<o>[\w-]+)$ { do_pass big name=$o; }
        location ~ ^/m/(?<o>[\w-]+)$ { do_pass tight name=$o; }
        location = /status { do_status; }
    }
EOF

my $t = DoTest->new(workers => 2, storage => 'memory size=16m',
                    http => $http);
open my $fh, '>', $t->prefix . '/do.secret' or die;
print $fh "the secret of the ttl test, long enough\n";
close $fh;
$t->start;
my $p = $t->port;

# the keys of an object, in order (a listing runs no alarm: what it shows
# is stored)
sub keys_of {
    my ($path) = @_;
    my $r = http($p, 'GET', "$path?limit=10000");
    return undef unless $r->{status} == 200;
    return [ map { $_->{key} } @{ $J->decode($r->{body})->{items} } ];
}

sub nkeys { my $k = keys_of($_[0]); $k ? scalar @$k : -1 }

# PUTs of keys "<name><i>" for i in 1..n, over keep-alive connections
# (nginx closes one after 1000 requests); the statuses that were not 200
sub put_keys {
    my ($path, $name, $n, $args) = @_;
    my ($s, @bad);
    for my $i (1 .. $n) {
        if ($i % 500 == 1) {
            close $s if $s;
            $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                       PeerPort => $p, Timeout => 30)
                or die "connect: $!";
        }
        my $r = http($p, 'PUT', "$path?key=$name$i$args", body => "v$i",
                     sock => $s);
        push @bad, "$name$i: $r->{status}" unless $r->{status} == 200;
    }
    close $s if $s;
    return @bad;
}

# --- every key up to max_key can have a TTL

for my $case ([ '/s/longest', 2048 ], [ '/b/longest', 8192 ]) {
    my ($path, $len) = @$case;
    my $key = 'k' x $len;
    my $r = http($p, 'PUT', "$path?key=$key&ttl=1s", body => 'long');
    is($r->{status}, 200, "a key of exactly max_key ($len) bytes takes a TTL")
        or diag $r->{body};
    is(http($p, 'GET', "$path?key=$key")->{body}, 'long',
       '... it reads before its TTL');
    ok(wait_for(sub { nkeys($path) == 0 }, 15),
       '... and its alarm deletes it');
    is(http($p, 'GET', "$path?key=$key")->{status}, 404, '... it is gone');
    is(http($p, 'PUT', "$path?key=${key}k&ttl=1s", body => 'x')->{status},
       413, 'a key of max_key + 1 bytes is still 413');
}

# --- a TTL moved later does not fire at its first time

http($p, 'PUT', '/s/moved?key=a&ttl=1s', body => 'x');
http($p, 'PUT', '/s/moved?key=a&ttl=1h', body => 'y');
http($p, 'PUT', '/s/moved?key=b&ttl=1s', body => 'x');
ok(wait_for(sub { (join ' ', @{ keys_of('/s/moved') || [] }) eq 'a' }, 15),
   'a key whose TTL came due is gone');
is(http($p, 'GET', '/s/moved?key=a')->{body}, 'y',
   '... while one whose TTL moved to later stays');

# --- 5,000 keys with a TTL in one object

# the time of one PUT, to give the 5,000 a TTL that ends after all of
# them and the reads below (nothing here asserts a time)
my $t0 = time;
put_keys('/m/warm', 'w', 200, '');
my $ttl = int(max(10, 3 * 5000 * (time - $t0) / 200));

my @bad = put_keys('/m/many', 'k', 5000, "&ttl=${ttl}s");
is(scalar @bad, 0, '5,000 keys of one object get a TTL, in a namespace '
   . 'whose max_value=64 holds no list of three') or diag "@bad[0 .. 9]";
is(nkeys('/m/many'), 5000, '... all 5,000 are stored');
is(http($p, 'GET', '/m/many?key=k4321')->{body}, 'v4321',
   '... a read before their TTL sees its key');

my @get = map { 'k' . (1 + 39 * $_) } 0 .. 127;
my $r = http($p, 'POST', '/m/many',
             body => $J->encode({ get => \@get }));
my $got = $r->{status} == 200 ? $J->decode($r->{body})->{get} : {};
is(scalar(grep { ($got->{$_} // '') eq 'v' . substr($_, 1) } @get), 128,
   '... and a batch of 128 gets sees all of them');

if ($redis_backend) {
    # what a read looks up is small: no value of the object's hash grows
    # with the number of TTLs
    my $id = $r->{headers}{'do-object-id'};
    my $largest = $t->redis->cli('EVAL', 'local m = 0 '
        . "for _, v in ipairs(redis.call('HVALS', KEYS[1])) do "
        . 'm = math.max(m, #v) end return m', 1, "do:{tight:$id}:kv");
    cmp_ok($largest, '<=', 32, "... each TTL is its own hash field in Redis "
           . "(the largest value is $largest bytes)");
}

ok(wait_for(sub { nkeys('/m/many') == 0 }, $ttl + 60),
   'every one of the 5,000 keys is deleted by its alarm')
    or diag 'left: ' . nkeys('/m/many');
is(http($p, 'GET', '/m/many?key=k1')->{status}, 404, '... and reads as absent');
is(nkeys('/m/warm'), 200, '... keys without a TTL stay');

# --- TTLs survive a reload (memory) or a restart (Redis)

http($p, 'PUT', '/s/kept?key=long&ttl=1h', body => 'l');
http($p, 'PUT', '/s/kept?key=short&ttl=8s', body => 's');

if ($redis_backend) {
    $t->stop;
    $t->start;
} else {
    $t->reload;
}

my $how = $redis_backend ? 'a full restart' : 'a reload';
is(http($p, 'GET', '/s/kept?key=short')->{body}, 's',
   "after $how a key reads before its TTL");
ok(wait_for(sub { (join ' ', @{ keys_of('/s/kept') || [] }) eq 'long' }, 20),
   '... and its alarm deletes it on time');
is(http($p, 'GET', '/s/kept?key=long')->{body}, 'l',
   '... while a key with a longer TTL stays');

if ($redis_backend) {
    migrated_list();
    $t->check_logs;
    done_testing;
    exit;
}

$t->check_logs;
$t->stop;

# --- a memory zone too small for the alarm index fails nginx -t

my ($rc, $out, $conf) = nginx_t("    do_storage memory size=64k;\n"
                                . "    do_namespace s store;\n");
my $line = line_of($conf, 'size=64k');
isnt($rc, 0, 'nginx -t refuses a memory zone too small for the alarm index');
my $want = 'invalid do storage size "size=64k", at least \d+k is needed '
           . '\(the alarm index takes 64k\) in ' . quotemeta($conf)
           . ":$line\\b";
like($out, qr/$want/, '... naming the file and line of do_storage')
    or diag $out;
my ($min) = $out =~ /at least (\d+)k is needed/;

($rc, $out) = nginx_t("    do_storage memory size=${min}k;\n"
                      . "    do_namespace s store;\n");
is($rc, 0, "nginx -t accepts the least size it names (${min}k)") or diag $out;

my $small = DoTest->new(workers => 1, storage => "memory size=${min}k",
                        http => <<'EOF')->start;
    %%STORAGE%%
    do_namespace s store;
    server {
        listen 127.0.0.1:%%PORT%%;
        location ~ ^/s/(?<o>[\w-]+)$ { do_pass s name=$o; }
    }
EOF
$p = $small->port;
is(http($p, 'PUT', '/s/first?key=k&ttl=1s', body => 'x')->{status}, 200,
   '... and a zone of that size takes a first TTL');
ok(wait_for(sub { nkeys('/s/first') == 0 }, 15), '... which ends on time');
$small->check_logs;

done_testing;


# the line of a configuration file that contains a string
sub line_of {
    my ($file, $text) = @_;
    open my $f, '<', $file or die "$file: $!";
    while (<$f>) {
        return $. if index($_, $text) >= 0;
    }
    die "\"$text\" not in $file";
}

# A RESP command to the test's Redis, binary-safe (redis-cli's arguments
# cannot hold a zero byte); the reply's first line.
sub resp {
    my @args = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => $t->redis->port)
        or die "redis: $!";
    binmode $s;
    print {$s} '*' . @args . "\r\n"
               . join('', map { '$' . length($_) . "\r\n$_\r\n" } @args);
    my $reply = <$s>;
    close $s;
    return $reply =~ s/\r\n$//r;
}

# Alarms stored as one list (versions before each alarm had its keys):
# an object whose state holds one still gets its TTL, and the list moves
# to the new keys.
sub migrated_list {
    $p = $t->port;
    my $r = http($p, 'PUT', '/s/old?key=k&ttl=1h', body => 'k');
    my $id = $r->{headers}{'do-object-id'};
    http($p, 'PUT', '/s/old?key=gone', body => 'g');
    $t->stop;

    my $kv = "do:{state:$id}:kv";
    my $when = int(time * 1000) + 4000;
    my $list = pack('Q<', $when) . pack('v', length 'ttl:gone') . 'ttl:gone';
    is(resp('HSET', $kv, "\0alarms", "1:$list"), ':1',
       'an object gets alarms in the list form of earlier versions');
    resp('ZADD', 'do:alarms:' . (hex(substr($id, 0, 8)) % 1024), $when,
         "state:$id");

    $t->start;
    is(http($p, 'GET', '/s/old?key=gone')->{body}, 'g',
       '... its key reads before the TTL of the list');
    ok(wait_for(sub { (join ' ', @{ keys_of('/s/old') || [] }) eq 'k' }, 20),
       '... the alarm of the list deletes it on time');
    is(resp('HEXISTS', $kv, "\0alarms"), ':0', '... and the list is gone');
    is(http($p, 'GET', '/s/old?key=k')->{body}, 'k',
       '... while the alarm set in the new form stays');
}

# The error log under pressure and attack: an error that every request
# hits is logged at most once a second per kind, with the count of the
# lines suppressed; bytes from clients reach it escaped and bounded; a
# Redis password never reaches it and can stay out of nginx.conf
# (password_file=); a Redis host name is resolved at configuration, never
# by a worker.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Temp qw(tempdir);
use DoTest qw(http nginx_t wait_for);

# the http text starts at line 19 of the generated file (see DoTest)
my $base = 19;

# the error lines of a Redis outage
my $OUTAGE = join '|', 'connection lost', 'connect failed', 'is unavailable',
                       'command not sent';
$OUTAGE = qr/do: redis \S+: (?:$OUTAGE)/;

# how many lines of the error log match $re in each second
sub per_second {
    my ($t, $re) = @_;
    my %n;
    $n{ substr($_, 0, 19) }++ for grep { /$re/ } split /\n/, $t->error_log;
    return \%n;
}

# the seconds with more than one such line, and the number of lines
sub crowded {
    my ($t, $re) = @_;
    my $n = per_second($t, $re);
    my $lines = 0;
    $lines += $_ for values %$n;
    return (join(' ', grep { $n->{$_} > 1 } sort keys %$n), $lines);
}

sub write_file {
    my ($path, $text) = @_;
    open my $fh, '>', $path or die "$path: $!";
    print $fh $text;
    close $fh;
}


# 1. A full memory zone: 500 refused writes, one line a second

my $t = DoTest->new(workers => 2, http => <<'EOF')->start;
    client_max_body_size 1m;
    client_body_buffer_size 64k;
    do_storage memory size=128k;
    do_namespace state store max_value=200k;
    server {
        listen 127.0.0.1:%%PORT%%;
        location ~ ^/s/(?<o>[\w-]+)$ { do_pass state name=$o; }
        location ~ (?s)^/id/(?<i>.+)$ { do_pass state id=$i; }
        location = /hid              { do_pass state id=$http_x_object_id; }
    }
EOF
my $p = $t->port;

my $body = 'x' x (30 * 1024);
my @st;
for my $i (1 .. 20) {
    push @st, http($p, 'PUT', "/s/full?key=k$i", body => $body)->{status};
    last if $st[-1] == 507;
}
is($st[-1], 507, 'writes fill the zone until 507') or diag "@st";

my %refused;
$refused{ http($p, 'PUT', "/s/full?key=more$_", body => $body)->{status} }++
    for 1 .. 500;
is(join(' ', keys %refused), '507', '500 more writes are refused with 507');

my $full = qr/\bdo: .*storage is full/;
my ($busy, $lines) = crowded($t, $full);
is($busy, '', "at most one \"storage is full\" line a second ($lines lines)");
cmp_ok($lines, '<', 500, '... fewer lines than refusals');
ok(wait_for(sub {
       http($p, 'PUT', '/s/full?key=later', body => $body);
       $t->error_log =~ /$full.* \((\d+) similar errors suppressed\)/
           && $1 > 0
   }, 10),
   'a later line says how many similar errors were suppressed');


# 2. Client bytes in log lines: escaped, bounded

my $r = http($p, 'GET', '/id/%1b[31mred%0d%0aforged%20line?key=k');
is($r->{status}, 400, 'an ID with an escape sequence and CRLF is 400');
$r = http($p, 'GET', '/hid?key=k',
          headers => { 'X-Object-Id' => "\e[31mheader\e[0m" });
is($r->{status}, 400, 'an ID from a header with an escape sequence is 400');
my $long = 'z' x 300;
is(http($p, 'GET', "/id/$long?key=k")->{status}, 400, 'a long ID is 400');

my $log = $t->error_log;
like($log, qr/do: invalid object id "\\x1b\[31mred\\x0d\\x0aforged line"/,
     'the ID from the URL is logged with ESC, CR and LF escaped');
like($log, qr/do: invalid object id "\\x1b\[31mheader\\x1b\[0m"/,
     '... and so is the one from a header');
like($log, qr/do: invalid object id "z{64}\.\.\." for namespace "state"/,
     'a long ID is cut at 64 bytes, with "..."');
unlike($log, qr/\e/, 'no raw ESC in the error log');
unlike($log, qr/\r/, 'no raw CR in the error log');
unlike($log, qr/^forged line/m, 'no line forged by a client');

$t->check_logs('full zone', expect => [$full]);


# 3. Redis down: 500 calls that fail, one line a second

my $redis = DoTest::Redis->new->start;
my $rp = $redis->port;

sub redis_nginx {
    my ($storage, %args) = @_;
    my $n = DoTest->new(workers => 2, %args, http => <<"EOF");
    do_secret %%PREFIX%%/do.secret;
    do_storage $storage;
    do_namespace state store;
    server {
        listen 127.0.0.1:%%PORT%%;
        location ~ ^/s/(?<o>[\\w-]+)\$ { do_pass state name=\$o; }
    }
EOF
    write_file($n->prefix . '/do.secret',
               "the secret of this test, long enough\n");
    return $n;
}

$t = redis_nginx("redis://127.0.0.1:$rp/0 timeout=1s")->start;
$p = $t->port;
ok(wait_for(sub {
       http($p, 'PUT', '/s/a?key=k', body => 'v')->{status} == 200
   }, 10), 'Redis: a write is stored');

$redis->stop;
my %down;
$down{ http($p, 'GET', "/s/o$_?key=k")->{status} }++ for 1 .. 500;
is(join(' ', keys %down), '503', 'with Redis stopped, 500 calls get 503');

my $outage = qr/\[error\] .*\bdo: redis /;
($busy, $lines) = crowded($t, $outage);
is($busy, '', "at most one Redis error line a second ($lines lines)");
ok(wait_for(sub {
       $t->error_log =~ /$outage.* \((\d+) similar errors suppressed\)/
           && $1 > 0
   }, 15),
   'a later line says how many similar errors were suppressed');

$redis->start_on($rp);
ok(wait_for(sub {
       http($p, 'PUT', '/s/a?key=k', body => 'v')->{status} == 200
   }, 15), 'Redis back: calls work again');
$t->check_logs('Redis down', expect => [$OUTAGE]);
$redis->stop;


# 4. Redis passwords: never in a log line, and out of nginx.conf

sub fails_like {
    my ($http, $re, $line, $name, @secrets) = @_;
    my ($rc, $out, $file) = nginx_t($http);
    isnt($rc, 0, "$name: nginx -t fails");
    like($out, $re, "$name: the message says why");
    like($out, qr/\Q$file\E:$line\b/, "$name: the message names file and line");
    unlike($out, qr/\Q$_\E/, "$name: \"$_\" is not in the output")
        for @secrets;
}

fails_like("do_storage redis://alice:pa55-in-url\@127.0.0.1:noport/0;\n",
           qr{invalid\ port\ in\ redis\ URL
              \ "redis://\*\*\*\@127\.0\.0\.1:noport/0"}x,
           $base, 'an invalid URL with a password', 'pa55-in-url', 'alice');
fails_like("do_storage redis://pa55-in-url\@127.0.0.1/x;\n",
           qr{invalid redis URL "redis://\*\*\*\@127\.0\.0\.1/x"},
           $base, 'an invalid db with a password', 'pa55-in-url');
fails_like("do_storage rediss://alice:pa55-in-url\@127.0.0.1;\n",
           qr{unsupported do storage "rediss://\*\*\*\@127\.0\.0\.1"},
           $base, 'an unknown scheme with a password', 'pa55-in-url');
fails_like("do_storage redis://127.0.0.1 password=pa55-param;\n",
           qr/do_storage has no password= parameter, use password_file=/,
           $base, 'password= as a parameter', 'pa55-param');

my $dir = tempdir('ngx_do_pw_XXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0755, $dir;
write_file("$dir/empty", '');
write_file("$dir/newline", "\n");
write_file("$dir/big", ('b' x 600) . "\n");
write_file("$dir/max", ('m' x 512) . "\n");
write_file("$dir/pw", "pa55-in-file\n");

fails_like("do_storage redis://127.0.0.1 password_file=$dir/missing;\n",
           qr{open\(\) "\Q$dir\E/missing" failed}, $base,
           'a missing password file');
fails_like("do_storage redis://127.0.0.1 password_file=$dir/empty;\n",
           qr{redis password file "\Q$dir\E/empty" is empty}, $base,
           'an empty password file');
fails_like("do_storage redis://127.0.0.1 password_file=$dir/newline;\n",
           qr{redis password file "\Q$dir\E/newline" is empty}, $base,
           'a password file of one newline');
fails_like("do_storage redis://127.0.0.1 password_file=$dir/big;\n",
           qr{redis password file "\Q$dir\E/big" is over 512 bytes}, $base,
           'a password file over 512 bytes', 'bbbbbbbb');
fails_like("do_storage redis://u:pa55-in-url\@127.0.0.1 "
           . "password_file=$dir/pw;\n",
           qr/the redis URL holds a password already/, $base,
           'a password both in the URL and in a file', 'pa55-in-url',
           'pa55-in-file');
my ($rc, $out) = nginx_t("do_secret $dir/max;\n"
                      . "do_storage redis://127.0.0.1 password_file=$dir/max;"
                      . "\ndo_namespace state store;\n");
is($rc, 0, 'a password file of 512 bytes and a newline passes nginx -t')
    or diag $out;

# a Redis with requirepass, and an ACL user
my $pw = 'from-the-file 7f3a';
$redis = DoTest::Redis->new(args => ['--requirepass', $pw])->start;
$redis->{cli_auth} = ['-a', $pw, '--no-auth-warning'];
$rp = $redis->port;
$redis->cli('ACL', 'SETUSER', 'alice', 'on', '>alice-file-pw', '~*', '+@all');

$t = redis_nginx("redis://127.0.0.1:$rp/3 password_file=redis.pass");
write_file($t->prefix . '/conf/redis.pass', "$pw\n");
$t->start;
$p = $t->port;
$r = http($p, 'PUT', '/s/pf?key=k', body => 'from a file');
is($r->{status}, 200, 'password_file=: AUTH with the password of the file');
my $id = $r->{headers}{'do-object-id'};
like($redis->cli('-n', 3, 'HGET', "do:{state:$id}:kv", 'k'),
     qr/^\d+:from a file$/, '... the write is in Redis');
unlike($t->error_log, qr/\Q$pw\E|AUTH failed/,
       '... and the password is in no log line');
$t->check_logs('password_file=');

$t = redis_nginx("redis://alice\@127.0.0.1:$rp/0 password_file=alice.pass");
write_file($t->prefix . '/conf/alice.pass', "alice-file-pw\r\n");
$t->start;
$p = $t->port;
is(http($p, 'PUT', '/s/acl?key=k', body => 'A')->{status}, 200,
   'redis://user@host with password_file=: AUTH as the ACL user');
like($redis->cli('CLIENT', 'LIST'), qr/\buser=alice\b/,
     '... connected as alice');
$t->check_logs('ACL user and password_file=');

$t = redis_nginx("redis://127.0.0.1:$rp/0 password_file=wrong.pass");
write_file($t->prefix . '/conf/wrong.pass', "not-the-pa55word\n");
$t->start;
$p = $t->port;
is(http($p, 'PUT', '/s/w?key=k', body => 'x')->{status}, 503,
   'a wrong password in the file: 503');
ok(wait_for(sub {
       $t->error_log =~ m{do:\ redis\ redis://127\.0\.0\.1:$rp/0:
                            \ AUTH\ failed:\ WRONGPASS}x
   }, 5), '... and the error log says AUTH failed');
unlike($t->error_log, qr/not-the-pa55word/, '... without the password');
$t->check_logs('wrong password in the file',
               expect => [qr/do: redis \S+: (AUTH failed|is unavailable)/]);

$t = redis_nginx("\"redis://:$pw\@127.0.0.1:$rp/0\"");
$t->start;
$p = $t->port;
is(http($p, 'PUT', '/s/url?key=k', body => 'x')->{status}, 200,
   'a password in the URL still works');
unlike($t->error_log, qr/\Q$pw\E/, '... and is in no log line');
$t->check_logs('password in the URL');
$redis->stop;


# 5. A host name is resolved at configuration, never by a worker

fails_like("do_storage redis://alice:pa55-in-url\@nohost.invalid:6379/0;\n",
           qr{host\ not\ found\ in\ redis\ URL
              \ "redis://\*\*\*\@nohost\.invalid:6379/0"}x,
           $base, 'an unresolvable Redis host', 'pa55-in-url');

SKIP: {
    my $spy = "$dir/getaddrinfo_spy.so";
    system('cc', '-shared', '-fPIC', '-o', $spy,
           DoTest::root() . '/t/c/getaddrinfo_spy.c', '-ldl') == 0
        or skip 'no C compiler for the getaddrinfo witness', 6;

    $redis = DoTest::Redis->new->start;
    $rp = $redis->port;
    # the workers (nobody, when the tests run as root) append to it too
    my $calls = "$dir/getaddrinfo.log";
    write_file($calls, '');
    chmod 0666, $calls;
    local $ENV{DO_GAI_LOG} = $calls;
    $t = redis_nginx("redis://localhost:$rp/0", preload => [$spy])->start;
    $p = $t->port;
    ok(wait_for(sub {
           http($p, 'PUT', '/s/dns?key=k', body => 'v')->{status} == 200
       }, 10), 'redis://localhost:PORT works');

    $redis->stop;
    is(http($p, 'GET', '/s/dns2?key=k')->{status}, 503,
       'Redis stopped: 503');
    $redis->start_on($rp);
    ok(wait_for(sub {
           http($p, 'PUT', '/s/dns?key=k', body => 'v')->{status} == 200
       }, 15), 'Redis restarted: the workers reconnect');

    my $master = $t->pid;
    open my $fh, '<', $calls or die "$calls: $!";
    my @calls = map { [split / /, $_, 2] } map { chomp; $_ } <$fh>;
    close $fh;
    ok((grep { $_->[0] == $master && $_->[1] eq 'localhost' } @calls),
       'the master resolved localhost at configuration');
    ok((grep { $_->[0] != $master && $_->[1] eq '127.0.0.1' } @calls),
       'the workers connected to its address (the witness sees them)');
    is(join(' ', map { $_->[1] } grep { $_->[0] != $master
                                        && $_->[1] !~ /^[0-9a-f.:]+$/ }
                                 @calls),
       '', 'no worker resolved a name, even to reconnect');
    $t->check_logs('localhost', expect => [$OUTAGE]);
    $redis->stop;
}

done_testing();

# A request costs what its size says (issue 13, "limits before work"):
#
# - a body longer than what its request could store is refused with 413
#   by the worker that accepted it, from its Content-Length before it is
#   read, or, chunked, as soon as it grows past the limit; it never
#   reaches the object (no turn runs, nothing is forwarded) and the
#   worker's memory does not follow it;
# - a batch is bounded by what 128 entries at the namespace's limits take,
#   and its entries and nesting are counted before it is parsed;
# - a listing's 8 MiB budget bounds the JSON it answers, escapes counted,
#   and that JSON is written once.
#
# Peak memory is each worker's VmHWM from /proc, before and after.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP;
use IO::Select;
use IO::Socket::INET;
use DoTest qw(http);

my $MIB = 1024 * 1024;
my $MEMCHECK = !($ENV{DO_ASAN} || $ENV{DO_VALGRIND});
my $J = JSON::PP->new;

my $t = DoTest->new(workers => 2, storage => 'memory size=64m',
                    http => <<'EOF')->start;
    %%STORAGE%%
    client_max_body_size 200m;
    do_namespace state store max_key=64 max_value=64k;
    do_namespace list store max_value=256k;
    do_namespace chat room max_message=1k;
    do_namespace rl rate_limiter rate=10r/s;
    server {
        listen 127.0.0.1:%%PORT%%;
        location ~ ^/s/(?<o>[\w-]+)$ { do_pass state name=$o; }
        location ~ ^/l/(?<o>[\w-]+)$ { do_pass list name=$o; }
        location ~ ^/chat/(?<o>[\w-]+)$ { do_pass chat name=$o; }
        location ~ ^/rl/(?<o>[\w-]+)$ { do_pass rl name=$o; }
        location = /status { do_status; }
    }
EOF
my $p = $t->port;

# --- bodies over what the request could store never reach the object

my $calls = calls($t);
my $hwm = hwm($t);

my $r = headers_only($p, 'PUT', '/s/big?key=k', 100 * $MIB);
is($r->{status}, 413,
   'a PUT announcing 100 MiB is 413 before any of its body is sent');
is(error($r), 'key or value too large', '... saying why');

$r = headers_only($p, 'PUT', '/s/big?key=k', 100 * $MIB, send_body => 1);
is($r->{status}, 413, 'a PUT of 100 MiB with Content-Length is 413');
cmp_ok($r->{sent}, '<', 100 * $MIB,
       '... answered before the whole body was sent');

$r = chunked($p, 'PUT', '/s/big?key=k', 100 * $MIB);
is($r->{status}, 413, 'a chunked PUT of 100 MiB is 413');
cmp_ok($r->{sent}, '<', 100 * $MIB, '... cut before it ended');

memory_ok($t, $hwm, 20, 'three 100 MiB bodies refused');

$r = http($p, 'PUT', '/s/edge?key=k', body => 'v' x (64 * 1024 + 1));
is(error($r), 'key or value too large',
   'max_value + 1 bytes with Content-Length: 413');
$r = chunked($p, 'PUT', '/s/edge?key=k', 64 * 1024 + 1);
is($r->{status}, 413, 'max_value + 1 bytes chunked: 413');

$r = http($p, 'POST', '/s/edge', body => '{"put":{"k":"' . ('v' x (9 * $MIB))
          . '"}}');
is(error($r), 'batch too large',
   'a batch longer than 128 entries at the limits could be: 413');
$r = chunked($p, 'POST', '/s/edge', 9 * $MIB);
is($r->{status}, 413, '... also chunked');

$r = http($p, 'POST', '/chat/room1?from=a', body => 'm' x 1025);
is(error($r), 'message too large',
   'a room message posted over max_message: 413');
$r = http($p, 'POST', '/rl/k1', body => 'x' x (128 * 1024 + 1));
is(error($r), 'body too large',
   'a class with no bound of its own takes at most max_value (128k)');

is_deeply(calls($t), $calls,
          'none of these ran a turn or crossed to another worker');

$r = http($p, 'PUT', '/s/edge?key=k', body => 'v' x (64 * 1024));
is($r->{status}, 200, 'exactly max_value with Content-Length: stored');
$r = chunked($p, 'PUT', '/s/edge?key=c', 64 * 1024, chunk => 10_000);
is($r->{status}, 200, 'exactly max_value chunked: stored');
is(length(http($p, 'GET', '/s/edge?key=c')->{body}), 64 * 1024,
   '... whole');
$r = http($p, 'POST', '/chat/room1?from=a', body => 'm' x 1024);
is($r->{status}, 200, 'a room message of max_message: published');

# --- batches: bounded, and counted before they are parsed

$hwm = hwm($t);
$r = http($p, 'POST', '/s/many',
          body => '{"delete":[' . join(',', ('"k"') x 1_000_000) . ']}');
is($r->{status}, 400, 'a batch of a million tiny deletes is 400');
like(error($r), qr/at most 128/, '... saying how many it may have');
$r = http($p, 'POST', '/s/many',
          body => '{' . join(',', ('"get":[]') x 300_000) . '}');
is(error($r), 'a batch has at most three members: get, put and delete',
   'a batch of 300000 members is 400');
$r = http($p, 'POST', '/s/many',
          body => '{"put":' . ('[' x 100_000) . (']' x 100_000) . '}');
like(error($r), qr/at most 128/, 'a batch nested 100000 deep is 400');
memory_ok($t, $hwm, 20, 'batches of a million entries refused');

# built and checked by hand: JSON::PP takes seconds over 8 MiB
my $value = 'v' x (64 * 1024);
my @k = map { sprintf('k%03d', $_) } 1 .. 128;
$r = http($p, 'POST', '/s/full',
          body => '{"put":{' . join(',', map { qq{"$_":"$value"} } @k)
                  . '},"get":[' . join(',', map { qq{"$_"} } @k)
                  . '],"delete":["x"]}');
is($r->{status}, 200, 'a batch of 128 puts of max_value is within the bound')
    or diag substr($r->{body} // '', 0, 200);
like($r->{body}, qr/"put":128\b/, '... and stores them all');
is(length(http($p, 'GET', '/s/full?key=k128')->{body}), 64 * 1024,
   '... whole');

# --- a listing's budget counts the JSON it answers

my $ctl = "\x01" x (256 * 1024);
for my $i (0 .. 39) {
    $r = http($p, 'PUT', sprintf('/l/ctl?key=%%01k%02d', $i), body => $ctl);
    die "put $i: $r->{status}" unless $r->{status} == 200;
}
http($p, 'GET', '/l/ctl?key=%01k00');

$hwm = hwm($t);
my $start = '';
my $pages = 0;
my $bad = 0;
my @keys;
while (1) {
    $r = http($p, 'GET', "/l/ctl?start=$start");
    last unless $r->{status} == 200;
    $pages++;
    my $page = list_page($r->{body});
    $bad++ if length $r->{body} > 8 * $MIB || !$page
              || grep { $_ != length($ctl) * 6 } @{ $page->{values} };
    last unless $page && @{ $page->{keys} };
    push @keys, @{ $page->{keys} };
    last unless $page->{truncated};
    $start = "%01$page->{keys}[-1]%00";
}
is_deeply(\@keys, [map { sprintf('k%02d', $_) } 0 .. 39],
          'forty values of 256 KiB of control bytes are listed, in order');
cmp_ok($pages, '>=', 8, '... in pages of at most five (6x encoded)');
is($bad, 0, '... each page under 8 MiB of JSON, the values whole');
memory_ok($t, $hwm, 40, "listing 60 MiB of escaped JSON in $pages pages");

$r = list_page(http($p, 'GET', '/l/ctl?limit=2')->{body});
is_deeply($r->{keys}, ['k00', 'k01'], 'limit= still cuts a listing');
ok($r->{truncated}, '... and says so');

ok($t->stop, 'nginx stops gracefully');
$t->check_logs;

done_testing;


# do_status's turns and forwarded, summed over the workers
sub calls {
    my ($t) = @_;
    my $r = http($t->port, 'GET', '/status');
    my %sum = (turns => 0, forwarded => 0);
    for my $w (@{ $J->decode($r->{body})->{workers} }) {
        $sum{$_} += $w->{$_} for keys %sum;
    }
    return \%sum;
}

# Starts a measure of peak memory: each worker's peak (VmHWM) is set back
# to its resident memory now (clear_refs 5), which is returned in KiB by
# PID.
sub hwm {
    my ($t) = @_;
    my %kib;
    for my $pid ($t->workers) {
        if (open my $fh, '>', "/proc/$pid/clear_refs") {
            print $fh "5\n";
            close $fh;
        }
        $kib{$pid} = proc_kib($pid, 'VmHWM');
    }
    return \%kib;
}

sub proc_kib {
    my ($pid, $field) = @_;
    open my $fh, '<', "/proc/$pid/status" or return undef;
    while (my $line = <$fh>) {
        return $1 if $line =~ /^\Q$field\E:\s+(\d+)/;
    }
    return undef;
}

# no worker's peak memory grew by $mib MiB since hwm() returned $before
sub memory_ok {
    my ($t, $before, $mib, $what) = @_;
    SKIP: {
        skip 'a sanitizer or valgrind changes the heap', 1 unless $MEMCHECK;
        my %after = map { $_ => proc_kib($_, 'VmHWM') // 0 } keys %$before;
        my ($most) = sort { $b <=> $a }
                     map { $after{$_} - $before->{$_} } keys %after;
        note "$what: peak memory grew by at most $most KiB";
        cmp_ok($most // 0, '<', $mib * 1024,
               "$what: no worker's peak memory grew by $mib MiB")
            or diag explain { before => $before, after => \%after };
    }
}

sub error {
    my ($r) = @_;
    return eval { $J->decode($r->{body})->{error} }
           // "status $r->{status}: " . ($r->{body} // $r->{error} // '');
}

# a listing of keys "\x01kNN", read by hand: {keys, values (their
# lengths as written), truncated}, or undef when it is not that JSON
sub list_page {
    my ($body) = @_;
    my (@keys, @values);
    return undef
        unless $body =~ /^\{"items":\[(.*)\],"truncated":(true|false)\}$/s;
    my ($items, $truncated) = ($1, $2 eq 'true');
    while ($items =~ /\G,?\{"key":"\\u0001(k\d\d)","value":"((?:\\u0001)*)",
                      "version":\d+\}/gcx)
    {
        push @keys, $1;
        push @values, length $2;
    }
    return undef unless (pos($items) // 0) == length $items;
    return { keys => \@keys, values => \@values, truncated => $truncated };
}

# A request whose headers announce $len bytes; with send_body, the body
# follows, until the server answers or stops reading.  Returns {status,
# body, sent}.
sub headers_only {
    my ($port, $method, $uri, $len, %a) = @_;
    my $s = connect_to($port);
    print {$s} "$method $uri HTTP/1.1\r\nHost: localhost\r\n"
        . "Content-Length: $len\r\n\r\n";
    my $sent = 0;
    if ($a{send_body}) {
        $sent = send_until_answer($s, $len, sub { $_[0] });
    }
    my $r = read_answer($s);
    $r->{sent} = $sent;
    close $s;
    return $r;
}

# a chunked request of $len bytes in chunks of $a{chunk} (64 KiB), sent
# until the server answers
sub chunked {
    my ($port, $method, $uri, $len, %a) = @_;
    my $s = connect_to($port);
    print {$s} "$method $uri HTTP/1.1\r\nHost: localhost\r\n"
        . "Transfer-Encoding: chunked\r\n\r\n";
    my $sent = send_until_answer($s, $len, sub {
        sprintf("%x\r\n", length $_[0]) . $_[0] . "\r\n";
    }, $a{chunk});
    print {$s} "0\r\n\r\n" if $sent == $len;
    my $r = read_answer($s);
    $r->{sent} = $sent;
    close $s;
    return $r;
}

sub connect_to {
    my ($port) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                  Timeout => 30) or die "connect: $!";
    binmode $s;
    return $s;
}

# writes $len bytes of body, framed by $frame, until the server answers or
# stops reading; returns how many were written
sub send_until_answer {
    my ($s, $len, $frame, $chunk) = @_;
    local $SIG{PIPE} = 'IGNORE';
    my $sel = IO::Select->new($s);
    my $piece = 'b' x ($chunk // 64 * 1024);
    my $sent = 0;
    while ($sent < $len) {
        last if $sel->can_read(0);
        my $n = $len - $sent < length $piece ? $len - $sent : length $piece;
        my $data = $frame->(substr($piece, 0, $n));
        my $w = 0;
        while ($w < length $data) {
            last unless $sel->can_write(5);
            my $k = syswrite($s, $data, length($data) - $w, $w);
            return $sent unless $k;
            $w += $k;
        }
        return $sent if $w < length $data;
        $sent += $n;
    }
    return $sent;
}

# the answer's status and body (Content-Length framed), within 30 s
sub read_answer {
    my ($s) = @_;
    my $sel = IO::Select->new($s);
    my $buf = '';
    my $end = time + 30;
    while (time < $end && $sel->can_read($end - time)) {
        my $n = sysread($s, $buf, 65536, length $buf);
        last unless $n;
        my $i = index($buf, "\r\n\r\n");
        next if $i < 0;
        my ($len) = $buf =~ /\r\nContent-Length: (\d+)/i;
        last if defined $len && length($buf) - $i - 4 >= $len;
    }
    my ($status) = $buf =~ m{^HTTP/1\.\d (\d+)};
    my $i = index($buf, "\r\n\r\n");
    return { status => $status // 0,
             body => $i < 0 ? '' : substr($buf, $i + 4) };
}

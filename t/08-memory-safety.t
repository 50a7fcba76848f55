# Memory safety on the paths that once went wrong: a body that arrives
# after the headers is answered by a local owner (the answer frees the
# request while the call is still being handed over), and calls that cross
# a channel with large bodies leave no memory behind.  Both show as reports
# under make test-asan and make test-valgrind; the plain run checks the
# answers and the workers' memory.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use IO::Socket::INET;
use Time::HiRes qw(sleep);
use DoTest qw(http);

# one worker: every owner is local, so every answer comes at once
my $t = DoTest->new(workers => 1, http => <<'EOF')->start;
    %%STORAGE%%
    client_max_body_size 4m;
    do_namespace state store max_value=2m;
    server {
        listen 127.0.0.1:%%PORT%%;
        location ~ ^/objects/(?<o>[\w-]+)$ { do_pass state name=$o; }
    }
EOF
my $p = $t->port;

# one keep-alive connection; the body follows its headers 0.2 s later, so
# it is read by the body handler, not with the headers
my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $p,
                              Timeout => 10) or die "connect: $!";
binmode $s;
for my $i (1 .. 5) {
    my $body = sprintf('%0100d', $i);
    print {$s} "PUT /objects/late$i?key=k HTTP/1.1\r\nHost: x\r\n"
        . "Content-Length: 100\r\n\r\n";
    sleep 0.2;
    print {$s} $body;
    my $r = read_response($s);
    is($r->{status}, 200, "late body $i: stored")
        or diag explain $r;
    my $g = http($p, 'GET', "/objects/late$i?key=k");
    is("$g->{status} $g->{body}", "200 $body", "late body $i: read back");
}
close $s;

ok($t->stop, 'nginx stops gracefully');
$t->check_logs('late bodies: error log');

# two workers, 1 MiB bodies: half of the calls cross the channel
$t = DoTest->new(workers => 2, http => <<'EOF')->start;
    %%STORAGE%%
    client_max_body_size 4m;
    client_body_buffer_size 2m;
    do_namespace state store max_value=2m;
    server {
        listen 127.0.0.1:%%PORT%% reuseport;
        location ~ ^/objects/(?<o>[\w-]+)$ { do_pass state name=$o; }
    }
EOF
$p = $t->port;

my $mib = 'x' x (1 << 20);
my @rss;
for my $cycle (1 .. 6) {
    my $ok = 0;
    for my $i (1 .. 12) {
        my $r = http($p, 'PUT', "/objects/big$i?key=v", body => $mib);
        $ok++ if $r->{status} == 200;
        $r = http($p, 'DELETE', "/objects/big$i?key=v");
        $ok++ if $r->{status} == 200 || $r->{status} == 204;
    }
    is($ok, 24, "cycle $cycle: 12 puts and deletes of 1 MiB answered");
    push @rss, rss_kib($t);
}
SKIP: {
    skip 'a sanitizer or valgrind changes the heap', 1
        if $ENV{DO_ASAN} || $ENV{DO_VALGRIND};
    my $growth = $rss[-1] - $rss[0];
    cmp_ok($growth, '<', 16 * 1024,
           'workers grow by less than 16 MiB over five more cycles of 12 MiB')
        or diag "RSS in KiB per cycle: @rss";
}

ok($t->stop, 'nginx stops gracefully');
$t->check_logs;

done_testing;

sub rss_kib {
    my ($t) = @_;
    my $sum = 0;
    for my $pid ($t->workers) {
        open my $fh, '<', "/proc/$pid/status" or next;
        while (<$fh>) { $sum += $1 if /^VmRSS:\s+(\d+)/ }
    }
    return $sum;
}

sub read_response {
    my ($s) = @_;
    my $buf = '';
    while (1) {
        my $n = sysread($s, $buf, 65536, length $buf);
        return { status => 0, error => 'read: ' . ($n // $!) } unless $n;
        my $i = index($buf, "\r\n\r\n");
        next if $i < 0;
        my ($status) = $buf =~ m{^HTTP/1\.\d (\d+)};
        my ($len) = $buf =~ /\r\nContent-Length: (\d+)/i;
        next if length($buf) - $i - 4 < ($len // 0);
        return { status => $status, body => substr($buf, $i + 4) };
    }
}

# do_cluster's configuration: nginx -t fails, naming the file and the
# line, for cluster mode on memory storage, without do_secret, without
# name= or listen=, with a lease= that is not a time, and for a second
# do_cluster; a correct one passes.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use DoTest qw(nginx_t);

my $dir = DoTest->new(http => '')->prefix;
my $secret = "$dir/do.secret";
open my $fh, '>', $secret or die;
print $fh "a secret of the cluster configuration tests, long enough\n";
close $fh;

my $redis = "do_storage redis://127.0.0.1:6379/0;\n";
my $sec = "do_secret $secret;\n";
my $ns = "do_namespace state store;\n";
my $ok = 'do_cluster name=n1 listen=127.0.0.1:7946 lease=2s;' . "\n";

# the http text starts at line 19 of the generated file (see DoTest)
my $base = 19;

sub fails_like {
    my ($http, $re, $line, $name) = @_;
    my ($rc, $out, $file) = nginx_t($http);
    isnt($rc, 0, "$name: nginx -t fails");
    like($out, $re, "$name: the message says why") or diag $out;
    my $lines = join '|', ref $line ? @$line : $line;
    like($out, qr/\Q$file\E:(?:$lines)\b/,
         "$name: the message names file and line") or diag $out;
}

{
    my ($rc, $out) = nginx_t("$redis$sec$ok$ns");
    is($rc, 0, 'do_cluster with Redis storage and do_secret passes nginx -t')
        or diag $out;
}

fails_like("do_storage memory;\n$sec$ok$ns", qr/redis/i, $base + 2,
           'do_cluster on memory storage');
fails_like("$sec$ok$ns", qr/redis/i, $base + 1,
           'do_cluster without do_storage');
# (do_storage redis refuses to go without it too: either line says why)
fails_like("$redis$ok$ns", qr/do_secret/, [$base, $base + 1],
           'do_cluster without do_secret');
fails_like("$redis${sec}do_cluster listen=127.0.0.1:7946 lease=2s;\n$ns",
           qr/name=/, $base + 2, 'do_cluster without name=');
fails_like("$redis${sec}do_cluster name=n1 lease=2s;\n$ns",
           qr/listen=/, $base + 2, 'do_cluster without listen=');
fails_like("$redis${sec}do_cluster name=n1 listen=127.0.0.1:7946"
           . " lease=soon;\n$ns",
           qr/lease=|soon/, $base + 2, 'do_cluster with lease= not a time');
# the bounds the README gives: lease= from 400ms to 10m, a listen= that
# other nodes can reach, a name of letters, digits, ".", "-", "_"
for my $lease (qw(399ms 11m)) {
    fails_like("$redis${sec}do_cluster name=n1 listen=127.0.0.1:7946"
               . " lease=$lease;\n$ns",
               qr/lease=.*400ms to 10m/, $base + 2,
               "do_cluster with lease=$lease");
}
for my $lease (qw(400ms 10m)) {
    my ($rc, $out) = nginx_t("$redis${sec}do_cluster name=n1"
                             . " listen=127.0.0.1:7946 lease=$lease;\n$ns");
    is($rc, 0, "do_cluster with lease=$lease passes nginx -t") or diag $out;
}
fails_like("$redis${sec}do_cluster name=n1 listen=0.0.0.0:7946;\n$ns",
           qr/listen=.*other nodes reach/, $base + 2,
           'do_cluster with a wildcard listen=');
fails_like("$redis${sec}do_cluster name=n/1 listen=127.0.0.1:7946;\n$ns",
           qr/invalid node name/, $base + 2,
           'do_cluster with a name of other characters');
{
    my ($rc, $out) = nginx_t("$redis${sec}do_cluster name=\$hostname"
                             . " listen=127.0.0.1:7946;\n$ns");
    is($rc, 0, 'do_cluster name=$hostname passes nginx -t') or diag $out;
}
fails_like("$redis$sec$ok$ok$ns", qr/duplicate|twice|more than once|already/i,
           $base + 3, 'do_cluster twice');

done_testing;

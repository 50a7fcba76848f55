# The RFC 6455 parser and handshake checks (src/ngx_do_ws_proto.c) as
# pure functions: runs the C unit tests of t/c/ws_proto_test.c, built by
# the Makefile, and reports each of their cases here.

use strict;
use warnings;

use Test::More;

my $bin = $ENV{DO_WS_TEST} || 'build/ws-proto-test';

ok(-x $bin, "the unit test program $bin is built (make $bin)")
    or done_testing(), exit;

my @out = `$bin 2>&1`;
my $rc = $?;
my ($plan, $seen) = (undef, 0);

for my $line (@out) {
    chomp $line;

    if ($line =~ /^(not )?ok \d+ - (.*)$/) {
        ok(!defined $1, $2);
        $seen++;

    } elsif ($line =~ /^1\.\.(\d+)$/) {
        $plan = $1;

    } else {
        diag($line);
    }
}

is($rc, 0, 'the unit test program exits with 0');
ok(defined $plan && $plan == $seen && $seen > 0,
   "it ran every case it planned ($seen)");

done_testing();

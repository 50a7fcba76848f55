# The chat page of conf-examples/ in a real browser: two headless Chromium
# pages (Debian's chromium and chromium-driver, driven by python3-selenium)
# in one room, served by nginx with conf-examples/chat.conf.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";

use File::Copy qw(copy);
use File::Path qw(make_path);
use Test::More;
use DoTest;

open my $fh, '<', DoTest::root() . '/conf-examples/chat.conf' or die $!;
my $raw = do { local $/; <$fh> };
my $t = DoTest->new(raw => $raw, workers => 2);
make_path($t->prefix . '/html/chat');
for my $f (qw(index.html chat.js)) {
    copy(DoTest::root() . "/conf-examples/chat/$f",
         $t->prefix . "/html/chat/$f") or die "$f: $!";
}
$t->start;

my $out = `/usr/bin/python3 $FindBin::Bin/browser/chat.py @{[ $t->port ]} 2>&1`;
my $rc = $? >> 8;
my @lines = grep { /^(not )?ok \d+/ } split /\n/, $out;
ok(@lines >= 10, 'the browser test ran (' . scalar(@lines) . ' checks)')
    or diag $out;
for (@lines) {
    my ($not, $name) = /^(not )?ok \d+ - (.*)$/;
    ok(!$not, "chromium: $name");
}
is($rc, 0, 'the browser script succeeded') or diag $out;

$t->check_logs;
done_testing;

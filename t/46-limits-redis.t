# The tests of 46-limits.t, against the redis storage backend (a
# redis-server of the test's own).

use strict;
use warnings;
use FindBin;

$ENV{DO_BACKEND} = 'redis';
do "$FindBin::Bin/46-limits.t";
die $@ if $@;

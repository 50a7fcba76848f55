# The tests of 10-rate-limit.t, against the redis storage backend (a redis-server
# of the test's own).

use strict;
use warnings;
use FindBin;

$ENV{DO_BACKEND} = 'redis';
do "$FindBin::Bin/10-rate-limit.t";
die $@ if $@;

# The tests of 47-quotas.t, against the redis storage backend (a
# redis-server of the test's own): the counts live in Redis and the commit
# script checks them.

use strict;
use warnings;
use FindBin;

$ENV{DO_BACKEND} = 'redis';
do "$FindBin::Bin/47-quotas.t";
die $@ if $@;

# The tests of 30-alarms.t, against the redis storage backend (a redis-server
# of the test's own): adds a full stop of nginx, a stalled Redis and fencing
# tokens across a restart.

use strict;
use warnings;
use FindBin;

$ENV{DO_BACKEND} = 'redis';
do "$FindBin::Bin/30-alarms.t";
die $@ if $@;

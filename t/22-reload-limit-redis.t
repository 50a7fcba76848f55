# The tests of 09-reload-limit.t, against the redis storage backend (a
# redis-server of the test's own).

use strict;
use warnings;
use FindBin;

$ENV{DO_BACKEND} = 'redis';
do "$FindBin::Bin/09-reload-limit.t";
die $@ if $@;

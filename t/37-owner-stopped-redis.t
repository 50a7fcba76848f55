# The tests of 37-owner-stopped.t, against the redis storage backend (a
# redis-server of the test's own).

use strict;
use warnings;
use FindBin;

$ENV{DO_BACKEND} = 'redis';
do "$FindBin::Bin/37-owner-stopped.t";
die $@ if $@;

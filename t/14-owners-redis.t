# The tests of 04-owners.t, against the redis storage backend (a redis-server
# of the test's own).

use strict;
use warnings;
use FindBin;

$ENV{DO_BACKEND} = 'redis';
do "$FindBin::Bin/04-owners.t";
die $@ if $@;

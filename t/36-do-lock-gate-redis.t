# The tests of 36-do-lock-gate.t, against the redis storage backend (a
# redis-server of the test's own).

use strict;
use warnings;
use FindBin;

$ENV{DO_BACKEND} = 'redis';
do "$FindBin::Bin/36-do-lock-gate.t";
die $@ if $@;

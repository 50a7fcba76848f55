# The tests of 48-ttl.t, against the redis storage backend (a redis-server
# of the test's own): TTLs survive a full restart, and alarms stored as
# one list by earlier versions still fire.

use strict;
use warnings;
use FindBin;

$ENV{DO_BACKEND} = 'redis';
do "$FindBin::Bin/48-ttl.t";
die $@ if $@;

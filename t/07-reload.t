# State survives reloads and a kill -9 of the owner worker; reloads leak no
# descriptors in the master; increments running through reloads are all
# answered 200 and none of them is lost.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Temp qw(tempdir);
use POSIX qw(:sys_wait_h);
use DoTest qw(http parallel wait_for worker_conns);

my $t = DoTest->new(workers => 4, http => <<'EOF')->start;
    %%STORAGE%%
    do_namespace state store;
    server {
        listen 127.0.0.1:%%PORT%%;
        location ~ ^/s/(?<o>[\w-]+)$ {
            do_pass state name=$o;
            add_header X-Owner $do_owner always;
            add_header X-Worker $do_worker always;
            add_header X-Pid $pid always;
        }
    }
EOF
my $p = $t->port;

http($p, 'PUT', "/s/o$_?key=v", body => "value $_") for 1 .. 20;

$t->reload;
is(scalar(grep { http($p, 'GET', "/s/o$_?key=v")->{body} eq "value $_" } 1 .. 20),
   20, 'all 20 objects keep their data through a reload');

# find the pid of o1's owner: a request that its owner accepted
my $owner_pid = worker_conns($p, '/s/o1?key=v')->{owner_pid};
ok($owner_pid && $owner_pid > 1 && grep({ $_ == $owner_pid } $t->workers),
   "found the owner worker of o1 (pid " . ($owner_pid // '?') . ")")
    or BAIL_OUT('no owner pid: not killing anything');
$t->kill_worker('KILL', $owner_pid);
wait_for(sub { my @w = $t->workers; @w == 4 && !grep { $_ == $owner_pid } @w }, 10);
is(http($p, 'GET', '/s/o1?key=v')->{body}, 'value 1',
   'data survives a kill -9 of its owner worker');
is(scalar(grep { http($p, 'GET', "/s/o$_?key=v")->{body} eq "value $_" } 1 .. 20),
   20, '... as does every other object');
is(http($p, 'POST', '/s/o1?key=n&op=incr')->{status}, 200,
   'the respawned owner serves writes');

# 20 reloads leave the master's descriptors as they were
wait_for(sub { my @w = $t->workers; @w == 4 }, 10);
my $fds = $t->fd_count;
for (1 .. 20) {
    $t->reload;
    wait_for(sub { my @w = $t->workers; @w == 4 }, 10);
}
wait_for(sub { my @w = $t->workers; @w == 4 }, 10);
is($t->fd_count, $fds, "20 reloads leave the master at $fds descriptors");

# increments through 5 reloads: one request per connection, so a closing
# old worker never drops a request that the client already sent
my $dir = tempdir(CLEANUP => 1);
my @pids;
for my $c (0 .. 7) {
    my $pid = fork() // die;
    if ($pid == 0) {
        my ($ok, %bad, %pids) = (0);
        while (!-e "$dir/stop") {
            my $r = http($p, 'POST', '/s/through?key=n&op=incr');
            if ($r->{status} == 200) { $ok++ } else {
                $bad{ $r->{status} || $r->{error} }++;
            }
            $pids{ $r->{headers}{'x-pid'} }++ if $r->{headers}{'x-pid'};
        }
        open my $fh, '>', "$dir/$c" or POSIX::_exit(1);
        print $fh "$ok " . join(',', map { "$_=$bad{$_}" } sort keys %bad)
            . "\n" . join(' ', keys %pids) . "\n";
        close $fh;
        POSIX::_exit(0);
    }
    push @pids, $pid;
}
wait_for(sub { 0 }, 0.3);
for (1 .. 5) {
    $t->reload;
    wait_for(sub { 0 }, 0.3);
}
open my $fh, '>', "$dir/stop";
close $fh;
waitpid($_, 0) for @pids;

my ($acked, @errors, %seen) = (0);
for my $c (0 .. 7) {
    open my $in, '<', "$dir/$c" or die "client $c left no result";
    my ($ok, $bad) = split / /, scalar <$in>;
    chomp $bad;
    $acked += $ok;
    push @errors, $bad if length $bad;
    $seen{$_}++ for split ' ', scalar(<$in>) // '';
}
cmp_ok(scalar keys %seen, '>', 8,
       'the load ran through the reloads: answers came from '
       . scalar(keys %seen) . ' worker pids of several generations');
ok($acked > 100, "clients got $acked increments acknowledged during reloads");
is("@errors", '', 'no request failed or got a 5xx during the reloads');
is(http($p, 'GET', '/s/through?key=n')->{body}, $acked,
   'the counter equals the acknowledged increments exactly');

$t->stop;
$t->check_logs;

done_testing();

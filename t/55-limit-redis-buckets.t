# do_limit on Redis decides in the namespace's bucket table, the node's
# copy of what Redis keeps: a key the table has is decided at once by the
# worker that accepted the request, a cold key is read from Redis first.
# Exact across 4 workers under 50 clients when every key is cold at once
# (one read per key and worker at most); an exhausted key stays exhausted
# after a full stop and start (stored at the stop, not before); after a
# kill -9 of all workers (the table is shared memory: the respawned
# workers decide and store it), and after a kill -9 of the whole nginx
# once a flush interval has passed; a key exhausted by a second node is
# exhausted for the first where it is cold there (never seen, or full for
# over a second); with Redis down the table goes on deciding what it has,
# cold keys fail as fail= says, and what was decided meanwhile is stored
# once Redis is back; and a limit stays exact through reloads under load.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP;
use List::Util qw(shuffle);
use POSIX ();
use Time::HiRes qw(sleep time);
use DoTest qw(http parallel wait_for);

my $J = JSON::PP->new;
my $redis = DoTest::Redis->new->start;
my $rport = $redis->port;

sub node {
    my (%a) = @_;
    my $locations = join "\n", map {
        "        location = /$_ { do_limit $_ key=\$arg_k; "
        . "add_header X-Pid \$pid always; alias %%PREFIX%%/ok.txt; }"
    } qw(cold spent slow open closed reload);
    my $t = DoTest->new(workers => $a{workers} // 4, http => <<"EOF");
    do_secret %%PREFIX%%/do.secret;
    do_storage redis://127.0.0.1:$rport/0 timeout=1s;
    do_flush_interval $a{flush};
    do_namespace cold   rate_limiter rate=1r/m burst=9;
    do_namespace spent  rate_limiter rate=1r/m burst=4;
    do_namespace slow   rate_limiter rate=30r/m burst=4;
    do_namespace open   rate_limiter rate=1r/m burst=4;
    do_namespace closed rate_limiter rate=1r/m burst=4 fail=closed;
    do_namespace reload rate_limiter rate=1r/m burst=99;

    server {
        listen 127.0.0.1:%%PORT%% reuseport;
$locations
        location = /status { do_status; }
    }
EOF
    open my $fh, '>', $t->prefix . '/do.secret' or die;
    print $fh "one secret for every node of this test\n";
    close $fh;
    open $fh, '>', $t->prefix . '/ok.txt' or die;
    print $fh "ok\n";
    close $fh;
    return $t->start;
}

sub get { http($_[0]->port, 'GET', "/$_[1]?k=$_[2]")->{status} }
sub stored { $redis->cli('--scan', '--pattern', "do:{$_[0]:*}:tat") =~ /\S/ }
sub reads {
    my ($n) = $redis->cli('INFO', 'commandstats') =~ /cmdstat_get:calls=(\d+)/;
    return $n // 0;
}
sub table { $J->decode(http($_[0]->port, 'GET', '/status')->{body})
                ->{namespaces}{$_[1]}{table} }

# 1. every key cold at once: 20 keys, 50 clients, 4 workers
my $t = node(flush => '200ms');
my $reads0 = reads();
my @keys = map { "key$_" } 1 .. 20;
my @st = parallel(50, sub {
    my ($c) = @_;
    map { "$_ " . get($t, 'cold', $_) } shuffle @keys;
});
my %pass;
for (@st) {
    my ($k, $s) = split / /;
    $pass{$k}++ if $s == 200;
}
is(scalar @st, 1000, '50 clients, one request each for 20 cold keys');
is(join(' ', map { $pass{$_} // 0 } @keys), join(' ', (10) x 20),
   'burst=9: exactly 10 pass for every key');
is(scalar(grep { $_ !~ / (200|429)$/ } @st), 0, 'the others get 429');
my $reads = reads() - $reads0;
ok($reads >= 20 && $reads <= 80,
   "each key read from Redis once per worker at most ($reads reads)");
is(table($t, 'cold')->{entries}, 20, 'the table has the 20 keys');
ok(wait_for(sub { stored('cold') }, 5), 'and stores them within the flush '
   . 'interval');

# 2. a full stop stores what no flush stored yet
$t->check_logs('cold keys');
$t = node(flush => '60s');
my $t_first = time;
is(join(' ', map { get($t, 'spent', 'stop') } 1 .. 6),
   '200 200 200 200 200 429', 'burst=4: five pass, then exhausted');
sleep 0.3;
ok(!stored('spent'), 'do_flush_interval 60s: nothing stored yet');
ok($t->stop, 'a full stop of nginx');
ok(stored('spent'), '... stores the exhausted key');
my ($key) = grep { length } split /\n/,
            $redis->cli('--scan', '--pattern', 'do:{spent:*}:tat');
my $pttl = $redis->cli('PTTL', $key) + 0;
# five takes at 1r/m: the TAT is 5 minutes ahead of the first, and a
# second more; less what passed since (the stop of an ASan build is slow)
my $least = 301000 - (time - $t_first) * 1000 - 200;
ok($pttl > $least && $pttl <= 301000,
   "... until its bucket is full again, and a second (PTTL $pttl ms)");
$t->start;
is(get($t, 'spent', 'stop'), 429,
   'after the start, the key is still exhausted');
$t->check_logs('full stop');

# 3. kill -9 of all workers, then of the whole nginx
$t = node(flush => '500ms');
is(join(' ', map { get($t, 'spent', 'killed') } 1 .. 6),
   '200 200 200 200 200 429', 'another key exhausted');
my @old = $t->workers;
$t->kill_worker('KILL', @old);
ok(wait_for(sub {
       my %was = map { $_ => 1 } @old;
       my @new = grep { !$was{$_} } $t->workers;
       @new == 4;
   }, 10), 'kill -9 of all 4 workers: the master starts 4 new ones');
$reads0 = reads();
is(get($t, 'spent', 'killed'), 429,
   '... which find the key exhausted');
is(reads() - $reads0, 0, '... in the table (shared memory), not in Redis');
my $start = time;
ok(wait_for(sub { stored('spent') && $redis->cli('--scan', '--pattern',
                                                 'do:{spent:*}:tat')
                                     =~ tr/\n// >= 2 }, 5),
   '... and store it within the flush interval');
ok(time - $start < 3, '... (500ms)');
my @all = ($t->pid, $t->workers);
$t->expect_killed(@all);
kill 'KILL', @all;
waitpid($t->pid, 0);
wait_for(sub { !grep { kill 0, $_ } @all }, 5);
delete $t->{pid};
$t->start;
is(get($t, 'spent', 'killed'), 429,
   'kill -9 of the whole nginx a flush interval later: after a start the '
   . 'key is still exhausted');
$t->check_logs('kill -9');

# 4. a second node on the same Redis
my $na = node(flush => '200ms', workers => 2);
my $nb = node(flush => '200ms', workers => 2);
is(join(' ', map { get($nb, 'spent', 'shared') } 1 .. 6),
   '200 200 200 200 200 429', 'node B exhausts a key');
ok(wait_for(sub { stored('spent') && $redis->cli('--scan', '--pattern',
                                                 'do:{spent:*}:tat')
                                     =~ tr/\n// >= 3 }, 5),
   "... and stores it");
is(get($na, 'spent', 'shared'), 429,
   'node A, which never saw the key, finds it exhausted');

# B's five takes put the key's TAT 10 s ahead of B's first; A is refused
# while it is over 8 s ahead: A must ask within 2 s of B's first take
is(get($na, 'slow', 'again'), 200,
   'node A takes one from a key at 30r/m burst=4 (its bucket: full in 2 s)');
sleep 3.2;
# what Redis has of the key (A's take, or nothing once it expired)
sub slow_tat {
    my ($k) = grep { length } split /\n/,
              $redis->cli('--scan', '--pattern', 'do:{slow:*}:tat');
    return $k ? $redis->cli('GET', $k) : '';
}
my $slow0 = slow_tat();
is(join(' ', map { get($nb, 'slow', 'again') } 1 .. 6),
   '200 200 200 200 200 429', 'node B exhausts it once that is full');
ok(wait_for(sub { slow_tat() ne $slow0 }, 5),
   '... and stores it');
is(get($na, 'slow', 'again'), 429,
   'node A, whose bucket of it was full for over a second, reads it again '
   . 'and finds it exhausted');
ok($na->stop && $nb->stop, 'both nodes stop gracefully');
$na->check_logs('node A');
$nb->check_logs('node B');

# 5. Redis down
$t = node(flush => '200ms', workers => 2);
is(get($t, 'closed', 'kept'), 200, 'a key of a fail=closed namespace, '
   . 'in the table');
$redis->stop('KILL');
is(join(' ', map { get($t, 'closed', 'kept') } 1 .. 5),
   '200 200 200 200 429', 'Redis down: the table goes on deciding it, '
   . 'exactly');
is(get($t, 'closed', 'new'), 503, 'a cold key of fail=closed: 503');
is(get($t, 'open', 'new'), 200, 'a cold key of fail=open: 200');
$redis->start_on($rport);
ok(wait_for(sub { stored('closed') }, 10),
   'Redis back: what was decided meanwhile is stored (its writes retried)');
ok(wait_for(sub { get($t, 'closed', 'new') == 200 }, 10),
   '... and cold keys are decided again');
ok($t->stop, 'nginx stops gracefully');
$t->check_logs('redis down', expect => [qr/do: redis\b/,
                                        qr/do: rate limiter "\w+" did not/,
                                        qr/do: deferred writes of namespace/]);

# 6. reloads under load: exactly burst + 1 pass
$t = node(flush => '200ms', workers => 2);
my $p = $t->port;
my $pid = fork() // die;
if ($pid == 0) {
    for (1 .. 6) {
        kill 'HUP', $t->pid;
        sleep 0.2;
    }
    POSIX::_exit(0);
}
@st = parallel(32, sub {
    my ($i) = @_;
    my $n = $i < 8 ? 32 : 31;
    map {
        my $r = http($p, 'GET', '/reload?k=one');
        sleep 0.045;
        "$r->{status} " . ($r->{headers}{'x-pid'} // '-');
    } 1 .. $n;
});
waitpid($pid, 0);
my (%status, %pids);
for (@st) {
    my ($s, $w) = split / /;
    $status{$s}++;
    $pids{$w}++;
}
is($status{200}, 100, 'reloads every 0.2 s under 1000 requests: exactly '
   . '100 pass') or diag explain \%status;
is(($status{200} // 0) + ($status{429} // 0), 1000, '... the others get 429');
cmp_ok(scalar(keys %pids), '>', 2, scalar(keys %pids)
       . ' worker pids answered');
wait_for(sub { my @w = $t->workers; @w == 2 }, 15);
ok($t->stop, 'nginx stops gracefully');
$t->check_logs('reloads');

done_testing();

# A limit stays exact through reloads: while the workers of one generation
# hand the key over to the next, exactly one of them decides.  One key,
# rate=1r/m burst=99 (100 requests pass), 1000 requests from 32 clients
# while nginx reloads 5 times, and while it reloads every 0.2 s; 5 runs of
# each.  Each run also shows that the reloads overlapped the load: answers
# came from more than one generation of workers.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(sleep time);
use DoTest qw(http parallel wait_for);

my $t = DoTest->new(workers => 2, http => <<'EOF');
    %%STORAGE%%
    do_namespace per_key rate_limiter rate=1r/m burst=99;
    server {
        listen 127.0.0.1:%%PORT%%;
        location /limited/ {
            do_limit per_key key=$arg_key;
            add_header X-Pid $pid always;
            alias %%PREFIX%%/html/;
        }
    }
EOF
mkdir $t->prefix . '/html';
open my $fh, '>', $t->prefix . '/html/ok.txt' or die;
print $fh "origin\n";
close $fh;
$t->start;
my $p = $t->port;

my $RUNS = $ENV{DO_RELOAD_RUNS} || 5;

# 32 clients, 1000 requests in all, paced to last about 1.5 s
sub load {
    my ($key) = @_;
    return parallel(32, sub {
        my ($i) = @_;
        my $n = $i < 8 ? 32 : 31;    # 8 * 32 + 24 * 31 = 1000
        map {
            my $r = http($p, 'GET', "/limited/ok.txt?key=$key");
            sleep 0.045;
            "$r->{status} " . ($r->{headers}{'x-pid'} // '-');
        } 1 .. $n;
    });
}

sub run {
    my ($key, $reloads) = @_;
    my $pid = fork() // die;
    if ($pid == 0) {
        $reloads->();
        POSIX::_exit(0);
    }
    my @lines = load($key);
    waitpid($pid, 0);
    my (%status, %pids);
    for (@lines) {
        my ($s, $w) = split / /;
        $status{$s}++;
        $pids{$w}++ if $w ne '-';
    }
    return (\%status, scalar keys %pids, scalar @lines);
}

for my $run (1 .. $RUNS) {
    # five reloads, each waited for (a new set of workers runs)
    my ($st, $gens, $n) = run("waited$run", sub {
        for (1 .. 5) {
            sleep 0.15;
            $t->reload;
        }
    });
    is($n, 1000, "run $run, 5 reloads: 1000 answers");
    is($st->{200}, 100, "run $run, 5 reloads: exactly 100 pass")
        or diag explain $st;
    is(($st->{200} // 0) + ($st->{429} // 0), 1000,
       "run $run, 5 reloads: the others get 429");
    cmp_ok($gens, '>', 2, "run $run, 5 reloads: $gens worker pids answered");

    # a reload every 0.2 s, not waited for
    ($st, $gens, $n) = run("rapid$run", sub {
        for (1 .. 6) {
            kill 'HUP', $t->pid;
            sleep 0.2;
        }
    });
    is($n, 1000, "run $run, reloads 0.2 s apart: 1000 answers");
    is($st->{200}, 100, "run $run, reloads 0.2 s apart: exactly 100 pass")
        or diag explain $st;
    is(($st->{200} // 0) + ($st->{429} // 0), 1000,
       "run $run, reloads 0.2 s apart: the others get 429");
    cmp_ok($gens, '>', 2,
           "run $run, reloads 0.2 s apart: $gens worker pids answered");

    # the old generations are gone before the next run
    wait_for(sub { my @w = $t->workers; @w == 2 }, 15);
}

unlike($t->error_log, qr/did not give it back/,
       'every handover came in time: no shard was taken by force');
ok($t->stop, 'nginx stops gracefully');
$t->check_logs;

done_testing;

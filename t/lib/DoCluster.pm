package DoCluster;

# N nginx nodes in cluster mode on one redis-server of the test's own, with
# one do_secret: each node a DoTest instance (its own prefix, HTTP port and
# node port) with
#
#     do_storage redis://127.0.0.1:<redis>/0;
#     do_secret <the shared file>;
#     do_cluster name=nI listen=127.0.0.1:<node port> lease=<lease>;
#
# and the test's own http text and locations; every node serves /status
# (do_status) and /ok.txt.  DO_CLUSTER=off leaves the do_cluster line out
# (each node on its own, as before cluster mode): the harness still runs,
# and the tests that need one owner per object fail, which shows they can.
#
# Placement converges when every node's status shows it in cluster mode,
# the shards the nodes hold are every one of the 1024 exactly once, spread
# over all of them (each holds at least half of 1024 / N), and every node
# sees every other one live and connected.

use strict;
use warnings;

use Exporter qw(import);
use File::Temp qw(tempdir);
use IO::Socket::INET;
use JSON::PP;
use POSIX qw(:sys_wait_h);
use Test::More;
use Time::HiRes qw(sleep time);

use DoTest qw(http wait_for free_port spawn collect);

our @EXPORT_OK = qw(shard_of spawn collect peers);

my $J = JSON::PP->new->utf8;

sub plain { ($ENV{DO_CLUSTER} // '') eq 'off' }

# new(nodes => 3, workers => 2, lease => '2s', http => '...',
#     locations => '...', redis => DoTest::Redis): the nodes are made, not
# started (start_all).  In the texts, %%NODE%% is the node's name.
sub new {
    my ($class, %a) = @_;
    my $self = bless {
        workers   => 2,
        lease     => '2s',
        http      => '',
        locations => '',
        %a,
        nodes     => [],
    }, $class;
    $self->{redis} ||= DoTest::Redis->new->start;
    $self->{dir} = tempdir('ngx_do_cluster_XXXXXX', TMPDIR => 1,
                           CLEANUP => !$ENV{DO_KEEP});
    chmod 0755, $self->{dir};
    $self->{secret} = "$self->{dir}/do.secret";
    open my $fh, '>', $self->{secret} or die "$self->{secret}: $!";
    print $fh join('', map { chr(33 + int rand 90) } 1 .. 48), "\n";
    close $fh;
    $self->add for 1 .. ($a{nodes} // 3);
    return $self;
}

sub redis { $_[0]{redis} }
sub nodes { @{ $_[0]{nodes} } }
sub node  { $_[0]{nodes}[ $_[1] ] }
sub port  { $_[0]{nodes}[ $_[1] ]->port }
sub name  { 'n' . ($_[1] + 1) }
sub addr  { "127.0.0.1:" . $_[0]{node_port}[ $_[1] ] }

# lease= in ms
sub lease_ms {
    my ($v, $u) = $_[0]{lease} =~ /^(\d+)(ms|s)?$/ or die "lease";
    return ($u // 's') eq 'ms' ? $v : $v * 1000;
}

# a new node (not started); its index
sub add {
    my ($self) = @_;
    my $i = @{ $self->{nodes} };
    my $name = $self->name($i);
    my $nport = free_port();
    $self->{node_port}[$i] = $nport;
    my $rport = $self->{redis}->port;
    my $cluster = plain() ? ''
        : "do_cluster name=$name listen=127.0.0.1:$nport"
          . " lease=$self->{lease};";
    my ($http, $loc) = map { s/%%NODE%%/$name/gr }
                       @$self{qw(http locations)};
    my $t = DoTest->new(workers => $self->{workers}, http => <<"EOF");
    do_storage redis://127.0.0.1:$rport/0 timeout=2s;
    do_secret $self->{secret};
    $cluster
$http
    server {
        listen 127.0.0.1:%%PORT%% reuseport;
        location = /status { do_status; }
        location = /ok.txt { alias %%PREFIX%%/ok.txt; }
$loc
    }
EOF
    open my $fh, '>', $t->prefix . '/ok.txt' or die;
    print $fh "ok\n";
    close $fh;
    push @{ $self->{nodes} }, $t;
    return $i;
}

sub start_all {
    my ($self) = @_;
    $_->start for $self->nodes;
    return $self;
}

# the indexes of the nodes that run (started, not killed, not stopped)
sub live {
    my ($self) = @_;
    return grep { $self->{nodes}[$_]{pid} && !$self->{stopped}[$_] }
           0 .. $#{ $self->{nodes} };
}

# the node's nginx processes: the master and its workers
sub pids {
    my ($self, $i) = @_;
    my $t = $self->{nodes}[$i];
    return ($t->pid, $t->workers);
}

# SIGKILL a whole node, master and workers at once; it is gone after
sub kill_node {
    my ($self, $i) = @_;
    my $t = $self->{nodes}[$i];
    my @pids = $self->pids($i);
    kill 'KILL', @pids;
    waitpid($t->pid, 0);
    # its workers are the init's children now: gone once /proc says so
    wait_for(sub { !grep { -e "/proc/$_" && !zombie($_) } @pids }, 10);
    delete $t->{pid};
    $t->{checked} = 1;
    return scalar @pids;
}

sub zombie {
    open my $fh, '<', "/proc/$_[0]/stat" or return 1;
    my $s = <$fh> // '';
    return $s =~ /^\d+ \(.*?\) Z/;
}

# SIGSTOP / SIGCONT a whole node
sub pause_node {
    my ($self, $i) = @_;
    kill 'STOP', $self->pids($i);
    $self->{stopped}[$i] = 1;
}

sub resume_node {
    my ($self, $i) = @_;
    kill 'CONT', $self->pids($i);
    $self->{stopped}[$i] = 0;
}

# the node's do_status JSON, decoded (undef when it does not answer)
sub status {
    my ($self, $i) = @_;
    my $r = http($self->port($i), 'GET', '/status', timeout => 5);
    return undef unless ($r->{status} // 0) == 200;
    return eval { $J->decode($r->{body}) };
}

# its "cluster" object (undef outside cluster mode)
sub cluster {
    my ($self, $i) = @_;
    my $s = $self->status($i) or return undef;
    return $s->{cluster};
}

sub prometheus {
    my ($self, $i) = @_;
    return http($self->port($i), 'GET', '/status?format=prometheus')->{body}
           // '';
}

# the other nodes in a cluster status (a status may list the node itself,
# marked "self")
sub peers {
    my ($c) = @_;
    return grep { !$_->{self} } @{ $c->{peers} || [] };
}

# the sum over the node's peers of a counter ("forwards", "failures"):
# in the peers (the registry) or the channel (the connections) entries
sub peer_sum {
    my ($self, $i, $field) = @_;
    my $c = $self->cluster($i) or return 0;
    my $n = 0;
    $n += $_->{$field} // 0 for peers($c), @{ $c->{channel} || [] };
    return $n;
}

# commits the node refused by epoch: the cluster's "fenced", or the sum of
# the workers' (as built)
sub fenced {
    my ($self, $i) = @_;
    my $s = $self->status($i) or return 0;
    return $s->{cluster}{fenced} if defined $s->{cluster}{fenced};
    my $n = 0;
    $n += $_->{fenced} // 0 for @{ $s->{workers} || [] };
    return $n;
}

# Why placement has not converged over the nodes @on (default: the live
# ones), '' once it has: every node in cluster mode, each shard held by
# exactly one of them (epochs), the held counts agree with "shards", and
# every node sees each other one as a live, connected peer.
sub unconverged {
    my ($self, @on) = @_;
    @on = $self->live unless @on;
    my (%holder, $sum);
    my %names = map { $self->name($_) => 1 } @on;
    for my $i (@on) {
        my $c = $self->cluster($i);
        return $self->name($i) . ': no cluster status' unless $c;
        my @held = keys %{ $c->{epochs} || {} };
        return $self->name($i) . ": shards $c->{shards} but "
               . @held . ' epochs'
            unless ($c->{shards} // -1) == @held;
        $sum += @held;
        for my $s (@held) {
            return "shard $s held by $holder{$s} and " . $self->name($i)
                if defined $holder{$s};
            $holder{$s} = $self->name($i);
        }
        my %peer = map { $_->{name} => $_ } peers($c);
        for my $n (grep { $_ ne $self->name($i) } keys %names) {
            my $p = $peer{$n};
            return $self->name($i) . ": peer $n is not live and connected"
                unless $p && $p->{live}
                       && (!exists $p->{connected} || $p->{connected});
        }
    }
    return "the nodes hold $sum shards, not 1024" unless $sum == 1024;
    # spread: each node at least half of its even share (rendezvous
    # hashing over N nodes gives each 1024 / N, give or take a few dozen)
    my %count;
    $count{$_}++ for values %holder;
    for my $i (@on) {
        my $n = $count{ $self->name($i) } // 0;
        return $self->name($i) . " holds $n shards, not its share"
            if $n < 1024 / @on / 2;
    }
    return '';
}

# waits (up to $timeout s) until placement converges over @on; true then,
# else false with the reason as a diagnostic
sub converge {
    my ($self, $timeout, @on) = @_;
    return 0 if plain();
    my $why;
    my $ok = wait_for(sub { ($why = $self->unconverged(@on)) eq '' },
                      $timeout // 20);
    diag("placement did not converge: $why") unless $ok;
    return $ok;
}

# converge() as a test; when it fails, the rest of a test file that needs
# placement cannot run: the nodes are stopped and checked, and it ends
sub converge_or_end {
    my ($self, $timeout, $name) = @_;
    return 1 if ok($self->converge($timeout), $name);
    # DO_CLUSTER=off: on, to see the rest run (and fail)
    return 0 if plain();
    $self->check_logs;
    done_testing();
    exit;
}

# shard => node index, from the statuses of @on (default: the live ones)
sub holders {
    my ($self, @on) = @_;
    @on = $self->live unless @on;
    my %h;
    for my $i (@on) {
        my $c = $self->cluster($i) or next;
        $h{$_} = $i for keys %{ $c->{epochs} || {} };
    }
    return \%h;
}

# the shard of an object ID (64 hex): the first 32 bits of its body % 1024
sub shard_of {
    my ($id) = @_;
    return undef unless defined $id && $id =~ /^([0-9a-f]{8})/i;
    return hex($1) % 1024;
}

# Names of $count new objects whose shard node $i holds, found
# through $uri_of->($name) (a request whose answer has X-Id: the object
# ID) on node $via; each as [name, shard].
sub objects_held_by {
    my ($self, $i, $count, $uri_of, $via) = @_;
    my $h = $self->holders;
    my @found;
    for my $n (1 .. 2000) {
        # names handed out before are not used twice
        my $name = "o" . ++$self->{named} . "x$$";
        my $r = http($self->port($via // 0), 'GET', $uri_of->($name));
        my $s = shard_of($r->{headers}{'x-id'});
        next unless defined $s;
        # DO_CLUSTER=off: any object, to see the rest run
        push @found, [$name, $s] if ($h->{$s} // -1) == $i || plain();
        last if @found >= $count;
    }
    return @found;
}

# Redis: the lease key of a shard (as the brief names it; the other names
# the design used are looked for when it is absent)
sub lease_key {
    my ($self, $s) = @_;
    for my $k ("do:cluster:lease:$s", "do:lease:$s", "do:shard:$s") {
        return $k if $self->{redis}->cli('EXISTS', $k) =~ /^1/;
    }
    return "do:cluster:lease:$s";
}

sub epoch_key { "do:cluster:epoch:$_[1]" }

# one command on a connection of our own, in RESP: faster than redis-cli
# (no fork), for the steps that race a node's timers
sub redis_cmd {
    my ($self, @args) = @_;
    my $s = $self->{rsock} ||= IO::Socket::INET->new(
        PeerAddr => '127.0.0.1', PeerPort => $self->{redis}->port,
        Timeout => 5) or die "redis: $!";
    my $req = '*' . @args . "\r\n";
    $req .= '$' . length($_) . "\r\n$_\r\n" for @args;
    print {$s} $req;
    my $line = <$s> // '';
    if ($line =~ /^\$(-?\d+)/) {
        return undef if $1 < 0;
        read($s, my $v, $1 + 2);
        return substr($v, 0, $1);
    }
    $line =~ s/\r\n$//;
    return $line;
}

# every node stopped gracefully and its logs checked; @expect: patterns of
# lines the test caused on purpose
sub check_logs {
    my ($self, @expect) = @_;
    for my $i (0 .. $#{ $self->{nodes} }) {
        my $t = $self->{nodes}[$i];
        $self->resume_node($i) if $self->{stopped}[$i];
        next if $t->{checked} && !$t->{pid};
        $t->check_logs($self->name($i), expect => \@expect);
    }
}

# Paced takes of limited keys (a location /limited with do_limit, key=
# $arg_key): @$keys split over $a{procs} children; in each of $a{rounds}
# rounds every key is asked once, through node $a{pick}->($k, $round),
# then the child waits for the next round's slot ($a{period} s apart from
# $a{t0}).  A connection refused by that node (its listener closed: not
# taken there) is asked again through node $a{fallback} when given.  The
# load's handle; its lines are "<key index> <node> <status>".
sub paced_takes {
    my ($self, $keys, %a) = @_;
    my @ports = map { $_->port } $self->nodes;
    return spawn($a{procs}, sub {
        my ($i) = @_;
        my @out;
        for my $round (0 .. $a{rounds} - 1) {
            for my $k (grep { $_ % $a{procs} == $i } 0 .. $#$keys) {
                my $n = $a{pick}->($k, $round);
                my $r = http($ports[$n], 'GET', "/limited?key=$keys->[$k]",
                             timeout => 15);
                if (!$r->{status} && defined $a{fallback}) {
                    $n = $a{fallback};
                    $r = http($ports[$n], 'GET', "/limited?key=$keys->[$k]",
                              timeout => 15);
                }
                push @out, "$k $n $r->{status}";
            }
            my $wait = $a{t0} + $a{period} * ($round + 1) - time;
            sleep $wait if $wait > 0;
        }
        return @out;
    });
}

# The lines of paced_takes() counted: passes by key index, and the
# requests by status and by node (hash references)
sub tally {
    my (%pass, %by_status, %via);
    for (@_) {
        my ($k, $n, $s) = split / /;
        next unless defined $s;
        $pass{$k}++ if $s == 200;
        $by_status{$s}++;
        $via{$n}++;
    }
    return (\%pass, \%by_status, \%via);
}

# Increments of store objects (a location /s/NAME with do_pass, key n)
# through the nodes @via, one child each, until $until (a time()): the
# load's handle, for increments_ok()
sub increments {
    my ($self, $until, $objs, @via) = @_;
    my @ports = map { $self->port($_) } @via;
    return spawn(scalar @ports, sub {
        my ($i) = @_;
        my @out;
        while (time < $until) {
            for my $o (@$objs) {
                my $r = http($ports[$i], 'POST', "/s/$o?key=n&op=incr",
                             timeout => 15);
                push @out, "$o $r->{status}";
            }
            sleep 0.02;
        }
        return @out;
    });
}

# Two tests of the load: every increment was answered 200 (the test's
# name: $name and the count), and each object holds exactly the
# acknowledged ones (read through node $read)
sub increments_ok {
    my ($self, $load, $objs, $read, $name) = @_;
    my (%acked, %status);
    for (collect($load)) {
        my ($o, $st) = split / /;
        $status{$st}++;
        $acked{$o}++ if $st == 200;
    }
    my $calls = 0;
    $calls += $_ for values %status;
    is($status{200} // 0, $calls, "$name ($calls calls)")
        or diag explain \%status;
    is(join(' ', map { http($self->port($read), 'GET', "/s/$_?key=n")
                       ->{body} } @$objs),
       join(' ', map { $acked{$_} // 0 } @$objs),
       '... and each object holds exactly the acknowledged increments');
}

# One node on its own (t/67, t/69, t/73): a DoTest whose http text has
# "do_secret %%PREFIX%%/do.secret" and a do_cluster named n1, on a
# DoTest::Redis.  lone_start() writes the secret (and an ok.txt) and
# starts it; lone_cluster() is its do_status "cluster" object; lease_of()
# the value of a shard's lease in Redis; take_lease() plays another node:
# just after the node's agent ticked (so that the node still believes it
# holds the shard for a quarter lease), a new epoch of the shard and a
# lease under the name "other" for $ms; the new epoch, or undef when the
# agent did not tick.
sub lone_start {
    my ($t) = @_;
    for (['do.secret', "one secret for every node of this test\n"],
         ['ok.txt', "ok\n"]) {
        open my $fh, '>', $t->prefix . "/$_->[0]" or die;
        print $fh $_->[1];
        close $fh;
    }
    return $t->start;
}

sub lone_cluster {
    my ($t) = @_;
    my $s = eval { $J->decode(http($t->port, 'GET', '/status')->{body}) };
    return ($s || {})->{cluster} // {};
}

sub lease_of {
    my ($redis, $s) = @_;
    my $v = $redis->cli('GET', "do:cluster:lease:$s");
    chomp $v;
    return $v;
}

sub take_lease {
    my ($t, $redis, $s, $ms) = @_;
    my $n = lone_cluster($t)->{ticks};
    return undef
        unless wait_for(sub { (lone_cluster($t)->{ticks} // 0) != $n }, 15);
    my $e = $redis->cli('INCR', "do:cluster:epoch:$s");
    chomp $e;
    $redis->cli('SET', "do:cluster:lease:$s", "$e other", 'PX', $ms);
    return $e;
}

# graceful stop of every node, one by one (true if all stopped in time)
sub stop_all {
    my ($self) = @_;
    my $ok = 1;
    for my $i ($self->live) {
        $ok = 0 unless $self->{nodes}[$i]->stop;
    }
    return $ok;
}

1;

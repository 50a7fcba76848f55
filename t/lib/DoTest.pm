package DoTest;

# Test harness: a real nginx with the module, on a free loopback port, in a
# temporary prefix; started, reloaded and stopped by its master's PID.

use strict;
use warnings;

use Cwd qw(abs_path);
use Exporter qw(import);
use File::Temp qw(tempdir);
use IO::Select;
use IO::Socket::INET;
use POSIX qw(:sys_wait_h);
use Test::More;
use Time::HiRes qw(sleep time);

our @EXPORT_OK = qw(free_port http header_count parallel spawn collect wait_for nginx_t
                    worker_conns);

my $ROOT = abs_path(__FILE__) =~ s{/t/lib/DoTest\.pm$}{}r;

# every nginx a test started, for the END block
my @INSTANCES;

# A test file that hangs fails instead of holding prove forever.
my $WATCHDOG = $ENV{DO_WATCHDOG} || ($ENV{DO_VALGRIND} ? 1500 : 300);
$SIG{ALRM} = sub { die "watchdog: the test ran for more than $WATCHDOG s\n" };
alarm $WATCHDOG;

sub nginx_bin { $ENV{NGINX_BIN} || '/usr/sbin/nginx' }

# a shell command prefix for one-off runs such as nginx -t
sub nginx_cmd {
    my %env = env_for_nginx();
    $env{ASAN_OPTIONS} = 'detect_leaks=0' if $ENV{DO_ASAN};
    return join(' ', map { "$_='$env{$_}'" } sort keys %env)
           . ' ' . nginx_bin();
}

# nginx built --with-debug (Debian's is): debug lines are written
sub nginx_debug {
    my $v = `@{[ nginx_bin() ]} -V 2>&1`;
    return $v =~ /--with-debug/;
}

sub module_path { $ENV{DO_MODULE} || "$ROOT/build/ngx_http_do_module.so" }

# DO_STATIC=1: NGINX has the module built in, nothing to load
sub load_line { $ENV{DO_STATIC} ? '' : 'load_module ' . module_path() . ';' }

sub root { $ROOT }

sub free_port {
    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                  Listen => 1, ReuseAddr => 1)
        or die "no free port: $!";
    my $port = $s->sockport;
    close $s;
    return $port;
}

# new(http => '...', workers => 4, main => '...'): in the http text,
# %%PORT%% is the listen port and %%PREFIX%% the temporary prefix.
sub new {
    my ($class, %args) = @_;
    my $self = bless {
        workers => 1,
        main    => '',
        events  => '',
        %args,
    }, $class;

    $self->{prefix} = tempdir('ngx_do_t_XXXXXX', TMPDIR => 1,
                              CLEANUP => !$ENV{DO_KEEP});
    chmod 0755, $self->{prefix};
    mkdir "$self->{prefix}/logs";
    # workers (not root) write their sanitizer reports here
    chmod 01777, "$self->{prefix}/logs" if $ENV{DO_ASAN};
    mkdir "$self->{prefix}/conf";
    $self->{port} = $args{port} || free_port();
    # %%PORT2%%, %%PORT3%%, ...: more ports, e.g. for an origin server
    $self->{extra_ports} = { map { $_ => free_port() } 2 .. 4 };
    $self->write_conf;
    return $self;
}

# DO_BACKEND=redis runs a test against a redis-server of its own
sub redis_backend { ($ENV{DO_BACKEND} // '') eq 'redis' }

# %%STORAGE%%: the storage of this run (new(storage => 'memory size=2m')).
# Redis storage needs do_secret: when the http text has none, the harness
# writes one secret file (the same for every instance, as on several nodes)
# into the prefix and adds it on the same line (line numbers stay).
sub storage_line {
    my ($self) = @_;
    if (redis_backend()) {
        $self->{redis} ||= DoTest::Redis->new->start;
        my $line = "do_storage redis://127.0.0.1:" . $self->{redis}->port
            . "/0 timeout=2s;";
        return $line if $self->{http} =~ /^\s*do_secret\s/m;
        my $secret = "$self->{prefix}/harness.secret";
        open my $fh, '>', $secret or die "$secret: $!";
        print $fh "the secret of the test harness, long enough\n";
        close $fh;
        return "do_secret $secret; $line";
    }
    return 'do_storage ' . ($self->{storage} // 'memory') . ';';
}

sub redis { $_[0]{redis} }

sub prefix { $_[0]{prefix} }
sub port   { $_[0]{port} }
sub port_n { $_[0]{extra_ports}{ $_[1] } }
sub pid    { $_[0]{pid} }

sub conf_text {
    my ($self) = @_;
    my $p = $self->{prefix};
    my $module = module_path();

    if (defined $self->{raw}) {
        # a whole nginx.conf, as in conf-examples/: our module, our port
        my $raw = $self->{raw};
        $raw =~ s{load_module\s+modules/ngx_http_do_module\.so;}{load_line()}ge;
        $raw =~ s{127\.0\.0\.1:8080}{127.0.0.1:$self->{port}}g;
        $raw =~ s{127\.0\.0\.1:8081}{127.0.0.1:$self->{extra_ports}{2}}g;
        $raw =~ s{127\.0\.0\.1:6379}{127.0.0.1:$self->{redis_port}}g
            if $self->{redis_port};
        $raw =~ s/%%PREFIX%%/$p/g;
        return $raw;
    }

    my $http = $self->{http};
    $http =~ s/%%STORAGE%%/$self->storage_line/ge;
    $http =~ s/%%PORT(\d)%%/$self->{extra_ports}{$1}/g;
    $http =~ s/%%PORT%%/$self->{port}/g;
    $http =~ s/%%PREFIX%%/$p/g;
    my $main = $self->{main};
    $main =~ s/%%PREFIX%%/$p/g;

    my $load = load_line();

    return <<"EOF";
$load
worker_processes $self->{workers};
error_log $p/logs/error.log info;
pid $p/logs/nginx.pid;
$main
events {
    worker_connections 4096;
    $self->{events}
}

http {
    access_log off;
    client_body_temp_path $p/body;
    proxy_temp_path $p/proxy;
    fastcgi_temp_path $p/fastcgi;
    uwsgi_temp_path $p/uwsgi;
    scgi_temp_path $p/scgi;

$http
}
EOF
}

sub write_conf {
    my ($self, %change) = @_;
    @$self{keys %change} = values %change;
    open my $fh, '>', "$self->{prefix}/conf/nginx.conf" or die $!;
    print $fh $self->conf_text;
    close $fh;
}

sub env_for_nginx {
    my @env;
    if ($ENV{DO_ASAN}) {
        my @libs = map { `gcc -print-file-name=$_` =~ s/\s+$//r }
                   qw(libasan.so libubsan.so);
        push @env, LD_PRELOAD => "@libs";
    }
    return @env;
}

sub start {
    my ($self) = @_;
    my $conf = "$self->{prefix}/conf/nginx.conf";
    my %env = env_for_nginx();

    if ($ENV{DO_ASAN}) {
        $env{ASAN_OPTIONS} = "log_path=$self->{prefix}/logs/asan"
            . ':detect_leaks=1:fast_unwind_on_malloc=0:abort_on_error=0';
        $env{UBSAN_OPTIONS} = "log_path=$self->{prefix}/logs/ubsan"
            . ':print_stacktrace=1';
        $env{LSAN_OPTIONS} = 'print_suppressions=0';
    }

    # new(preload => [...]): libraries that watch nginx (after ASan's)
    $env{LD_PRELOAD} = join ' ', grep { defined } $env{LD_PRELOAD},
                                                 @{ $self->{preload} }
        if $self->{preload};

    my $pid = fork() // die "fork: $!";
    if ($pid == 0) {
        @ENV{keys %env} = values %env;
        open STDOUT, '>>', "$self->{prefix}/logs/stdout.log";
        open STDERR, '>>', "$self->{prefix}/logs/stderr.log";
        my @vg = $ENV{DO_VALGRIND}
            ? ('valgrind', '--tool=memcheck', '--trace-children=yes',
               '--child-silent-after-fork=no', '--leak-check=no',
               '--track-origins=yes', '--num-callers=30',
               "--log-file=$self->{prefix}/logs/valgrind.%p")
            : ();
        exec @vg, nginx_bin(), '-p', $self->{prefix}, '-c', $conf,
             '-g', 'daemon off;';
        die "exec: $!";
    }
    $self->{pid} = $pid;
    $self->{checked} = 0;
    push @INSTANCES, $self unless grep { $_ == $self } @INSTANCES;

    wait_for(sub {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                      PeerPort => $self->{port});
        return 1 if $s;
        die "nginx exited: " . $self->stderr if waitpid($pid, WNOHANG) == $pid;
        return 0;
    }, $ENV{DO_VALGRIND} ? 60 : 10)
        or die "nginx did not start listening:\n" . $self->stderr;

    # every worker is up (and has its channels) before traffic starts
    wait_for(sub { my @w = $self->workers; @w >= $self->{workers} }, 10);
    # under valgrind a worker listens a while after it was forked
    sleep 2 if $ENV{DO_VALGRIND};
    return $self;
}

sub stderr {
    my ($self) = @_;
    open my $fh, '<', "$self->{prefix}/logs/stderr.log" or return '';
    local $/;
    return <$fh>;
}

sub error_log {
    my ($self) = @_;
    open my $fh, '<', "$self->{prefix}/logs/error.log" or return '';
    local $/;
    return <$fh>;
}

# worker PIDs: the master's children that are not cache processes
sub workers {
    my ($self) = @_;
    my @pids;
    opendir my $d, '/proc' or return;
    for my $p (grep { /^\d+$/ } readdir $d) {
        open my $fh, '<', "/proc/$p/stat" or next;
        my $stat = <$fh>;
        next unless $stat && $stat =~ /^\d+ \(.*?\) \S+ (\d+)/;
        push @pids, $p if $1 == $self->{pid};
    }
    return sort { $a <=> $b } @pids;
}

sub fd_count {
    my ($self) = @_;
    opendir my $d, "/proc/$self->{pid}/fd" or return -1;
    return scalar grep { /^\d+$/ } readdir $d;
}

# HUP, then wait until a full set of new workers runs
sub reload {
    my ($self) = @_;
    my %old = map { $_ => 1 } $self->workers;
    kill 'HUP', $self->{pid};
    wait_for(sub {
        my @new = grep { !$old{$_} } $self->workers;
        return @new >= $self->{workers};
    }, 10) or die "reload did not start new workers";
}

# QUIT, and the master and its workers are gone within the bound; a stop
# that fails kills them and fails the next check_logs
sub stop {
    my ($self) = @_;
    return 1 unless $self->{pid} && $self->{pid} > 1;
    kill 'QUIT', $self->{pid};
    my $done = wait_for(sub { waitpid($self->{pid}, WNOHANG) != 0 },
                        $ENV{DO_VALGRIND} ? 120 : 30);
    if (!$done) {
        $self->{stop_failed} = 1;
        $self->DESTROY;
    }
    delete $self->{pid};
    return $done;
}

# a signal to a worker that the test sends on purpose: the master's line
# about that PID is expected, and no other (expect_killed: the signal is
# sent from another process)
sub kill_worker {
    my ($self, $sig, @pids) = @_;
    $self->expect_killed(@pids);
    return kill $sig, @pids;
}

sub expect_killed {
    my ($self, @pids) = @_;
    $self->{killed}{$_} = 1 for @pids;
}

# The module's own lines that say something went wrong inside it: every
# "do:" line at [error] but the gates' refusals (do_limit_log_level and
# do_lock_log_level are error by default), and these warnings.
my $MODULE_TROUBLE = qr/\[error\]\ .*\bdo:\ (?!limiting\ requests
                                          |lock\ "[^"]*"\ is\ held,)
                        |\bdo: .*(?:unreachable,\ running
                        |lost\ \d+\ commit\ races|did\ not\ give\ it\ back)/x;

# Stops nginx gracefully if it still runs (asserted), then one test: the
# logs have no crash, no alert, no sanitizer or valgrind report, no module
# error that the test did not expect (expect => [qr/.../, ...]), and the
# stop succeeded.
sub check_logs {
    my ($self, $name, %opt) = @_;
    $name ||= 'error log';
    if ($self->{pid}) {
        ok($self->stop, "$name: nginx stops gracefully");
    }
    $self->{checked} = 1;
    my @bad = grep { /\[(alert|emerg|crit)\]|signal \d+|Sanitizer/
                     || /runtime error:/ || /$MODULE_TROUBLE/ }
              split /\n/, $self->error_log;
    @bad = grep { !/signal (?:1 \(SIGHUP\)|3 \(SIGQUIT\)|17 \(SIGCHLD\)|29 \(SIGIO\))/ }
           @bad;
    @bad = grep { !(/worker process (\d+) exited on signal (?:9|15)/
                    && $self->{killed}{$1}) } @bad;
    @bad = grep { !(/signal 15 \(SIGTERM\) received from \d+, exiting/
                    && %{ $self->{killed} || {} }) } @bad;
    for my $re (@{ $opt{expect} || [] }) {
        @bad = grep { !/$re/ } @bad;
    }
    push @bad, grep { /Sanitizer|runtime error:|\[(alert|emerg|crit)\]/ }
               split /\n/, $self->stderr;
    push @bad, 'nginx did not stop gracefully' if $self->{stop_failed};
    push @bad, sanitizer_reports("$self->{prefix}/logs");
    push @bad, valgrind_reports("$self->{prefix}/logs");
    ok(!@bad, "$name has no crash, alert, module error or sanitizer report")
        or diag(join "\n", @bad[0 .. ($#bad > 20 ? 20 : $#bad)]);
}

# Sanitizer findings that concern the module: every error report, and the
# leak records whose allocation stack passes through the module (Debian's
# nginx itself leaves its worker arrays and a PCRE context unfreed at exit).
sub sanitizer_reports {
    my ($dir) = @_;
    my @found;
    for my $r (glob("$dir/asan* $dir/ubsan*")) {
        open my $fh, '<', $r or next;
        local $/;
        my $text = <$fh>;
        if ($text =~ /ERROR: AddressSanitizer|runtime error/) {
            push @found, "sanitizer report $r:\n$text";
            next;
        }
        for my $leak (split /\n(?=(?:Direct|Indirect) leak)/, $text) {
            push @found, "leak in $r:\n$leak"
                if $leak =~ /leak of/ && $leak =~ /ngx_http_do_module|ngx_do_/;
        }
    }
    return @found;
}

my $VALGRIND_ERROR = qr/Invalid|Conditional|Use of uninit|Syscall param
                        |Mismatched|Source\ and\ destination/x;

# Memcheck's error records (make test-valgrind) that concern the module:
# a record is the lines of one pid up to the next blank one.
sub valgrind_reports {
    my ($dir) = @_;
    my @found;
    for my $f (glob("$dir/valgrind.*")) {
        open my $fh, '<', $f or next;
        my ($rec, @recs) = ('');
        while (my $l = <$fh>) {
            if ($l =~ /^==\d+==\s*$/) {
                push @recs, $rec if length $rec;
                $rec = '';
                next;
            }
            $rec .= $l;
        }
        push @recs, $rec if length $rec;
        push @found, map { "valgrind $f:\n$_" }
                     grep { /^==\d+== $VALGRIND_ERROR/m
                            && /ngx_http_do|ngx_do_/ } @recs;
    }
    return @found;
}

# An nginx that the test did not stop and check (it died, or forgot) is
# stopped gracefully and checked here, as tests of their own: a file that
# ended its plan already fails on them.
END {
    my $status = $?;
    for my $t (@INSTANCES) {
        next if $t->{checked} && !$t->{pid};
        $t->check_logs('at the end of the test file');
    }
    $? = $status;
}

# a test that ends early still leaves no nginx behind: the workers first
# (they would outlive a killed master), then the master
sub DESTROY {
    my ($self) = @_;
    local $?;    # waitpid here must not become the test's exit status
    return unless $self->{pid} && $self->{pid} > 1;
    my @workers = grep { $_ > 1 } $self->workers;
    kill 'CONT', @workers, $self->{pid};
    kill 'KILL', @workers;
    kill 'KILL', $self->{pid};
    waitpid($self->{pid}, 0);
}

# nginx -t on a config text (http part), returns (exit code, output)
sub nginx_t {
    my ($http, %args) = @_;
    my $t = DoTest->new(http => $http, %args);
    my $out = `@{[ nginx_cmd() ]} -p $t->{prefix} -c $t->{prefix}/conf/nginx.conf -t 2>&1`;
    return ($? >> 8, $out, "$t->{prefix}/conf/nginx.conf");
}

sub wait_for {
    my ($cond, $timeout) = @_;
    my $end = time + ($timeout // 10);
    while (time < $end) {
        return 1 if $cond->();
        sleep 0.02;
    }
    return $cond->();
}

# http($port, $method, $uri, body => ..., headers => {...}, keep => $sock)
# One request on a new connection (or on the given keep-alive socket);
# returns {status, headers => {lowercased}, body, head}, or {status => 0,
# error}; head is the status line and header lines as received, for fields
# that may come more than once (see header_count).
sub http {
    my ($port, $method, $uri, %a) = @_;
    my $body = $a{body} // '';
    my $s = $a{sock} || IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                             PeerPort => $port,
                                             Timeout => 30);
    return { status => 0, error => "connect: $!" } unless $s;
    my $req = "$method $uri HTTP/1.1\r\nHost: localhost\r\n";
    $req .= "Connection: " . ($a{sock} ? 'keep-alive' : 'close') . "\r\n";
    for my $h (sort keys %{ $a{headers} || {} }) {
        $req .= "$h: $a{headers}{$h}\r\n";
    }
    $req .= "Content-Length: " . length($body) . "\r\n"
        if length $body || $method =~ /^(PUT|POST)$/;
    $req .= "\r\n";
    binmode $s;
    my $deadline = time + ($a{timeout} // ($ENV{DO_VALGRIND} ? 300 : 60));
    my $ok = print {$s} $req . $body;
    return { status => 0, error => "write: $!" } unless $ok;

    my $sel = IO::Select->new($s);
    my $buf = '';
    my ($status, %h, $head, $head_len);
    while (1) {
        my $left = $deadline - time;
        return { status => 0, error => 'timeout' }
            if $left <= 0 || !$sel->can_read($left);
        my $n = sysread($s, $buf, 65536, length $buf);
        return { status => 0, error => "read: " . ($n // $!) } unless $n;
        if (!defined $head_len && (my $i = index($buf, "\r\n\r\n")) >= 0) {
            $head = substr($buf, 0, $i);
            $head_len = $i + 4;
            my @lines = split /\r\n/, $head;
            ($status) = $lines[0] =~ m{^HTTP/1\.\d (\d+)};
            for (@lines[1 .. $#lines]) {
                my ($k, $v) = /^([^:]+):\s*(.*)$/ or next;
                $h{lc $k} = $v;
            }
        }
        next unless defined $head_len;
        my $len = $h{'content-length'} // 0;
        $len = 0 if $method eq 'HEAD';
        last if length($buf) - $head_len >= $len;
    }
    close $s unless $a{sock};
    return { status => $status, headers => \%h,
             body => substr($buf, $head_len), head => $head };
}

# worker_conns($port, $uri, owner => N, other => M)
# Keep-alive connections sorted by the worker that accepted them, for an
# object whose location adds X-Owner, X-Worker and X-Pid headers: N
# accepted by the object's owner worker and M by another one, and the pid
# of each side.  Returns {owner => [sockets], other => [sockets],
# owner_pid, other_pid}; tries up to 400 connections, so a caller checks
# what it got.
sub worker_conns {
    my ($port, $uri, %want) = @_;
    my %got = (owner => [], other => []);
    for (1 .. 400) {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                      PeerPort => $port, Timeout => 10)
            or next;
        my $h = http($port, 'GET', $uri, sock => $s)->{headers} || {};
        my ($o, $w, $pid) = @{$h}{qw(x-owner x-worker x-pid)};
        if (!defined $o || !defined $w) {
            close $s;
            next;
        }
        my $side = $o eq $w ? 'owner' : 'other';
        $got{"${side}_pid"} //= $pid;
        if (@{ $got{$side} } < ($want{$side} // 0)) {
            push @{ $got{$side} }, $s;
        } else {
            close $s;
        }
        last if $got{owner_pid}
                && (!$want{other} || $got{other_pid})
                && !grep { @{ $got{$_} } < ($want{$_} // 0) } qw(owner other);
    }
    return \%got;
}

# how many times a field appears in an http() answer's head
sub header_count {
    my ($r, $name) = @_;
    return scalar(() = ($r->{head} // '') =~ /^\Q$name\E:/mgi);
}

# spawn($n, $code): $n children of $code->($i) in the background, each
# returning a list of lines; collect($handle): waits for them, all lines
sub spawn {
    my ($n, $code) = @_;
    my $dir = tempdir('ngx_do_par_XXXXXX', TMPDIR => 1, CLEANUP => 1);
    my @pids;
    for my $i (0 .. $n - 1) {
        my $pid = fork() // die "fork: $!";
        if ($pid == 0) {
            my @out = eval { $code->($i) };
            push @out, "ERROR $@" if $@;
            open my $fh, '>', "$dir/$i" or POSIX::_exit(1);
            print $fh map { "$_\n" } @out;
            close $fh;
            POSIX::_exit(0);
        }
        push @pids, $pid;
    }
    return { dir => $dir, pids => \@pids };
}

sub collect {
    my ($h) = @_;
    waitpid($_, 0) for @{ $h->{pids} };
    my @lines;
    for my $i (0 .. $#{ $h->{pids} }) {
        open my $fh, '<', "$h->{dir}/$i" or next;
        chomp(my @l = <$fh>);
        push @lines, @l;
    }
    return @lines;
}

# Runs $n children of $code->($i) and waits: all lines of all children
sub parallel { collect(spawn(@_)) }



# A redis-server of a test's own, on a free port (and a unix socket), in a
# temporary directory; stopped by its PID.
package DoTest::Redis;

use File::Temp qw(tempdir);
use IO::Socket::INET;
use POSIX qw(:sys_wait_h);

sub new {
    my ($class, %args) = @_;
    my $self = bless { args => [ @{ $args{args} || [] } ] }, $class;
    $self->{dir} = tempdir('ngx_do_redis_XXXXXX', TMPDIR => 1,
                           CLEANUP => !$ENV{DO_KEEP});
    chmod 0755, $self->{dir};    # nginx workers reach the unix socket
    $self->{port} = DoTest::free_port();
    $self->{socket} = "$self->{dir}/redis.sock";
    return $self;
}

sub port   { $_[0]{port} }
sub socket { $_[0]{socket} }
sub dir    { $_[0]{dir} }

# a new server on a port that an earlier one (now stopped) used
sub start_on {
    my ($self, $port) = @_;
    $self->{port} = $port;
    return $self->start;
}

sub start {
    my ($self) = @_;
    my $pid = fork() // die "fork: $!";
    if ($pid == 0) {
        open STDOUT, '>>', "$self->{dir}/redis.log";
        open STDERR, '>&', \*STDOUT;
        exec 'redis-server', '--port', $self->{port}, '--bind', '127.0.0.1',
             '--unixsocket', $self->{socket}, '--unixsocketperm', '777',
             '--save', '', '--appendonly', 'no', '--dir', $self->{dir},
             '--daemonize', 'no', @{ $self->{args} };
        die "exec redis-server: $!";
    }
    $self->{pid} = $pid;
    DoTest::wait_for(sub {
        IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                              PeerPort => $self->{port})
    }, 10) or die "redis-server did not start";
    return $self;
}

sub stop {
    my ($self, $sig) = @_;
    return unless $self->{pid};
    kill $sig || 'TERM', $self->{pid};
    waitpid($self->{pid}, 0);
    delete $self->{pid};
}

# redis-cli against this server; returns its output
sub cli {
    my ($self, @cmd) = @_;
    my @auth = @{ $self->{cli_auth} || [] };
    open my $fh, '-|', 'redis-cli', '-p', $self->{port}, @auth, @cmd
        or die "redis-cli: $!";
    local $/;
    my $out = <$fh> // '';
    close $fh;
    return $out;
}

sub DESTROY {
    my ($self) = @_;
    local $?;    # waitpid here must not become the test's exit status
    $self->stop('KILL') if $self->{pid};
}

1;


# A recording origin: an HTTP server of a test's own that serves every
# request in a process of its own (so that overlapping requests really
# overlap), sleeps ?sleep=MS, and appends one line per request to its log:
# "<start> <end> <X-Fencing-Token or -> <path>", times in seconds.
package DoTest::Origin;

use File::Temp qw(tempdir);
use IO::Socket::INET;
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(sleep time);

sub new {
    my ($class) = @_;
    my $self = bless {}, $class;
    $self->{dir} = tempdir('ngx_do_origin_XXXXXX', TMPDIR => 1,
                           CLEANUP => !$ENV{DO_KEEP});
    $self->{log} = "$self->{dir}/requests.log";
    $self->{listen} = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
                                            LocalPort => 0, Listen => 128,
                                            ReuseAddr => 1)
        or die "origin: $!";
    $self->{port} = $self->{listen}->sockport;

    my $pid = fork() // die "fork: $!";
    if ($pid == 0) {
        # not the test's output: prove must not wait for the last sleepers
        open STDOUT, '>', '/dev/null';
        open STDERR, '>', '/dev/null';
        $SIG{CHLD} = 'IGNORE';
        while (1) {
            my $c = $self->{listen}->accept or next;
            my $child = fork();
            if (defined $child && $child == 0) {
                $self->serve($c);
                POSIX::_exit(0);
            }
            close $c;
        }
    }
    close $self->{listen};
    $self->{pid} = $pid;
    return $self;
}

sub serve {
    my ($self, $c) = @_;
    my $line = <$c> // return;
    my ($path) = $line =~ m{^\w+ (\S+)};
    my %h;
    while (my $l = <$c>) {
        last if $l =~ /^\r?\n$/;
        $h{lc $1} = $2 if $l =~ /^([^:]+):\s*(.*?)\r?$/;
    }
    my $start = time;
    my ($ms) = ($path // '') =~ /[?&]sleep=(\d+)/;
    sleep(($ms // 0) / 1000);
    my $fence = $h{'x-fencing-token'} // '-';
    my $body = "fence $fence\n";
    # the end is taken before the answer leaves: nothing of the next holder
    # can happen before it
    my $end = time;
    # the log line first: a test that read the answer finds it logged
    if (open my $fh, '>>', $self->{log}) {
        syswrite $fh, sprintf("%.6f %.6f %s %s\n", $start, $end, $fence,
                              $path);
        close $fh;
    }
    print {$c} "HTTP/1.1 200 OK\r\nContent-Length: " . length($body)
        . "\r\nConnection: close\r\n\r\n$body";
}

sub port { $_[0]{port} }

# the lines logged so far, as [start, end, fence, path]
sub requests {
    my ($self) = @_;
    open my $fh, '<', $self->{log} or return ();
    return map { chomp; [ split / /, $_, 4 ] } <$fh>;
}

sub DESTROY {
    my ($self) = @_;
    local $?;
    return unless $self->{pid} && $self->{pid} > 1;
    kill 'KILL', $self->{pid};
    waitpid($self->{pid}, 0);
}

1;

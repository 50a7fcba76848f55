# do_status as Prometheus expects it: every line of the text form follows
# the exposition grammar, each family has one HELP and one TYPE before its
# samples, counters end in _total and gauges do not, units are in names;
# per-namespace series count exactly what happened on two namespaces
# (do_limit passed, delayed, rejected; do_lock grants and a timeout;
# calls, activations, evictions, commit failures) in both forms, shared by
# the workers; the call latency histogram is cumulative with +Inf equal to
# its count; format=xml is 400; the version is reported.  Rejections,
# delays and lock timeouts are logged at do_limit_log_level and
# do_lock_log_level, with the key escaped and cut.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP;
use DoTest qw(http nginx_t wait_for);

my $J = JSON::PP->new;

my ($VERSION) = do {
    open my $fh, '<', DoTest::root() . '/src/ngx_http_do.h' or die $!;
    local $/;
    <$fh> =~ /^#define NGX_DO_VERSION\s+"([^"]+)"/m;
};
ok($VERSION, "the version is defined in ngx_http_do.h ($VERSION)");
my $readme = do {
    open my $fh, '<', DoTest::root() . '/README.md' or die $!;
    local $/;
    <$fh>;
};
like($readme, qr/^\#\#\#\ do_status\n(?:(?!^\#\#\#\ ).)*
                 ngx_do_build_info\{version="\Q$VERSION\E"\}\ 1/msx,
     "the README's do_status section gives the same version");

# The text form, parsed strictly: dies on the first line that breaks the
# format; returns {family => {type, help, samples => [[name, {labels},
# value], ...]}}.
my $NAME  = qr/[a-zA-Z_:][a-zA-Z0-9_:]*/;
my $LNAME = qr/[a-zA-Z_][a-zA-Z0-9_]*/;
my $LVAL  = qr/(?:[^"\\\n]|\\[\\"n])*/;
my $VALUE = qr/[-+]?(?:\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|Inf)|NaN/;

sub parse_prometheus {
    my ($text) = @_;
    die "no final newline\n" unless $text =~ /\n\z/;
    my (%f, %seen_series, $current, %closed);
    my $n = 0;
    for my $line (split /\n/, $text) {
        $n++;
        if ($line =~ /^# (HELP|TYPE) ($NAME) (.*)$/) {
            my ($what, $name, $rest) = ($1, $2, $3);
            die "line $n: $what of $name after its samples\n"
                if $f{$name} && @{ $f{$name}{samples} };
            die "line $n: a second $what for $name\n"
                if defined $f{$name}{lc $what};
            die "line $n: unknown type $rest\n"
                if $what eq 'TYPE'
                   && $rest !~ /^(counter|gauge|histogram|summary|untyped)$/;
            $f{$name}{lc $what} = $rest;
            $f{$name}{samples} //= [];
            next;
        }
        die "line $n: a comment that is neither HELP nor TYPE: $line\n"
            if $line =~ /^#/;
        $line =~ /^($NAME)(?:\{((?:$LNAME="$LVAL"(?:,$LNAME="$LVAL")*)?)\})?
                  \ ($VALUE)(?:\ -?\d+)?$/x
            or die "line $n: not a sample: $line\n";
        my ($name, $lbl, $value) = ($1, $2 // '', $3);
        my %labels;
        while ($lbl =~ /($LNAME)="($LVAL)"/g) {
            die "line $n: label $1 twice\n" if exists $labels{$1};
            $labels{$1} = $2 =~ s/\\n/\n/gr =~ s/\\(["\\])/$1/gr;
        }
        my $family = $name;
        if (!$f{$family}) {
            ($family = $name) =~ s/_(?:bucket|sum|count)$//;
            die "line $n: $name is not a histogram's\n"
                unless $f{$family} && ($f{$family}{type} // '') eq 'histogram';
        }
        die "line $n: $family has no HELP or TYPE before its samples\n"
            unless defined $f{$family}{help} && defined $f{$family}{type};
        die "line $n: ${family}'s samples are not together\n"
            if $closed{$family};
        $closed{$current} = 1 if defined $current && $current ne $family;
        $current = $family;
        my $series = join ',', $name,
                     map { "$_=$labels{$_}" } sort keys %labels;
        die "line $n: $series twice\n" if $seen_series{$series}++;
        push @{ $f{$family}{samples} }, [$name, \%labels, $value];
    }
    return \%f;
}

# the conventions beyond the grammar: names, units, histograms
sub check_conventions {
    my ($f) = @_;
    my @bad;
    for my $name (sort keys %$f) {
        my $type = $f->{$name}{type};
        push @bad, "$name: a counter without _total"
            if $type eq 'counter' && $name !~ /_total$/;
        push @bad, "$name: a $type named _total"
            if $type ne 'counter' && $name =~ /_total$/;
        push @bad, "$name: a unit not at the end"
            if $name =~ /_(?:bytes|seconds)_/
               && $name !~ /_(?:bytes|seconds)_total$/;
        push @bad, "$name: a unit that is not a base unit"
            if $name =~ /_(?:ms|msec|milliseconds|kb|kilobytes|minutes)\b/;
        next unless $type eq 'histogram';

        my %by;
        for my $s (@{ $f->{$name}{samples} }) {
            my %l = %{ $s->[1] };
            my $le = delete $l{le};
            my $key = join ',', map { "$_=$l{$_}" } sort keys %l;
            if ($s->[0] eq "${name}_bucket") {
                push @{ $by{$key}{buckets} }, [$le, $s->[2]];
            } elsif ($s->[0] eq "${name}_sum") {
                $by{$key}{sum} = $s->[2];
            } elsif ($s->[0] eq "${name}_count") {
                $by{$key}{count} = $s->[2];
            }
        }
        for my $key (sort keys %by) {
            my $h = $by{$key};
            my @b = @{ $h->{buckets} || [] };
            push @bad, "$name\{$key}: no buckets" unless @b;
            push @bad, "$name\{$key}: no _sum" unless defined $h->{sum};
            push @bad, "$name\{$key}: no _count" unless defined $h->{count};
            next unless @b && defined $h->{count};
            push @bad, "$name\{$key}: the last bucket is not +Inf"
                unless $b[-1][0] eq '+Inf';
            push @bad, "$name\{$key}: +Inf ($b[-1][1]) is not _count "
                       . "($h->{count})"
                unless $b[-1][1] == $h->{count};
            for my $i (1 .. $#b) {
                my ($le0, $le1) = map { $_ eq '+Inf' ? 9e99 : $_ }
                                  $b[$i - 1][0], $b[$i][0];
                push @bad, "$name\{$key}: le not ascending at $b[$i][0]"
                    unless $le1 > $le0;
                push @bad, "$name\{$key}: not cumulative at le=$b[$i][0]"
                    unless $b[$i][1] >= $b[$i - 1][1];
            }
        }
    }
    return @bad;
}

# the value of one series, or undef
sub value {
    my ($f, $family, $name, %labels) = @_;
    for my $s (@{ $f->{$family}{samples} || [] }) {
        next unless $s->[0] eq $name;
        next if grep { ($s->[1]{$_} // '') ne $labels{$_} } keys %labels;
        return $s->[2];
    }
    return undef;
}

# the answer and the parsed text form; the parser's complaint in $PARSE_ERROR
my $PARSE_ERROR;

sub prometheus {
    my ($port) = @_;
    my $r = http($port, 'GET', '/status?format=prometheus');
    die "do_status: $r->{status}" unless $r->{status} == 200;
    my $f = eval { parse_prometheus($r->{body}) };
    $PARSE_ERROR = $@;
    return ($r, $f || {});
}

sub json_status {
    my ($port, $args) = @_;
    my $r = http($port, 'GET', '/status' . ($args // ''));
    die "do_status: $r->{status}" unless $r->{status} == 200;
    return $J->decode($r->{body});
}

# a namespace's numbers, from both forms, as "key=value" in a fixed order
my @NS_KEYS = qw(calls limit_passed limit_delayed limit_rejected lock_grants
                 lock_timeouts activations evictions commit_failures);
my %PROM_NAME = (activations => 'namespace_activations',
                 evictions => 'namespace_evictions');

sub ns_numbers {
    my ($port, $ns, @keys) = @_;
    my (undef, $f) = prometheus($port);
    my $j = json_status($port)->{namespaces}{$ns} || {};
    my (@p, @js);
    for my $k (@keys) {
        my $family = 'ngx_do_' . ($PROM_NAME{$k} // $k) . '_total';
        push @p, "$k=" . (value($f, $family, $family, namespace => $ns)
                          // 'none');
        push @js, "$k=" . ($j->{$k} // 'none');
    }
    return ("@p", "@js");
}

# waits until both forms say exactly $want for $ns; one test
sub ns_is {
    my ($port, $ns, $want, $name) = @_;
    my @keys = map { /^(\w+)=/ } split / /, $want;
    my ($p, $j);
    wait_for(sub {
        ($p, $j) = ns_numbers($port, $ns, @keys);
        $p eq $want && $j eq $want;
    }, 10);
    is("prometheus: $p; json: $j", "prometheus: $want; json: $want", $name);
}

my $conf = <<'EOF';
    %%STORAGE%%
    do_idle_timeout %%IDLE%%;
    do_namespace A rate_limiter rate=1r/m burst=6;
    do_namespace P rate_limiter rate=1r/s burst=5 delay=1;
    do_namespace L rate_limiter rate=1r/m;
    do_namespace B lock;
    do_namespace kv store;
    do_limit_log_level warn;

    upstream origin { server 127.0.0.1:%%PORT2%%; }

    server {
        listen 127.0.0.1:%%PORT2%%;
        location / { return 200 "origin\n"; }
    }

    server {
        listen 127.0.0.1:%%PORT%% reuseport;
        error_log %%PREFIX%%/logs/warn.log warn;
        do_lock_log_level warn;

        location /a { do_limit A key=$arg_k; proxy_pass http://origin; }
        location /p { do_limit_log_level error;
                      do_limit P key=$arg_k; proxy_pass http://origin; }
        location /h { do_limit L key=$http_x_key; proxy_pass http://origin; }
        location /quiet { do_limit_log_level info;
                          do_limit L key=$arg_k; proxy_pass http://origin; }
        location /b { do_lock B key=$arg_k wait=300ms;
                      proxy_pass http://origin; }
        location ~ ^/lock/(?<o>[\w-]+)$ { do_pass B name=$o; }
        location ~ ^/kv/(?<o>[\w-]+)$ { do_pass kv name=$o; }
        location = /status { do_status; }
    }
EOF

my $t = DoTest->new(workers => 2, http => $conf =~ s/%%IDLE%%/60s/r)->start;
my $p = $t->port;

sub warn_log {
    open my $fh, '<', $t->prefix . '/logs/warn.log' or return '';
    local $/;
    return <$fh>;
}

# 1. the text form before any traffic, and the formats
my ($r, $f) = prometheus($p);
like($r->{headers}{'content-type'}, qr{^text/plain; version=0\.0\.4},
     'format=prometheus is the text exposition format 0.0.4');
is($PARSE_ERROR, '', 'every line follows the exposition grammar, each '
   . 'family has its HELP and TYPE once and before its samples, samples of a '
   . 'family together');
is(join("\n", check_conventions($f)), '',
   'counters end in _total, gauges do not, units at the end, histograms '
   . 'cumulative with +Inf equal to _count');
is(value($f, 'ngx_do_build_info', 'ngx_do_build_info', version => $VERSION),
   1, "ngx_do_build_info{version=\"$VERSION\"} 1");
is($f->{ngx_do_build_info}{type}, 'gauge', '... a gauge');
is($f->{ngx_do_objects}{type}, 'gauge', 'objects is a gauge without _total');
is($f->{ngx_do_activations_total}{type}, 'counter',
   'per-worker counters end in _total (ngx_do_activations_total)');
is($f->{ngx_do_call_duration_seconds}{type}, 'histogram',
   'ngx_do_call_duration_seconds is a histogram');
is(join(' ', map { $_->[1]{le} }
             grep { $_->[0] =~ /_bucket$/ && $_->[1]{namespace} eq 'A' }
             @{ $f->{ngx_do_call_duration_seconds}{samples} }),
   '0.0001 0.00025 0.0005 0.001 0.0025 0.005 0.01 0.025 0.05 0.1 0.25 0.5 '
   . '1 2.5 5 10 +Inf', '... with fixed buckets from 0.1 ms to 10 s');
is(join(' ', sort map { $_->[1]{namespace} }
                  @{ $f->{ngx_do_calls_total}{samples} }),
   'A B L P kv', 'a series per namespace, labelled namespace="..."');

my $j = json_status($p);
is($j->{version}, $VERSION, 'the JSON form has "version"');
ok($j->{storage} && ref $j->{workers} eq 'ARRAY'
   && defined $j->{workers}[0]{activations},
   '... and keeps "storage" and "workers"');
is(join(' ', sort keys %{ $j->{namespaces} }), 'A B L P kv',
   '... and has an object per namespace');
is($j->{namespaces}{B}{class}, 'lock', '... with its class');
is_deeply(json_status($p, '?format=json')->{namespaces}{A},
          $j->{namespaces}{A}, 'format=json is the JSON form');

$r = http($p, 'GET', '/status?format=xml');
is($r->{status}, 400, 'format=xml: 400');
like($r->{body}, qr/unknown format, expected json or prometheus/,
     '... saying which formats there are');
is(http($p, 'GET', '/status?format=')->{status}, 400, 'an empty format: 400');

# 2. do_limit on A: 7 pass (burst=6), 3 are rejected
my @st = map { http($p, 'GET', '/a?k=x')->{status} } 1 .. 10;
is("@st", join(' ', (200) x 7, (429) x 3), 'A: seven pass, three rejected');
# a key is a bucket in the namespace's table, never an object
ns_is($p, 'A', 'calls=10 limit_passed=7 limit_delayed=0 limit_rejected=3 '
      . 'lock_grants=0 lock_timeouts=0 activations=0 evictions=0 '
      . 'commit_failures=0',
      'A: 10 calls, 7 passed, 3 rejected, no object, in both forms');
{
    ($r, $f) = prometheus($p);
    my $tbl = json_status($p)->{namespaces}{A}{table};
    is(join(' ', $tbl->{entries},
            value($f, 'ngx_do_table_entries', 'ngx_do_table_entries',
                  namespace => 'A')),
       '1 1', 'A: one bucket in its table, in both forms');
    ok($tbl->{size} >= 10 * 1024 * 1024 - 4096 && $tbl->{free} < $tbl->{size}
       && value($f, 'ngx_do_table_free_bytes', 'ngx_do_table_free_bytes',
                namespace => 'A') == $tbl->{free},
       "... in a zone of 10m (the default) with $tbl->{free} bytes free");
}

# delays: 1r/s with delay=1, the third within the burst waits
@st = map { http($p, 'GET', '/p?k=y')->{status} } 1 .. 3;
is("@st", '200 200 200', 'P: three pass');
ns_is($p, 'P', 'calls=3 limit_passed=2 limit_delayed=1 limit_rejected=0',
      'P: 2 passed at once, 1 delayed');

# 3. do_lock on B: three grants, then one request that waits 300 ms for a
# lock held through the API, and gives up
is(http($p, 'GET', '/b?k=j1')->{status}, 200, "B: granted ($_)") for 1 .. 3;
is(http($p, 'POST', '/lock/j2?token=holder&ttl=30s')->{status}, 200,
   'B: j2 is held through the lock API');
is(http($p, 'GET', '/b?k=j2')->{status}, 423,
   'B: a request for j2 gives up after wait=300ms: 423');
is(http($p, 'DELETE', '/lock/j2?token=holder')->{status}, 200,
   'B: j2 is released');
# calls: 3 acquires and 3 releases, the API's take and release, the acquire
# that gave up (it holds nothing to release)
ns_is($p, 'B', 'calls=9 limit_passed=0 limit_rejected=0 lock_grants=3 '
      . 'lock_timeouts=1 activations=2 commit_failures=0',
      'B: 9 calls, 3 grants, 1 timeout, two objects');
ns_is($p, 'A', 'calls=10 limit_passed=7 limit_rejected=3 lock_grants=0',
      'A: unchanged by the traffic on B');

# the histogram: every call answered, the one that waited among the slow
($r, $f) = prometheus($p);
is($PARSE_ERROR, '', 'after traffic: every line follows the grammar');
is(join("\n", check_conventions($f)), '',
   'after traffic: the histograms are cumulative, +Inf equals _count');
my $H = 'ngx_do_call_duration_seconds';
is(value($f, $H, "${H}_count", namespace => 'B'), 6,
   'B: _count counts the 6 calls answered (releases wait for no answer)');
is(value($f, $H, "${H}_count", namespace => 'A'), 10, 'A: _count is 10');
is(value($f, $H, "${H}_bucket", namespace => 'A', le => '+Inf'), 10,
   'A: +Inf is 10');
cmp_ok(value($f, $H, "${H}_bucket", namespace => 'B', le => '0.25'), '<=', 5,
       'B: the call that waited 300 ms is not within 0.25 s');
# (nginx's timers count from its cached time: the wait may end a few ms
# short of 300 on the clock)
cmp_ok(value($f, $H, "${H}_sum", namespace => 'B'), '>', 0.25,
       'B: _sum holds its wait: measured from dispatch to reply');
$j = json_status($p)->{namespaces}{B}{call_duration_seconds};
is("$j->{count} $j->{buckets}{'+Inf'}", '6 6',
   'the JSON form has the same histogram');

# 4. the log lines
my $w = warn_log();
like($w, qr/\[warn\] .*do: limiting requests by "A", retry in \d+ ms, key "x"/,
     'do_limit_log_level warn (from http{}): a rejection at [warn], with '
     . 'the namespace and the key');
is(scalar(() = $w =~ /limiting requests by "A"/g), 3, '... once each');
like($w, qr/\[warn\] .*do: delaying request by "P", \d+ ms, key "y"/,
     'do_limit_log_level error: a delay one level lower, at [warn]');
unlike($w, qr/\[error\] .*limiting/, 'no rejection at [error]');
my $refused = 'do: lock "B" is held, request refused after wait=300ms, '
              . 'key "j2"';
like($w, qr/\[warn\] .*\Q$refused\E/,
     'do_lock_log_level warn: a lock timeout at [warn], with the key');

my $key = "a\x01b\"c\xff" . ('z' x 300);
http($p, 'GET', '/h', headers => { 'X-Key' => $key }) for 1 .. 2;
ok(wait_for(sub { warn_log() =~ /limiting requests by "L"/ }, 5),
   'a rejection on L is logged');
like(warn_log(),
     qr/limiting\ requests\ by\ "L",\ retry\ in\ \d+\ ms,
        \ key\ "a\\x01b\\x22c\\xff z{122} \.\.\."/x,
     '... with the key escaped (\\xNN) and cut after 128 bytes');
@st = map { http($p, 'GET', '/quiet?k=quiet')->{status} } 1 .. 2;
is("@st", '200 429', 'the second request on /quiet is rejected');
ns_is($p, 'L', 'limit_passed=2 limit_rejected=2', 'L: 2 passed, 2 rejected');
unlike(warn_log(), qr/key "quiet"/,
       'do_limit_log_level info with error_log at warn: no line');

# a reload that adds a namespace keeps every namespace's counters
$t->write_conf(http => ($conf =~ s/%%IDLE%%/60s/r)
               =~ s/(do_namespace kv store;)/$1 do_namespace extra store;/r);
$t->reload;
ns_is($p, 'extra', 'calls=0 activations=0',
      'after a reload: the new namespace has its series');
ns_is($p, 'A', 'calls=10 limit_passed=7 limit_delayed=0 limit_rejected=3',
      '... and A still has its counts');

ok($t->stop, 'nginx stops gracefully');
$t->check_logs('traffic');

# 5. evictions and commit failures, per namespace
$t = DoTest->new(workers => 2, storage => 'memory size=256k',
                 http => $conf =~ s/%%IDLE%%/1s/r)->start;
$p = $t->port;
is(http($p, 'PUT', "/kv/e$_?key=k", body => 'x')->{status}, 200,
   "kv: object e$_ written") for 1 .. 3;
ns_is($p, 'kv', 'activations=3 evictions=3 commit_failures=0',
      'kv: three objects activated, and evicted once idle');
ns_is($p, 'B', 'activations=0 evictions=0', 'B: none');

if (!DoTest::redis_backend()) {
    my $full;
    for my $i (1 .. 100) {
        $full = http($p, 'PUT', "/kv/fill?key=k$i", body => 'x' x 20000);
        last if $full->{status} == 507;
    }
    is($full->{status}, 507, 'kv: the zone fills up: 507');
    ns_is($p, 'kv', 'commit_failures=1', 'kv: one commit failure');
    ns_is($p, 'B', 'commit_failures=0', 'B: none');
}

ok($t->stop, 'nginx stops gracefully');
$t->check_logs('evictions', expect => [qr/do: storage is full/]);

# 6. the directives' values are checked by nginx -t
for my $d (qw(do_limit_log_level do_lock_log_level)) {
    my ($rc, $out, $file) = nginx_t("do_namespace A rate_limiter rate=1r/s;\n"
                                    . "$d debug;\n");
    isnt($rc, 0, "$d debug: nginx -t fails");
    like($out, qr/invalid value "debug" in \Q$file\E:20/,
         '... naming the value, the file and the line');
    ($rc) = nginx_t("do_namespace A rate_limiter rate=1r/s;\n"
                    . "server { $d notice; location / { $d info; } }\n");
    is($rc, 0, "$d in server{} and location{}: nginx -t passes");
}

done_testing();

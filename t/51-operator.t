# The operator's surface: the license, the changelog and the version;
# `make install` and `make deb` lay the module out as Debian lays out its
# own dynamic modules, and what they install loads into Debian's nginx
# with the conf.d snippet; every example and README snippet that exposes
# an object API or do_status restricts it, and the restriction holds.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Basename qw(dirname);
use File::Temp qw(tempdir);
use IO::Socket::INET;
use DoTest qw(http);

my $root = DoTest::root();

sub slurp {
    my ($f) = @_;
    open my $fh, '<', $f or die "$f: $!";
    local $/;
    return scalar <$fh>;
}

# 1. license, changelog, version
my ($version) = slurp("$root/src/ngx_http_do.h")
    =~ /^#define NGX_DO_VERSION\s+"([^"]+)"/m;
like($version // '', qr/^\d+\.\d+\.\d+$/, 'NGX_DO_VERSION is a version');
my $license = slurp("$root/LICENSE");
like($license, qr/^BSD 2-Clause License/, 'LICENSE is BSD-2-Clause');
like($license, qr/Redistributions in binary form must reproduce/,
     '... with its two conditions');
my ($top) = slurp("$root/CHANGELOG.md") =~ /^## (\S+)/m;
is($top, $version, 'the CHANGELOG starts with the current version');

# 2. nginx blocks of the README and the examples: an object API or
# do_status is restricted (deny or auth_request in its location, in a block
# around it, or in one inside it such as limit_except)
sub blocks {
    my ($text) = @_;
    $text =~ s/#[^\n]*//g;
    my @stack = ({ words => [], kids => [] });
    my @all = ($stack[0]);
    for my $stmt ($text =~ /([^;{}]*[;{}])/g) {
        if ($stmt =~ /\{\s*$/) {
            my $b = { words => [], kids => [], parent => $stack[-1],
                      head => $stmt =~ s/^\s+|\s*\{\s*$//gr };
            push @{ $stack[-1]{kids} }, $b;
            push @stack, $b;
            push @all, $b;
        } elsif ($stmt =~ /\}\s*$/) {
            pop @stack if @stack > 1;
        } elsif ($stmt =~ /^\s*(\w+)/) {
            push @{ $stack[-1]{words} }, $1;
        }
    }
    return @all;
}

sub guards {
    my ($b) = @_;
    return 1 if grep { /^(deny|auth_request)$/ } @{ $b->{words} };
    return scalar grep { guards($_) } @{ $b->{kids} };
}

sub restricted {
    my ($b) = @_;
    return 1 if guards($b);
    for (my $p = $b->{parent}; $p; $p = $p->{parent}) {
        return 1 if grep { /^(deny|auth_request)$/ } @{ $p->{words} };
    }
    return 0;
}

my %texts;
my $readme = slurp("$root/README.md");
my $i = 0;
$texts{'README.md block ' . ++$i} = $1
    while $readme =~ /^```nginx\n(.*?)^```$/msg;
$texts{"conf-examples/" . ($_ =~ s{.*/conf-examples/}{}r)} = slurp($_)
    for glob("$root/conf-examples/*.conf"), glob("$root/conf-examples/*/*.conf");

my $exposed = 0;
for my $name (sort keys %texts) {
    for my $b (blocks($texts{$name})) {
        next unless grep { /^(do_pass|do_status)$/ } @{ $b->{words} };
        $exposed++;
        ok(restricted($b), "$name: " . ($b->{head} // 'top level')
                           . " restricts its object API or do_status");
    }
}
cmp_ok($exposed, '>=', 8, "the check saw the object APIs ($exposed)");

# the restriction holds: the quickstart from another address
sub from_other {
    my ($port, $method, $uri) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                  LocalAddr => '127.0.0.2', Timeout => 10)
        or return { status => 0 };
    return http($port, $method, $uri, sock => $s, timeout => 10);
}

{
    my $t = DoTest->new(raw => slurp("$root/conf-examples/quickstart.conf"),
                        workers => 1)->start;
    my $p = $t->port;
    for (['PUT', '/objects/demo?key=k'], ['GET', '/objects/demo?key=k'],
         ['PUT', '/sessions?key=user'], ['GET', '/do/status'])
    {
        is(from_other($p, @$_)->{status}, 403,
           "quickstart: $_->[0] $_->[1] from another address is 403");
    }
    is(http($p, 'GET', '/do/status')->{status}, 200,
       'quickstart: and 200 from this host');
    $t->stop;
    $t->check_logs('quickstart from another address');
}

# 3. redis-durable.conf: its comment writes the secret where do_secret
# reads it (the directory of nginx.conf), and then nginx -t passes
{
    my $raw = slurp("$root/conf-examples/redis-durable.conf");
    my ($cmd) = $raw =~ /^#\s+(head -c \d+ \/dev\/urandom .*> \S+)$/m;
    my ($target) = ($cmd // '') =~ />\s*(\S+)$/;
    my ($arg) = $raw =~ /^\s*do_secret\s+(\S+);/m;
    ok($cmd && $arg, 'redis-durable: a secret command and a do_secret');
    is($target, $arg =~ m{^/} ? $arg : "/etc/nginx/$arg",
       'redis-durable: the command writes the file do_secret reads '
       . '(relative to the directory of nginx.conf, /etc/nginx on Debian)');

    my $t = DoTest->new(raw => $raw);
    my $conf = $t->prefix . '/conf';
    (my $run = $cmd) =~ s{/etc/nginx/}{$conf/}g;
    system('sh', '-c', $run) == 0 or diag "$run failed";
    my $out = `@{[ DoTest::nginx_cmd() ]} -p @{[ $t->prefix ]} -c $conf/nginx.conf -t 2>&1`;
    is($? >> 8, 0, 'redis-durable: nginx -t passes after the comment\'s '
                   . 'command') or diag $out;
}

# 4. make install and make deb
SKIP: {
    skip 'nginx has the module built in (DO_STATIC)', 20 if $ENV{DO_STATIC};

    # the build the suite runs with (build/, or build-asan/ under ASan)
    my $build = dirname(DoTest::module_path());
    local @ENV{qw(MAKEFLAGS MFLAGS MAKELEVEL)};
    delete @ENV{qw(MAKEFLAGS MFLAGS MAKELEVEL)};

    my $d = tempdir('ngx_do_install_XXXXXX', TMPDIR => 1, CLEANUP => 1);
    my $out = `make -s -C $root install DESTDIR=$d BUILD=$build 2>&1`;
    is($?, 0, 'make install DESTDIR=... succeeds') or diag $out;

    my $so = "$d/usr/lib/nginx/modules/ngx_http_do_module.so";
    ok(-f $so, 'the module is in /usr/lib/nginx/modules');
    my $avail = "$d/usr/share/nginx/modules-available/mod-http-do.conf";
    like(-f $avail ? slurp($avail) : '',
         qr{^load_module modules/ngx_http_do_module\.so;$}m,
         'modules-available/mod-http-do.conf loads it, as Debian\'s do');
    is(readlink("$d/etc/nginx/modules-enabled/50-mod-http-do.conf"),
       '/usr/share/nginx/modules-available/mod-http-do.conf',
       'modules-enabled links to it');
    my $doc = "$d/usr/share/doc/libnginx-mod-http-do";
    ok(-f "$doc/$_", "$_ is installed with the documentation")
        for qw(README.md LICENSE CHANGELOG.md examples/conf.d/do.conf
               examples/quickstart.conf);

    # Debian's nginx loads the installed module through modules-enabled
    # (nginx's prefix has modules -> /usr/lib/nginx/modules, as
    # nginx-common makes it) with the conf.d snippet inside http {}
    my $t = DoTest->new(raw => '');
    my $p = $t->prefix;
    symlink("$d/usr/lib/nginx/modules", "$p/modules") or die $!;
    mkdir "$p/conf/conf.d";
    my $snippet = slurp("$doc/examples/conf.d/do.conf");
    my $port = $t->port;
    $snippet =~ s/127\.0\.0\.1:8080/127.0.0.1:$port/g;
    open my $fh, '>', "$p/conf/conf.d/do.conf" or die;
    print $fh $snippet;
    close $fh;
    my $enabled = "$d/etc/nginx/modules-enabled/50-mod-http-do.conf";
    $t->{raw} = <<"EOF";
include $d@{[ readlink $enabled ]};
worker_processes 2;
error_log $p/logs/error.log info;
pid $p/logs/nginx.pid;
events { worker_connections 1024; }
http {
    include $p/conf/conf.d/*.conf;
}
EOF
    $t->write_conf;
    $out = `@{[ DoTest::nginx_cmd() ]} -p $p -c $p/conf/nginx.conf -t 2>&1`;
    is($? >> 8, 0, 'Debian\'s nginx loads the installed module with the '
                   . 'conf.d snippet') or diag $out;

    $t->{workers} = 2;
    $t->start;
    my $r = http($port, 'GET', '/');
    like($r->{headers}{ratelimit} // '', qr/^"per_ip";/,
         'conf.d snippet: do_limit gates the site');
    $r = http($port, 'PUT', '/sessions/s1?key=user', body => 'ann');
    is($r->{status}, 200, 'conf.d snippet: the session store stores');
    is(http($port, 'GET', '/sessions/s1?key=user')->{body}, 'ann',
       'conf.d snippet: and reads back');
    is(from_other($port, 'GET', '/sessions/s1?key=user')->{status}, 403,
       'conf.d snippet: the session store is 403 from another address');
    $t->stop;
    $t->check_logs('conf.d snippet');

    # the package
    $out = `make -s -C $root deb BUILD=$build 2>&1`;
    is($?, 0, 'make deb succeeds') or diag $out;
    my ($deb) = $out =~ /(\S+\.deb)\s*$/;
    $deb = "$root/$deb" if $deb && $deb !~ m{^/};
    ok($deb && -f $deb, 'make deb names the package it built');
    like($deb // '', qr{/libnginx-mod-http-do_\Q$version\E-1_\w+\.deb$},
         'the package is named by the version');

    my $info = `dpkg-deb --info $deb 2>&1`;
    my ($abi) = `dpkg-query -W -f='\${Provides}' nginx` =~ /(nginx-abi-[^\s,]+)/;
    like($info, qr/^ Depends: .*\Q$abi\E/m,
         "the package depends on the nginx ABI it was built for ($abi)");
    like($info, qr/^ Depends: .*libhiredis.*libjansson/m,
         '... and on the libraries it links');
    like($info, qr/postinst/, 'its postinst enables the module');

    my $x = tempdir('ngx_do_deb_XXXXXX', TMPDIR => 1, CLEANUP => 1);
    system('dpkg-deb', '-x', $deb, $x) == 0 or die;
    ok(-f "$x/usr/lib/nginx/modules/ngx_http_do_module.so"
       && -f "$x/usr/share/nginx/modules-available/mod-http-do.conf",
       'the package holds the module and its modules-available file');
    my $xt = DoTest->new(raw => '');
    my $xp = $xt->prefix;
    symlink("$x/usr/lib/nginx/modules", "$xp/modules") or die $!;
    $xt->{raw} = "include $x/usr/share/nginx/modules-available/mod-http-do.conf;\n"
        . "events { }\nhttp { do_namespace s store; }\n";
    $xt->write_conf;
    $out = `@{[ DoTest::nginx_cmd() ]} -p $xp -c $xp/conf/nginx.conf -t 2>&1`;
    is($? >> 8, 0, 'Debian\'s nginx loads the packaged module') or diag $out;
}

done_testing();
